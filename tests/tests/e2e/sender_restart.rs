//! The sender's retry schedule survives `kill -9` of the real binary on `--store sqlite:PATH`:
//! a webhook to a bin answering 500, schedule `1s,1s,2s`; the server is killed right after the
//! first failed attempt and started again on the same file; the bin now answers 200; the retry
//! arrives with the same `webhook-id`, and the attempt log shows both attempts (the second
//! saying when it was due and when it went).
//!
//! The bin lives on a second bin-server (in this process) so that it can be switched to 200
//! while the killed one is down: switched on the restarted server itself, the retry (already
//! due) could race the switch.
//!
//! It runs the `bin-server` binary built beside this test (`cargo test --workspace` builds it;
//! with `-p hookbin-tests` alone, run `cargo build -p bin-server` first).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{TestServer, within};

pub(crate) fn bin_server_exe() -> PathBuf {
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/bin-server
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(format!("bin-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p bin-server` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A free loopback port (the server restarts on the same one: the webhook's URL names it).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(db: &std::path::Path, port: u16) -> Child {
    start_on(&format!("sqlite:{}", db.display()), port, &[]).await
}

/// A `bin-server serve` on `store` (retry schedule `1s,1s,2s`, more flags in `extra`), once it
/// says it is listening.
pub(crate) async fn start_on(store: &str, port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new(bin_server_exe())
        .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--store")
        .arg(store)
        .args(["--retry-schedule", "1s,1s,2s"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    within("the server's listening line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("server exited");
            if line.contains("listening on http://") {
                return;
            }
        }
    })
    .await;
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

pub(crate) async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(&url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

pub(crate) async fn put_bin(bins: &TestServer, status: u16) {
    bins.put_bin("flaky", json!({"response": {"status": status}}))
        .await;
}

/// The webhook-ids of the requests the bin captured, oldest first.
pub(crate) async fn captured_ids(bins: &TestServer) -> Vec<String> {
    let (status, page) = bins.get_json("/api/bins/flaky/requests?limit=100").await;
    assert_eq!(status, 200, "{page}");
    let mut ids: Vec<String> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| {
                    h["name"]
                        .as_str()
                        .unwrap()
                        .eq_ignore_ascii_case("webhook-id")
                })
                .map(|h| h["value"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        })
        .collect();
    ids.reverse();
    ids
}

pub(crate) async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    within(what, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_survives_kill_9_and_goes_out_after_the_restart() {
    let dir = tempfile_dir();
    let db = dir.join("hookbin.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let bins = TestServer::start().await;
    put_bin(&bins, 500).await;
    let mut server = start(&db, port).await;
    let r = http
        .post(format!("{base}/api/webhooks"))
        .json(&json!({
            "name": "to a flaky bin",
            "url": bins.url("/b/flaky"),
            "event": "payment_received",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let wh: Value = r.json().await.unwrap();
    let wh_id = wh["id"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{base}/api/events/payment_received/emit"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let out: Value = r.json().await.unwrap();
    let msg = out["message_ids"][0].as_str().unwrap().to_owned();

    // The first attempt failed (500) and a retry is scheduled: kill -9 now.
    until("the first attempt to fail", async || {
        let m = get(&http, format!("{base}/api/deliveries/{msg}")).await;
        (m["state"] == "scheduled").then_some(())
    })
    .await;
    server.start_kill().unwrap();
    within("the killed server to exit", server.wait())
        .await
        .unwrap();

    // The bin answers 200 from now on; the server stays down past the retry's due time.
    put_bin(&bins, 200).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _server = start(&db, port).await;

    let m = until("the retry to be delivered", async || {
        let m = get(&http, format!("{base}/api/deliveries/{msg}")).await;
        (m["state"] == "delivered").then_some(m)
    })
    .await;
    assert_eq!(m["attempts"], 2, "{m}");
    assert_eq!(captured_ids(&bins).await, [msg.clone(), msg.clone()]);

    let log = get(&http, format!("{base}/api/webhooks/{wh_id}/deliveries")).await;
    let attempts = log["attempts"].as_array().unwrap();
    let summary: Vec<(u64, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(2, 200), (1, 500)], "{log}");
    let (retry, first) = (&attempts[0], &attempts[1]);
    assert_eq!(retry["scheduled_at"], first["next_attempt_at"], "{log}");
    assert!(
        retry["started_at"].as_str().unwrap() > retry["scheduled_at"].as_str().unwrap(),
        "the retry went late, after the restart: {log}"
    );
    // The webhook and its secret came back too.
    let again = get(&http, format!("{base}/api/webhooks/{wh_id}")).await;
    assert_eq!(again["secret"], wh["secret"]);
    assert_eq!(again["event_count"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system temp dir (removed by the test at its end).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookbin-sender-restart-{}-{}",
        std::process::id(),
        sender::new_message_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
