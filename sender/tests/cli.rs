//! The `sender` binary: exit codes (0 delivered, 1 failed, 2 usage or connection error), what it
//! prints, and that what it sends verifies. The receiver is an axum app on 127.0.0.1:0; every
//! run of the binary is bounded by a timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Script {
    statuses: VecDeque<u16>,
    hits: Vec<(HeaderMap, Bytes)>,
}

type Shared = Arc<Mutex<Script>>;

async fn answer(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let mut s = s.lock().unwrap();
    s.hits.push((headers, body));
    let status = s.statuses.pop_front().unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        format!("got it ({status})"),
    )
}

/// A receiver answering `statuses` in order, then 200.
async fn receiver(statuses: &[u16]) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Script {
        statuses: statuses.iter().copied().collect(),
        hits: Vec::new(),
    }));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(answer))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, shared)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn sender(args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sender"))
            .args(args)
            .env_remove("HOOKBIN_SERVER")
            .env_remove("HOOKBIN_SECRET")
            .env_remove("HOOKBIN_TOKEN")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sender finished within 30 s")
    .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(), sender::VerifyError> {
    let pairs = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("")));
    sender::verify(SECRET, pairs, body, sender::signing::unix_now(), 300)
}

#[tokio::test]
async fn send_delivers_a_signed_event_and_exits_0() {
    let (url, rx) = receiver(&[]).await;
    let run = sender(&[
        "send",
        "--url",
        &url,
        "--event",
        "payment_received",
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("delivered: 200"), "{}", run.stdout);
    assert!(
        run.stdout.contains("webhook-signature: v1,"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("got it (200)"), "{}", run.stdout);
    let (headers, body) = rx.lock().unwrap().hits.pop().unwrap();
    verify(&headers, &body).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(payload["payment_total"].is_string() && payload["wu_version"].is_string());
}

#[tokio::test]
async fn a_failed_send_exits_1_and_retry_recovers() {
    let (url, rx) = receiver(&[500, 500]).await;
    let run = sender(&["send", "--url", &url, "--event", "payment_received"]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAILED: 500"), "{}", run.stdout);
    assert!(run.stdout.contains("error: HTTP 500 Internal Server Error"));
    // No secret given: one is generated and shown so the receiver can be configured.
    assert!(
        run.stderr.contains("secret (generated): whsec_"),
        "{}",
        run.stderr
    );

    let run = sender(&[
        "send",
        "--url",
        &url,
        "--event",
        "payment_received",
        "--retry",
        "--retry-schedule",
        "50ms,50ms",
    ])
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("attempt 1: HTTP 500"), "{}", run.stderr);
    let hits = &rx.lock().unwrap().hits;
    assert_eq!(hits.len(), 3);
    // The retry carries the same message id.
    assert_eq!(hits[1].0.get("webhook-id"), hits[2].0.get("webhook-id"));
}

#[tokio::test]
async fn data_and_envelope_shape_the_body() {
    let (url, rx) = receiver(&[]).await;
    let dir = std::env::temp_dir().join(format!("sender-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data.json");
    std::fs::write(&data, r#"{"order": 7}"#).unwrap();
    let run = sender(&[
        "send",
        "--url",
        &url,
        "--event",
        "order.paid",
        "--data",
        data.to_str().unwrap(),
        "--envelope",
        "standard",
        "--secret",
        SECRET,
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let outcome: api::TestOutcome = serde_json::from_str(&run.stdout).unwrap();
    assert!(outcome.delivered && outcome.status == Some(200));
    let (headers, body) = rx.lock().unwrap().hits.pop().unwrap();
    verify(&headers, &body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["type"].as_str(), &v["data"]),
        (Some("order.paid"), &serde_json::json!({"order": 7}))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn data_goes_out_byte_for_byte() {
    let (url, rx) = receiver(&[]).await;
    let dir = std::env::temp_dir().join(format!("sender-cli-exact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data.json");
    // Unsorted keys, a number spelled 1.50, an escape, inner spaces; a trailing newline.
    let given = r#"{"z":1,"a":2,"n":1.50, "s":"\u00e9"}"#;
    std::fs::write(&data, format!("{given}\n")).unwrap();
    let run = sender(&[
        "send",
        "--url",
        &url,
        "--event",
        "order.paid",
        "--data",
        data.to_str().unwrap(),
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (headers, body) = rx.lock().unwrap().hits.pop().unwrap();
    verify(&headers, &body).unwrap();
    assert_eq!(std::str::from_utf8(&body).unwrap(), given);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn count_sends_distinct_messages() {
    let (url, rx) = receiver(&[]).await;
    let run = sender(&[
        "send",
        "--url",
        &url,
        "--event",
        "site_published",
        "--count",
        "20",
        "--concurrency",
        "4",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (summary["delivered"].as_u64(), summary["failed"].as_u64()),
        (Some(20), Some(0))
    );
    let hits = &rx.lock().unwrap().hits;
    let mut ids: Vec<_> = hits.iter().map(|(h, _)| h["webhook-id"].clone()).collect();
    ids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn usage_and_connection_errors_exit_2() {
    let (url, rx) = receiver(&[]).await;
    let cases: [&[&str]; 5] = [
        &["send", "--url", &url],
        &["send", "--url", &url, "--event", "no_such_event"],
        &[
            "send",
            "--url",
            &url,
            "--event",
            "payment_received",
            "--secret",
            "whsec_",
        ],
        &[
            "send",
            "--url",
            "ftp://x.example/",
            "--event",
            "payment_received",
        ],
        &["webhooks", "list"],
    ];
    for args in cases {
        let run = sender(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
    assert!(rx.lock().unwrap().hits.is_empty());

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = sender(&["--server", &server, "test", "my-hook"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);
}

#[tokio::test]
async fn events_lists_the_catalog_and_names_a_bad_file() {
    let run = sender(&["events", "--json"]).await;
    assert_eq!(run.code, 0);
    let list: api::EventList = serde_json::from_str(&run.stdout).unwrap();
    assert!(list.events.iter().any(|e| e.slug == "payment_received"));
    let run = sender(&["events"]).await;
    assert!(run.stdout.lines().next().unwrap().starts_with("SLUG"));
    assert!(run.stdout.contains("confirm_email_address"));

    let bad = std::env::temp_dir().join(format!("sender-bad-catalog-{}.json", std::process::id()));
    std::fs::write(&bad, r#"[{"slug": "x", "name": "X", "example": {"n": 1}, "schema": {"properties": {"n": {"type": "string"}}}}]"#).unwrap();
    let run = sender(&["events", "--catalog", bad.to_str().unwrap()]).await;
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(bad.to_str().unwrap()), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("event `x`: example does not match its schema"),
        "{}",
        run.stderr
    );
}

/// A stand-in for a bin-server started with `--auth-token tok-0123456789abcdef`: `GET
/// /api/webhooks` answers an empty list with the token, 401 without.
async fn server_with_auth() -> String {
    async fn list(headers: HeaderMap) -> (StatusCode, String) {
        match headers.get("authorization").map(|v| v.to_str().unwrap()) {
            Some("Bearer tok-0123456789abcdef") => (StatusCode::OK, r#"{"webhooks":[]}"#.into()),
            _ => (
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":"unauthorized","message":"this route needs the admin token"}}"#
                    .into(),
            ),
        }
    }
    let app = axum::Router::new().route("/api/webhooks", axum::routing::get(list));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn token_from_flag_or_env_is_sent_as_a_bearer() {
    let server = server_with_auth().await;
    let run = sender(&["--server", &server, "webhooks", "list", "--json"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("401 unauthorized"), "{}", run.stderr);
    let run = sender(&[
        "--server",
        &server,
        "--token",
        "tok-0123456789abcdef",
        "webhooks",
        "list",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        r#"{
  "webhooks": []
}"#
    );
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sender"))
            .args(["--server", &server, "webhooks", "list", "--json"])
            .env("HOOKBIN_TOKEN", "tok-0123456789abcdef")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sender finished within 30 s")
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "HOOKBIN_TOKEN is read");
}
