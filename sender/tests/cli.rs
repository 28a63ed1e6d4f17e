//! The `sender` binary: exit codes (bin-server's convention: 0 done, 1 a delivery failed, 3 any
//! error), what it prints, and that what it sends verifies. Receivers are an axum app on
//! 127.0.0.1:0, server commands run against a real bin-server (`bin_server::testing::TestBin`);
//! every run of the binary is bounded by a timeout.

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
async fn usage_and_connection_errors_exit_3() {
    let (url, rx) = receiver(&[]).await;
    let cases: [&[&str]; 6] = [
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
        &[
            "send",
            "--url",
            &url,
            "--event",
            "payment_received",
            "--timeout",
            "soon",
        ],
        &["no-such-command"],
    ];
    for args in cases {
        let run = sender(args).await;
        assert_eq!(run.code, 3, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
    assert!(rx.lock().unwrap().hits.is_empty());

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = sender(&["--server", &server, "test", "my-hook"]).await;
    assert_eq!(run.code, 3);
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
    assert_eq!(run.code, 3);
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
    assert_eq!(run.code, 3);
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

#[test]
fn the_exit_codes_are_bin_servers() {
    // The convention is documented once (README, CLI section) for both CLIs.
    assert_eq!(bin_server::cli::EXIT_OK, 0);
    assert_eq!(bin_server::cli::EXIT_VIOLATION, 1);
    assert_eq!(bin_server::cli::EXIT_ERROR, 3);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sender"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("Exit codes: 0 done, 1 a delivery failed, 3 any error"),
        "{help}"
    );
    assert!(
        help.contains("[default: http://127.0.0.1:8080]"),
        "--server defaults like bin-server's: {help}"
    );
}

/// Runs the binary with its standard output on a real pipe whose reading end is already closed
/// (what `| head -1` does once it has its line): every write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sender"))
        .args(args)
        .env_remove("HOOKBIN_SERVER")
        .env_remove("HOOKBIN_TOKEN")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "sender ended within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_closed_stdout_ends_quietly_with_status_0() {
    for args in [&["events", "--json"][..], &["events"]] {
        let out = with_closed_stdout(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
    // The same through a shell pipe, as users type it; `pipefail` makes the status sender's.
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; \"{}\" events --json | head -1",
            env!("CARGO_BIN_EXE_sender")
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    // And a server command.
    let bin = bin_server::testing::TestBin::start().await;
    let server = bin.server_url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        with_closed_stdout(&["--server", &server, "webhooks", "list"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// The column of each header word in a table's first line.
fn columns(header: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && prev == ' ' {
            starts.push(i);
        }
        prev = c;
    }
    starts
}

#[tokio::test]
async fn webhook_commands_against_a_real_server() {
    let bin = bin_server::testing::TestBin::start().await;
    let server = bin.server_url().to_owned();
    let s = |args: &[&str]| {
        let mut all = vec!["--server", server.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sender(&refs).await
        }
    };

    // Two webhooks with names of very different lengths.
    let long = "a-webhook-with-a-much-longer-name-than-usual";
    let run = s(&[
        "webhooks",
        "add",
        "--name",
        long,
        "--url",
        bin.url(),
        "--event",
        "payment_received,invoice_sent",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let w: api::WebhookOut = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(w.events, ["payment_received", "invoice_sent"]);
    let run = s(&[
        "webhooks",
        "add",
        "--name",
        "b2",
        "--url",
        bin.url(),
        "--event",
        "site_published",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("added webhook wh_"),
        "{}",
        run.stdout
    );

    // The table's columns line up whatever the name lengths.
    let run = s(&["webhooks", "list"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    let url_column = columns(lines[0])[5];
    assert_eq!(&lines[0][url_column..url_column + 3], "URL");
    for line in &lines[1..] {
        assert_eq!(
            &line[url_column..url_column + bin.url().len()],
            bin.url(),
            "{}",
            run.stdout
        );
    }
    let run = s(&["webhooks", "list", "--json"]).await;
    let list: api::WebhookList = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list.webhooks.len(), 2);

    // disable / enable / edit, each as JSON and as text.
    let run = s(&["disable", long, "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let off: api::WebhookOut = serde_json::from_str(&run.stdout).unwrap();
    assert!(!off.active);
    let run = s(&["emit", "payment_received"]).await;
    assert_eq!(
        run.stdout.trim(),
        "payment_received: no active webhook is subscribed"
    );
    let run = s(&["enable", long]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("active:   yes"), "{}", run.stdout);
    let run = s(&[
        "edit",
        long,
        "--event",
        "payment_received",
        "--envelope",
        "standard",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let edited: api::WebhookOut = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(edited.events, ["payment_received"]);
    assert_eq!(edited.envelope, api::Envelope::Standard);
    assert_eq!(edited.name, long, "fields not given are kept");
    let run = s(&["edit", long]).await;
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("nothing to change"), "{}", run.stderr);
    // rotate-secret: a new secret, the old one still signing until the grace ends.
    let run = s(&["rotate-secret", long, "--grace", "2h", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rotated: api::WebhookOut = serde_json::from_str(&run.stdout).unwrap();
    assert_ne!(rotated.secret, edited.secret);
    assert_eq!(
        rotated.previous_secret.as_deref(),
        Some(edited.secret.as_str())
    );
    assert!(rotated.previous_secret_expires_at.is_some());
    let run = s(&["rotate-secret", long]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "previous: {} (still signing until ",
            rotated.secret
        )),
        "{}",
        run.stdout
    );
    let run = s(&["rotate-secret", long, "--grace", "8d"]).await;
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("422 invalid_webhook")
            && run.stderr.contains("grace: must be at most 7d"),
        "{}",
        run.stderr
    );
    let run = s(&["edit", "no-such-hook", "--name", "zz"]).await;
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("404 webhook_not_found"),
        "{}",
        run.stderr
    );

    // A test send lands in the bin: exit 0.
    let run = s(&["test", long]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("delivered: 200"), "{}", run.stdout);

    // emit --json, the message arrives, the log shows it, resend queues it again.
    let run = s(&["emit", "payment_received", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let emitted: api::EmitOut = serde_json::from_str(&run.stdout).unwrap();
    let message = emitted.message_ids[0].clone();
    bin.wait_for(bin_server::testing::Matcher::new().header("webhook-id", &message))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let run = s(&["deliveries", long, "--json"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let log: api::DeliveryLog = serde_json::from_str(&run.stdout).unwrap();
        // The attempt is logged as it ends, just after the bin has the request.
        assert!(
            std::time::Instant::now() < deadline,
            "delivered in the log within 10 s: {log:?}"
        );
        if log
            .messages
            .iter()
            .any(|m| m.id == message && m.state == api::MessageState::Delivered)
        {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log.webhook_id, w.id);
    let run = s(&["deliveries", long, "--limit", "5"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("MESSAGE") && first.contains("STATE"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&message), "{}", run.stdout);
    assert!(run.stdout.contains("delivered"), "{}", run.stdout);
    let run = s(&["resend", &message, "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again: api::MessageRef = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (again.message_id.as_str(), again.webhook_id.as_str()),
        (message.as_str(), w.id.as_str())
    );
    let run = s(&["resend", "msg_nope"]).await;
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("404 delivery_not_found"),
        "{}",
        run.stderr
    );

    let run = s(&["webhooks", "rm", "b2", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let removed: api::WebhookOut = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(removed.name, "b2");
}
