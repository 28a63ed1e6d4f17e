//! What only the Redis store promises beyond the conformance suite, on real `bin-server`
//! processes sharing one `redis-server` of the test's own: a capture on one instance reaches
//! the other's SSE streams and releases its `wait`; a settings change on one applies to the
//! other's next capture; caps and sequence numbers hold across both under concurrent captures;
//! a restarted server keeps everything; Redis stopped under a running server gives 503s with a
//! JSON error, and once it is back the server recovers by itself.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[allow(dead_code)]
mod backends;

use backends::RedisServer;

/// The longest any step may take.
const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A `bin-server` process on a free port, killed when dropped.
struct Server {
    _child: Child,
    base: String,
}

impl Server {
    async fn start(store: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bin-server"))
            .args(["serve", "--port", "0", "--store", store])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = within("the server's listening line", async {
            loop {
                let line = lines.next_line().await.unwrap().expect("server exited");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _child: child,
            base: format!("http://{addr}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

async fn put_bin(s: &Server, name: &str, body: Value) -> Value {
    let r = http()
        .put(s.url(&format!("/api/bins/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {name}: {}", r.status());
    r.json().await.unwrap()
}

async fn get_json(s: &Server, path: &str) -> (u16, Value) {
    let r = http().get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Sends one capture; its status and JSON answer.
async fn capture(s: &Server, bin: &str, body: &str) -> (u16, Value) {
    let r = http()
        .post(s.url(&format!("/b/{bin}/hook")))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An open SSE response and what it has sent so far.
struct Sse {
    resp: reqwest::Response,
    seen: String,
}

impl Sse {
    async fn open(s: &Server, path: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(s.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut sse = Self {
            resp,
            seen: String::new(),
        };
        sse.until("event: ready").await;
        sse
    }

    /// Reads until `needle` has arrived (bounded by [`WAIT`]).
    async fn until(&mut self, needle: &str) {
        within(needle, async {
            while !self.seen.contains(needle) {
                let chunk = self.resp.chunk().await.unwrap().expect("stream ended");
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
    }
}

/// A metric's value from `/metrics`.
async fn metric(s: &Server, name: &str) -> u64 {
    let text = http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_streams_waits_settings_and_caps() {
    let redis = RedisServer::start();
    let url = redis.url("two:");
    let a = Server::start(&url).await;
    let b = Server::start(&url).await;
    put_bin(&a, "shared", json!({})).await;

    // B follows the bin and all bins, and holds a wait; the capture goes to A.
    let mut bin_stream = Sse::open(&b, "/api/bins/shared/stream").await;
    let mut all_stream = Sse::open(&b, "/api/stream").await;
    let waiter = {
        let url = b.url("/api/bins/shared/wait?timeout=15s");
        tokio::spawn(async move { http().get(url).send().await.unwrap() })
    };
    within("B's waiter to hold", async {
        while metric(&b, "hookbin_waiters").await != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (status, ack) = capture(&a, "shared", "from A").await;
    assert_eq!(status, 200);
    assert_eq!(ack["seq"], 1);
    let waited = within("B's wait", waiter).await.unwrap();
    assert_eq!(waited.status(), 200);
    let waited: Value = waited.json().await.unwrap();
    assert_eq!(waited["body"], "from A");
    assert_eq!(waited["seq"], 1);
    bin_stream.until("from A").await;
    assert!(bin_stream.seen.contains("event: request"));
    assert!(bin_stream.seen.contains("id: 1\n"));
    all_stream.until("from A").await;

    // A settings change on A applies to B's very next capture.
    put_bin(
        &a,
        "shared",
        json!({"response": {"status": 202, "body": "changed on A"}}),
    )
    .await;
    let r = http()
        .post(b.url("/b/shared/x"))
        .body("to B")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "changed on A");

    // Caps exact across both: 2 x 20 concurrent captures into a bin of 5.
    put_bin(&a, "capped", json!({"limits": {"max_requests": 5}})).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 { a.url("") } else { b.url("") };
        tasks.push(tokio::spawn(async move {
            let r = http()
                .post(format!("{url}/b/capped/c"))
                .body(format!("n{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<u64>>(),
        "unique across instances"
    );
    for s in [&a, &b] {
        let (_, bin) = get_json(s, "/api/bins/capped").await;
        assert_eq!(bin["request_count"], 5);
        assert_eq!(bin["total_captured"], 40);
        assert_eq!(bin["evicted"]["by_bin_limit"], 35);
        let (_, page) = get_json(s, "/api/bins/capped/requests").await;
        let kept: Vec<u64> = page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, vec![40, 39, 38, 37, 36]);
    }
}

/// The `id:` lines of an SSE transcript, in order.
fn event_ids(seen: &str) -> Vec<u64> {
    seen.lines()
        .filter_map(|l| l.strip_prefix("id: ")?.trim().parse().ok())
        .collect()
}

/// A batch's requests reach every instance's feed as an event of their own right after the
/// capture script's numbers: with two instances capturing into one bin at once (each batching
/// its own captures), each instance's stream still shows every request once, in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_captures_on_two_instances_stream_in_sequence_order_on_both() {
    let redis = RedisServer::start();
    let url = redis.url("order:");
    let a = Server::start(&url).await;
    let b = Server::start(&url).await;
    put_bin(&a, "order", json!({})).await;
    let mut streams = [
        Sse::open(&a, "/api/bins/order/stream").await,
        Sse::open(&b, "/api/bins/order/stream").await,
    ];
    const PER_TASK: usize = 25;
    const TASKS: usize = 16;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let url = if t % 2 == 0 { a.url("") } else { b.url("") };
        tasks.push(tokio::spawn(async move {
            let http = http();
            for i in 0..PER_TASK {
                let r = http
                    .post(format!("{url}/b/order/c"))
                    .body(format!("t{t}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        within("the captures", t).await.unwrap();
    }
    let total = (PER_TASK * TASKS) as u64;
    for sse in &mut streams {
        sse.until(&format!("id: {total}\n")).await;
        assert_eq!(event_ids(&sse.seen), (1..=total).collect::<Vec<u64>>());
    }
}

/// Layout 2 keeps request bytes out of the sorted sets: an instance must not misread what an
/// older one wrote. It refuses to start on such a prefix and says what to do; a fresh prefix is
/// claimed for its layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_refuses_a_prefix_in_the_previous_layout_and_says_what_to_do() {
    let redis = RedisServer::start();
    // What bin-servers before layout 2 left: counters and bins, no layout key.
    assert!(
        redis
            .command(&["HSET", "old:stats", "ids", "1"])
            .starts_with(':')
    );
    assert!(
        redis
            .command(&["ZADD", "old:bins", "1", "x"])
            .starts_with(':')
    );
    let out = within(
        "the refusal",
        Command::new(env!("CARGO_BIN_EXE_bin-server"))
            .args(["serve", "--port", "0", "--store", &redis.url("old:")])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage layout 1") && err.contains("--pattern 'old:*'"),
        "{err}"
    );
    assert_eq!(redis.command(&["EXISTS", "old:layout"]), ":0\r\n");

    let fresh = Server::start(&redis.url("new:")).await;
    put_bin(&fresh, "kept", json!({})).await;
    drop(fresh);
    assert_eq!(redis.command(&["GET", "new:layout"]), "$1\r\n2\r\n");
    let again = Server::start(&redis.url("new:")).await;
    assert_eq!(get_json(&again, "/api/bins/kept").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_bins_requests_and_counters() {
    let redis = RedisServer::start();
    let url = redis.url("restart:");
    let before = {
        let a = Server::start(&url).await;
        put_bin(
            &a,
            "kept",
            json!({"limits": {"max_requests": 2}, "response": {"status": 201}}),
        )
        .await;
        for i in 0..3 {
            assert_eq!(capture(&a, "kept", &format!("body {i}")).await.0, 201);
        }
        get_json(&a, "/api/bins/kept").await.1
    };
    let a = Server::start(&url).await;
    let (status, after) = get_json(&a, "/api/bins/kept").await;
    assert_eq!(status, 200);
    for field in [
        "request_count",
        "total_captured",
        "evicted",
        "response",
        "created_at",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after["request_count"], 2);
    let (_, page) = get_json(&a, "/api/bins/kept/requests").await;
    let bodies: Vec<&str> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["body 2", "body 1"]);
    // The sequence goes on.
    assert_eq!(capture(&a, "kept", "next").await.1["seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_the_server_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let a = Server::start(&redis.url("outage:")).await;
    put_bin(&a, "b", json!({})).await;
    assert_eq!(capture(&a, "b", "before").await.0, 200);
    let mut all = Sse::open(&a, "/api/stream").await;

    redis.stop();
    let (status, err) = within("a capture while Redis is down", capture(&a, "b", "lost")).await;
    assert_eq!(status, 503);
    assert_eq!(err["error"]["code"], "store_unavailable", "{err}");
    let (status, health) = get_json(&a, "/healthz").await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["store"], "redis");
    assert!(
        health["error"].as_str().unwrap().contains("redis"),
        "{health}"
    );

    // Back on the same port (empty: no persistence); the server finds it again by itself.
    redis.restart();
    within("/healthz to answer 200 again", async {
        while get_json(&a, "/healthz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Live subscribers are told they may have missed events.
    all.until("live_feed_restarted").await;
    put_bin(&a, "b", json!({})).await;
    let (status, ack) = capture(&a, "b", "after").await;
    assert_eq!(status, 200);
    assert_eq!(ack["seq"], 1, "Redis came back empty");
    all.until("after").await;
}

/// The live feed's connection dropped (Redis itself stays up): the reader subscribes again by
/// itself and every subscriber, of a bin and of all bins, hears `Resync` (so `wait` rereads the
/// store from its cursor and SSE clients reload); events after that flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_live_feed_resubscribes_and_tells_subscribers_to_resync() {
    use bin_server::store::{
        BinName, BinSettings, LiveEvent, NewCapture, RawHeaders, RedisStore, Store, StoreLimits,
    };
    let redis = RedisServer::start();
    let s = RedisStore::open(&redis.url("feed:"), StoreLimits::default())
        .await
        .unwrap();
    let bin = BinName::parse("f").unwrap();
    s.create_bin(Some(bin.clone()), BinSettings::default())
        .await
        .unwrap();
    let mut rx = s.live().subscribe(&bin);
    let mut all = s.live().subscribe_all();
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(
        killed.trim(),
        ":1",
        "one pub/sub connection per instance: {killed}"
    );
    for r in [&mut rx, &mut all] {
        let ev = within("a resync", r.recv()).await.unwrap();
        assert!(matches!(ev, LiveEvent::Resync), "{ev:?}");
    }
    let c = NewCapture::new(
        "GET",
        "/",
        None,
        &RawHeaders::new(),
        0,
        "127.0.0.1:1".parse().unwrap(),
    );
    s.capture("f", c).await.unwrap();
    let ev = within("the next capture", rx.recv()).await.unwrap();
    assert!(matches!(ev, LiveEvent::Captured { request, .. } if request.seq == 1));
    s.health().await.unwrap();
}
