//! The sending side on `--store redis://`, with real `bin-server` processes sharing one
//! redis-server of the test's own (a free loopback port, no persistence):
//! - a retry scheduled by an instance killed with `kill -9` is sent by another instance on the
//!   same Redis, with the same `webhook-id`, and its attempt log shows both attempts;
//! - two instances share 1,000 messages: each is delivered exactly once;
//! - with Redis stopped, creating a webhook and emitting answer 503 with a JSON error within
//!   seconds (no hang), and work again once Redis is back.
//!
//! Like `sender_restart.rs`, it runs the `bin-server` binary built beside this test.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::sender_restart::{captured_ids, free_port, get, put_bin, start_on, until};
use crate::support::{TestServer, within};

/// A `redis-server` of the test's own on a free loopback port, killed when dropped.
struct Redis {
    port: u16,
    child: Option<std::process::Child>,
}

impl Redis {
    async fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.run().await;
        r
    }

    async fn run(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let port = self.port;
        within("redis-server to answer PING", async move {
            loop {
                if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    && s.write_all(b"PING\r\n").await.is_ok()
                {
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, prefix: &str) -> String {
        format!("redis://127.0.0.1:{}/?prefix={prefix}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn create_webhook(http: &reqwest::Client, base: &str, url: &str) -> Value {
    let r = http
        .post(format!("{base}/api/webhooks"))
        .json(&json!({"name": "shared", "url": url, "event": "payment_received"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn emit(http: &reqwest::Client, base: &str) -> Vec<String> {
    let r = http
        .post(format!("{base}/api/events/payment_received/emit"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let out: Value = r.json().await.unwrap();
    out["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_an_instance_killed_with_kill_9_is_sent_by_another_on_the_same_redis() {
    let redis = Redis::start().await;
    let store = redis.url("e2e:");
    let http = reqwest::Client::new();
    let bins = TestServer::start().await;
    put_bin(&bins, 500).await;

    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let mut a = start_on(&store, port_a, &[]).await;
    let wh = create_webhook(&http, &base_a, &bins.url("/b/flaky")).await;
    let wh_id = wh["id"].as_str().unwrap().to_owned();
    let msg = emit(&http, &base_a).await.remove(0);

    // The first attempt failed (500), a retry is scheduled and logged: kill -9 now.
    until("the first attempt to fail and be logged", async || {
        let log = get(&http, format!("{base_a}/api/webhooks/{wh_id}/deliveries")).await;
        let m = get(&http, format!("{base_a}/api/deliveries/{msg}")).await;
        (m["state"] == "scheduled" && log["attempts"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    a.start_kill().unwrap();
    within("the killed instance to exit", a.wait())
        .await
        .unwrap();

    // The bin answers 200 from now on; a second instance starts on the same Redis.
    put_bin(&bins, 200).await;
    let _b = start_on(&store, port_b, &[]).await;
    let m = until(
        "the retry to be delivered by the other instance",
        async || {
            let m = get(&http, format!("{base_b}/api/deliveries/{msg}")).await;
            (m["state"] == "delivered").then_some(m)
        },
    )
    .await;
    assert_eq!(m["attempts"], 2, "{m}");
    assert_eq!(captured_ids(&bins).await, [msg.clone(), msg.clone()]);

    let log = get(&http, format!("{base_b}/api/webhooks/{wh_id}/deliveries")).await;
    let summary: Vec<(u64, u64, &str)> = log["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_u64().unwrap(),
                a["message_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(2, 200, &*msg), (1, 500, &*msg)], "{log}");
    // The webhook and its secret came from Redis.
    let again = get(&http, format!("{base_b}/api/webhooks/{wh_id}")).await;
    assert_eq!(again["secret"], wh["secret"]);
}

/// A receiver that answers every POST 200 and records its `webhook-id`s (a plain HTTP/1.1
/// loop: a bin would bound how many requests it keeps).
async fn counting_receiver() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut id = String::new();
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            let v = v.trim();
                            if k.eq_ignore_ascii_case("webhook-id") {
                                id = v.to_owned();
                            } else if k.eq_ignore_ascii_case("content-length") {
                                length = v.parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    *counts.lock().unwrap().entry(id).or_default() += 1;
                    if write
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_deliver_each_of_1000_messages_exactly_once() {
    const MESSAGES: usize = 1000;
    let redis = Redis::start().await;
    let store = redis.url("e2e:");
    let http = reqwest::Client::new();
    let (url, seen) = counting_receiver().await;
    let (port_a, port_b) = (free_port(), free_port());
    let bases = [
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    ];
    // Each instance sees the other's messages as pending too: room for all of them.
    let room = ["--max-pending-per-webhook", "5000"];
    let mut a = start_on(&store, port_a, &room).await;
    let mut b = start_on(&store, port_b, &room).await;
    create_webhook(&http, &bases[0], &url).await;
    // Instance b knows the webhook (it heard the change) before messages are emitted on it.
    until("the other instance to know the webhook", async || {
        let list = get(&http, format!("{}/api/webhooks", bases[1])).await;
        (list["webhooks"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;

    // Half the emits on each instance, 16 at a time.
    let started = Instant::now();
    let mut emitted = Vec::with_capacity(MESSAGES);
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|i| emit(&http, &bases[i % 2]));
        for ids in futures_util::future::join_all(calls).await {
            emitted.extend(ids);
        }
    }
    assert_eq!(emitted.len(), MESSAGES);
    within("every message to arrive", async {
        loop {
            if seen.lock().unwrap().len() >= MESSAGES {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    let delivered_in = started.elapsed();
    // Nothing is still on its way once both instances have stopped: on SIGTERM the sender
    // lets its attempts in flight finish (the receiver counts a request before it answers)
    // and the process exits only then.
    for (name, child) in [("a", &mut a), ("b", &mut b)] {
        let pid = child.id().expect("the instance is running").to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(term.success(), "kill -TERM {pid}");
        within(&format!("instance {name} to drain and exit"), child.wait())
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let mut got: Vec<&String> = seen.keys().collect();
    got.sort();
    let mut want: Vec<&String> = emitted.iter().collect();
    want.sort();
    assert_eq!(got, want);
    eprintln!("{MESSAGES} messages over two instances delivered in {delivered_in:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_writes_answer_503_within_seconds_and_work_again_once_it_is_back() {
    let mut redis = Redis::start().await;
    let store = redis.url("e2e:");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let bins = TestServer::start().await;
    put_bin(&bins, 200).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = start_on(&store, port, &[]).await;
    create_webhook(&http, &base, &bins.url("/b/flaky")).await;

    redis.stop();
    for (what, path, body) in [
        (
            "creating a webhook",
            "/api/webhooks",
            json!({"name": "second", "url": bins.url("/b/flaky"), "event": "payment_received"}),
        ),
        ("emitting", "/api/events/payment_received/emit", json!({})),
    ] {
        let started = Instant::now();
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), 503, "{what}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(
            error["error"]["code"], "store_unavailable",
            "{what}: {error}"
        );
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
    }

    // Redis back (empty: no persistence): new writes work again.
    redis.run().await;
    until("creating a webhook to work again", async || {
        let r = http
            .post(format!("{base}/api/webhooks"))
            .json(
                &json!({"name": "third", "url": bins.url("/b/flaky"), "event": "payment_received"}),
            )
            .send()
            .await
            .unwrap();
        (r.status() == 201).then_some(())
    })
    .await;
}
