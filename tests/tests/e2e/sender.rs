//! The sending side end to end: a real bin-server (in-process, port 0) delivering to a receiver
//! whose behaviour each test scripts (200, 4xx/5xx, 429 with Retry-After, 410, slow, connection
//! reset, black hole), and to a bin of the same server, whose capture must verify with the
//! webhook's secret. Schedules and timeouts are shortened by the server's flags so real time
//! stays small; every wait is bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bin_server::AppState;
use bin_server::ServerConfig;
use bin_server::store::StoreLimits;
use sender::client::ServerClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{SseReader, TestServer, WAIT, within};

// -- A receiver whose behaviour is switched per request ------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Mode {
    Status(u16),
    /// `429`/`503` with `Retry-After: N` seconds.
    RetryAfter(u16, u32),
    /// Answers 200 after this long.
    Slow(Duration),
    /// Reads the request, then resets the connection (RST, no answer).
    Reset,
    /// Reads the request and never answers (the connection is held for 30 s at most).
    BlackHole,
}

struct Hit {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Script {
    next: VecDeque<Mode>,
    then: Mode,
    hits: Vec<Hit>,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Listens on 127.0.0.1:0; answers `first` in order, then `then` forever.
    async fn start(first: &[Mode], then: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script {
            next: first.iter().copied().collect(),
            then,
            hits: Vec::new(),
        }));
        let s = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, s.clone()));
            }
        });
        Self {
            url: format!("http://{addr}/hook"),
            script,
        }
    }

    fn hits(&self) -> usize {
        self.script.lock().unwrap().hits.len()
    }

    fn hit(&self, i: usize) -> (Instant, Vec<(String, String)>, Vec<u8>) {
        let s = self.script.lock().unwrap();
        let h = &s.hits[i];
        (h.at, h.headers.clone(), h.body.clone())
    }
}

/// Minimal HTTP/1.1 with keep-alive: enough for a webhook POST with a Content-Length body.
async fn serve_connection(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let mode = {
            let mut s = script.lock().unwrap();
            s.hits.push(Hit {
                at: Instant::now(),
                headers,
                body,
            });
            s.next.pop_front().unwrap_or(s.then)
        };
        let (status, extra) = match mode {
            Mode::Status(s) => (s, String::new()),
            Mode::RetryAfter(s, secs) => (s, format!("retry-after: {secs}\r\n")),
            Mode::Slow(d) => {
                tokio::time::sleep(d).await;
                (200, String::new())
            }
            Mode::Reset => {
                // Linger 0 makes the close an immediate RST; nothing is left to flush, so the
                // drop cannot block the thread (the reason for the deprecation).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Mode::BlackHole => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        };
        let body = format!("receiver says {status}");
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn the_changes_stream_tells_live_views_when_webhooks_and_deliveries_change() {
    let healthy = Receiver::start(&[], Mode::Status(200)).await;
    let s = server("1s", "4s", 0).await;
    let mut changes = SseReader::open(&s.client, &s.url("/api/deliveries/stream"), None).await;
    assert_eq!(changes.next().await.unwrap().event, "ready");
    let hook = add_webhook(&s, "live", &healthy.url).await;
    let first = changes.next_named("changed").await.json()["version"]
        .as_u64()
        .unwrap();
    // A delivery changes the log (and the webhook's counters): another event, a later version.
    let ids = emit(&s).await;
    wait_state(&s, &ids[0].message_id, api::MessageState::Delivered).await;
    let later = changes.next_named("changed").await.json()["version"]
        .as_u64()
        .unwrap();
    assert!(later > first, "{later} > {first}");
    let (_, w) = s.get_json(&format!("/api/webhooks/{}", hook.id)).await;
    assert_eq!(w["event_count"], 1);
}

// -- Helpers -------------------------------------------------------------------------------------

/// A server whose sender retries after `schedule` and times out attempts after `timeout`.
async fn server(schedule: &str, timeout: &str, disable_after: u32) -> TestServer {
    let mut config = sender::HooksConfig::default();
    config.delivery.retry_schedule = api::units::parse_duration_list(schedule).unwrap();
    config.delivery.request_timeout = api::units::parse_duration(timeout).unwrap();
    config.delivery.connect_timeout = Duration::from_secs(1);
    config.delivery.disable_after_failures = disable_after;
    let hooks = sender::Hooks::new(config).unwrap();
    let state = AppState::new(StoreLimits::default(), ServerConfig::default()).with_hooks(hooks);
    TestServer::with_state(state).await
}

fn client(s: &TestServer) -> ServerClient {
    ServerClient::new(&s.base, Duration::from_secs(30)).unwrap()
}

async fn add_webhook(s: &TestServer, name: &str, url: &str) -> api::WebhookOut {
    client(s)
        .create_webhook(&api::WebhookIn {
            name: name.into(),
            url: url.into(),
            event: Some("payment_received".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn emit(s: &TestServer) -> Vec<api::MessageRef> {
    client(s)
        .emit("payment_received", None)
        .await
        .unwrap()
        .messages
}

async fn message(s: &TestServer, id: &str) -> api::MessageOut {
    let (status, v) = s.get_json(&format!("/api/deliveries/{id}")).await;
    assert_eq!(status, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// Polls until the message is in `state`.
async fn wait_state(s: &TestServer, id: &str, state: api::MessageState) -> api::MessageOut {
    within(&format!("message {id} to become {state:?}"), async {
        loop {
            let m = message(s, id).await;
            if m.state == state {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// -- Tests ---------------------------------------------------------------------------------------

#[tokio::test]
async fn retries_through_errors_until_delivered_and_logs_every_attempt() {
    let rx = Receiver::start(
        &[Mode::Status(500), Mode::Reset, Mode::RetryAfter(429, 1)],
        Mode::Status(200),
    )
    .await;
    let s = server("100ms,100ms,100ms,100ms", "5s", 5).await;
    let wh = add_webhook(&s, "flaky", &rx.url).await;
    let id = emit(&s).await.remove(0).message_id;
    let m = wait_state(&s, &id, api::MessageState::Delivered).await;
    assert_eq!(m.attempts, 4);
    assert_eq!(rx.hits(), 4);

    // Retry-After: 1 was honoured over the 100 ms schedule.
    let gap = rx.hit(3).0 - rx.hit(2).0;
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    // The same message id on every attempt, each freshly signed and valid.
    for i in 0..4 {
        let (_, headers, body) = rx.hit(i);
        assert_eq!(header(&headers, "webhook-id"), Some(id.as_str()));
        let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        sender::verify(&wh.secret, pairs, &body, sender::signing::unix_now(), 300).unwrap();
    }

    let log = client(&s).deliveries(&wh.id, None).await.unwrap();
    let attempts: Vec<(u32, Option<u16>, bool)> = log
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.delivered))
        .collect();
    assert_eq!(
        attempts,
        [
            (4, Some(200), true),
            (3, Some(429), false),
            (2, None, false),
            (1, Some(500), false)
        ]
    );
    let reset = &log.attempts[2];
    assert!(
        reset.error.as_deref().unwrap().contains("failed"),
        "{reset:?}"
    );
    assert!(reset.next_attempt_at.is_some());
    assert_eq!(
        log.attempts[0].response_body.as_deref(),
        Some("receiver says 200")
    );
    assert!(log.attempts[3].request_body_size > 500);
    let w = client(&s).webhook(&wh.id).await.unwrap();
    assert_eq!(
        (w.event_count, w.consecutive_failures, w.active),
        (1, 0, true)
    );
    assert!(w.last_failure.is_some());
}

#[tokio::test]
async fn gone_disables_the_webhook_and_resend_delivers_the_same_message() {
    let rx = Receiver::start(&[Mode::Status(410)], Mode::Status(200)).await;
    let s = server("100ms", "5s", 5).await;
    let wh = add_webhook(&s, "moved-away", &rx.url).await;
    let id = emit(&s).await.remove(0).message_id;
    let m = wait_state(&s, &id, api::MessageState::Failed).await;
    assert_eq!(m.error.as_deref(), Some("HTTP 410 Gone"));
    let w = client(&s).webhook(&wh.id).await.unwrap();
    assert!(!w.active);
    assert_eq!(
        w.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    // Emit skips it; resend says why it cannot.
    assert!(emit(&s).await.is_empty());
    let e = client(&s).resend(&id).await.unwrap_err();
    assert!(e.to_string().starts_with("409 webhook_disabled"), "{e}");

    let r = s
        .client
        .patch(s.url(&format!("/api/webhooks/{}", wh.id)))
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = client(&s).resend(&id).await.unwrap();
    assert_eq!(again.message_id, id);
    wait_state(&s, &id, api::MessageState::Delivered).await;
    assert_eq!(rx.hits(), 2);
    let first = rx.hit(0).1;
    let second = rx.hit(1).1;
    assert_eq!(header(&first, "webhook-id"), header(&second, "webhook-id"));
    let log = client(&s).deliveries(&wh.id, None).await.unwrap();
    assert_eq!(log.attempts[0].trigger, api::AttemptTrigger::Resend);
}

#[tokio::test]
async fn failed_messages_in_a_row_disable_the_webhook() {
    let rx = Receiver::start(&[], Mode::Status(503)).await;
    let s = server("50ms", "5s", 2).await;
    let wh = add_webhook(&s, "down", &rx.url).await;
    let a = emit(&s).await.remove(0).message_id;
    let m = wait_state(&s, &a, api::MessageState::Failed).await;
    assert_eq!(
        m.error.as_deref(),
        Some("gave up after 2 failed attempts: HTTP 503 Service Unavailable")
    );
    let b = emit(&s).await.remove(0).message_id;
    wait_state(&s, &b, api::MessageState::Failed).await;
    let w = client(&s).webhook(&wh.id).await.unwrap();
    assert!(!w.active);
    assert_eq!(
        w.disabled_reason.as_deref(),
        Some(
            "disabled after 2 failed messages in a row (last error: HTTP 503 Service Unavailable)"
        )
    );
    assert_eq!(rx.hits(), 4);
    // The listing shows it too.
    let list = client(&s).list_webhooks().await.unwrap();
    assert_eq!(list.webhooks[0].disabled_reason, w.disabled_reason);
}

#[tokio::test]
async fn a_dead_or_slow_endpoint_does_not_delay_a_healthy_one() {
    let healthy = Receiver::start(&[], Mode::Status(200)).await;
    let hole = Receiver::start(&[], Mode::BlackHole).await;
    let slow = Receiver::start(&[], Mode::Slow(Duration::from_secs(3))).await;
    // Attempts time out after 4 s: the black hole holds its slots that long.
    let s = server("10s", "4s", 0).await;
    let good = add_webhook(&s, "healthy", &healthy.url).await;
    add_webhook(&s, "black-hole", &hole.url).await;
    add_webhook(&s, "slow", &slow.url).await;

    let start = Instant::now();
    let mut healthy_ids = Vec::new();
    for _ in 0..30 {
        for m in emit(&s).await {
            if m.webhook_id == good.id {
                healthy_ids.push(m.message_id);
            }
        }
    }
    for id in &healthy_ids {
        wait_state(&s, id, api::MessageState::Delivered).await;
    }
    let took = start.elapsed();
    // Far below the slow endpoint's 3 s and the black hole's 4 s timeout.
    assert!(
        took < Duration::from_millis(2500),
        "healthy deliveries took {took:?}"
    );
    assert_eq!(healthy.hits(), 30);
    // Meanwhile the others are still stuck, with their messages pending, not lost.
    let log = client(&s).deliveries("black-hole", None).await.unwrap();
    assert!(log.attempts.is_empty());
    assert!(
        log.messages
            .iter()
            .all(|m| m.state == api::MessageState::Pending)
    );
    assert_eq!(log.messages.len(), 30);

    // The black hole's attempts end as timeouts and are scheduled for a retry.
    let first = log.messages.last().unwrap().id.clone();
    let m = wait_state(&s, &first, api::MessageState::Scheduled).await;
    assert!(
        m.error
            .as_deref()
            .unwrap()
            .starts_with("timed out after 4000 ms"),
        "{m:?}"
    );
}

#[tokio::test]
async fn send_test_event_reports_the_true_outcome() {
    let rx = Receiver::start(&[Mode::Status(503), Mode::Reset], Mode::Status(200)).await;
    let s = server("100ms", "5s", 5).await;
    let wh = add_webhook(&s, "target", &rx.url).await;
    let c = client(&s);

    let out = c.test_webhook("target", None).await.unwrap();
    assert!(!out.delivered);
    assert_eq!(out.status, Some(503));
    assert_eq!(out.error.as_deref(), Some("HTTP 503 Service Unavailable"));
    assert_eq!(out.response_body.as_deref(), Some("receiver says 503"));

    let out = c.test_webhook(&wh.id, None).await.unwrap();
    assert!(!out.delivered);
    assert_eq!(out.status, None);
    assert!(out.error.is_some());

    let out = c
        .test_webhook(&wh.id, Some("payment_received"))
        .await
        .unwrap();
    assert!(out.delivered, "{out:?}");
    assert_eq!(out.status, Some(200));
    // A test is sent once: no retry behind the user's back. Retries go out only for messages
    // the sender holds pending or scheduled; the three tests are logged final, none due again.
    assert_eq!(rx.hits(), 3);
    let log = c.deliveries(&wh.id, None).await.unwrap();
    assert_eq!(log.messages.len(), 3, "{log:?}");
    for m in &log.messages {
        assert!(
            matches!(
                m.state,
                api::MessageState::Delivered | api::MessageState::Failed
            ) && m.next_attempt_at.is_none(),
            "{m:?}"
        );
    }
    assert!(
        log.attempts
            .iter()
            .all(|a| a.trigger == api::AttemptTrigger::Test),
        "{log:?}"
    );
    // As the plugin's "Send Test Event": the example without the `wu_version` of real events.
    let (_, _, body) = rx.hit(2);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["payment_total"].is_string(), "{body}");
    assert!(body.get("wu_version").is_none(), "{body}");
    let e = c
        .test_webhook(&wh.id, Some("site_published"))
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("422 not_subscribed"), "{e}");
}

#[tokio::test]
async fn a_message_to_a_real_bin_verifies_with_the_webhook_secret() {
    let s = server("100ms", "5s", 5).await;
    let secret = sender::Secret::generate();
    // The bin checks Standard Webhooks signatures with the same secret.
    s.put_bin(
        "webhook-e2e",
        json!({"secret": secret.as_str(), "signature_scheme": "standard"}),
    )
    .await;
    let wh = client(&s)
        .create_webhook(&api::WebhookIn {
            name: "to a bin".into(),
            url: s.url("/b/webhook-e2e"),
            events: Some(vec!["payment_received".into(), "site_published".into()]),
            secret: Some(secret.as_str().into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(wh.secret, secret.as_str());
    let out = client(&s).emit("site_published", None).await.unwrap();
    wait_state(&s, &out.message_ids[0], api::MessageState::Delivered).await;

    let (status, page) = s.get_json("/api/bins/webhook-e2e/requests").await;
    assert_eq!(status, 200);
    let captured = &page["requests"][0];
    let rid = captured["id"].as_str().unwrap();
    let (_, full) = s
        .get_json(&format!("/api/bins/webhook-e2e/requests/{rid}"))
        .await;
    // The bin's own check...
    assert_eq!(full["signature"]["status"], "valid", "{full}");
    // ...and ours, on the exact bytes the bin stored.
    let raw = s
        .client
        .get(s.url(&format!("/api/bins/webhook-e2e/requests/{rid}/raw")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let headers: Vec<(String, String)> = full["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    sender::verify(
        secret.as_str(),
        pairs,
        &raw,
        sender::signing::unix_now(),
        300,
    )
    .unwrap();
    // A different secret does not verify it.
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let other = sender::Secret::generate();
    assert!(
        sender::verify(
            other.as_str(),
            pairs,
            &raw,
            sender::signing::unix_now(),
            300
        )
        .is_err()
    );

    let body: Value = serde_json::from_slice(&raw).unwrap();
    let (_, events) = s.get_json("/api/events").await;
    let mut example = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["slug"] == "site_published")
        .unwrap()["example"]
        .clone();
    // A real event: the listed example plus the version the plugin adds to real events.
    assert!(example.get("wu_version").is_none(), "{example}");
    example["wu_version"] = json!(sender::catalog::WU_VERSION);
    assert_eq!(body, example);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
}

/// Which of `secrets` verify the receiver's `i`th request (its exact bytes, as it got them).
fn verified_by(rx: &Receiver, i: usize, secrets: &[&str]) -> Vec<bool> {
    let (_, headers, body) = rx.hit(i);
    secrets
        .iter()
        .map(|secret| {
            let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            sender::verify(secret, pairs, &body, sender::signing::unix_now(), 300).is_ok()
        })
        .collect()
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_during_its_grace() {
    let rx = Receiver::start(&[], Mode::Status(200)).await;
    let s = server("100ms", "5s", 5).await;
    let wh = add_webhook(&s, "rotating", &rx.url).await;
    let c = client(&s);
    let old = wh.secret.clone();

    let rotated = c
        .rotate_secret(
            "rotating",
            &api::RotateSecretIn {
                grace: Some("1h".into()),
                secret: None,
            },
        )
        .await
        .unwrap();
    let new = rotated.secret.clone();
    assert_ne!(new, old);
    assert_eq!(rotated.previous_secret.as_deref(), Some(old.as_str()));
    let until = chrono::DateTime::parse_from_rfc3339(
        rotated.previous_secret_expires_at.as_deref().unwrap(),
    )
    .unwrap();
    let left = until
        .signed_duration_since(chrono::Utc::now())
        .num_minutes();
    assert!((58..=60).contains(&left), "{left} minutes of grace left");
    // GET shows the same.
    assert_eq!(c.webhook(&wh.id).await.unwrap(), rotated);

    // A delivery during the grace period carries both signatures, each valid.
    let out = emit(&s).await;
    wait_state(&s, &out[0].message_id, api::MessageState::Delivered).await;
    let (_, headers, _) = rx.hit(0);
    let signature = header(&headers, "webhook-signature").unwrap().to_owned();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert_eq!(verified_by(&rx, 0, &[&new, &old]), [true, true]);
    // So does a Send Test Event.
    assert!(c.test_webhook(&wh.id, None).await.unwrap().delivered);
    assert_eq!(verified_by(&rx, 1, &[&new, &old]), [true, true]);

    // Rotated again with no grace: only the newest secret signs.
    let newest = c
        .rotate_secret(
            &wh.id,
            &api::RotateSecretIn {
                grace: Some("0".into()),
                secret: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(newest.previous_secret, None);
    let out = emit(&s).await;
    wait_state(&s, &out[0].message_id, api::MessageState::Delivered).await;
    assert_eq!(
        verified_by(&rx, 2, &[&newest.secret, &new, &old]),
        [true, false, false]
    );

    // Bad input: 422 with every field named, and nothing changed.
    let resp = s
        .client
        .post(s.url(&format!("/api/webhooks/{}/secret/rotate", wh.id)))
        .json(&json!({"grace": "8d", "secret": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_webhook");
    assert_eq!(
        e["error"]["errors"],
        json!([
            {"field": "grace", "message": "must be at most 7d (a week)"},
            {"field": "secret", "message": "must start with `whsec_`"}
        ])
    );
    let resp = s
        .client
        .post(s.url(&format!("/api/webhooks/{}/secret/rotate", wh.id)))
        .json(&json!({"grace": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(c.webhook(&wh.id).await.unwrap().secret, newest.secret);
    // An unknown webhook is a 404.
    let e = c
        .rotate_secret("nobody", &api::RotateSecretIn::default())
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("404 webhook_not_found"), "{e}");
}

#[tokio::test]
async fn retry_now_sends_a_waiting_message_at_once() {
    let rx = Receiver::start(&[Mode::Status(503)], Mode::Status(200)).await;
    // The first retry would wait an hour.
    let s = server("1h", "5s", 5).await;
    let wh = add_webhook(&s, "waiting", &rx.url).await;
    let other = add_webhook(&s, "other", "http://127.0.0.1:9/nowhere").await;
    let c = client(&s);
    let msg = emit(&s).await[0].message_id.clone();
    let waiting = wait_state(&s, &msg, api::MessageState::Scheduled).await;
    assert_eq!(waiting.attempts, 1);

    // Not this webhook's message, or no such message: 404; no such webhook: 404.
    let e = c.retry_now(&other.id, &msg).await.unwrap_err();
    assert!(e.to_string().starts_with("404 delivery_not_found"), "{e}");
    let e = c.retry_now(&wh.id, "msg_nope").await.unwrap_err();
    assert!(e.to_string().starts_with("404 delivery_not_found"), "{e}");
    let e = c.retry_now("nobody", &msg).await.unwrap_err();
    assert!(e.to_string().starts_with("404 webhook_not_found"), "{e}");

    let queued = c.retry_now("waiting", &msg).await.unwrap();
    assert_eq!(
        (queued.message_id.as_str(), queued.webhook_id.as_str()),
        (msg.as_str(), wh.id.as_str())
    );
    let done = wait_state(&s, &msg, api::MessageState::Delivered).await;
    assert_eq!((done.attempts, rx.hits()), (2, 2));
    // The same webhook-id: a retry, not a new message.
    let (_, first, _) = rx.hit(0);
    let (_, second, _) = rx.hit(1);
    assert_eq!(header(&first, "webhook-id"), header(&second, "webhook-id"));
    let log = c.deliveries(&wh.id, None).await.unwrap();
    assert_eq!(log.attempts[0].trigger, api::AttemptTrigger::Scheduled);
    assert_eq!(log.attempts[0].attempt, 2);

    // Finished: nothing waits any more.
    let resp = s
        .client
        .post(s.url(&format!("/api/webhooks/{}/messages/{msg}/retry", wh.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "delivery_not_waiting");
}

#[tokio::test]
async fn shutdown_stops_retries_promptly() {
    let rx = Receiver::start(&[], Mode::Status(500)).await;
    let s = server("1h", "5s", 5).await;
    add_webhook(&s, "down", &rx.url).await;
    let id = emit(&s).await.remove(0).message_id;
    wait_state(&s, &id, api::MessageState::Scheduled).await;
    let hooks = s.state.hooks.clone();
    let start = Instant::now();
    s.shutdown().await.unwrap();
    assert!(start.elapsed() < WAIT);
    // The scheduled retry is reported by the engine, not dropped silently.
    let report = hooks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.unfinished.len(), 1);
    assert_eq!(report.unfinished[0].message_id, id);
    assert_eq!(report.unfinished[0].state, api::MessageState::Scheduled);
}
