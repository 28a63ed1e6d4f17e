//! What only the SQLite store promises beyond the conformance suite: everything survives a
//! restart (bins, settings, requests byte for byte, counters, the next sequence number) and a
//! `kill -9` of the real binary right after answered captures; one process per file; files
//! that are not a Hookbin store are refused with a clear error.

use std::sync::Arc;
use std::time::Duration;

use bin_server::store::{
    BinName, BinSettings, CapturedRequest, NewCapture, PageQuery, RawHeaders, RequestFilter,
    SqliteStore, Store, StoreError, StoreLimits,
};

fn limits(max_requests: u32, max_bytes: u64) -> StoreLimits {
    StoreLimits {
        max_requests_per_bin: max_requests,
        max_body_bytes: 1024,
        max_bytes,
        max_bins: 10,
        bin_ttl: Some(Duration::from_secs(3600)),
    }
}

fn req(body: &[u8]) -> NewCapture {
    let mut h = RawHeaders::new();
    h.push(b"Content-Type", b"application/json");
    h.push(b"X-Dup", b"1");
    h.push(b"x-dup", b"2");
    let mut c = NewCapture::new(
        "POST",
        "/hook/%20x",
        Some("a=1&a=2"),
        &h,
        body.len(),
        "[2001:db8::1]:4242".parse().unwrap(),
    );
    c.push_body(body);
    c
}

fn all() -> PageQuery {
    PageQuery {
        limit: 10_000,
        before: None,
        after: None,
        filter: RequestFilter::default(),
    }
}

/// Every stored request of a bin, oldest first, as the bytes a persistent backend keeps.
async fn stored(s: &dyn Store, bin: &str) -> Vec<Vec<u8>> {
    s.read_after(bin, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.encode())
        .collect()
}

fn settings() -> BinSettings {
    BinSettings {
        response: api::BinResponse {
            status: 201,
            headers: vec![api::Header {
                name: "X-Kept".into(),
                value: "yes".into(),
            }],
            body: Some("created".into()),
            delay_ms: 7,
        },
        max_requests: Some(3),
        max_body_bytes: Some(512),
        schema: Some(serde_json::json!({"type": "object"})),
        signature: Some((
            "standard".into(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        )),
        token_hash: Some([5; 32]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart_and_a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookbin.db");
    // Room for about six of these requests in all: the budget evicts too.
    let one = {
        let probe = SqliteStore::open(dir.path().join("probe.db"), limits(10, 1 << 20)).unwrap();
        probe
            .create_bin(Some(BinName::parse("p").unwrap()), BinSettings::default())
            .await
            .unwrap();
        probe
            .capture("p", req(&[7; 100]))
            .await
            .unwrap()
            .stored_bytes()
    };
    let lim = limits(10, one * 6);

    let s = SqliteStore::open(&path, lim.clone()).unwrap();
    let capped = BinName::parse("capped").unwrap();
    s.create_bin(Some(capped.clone()), settings())
        .await
        .unwrap();
    s.create_bin(
        Some(BinName::parse("plain").unwrap()),
        BinSettings::default(),
    )
    .await
    .unwrap();
    let mut first = None;
    for i in 0..5u8 {
        // 5 into a bin of 3: two evicted by its cap.
        let r = s.capture("capped", req(&[i; 100])).await.unwrap();
        first.get_or_insert(r);
    }
    for i in 0..5u8 {
        // 3 + 5 > 6: the two oldest across bins (capped's seq 3 and 4) go for the budget.
        s.capture("plain", req(&[100 + i; 100])).await.unwrap();
    }
    let plain_deleted = s.request("plain", "2").await.unwrap();
    s.delete_request("plain", "2").await.unwrap();

    let bins_before: Vec<_> = s.list_bins().await.unwrap();
    let stats_before = s.stats().await.unwrap();
    let capped_before = stored(&s, "capped").await;
    let plain_before = stored(&s, "plain").await;
    assert_eq!(
        capped_before.len(),
        1,
        "3 kept by the cap, 2 of them evicted by the budget"
    );
    assert_eq!(plain_before.len(), 4);
    assert_eq!(stats_before.evicted_by_bin_limit, 2);
    assert_eq!(stats_before.evicted_by_byte_budget, 2);
    assert_eq!(stats_before.captures_total, 10);

    // A second bin-server on the same file is refused, clearly, while the first runs.
    let err = SqliteStore::open(&path, lim.clone()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("in use by another bin-server")
            && m.contains("hookbin.db")),
        "{err}"
    );
    drop(s);

    let s = SqliteStore::open(&path, lim.clone()).unwrap();
    let bins_after = s.list_bins().await.unwrap();
    assert_eq!(bins_after.len(), 2);
    for (a, b) in bins_before.iter().zip(&bins_after) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.created_at, b.created_at);
        assert_eq!(a.last_activity, b.last_activity);
        assert_eq!(a.request_count, b.request_count);
        assert_eq!(a.total_captured, b.total_captured);
        assert_eq!(a.bytes_stored, b.bytes_stored);
        assert_eq!(a.evicted, b.evicted);
        assert_eq!(a.settings, b.settings);
        assert_eq!(
            (a.max_requests, a.max_body_bytes),
            (b.max_requests, b.max_body_bytes)
        );
    }
    assert_eq!(s.get_bin("capped").await.unwrap().settings, settings());
    let cs = s.capture_settings("capped").await.unwrap();
    assert_eq!((cs.max_body_bytes, cs.response.status), (512, 201));
    assert_eq!(
        stored(&s, "capped").await,
        capped_before,
        "byte-exact after restart"
    );
    assert_eq!(
        stored(&s, "plain").await,
        plain_before,
        "byte-exact after restart"
    );
    let again = s.request("capped", &first.unwrap().id.to_string()).await;
    assert!(
        matches!(again, Err(StoreError::NoSuchRequest(_))),
        "evicted stays evicted"
    );
    assert!(matches!(
        s.request("plain", &plain_deleted.id.to_string()).await,
        Err(StoreError::NoSuchRequest(_))
    ));
    let stats_after = s.stats().await.unwrap();
    assert_eq!(
        (
            stats_after.bins,
            stats_after.requests_stored,
            stats_after.bytes_stored,
            stats_after.captures_total,
            stats_after.evicted_by_bin_limit,
            stats_after.evicted_by_byte_budget,
        ),
        (
            stats_before.bins,
            stats_before.requests_stored,
            stats_before.bytes_stored,
            stats_before.captures_total,
            stats_before.evicted_by_bin_limit,
            stats_before.evicted_by_byte_budget,
        )
    );
    // Sequence numbers continue; none is reused.
    assert_eq!(s.capture("capped", req(b"{}")).await.unwrap().seq, 6);
    assert_eq!(s.capture("plain", req(b"{}")).await.unwrap().seq, 6);
    // A page reports the counters it read from the file.
    let page = s.requests("capped", &all()).await.unwrap();
    assert_eq!(page.evicted.by_bin_limit, 2);
    drop(s);

    // Reopened with lower limits: the file is brought within them at once, counted.
    let s = SqliteStore::open(&path, limits(1, one * 6)).unwrap();
    let plain = s.get_bin("plain").await.unwrap();
    assert_eq!(plain.request_count, 1);
    assert_eq!(stored(&s, "plain").await.len(), 1);
    let st = s.stats().await.unwrap();
    assert_eq!(st.requests_stored, 2);
    // 2 evicted before; now capped keeps 1 of its 2 and plain 1 of its 5.
    assert_eq!(st.evicted_by_bin_limit, 2 + 1 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_a_hookbin_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, it is a text file of some length...\n".repeat(20),
    )
    .unwrap();
    let err = SqliteStore::open(&text, limits(10, 1 << 20)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("notes.txt") && m.contains("not a database")),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(&text)
            .unwrap()
            .starts_with("this is not a database"),
        "a foreign file is left as it was"
    );

    let foreign = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = SqliteStore::open(&foreign, limits(10, 1 << 20)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("another application")),
        "{err}"
    );

    let missing = dir.path().join("no-such-dir").join("x.db");
    let err = SqliteStore::open(&missing, limits(10, 1 << 20)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("no-such-dir")),
        "{err}"
    );
    assert!(
        !missing.parent().unwrap().exists(),
        "parent directories are not created"
    );

    // A new file is created and is ours from then on.
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh, limits(10, 1 << 20)).unwrap());
    let s = SqliteStore::open(&fresh, limits(10, 1 << 20)).unwrap();
    assert!(s.list_bins().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_concurrent_capture_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, limits(10_000, 1 << 30)).unwrap());
    s.create_bin(Some(BinName::parse("g").unwrap()), BinSettings::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..50u8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<Arc<CapturedRequest>> = Vec::new();
            for i in 0..20u8 {
                out.push(s.capture("g", req(&[t, i])).await.unwrap());
            }
            out
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    drop(s);
    // Every answered capture is in the file, read by a fresh store.
    let s = SqliteStore::open(&path, limits(10_000, 1 << 30)).unwrap();
    let mut back: Vec<Vec<u8>> = stored(&s, "g").await;
    let mut want: Vec<Vec<u8>> = answered.iter().map(|r| r.encode()).collect();
    back.sort();
    want.sort();
    assert_eq!(back.len(), 1000);
    assert_eq!(back, want);
}

/// The real binary on a SQLite file, its address read from its log line.
#[cfg(unix)]
mod process {
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    /// The longest any step may take.
    pub const WAIT: Duration = Duration::from_secs(30);

    pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
        tokio::time::timeout(WAIT, f)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    pub async fn start(store: &std::path::Path, extra: &[&str]) -> (Child, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bin-server"))
            .arg("serve")
            .arg("--port")
            .arg("0")
            .arg("--store")
            .arg(format!("sqlite:{}", store.display()))
            .args(extra)
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
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, addr)
    }
}

/// Captures answered 200, then SIGKILL: every one of them is in the file when the server
/// starts again, with its sequence number, and so are the bin's counters.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_captures_survive_kill_9() {
    use process::{start, within};

    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    const CAP: usize = 250;
    let n = CLIENTS * EACH;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let cap = CAP.to_string();
    let args = ["--auto-create", "--max-requests-per-bin", cap.as_str()];
    let (mut child, addr) = start(&db, &args).await;
    let http = reqwest::Client::new();

    // Concurrent clients, so captures share commits (group commit) as under load.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, addr) = (http.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..EACH {
                let body = format!("{{\"client\":{c},\"n\":{i}}}");
                let res = within(
                    "a capture",
                    http.post(format!("http://{addr}/b/killed"))
                        .body(body.clone())
                        .send(),
                )
                .await
                .unwrap();
                assert_eq!(res.status(), 200);
                sent.push(body);
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    // SIGKILL right after the last answer: no shutdown, no checkpoint.
    child.start_kill().unwrap();
    within("the killed server to exit", child.wait())
        .await
        .unwrap();

    let (_child, addr) = start(&db, &args).await;
    let get = |url: String| {
        let http = http.clone();
        async move {
            within("an API call", http.get(url).send())
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let bin = get(format!("http://{addr}/api/bins/killed")).await;
    assert_eq!(bin["total_captured"], n as u64, "{bin}");
    assert_eq!(bin["request_count"], CAP as u64, "{bin}");
    assert_eq!(bin["evicted"]["by_bin_limit"], (n - CAP) as u64, "{bin}");
    let page = get(format!("http://{addr}/api/bins/killed/requests?limit=1000")).await;
    let requests = page["requests"].as_array().unwrap();
    let seqs: Vec<u64> = requests
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = ((n - CAP + 1) as u64..=n as u64).rev().collect();
    assert_eq!(seqs, want, "the newest {CAP} of {n}, each with its number");
    // The bodies kept are exactly the last CAP answered ones (which ones those are, among
    // the concurrent clients, the sequence numbers say): all distinct and all sent.
    let mut bodies: Vec<String> = requests
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), CAP);
    assert!(bodies.iter().all(|b| sent.contains(b)));
    // The sequence continues after the restart.
    let res = within(
        "a capture",
        http.post(format!("http://{addr}/b/killed"))
            .body("{}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let bin = get(format!("http://{addr}/api/bins/killed")).await;
    assert_eq!(bin["total_captured"], n as u64 + 1);
    let metrics = within(
        "/metrics",
        http.get(format!("http://{addr}/metrics")).send(),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(metrics.contains("sqlite"), "/metrics names the backend");
}
