//! The CI toolkit end to end: schema and signature checks on bins, the blocking wait and its
//! filters (also with 1,000 waiters), HAR and NDJSON export, the curl command through a real
//! curl, replay, forward (byte-exact, binary too), the smee-compatible stream, and the Rust
//! test helper `bin_server::testing`.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bin_server::testing::{Matcher, TestBin};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{SseReader, TestServer, within};

/// Bytes no text encoding survives: NUL, CR/LF, quotes, `%`, backslash, invalid UTF-8.
const NASTY: &[u8] = b"\x00bin\r\n'quote' \"dq\" %s %% \\x41 \\ $HOME `id` \xff\xfe\x80 end\n";

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Standard Webhooks: `v1,` + base64(HMAC-SHA256(base64-decoded key, "id.ts.body")).
fn standard_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let tag = hmac256(
        &key,
        &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(tag))
}

/// GitHub: `sha256=` + hex(HMAC-SHA256(secret, body)).
fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac256(secret.as_bytes(), &[body])))
}

/// Stripe: `t=<ts>,v1=` + hex(HMAC-SHA256(secret, "ts.body")).
fn stripe_signature(secret: &str, ts: i64, body: &[u8]) -> String {
    let tag = hmac256(secret.as_bytes(), &[ts.to_string().as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex(&tag))
}

/// Posts `body` to `/b/{bin}{path}` with `headers`; returns the capture's ack.
async fn send(
    s: &TestServer,
    bin: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Value {
    let mut req = s.client.post(s.url(&format!("/b/{bin}{path}")));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.body(body.to_vec()).send().await.unwrap();
    assert!(r.status().is_success(), "capture: {}", r.status());
    r.json().await.unwrap()
}

async fn request(s: &TestServer, bin: &str, id: &Value) -> Value {
    let (status, r) = s
        .get_json(&format!(
            "/api/bins/{bin}/requests/{}",
            id.as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    r
}

/// `GET .../wait?{query}`: status and JSON body.
async fn wait(s: &TestServer, bin: &str, query: &str) -> (u16, Value) {
    let r = within(
        "a wait",
        s.client
            .get(s.url(&format!("/api/bins/{bin}/wait?{query}")))
            .send(),
    )
    .await
    .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn body_of(r: &Value) -> Vec<u8> {
    let body = r["body"].as_str().unwrap_or("");
    if r["body_encoding"] == "base64" {
        BASE64.decode(body).unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// Schema checks

#[tokio::test]
async fn schema_violations_are_recorded_with_json_pointer_paths() {
    let s = TestServer::start().await;
    let schema = json!({
        "type": "object",
        "required": ["event", "amount"],
        "properties": {
            "event": {"type": "string"},
            "amount": {"type": "integer", "minimum": 0},
            "customer": {"type": "object", "properties": {"email": {"format": "email"}}}
        }
    });
    let bin = s.put_bin("shape", json!({"schema": schema})).await;
    assert_eq!(bin["schema"], schema);
    let mut live = SseReader::open(&s.client, &s.url("/api/bins/shape/stream"), None).await;
    live.next_named("ready").await;

    let ok = send(&s, "shape", "", &[], br#"{"event":"paid","amount":5}"#).await;
    let r = request(&s, "shape", &ok["request_id"]).await;
    assert_eq!(r["validation"], json!({"valid": true, "errors": []}));

    let bad = br#"{"amount":-1,"customer":{"email":"not-an-email"}}"#;
    let bad = send(&s, "shape", "", &[], bad).await;
    let r = request(&s, "shape", &bad["request_id"]).await;
    assert_eq!(r["validation"]["valid"], false);
    let errors = r["validation"]["errors"].as_array().unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/amount"), "{errors:?}");
    assert!(paths.contains(&"/customer/email"), "{errors:?}");
    assert!(
        paths.contains(&""),
        "the missing `event` is reported at the root: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("-1")),
        "messages say what is wrong: {errors:?}"
    );

    let text = send(&s, "shape", "", &[], b"amount=5").await;
    let r = request(&s, "shape", &text["request_id"]).await;
    assert_eq!(r["validation"]["valid"], false);
    assert!(
        r["validation"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("not_json")
    );

    // The live stream carries the same outcome.
    live.next_named("request").await;
    let ev = live.next_named("request").await.json();
    assert_eq!(ev["validation"]["valid"], false);

    // A bin without a schema has no validation at all.
    s.put_bin("plain", json!({})).await;
    let plain = send(&s, "plain", "", &[], b"{}").await;
    assert!(
        request(&s, "plain", &plain["request_id"])
            .await
            .get("validation")
            .is_none()
    );
}

#[tokio::test]
async fn invalid_schemas_and_signature_settings_are_refused_naming_the_problem() {
    let s = TestServer::start().await;
    let cases = [
        (
            json!({"schema": {"type": "integr"}}),
            "invalid_schema",
            "integr",
        ),
        (
            json!({"schema": {"minimum": "five"}}),
            "invalid_schema",
            "five",
        ),
        (
            json!({"schema": [1, 2]}),
            "invalid_schema",
            "object or a boolean",
        ),
        (json!({"secret": "nope"}), "invalid_signature", "whsec_"),
        (
            json!({"secret": "whsec_!!!"}),
            "invalid_signature",
            "base64",
        ),
        (
            json!({"signature_scheme": "github"}),
            "invalid_signature",
            "needs a secret",
        ),
        (
            json!({"secret": "x", "signature_scheme": "gitlab"}),
            "invalid_signature",
            "gitlab",
        ),
    ];
    for (body, code, needle) in cases {
        let r = s
            .client
            .put(s.url("/api/bins/bad"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert_eq!(
        s.get_json("/api/bins/bad").await.0,
        404,
        "nothing half-created"
    );
}

// ---------------------------------------------------------------------------------------------
// Signature checks

/// Sends `body` with `headers` to a fresh bin checking `scheme` with `secret`; returns the
/// request's `signature` outcome.
async fn signature_of(
    s: &TestServer,
    scheme: &str,
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Value {
    let bin = format!("sig-{scheme}");
    s.put_bin(&bin, json!({"secret": secret, "signature_scheme": scheme}))
        .await;
    let ack = send(s, &bin, "", headers, body).await;
    request(s, &bin, &ack["request_id"]).await["signature"].clone()
}

#[tokio::test]
async fn standard_webhooks_signatures_valid_invalid_missing_expired() {
    let s = TestServer::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"type":"invoice.paid","data":{"id":1}}"#;
    let ts = now();
    let sig = standard_signature(secret, "msg_1", ts, body);
    let t = ts.to_string();
    let good = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", t.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let v = signature_of(&s, "standard", secret, &good, body).await;
    assert_eq!(v, json!({"status": "valid"}));

    let v = signature_of(&s, "standard", secret, &good, b"{\"tampered\":1}").await;
    assert_eq!(v["status"], "invalid");

    let v = signature_of(&s, "standard", secret, &good[..2], body).await;
    assert_eq!(v["status"], "missing");
    assert!(v["reason"].as_str().unwrap().contains("webhook-signature"));

    let old = ts - 600;
    let old_sig = standard_signature(secret, "msg_1", old, body);
    let old_t = old.to_string();
    let expired = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", old_t.as_str()),
        ("webhook-signature", old_sig.as_str()),
    ];
    let v = signature_of(&s, "standard", secret, &expired, body).await;
    assert_eq!(v["status"], "invalid");
    assert!(v["reason"].as_str().unwrap().contains("old"), "{v}");
}

#[tokio::test]
async fn github_signatures_valid_invalid_missing() {
    let s = TestServer::start().await;
    let secret = "It's a Secret to Everybody";
    let body = NASTY;
    let sig = github_signature(secret, body);
    let v = signature_of(&s, "github", secret, &[("X-Hub-Signature-256", &sig)], body).await;
    assert_eq!(
        v["status"], "valid",
        "binary bodies are signed byte-exact: {v}"
    );
    let other = github_signature("another secret", body);
    let v = signature_of(
        &s,
        "github",
        secret,
        &[("X-Hub-Signature-256", &other)],
        body,
    )
    .await;
    assert_eq!(v["status"], "invalid");
    let v = signature_of(
        &s,
        "github",
        secret,
        &[("X-Hub-Signature-256", "md5=00")],
        body,
    )
    .await;
    assert_eq!(v["status"], "invalid");
    let v = signature_of(
        &s,
        "github",
        secret,
        &[("X-Hub-Signature", "sha1=00")],
        body,
    )
    .await;
    assert_eq!(v["status"], "missing");
}

#[tokio::test]
async fn stripe_signatures_valid_invalid_missing_expired() {
    let s = TestServer::start().await;
    let secret = "whsec_stripe_test_secret";
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let sig = stripe_signature(secret, now(), body);
    let v = signature_of(&s, "stripe", secret, &[("Stripe-Signature", &sig)], body).await;
    assert_eq!(v["status"], "valid", "{v}");
    // Several v1 entries (secret rotation): one match is enough.
    let rotated = format!("{sig},v1={}", "0".repeat(64));
    let v = signature_of(
        &s,
        "stripe",
        secret,
        &[("Stripe-Signature", &rotated)],
        body,
    )
    .await;
    assert_eq!(v["status"], "valid", "{v}");
    let wrong = stripe_signature("whsec_other", now(), body);
    let v = signature_of(&s, "stripe", secret, &[("Stripe-Signature", &wrong)], body).await;
    assert_eq!(v["status"], "invalid");
    let v = signature_of(&s, "stripe", secret, &[], body).await;
    assert_eq!(v["status"], "missing");
    let expired = stripe_signature(secret, now() - 301, body);
    let v = signature_of(
        &s,
        "stripe",
        secret,
        &[("Stripe-Signature", &expired)],
        body,
    )
    .await;
    assert_eq!(v["status"], "invalid");
    assert!(v["reason"].as_str().unwrap().contains("300 s"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Wait

#[tokio::test]
async fn wait_finds_a_request_that_arrived_before_the_wait() {
    let s = TestServer::start().await;
    s.put_bin("early", json!({})).await;
    let ack = send(&s, "early", "/x", &[], b"already here").await;
    let (status, r) = wait(&s, "early", "timeout=0").await;
    assert_eq!(status, 200);
    assert_eq!(r["id"], ack["request_id"]);
    assert_eq!(r["body"], "already here");
}

#[tokio::test]
async fn wait_blocks_until_a_matching_capture_arrives() {
    let s = TestServer::start().await;
    s.put_bin("later", json!({})).await;
    let started = Instant::now();
    let waiter = {
        let client = s.client.clone();
        let url = s.url("/api/bins/later/wait?method=PUT&timeout=10s");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    s.until_metric("hookbin_waiters", 1).await;
    send(&s, "later", "", &[], b"a POST does not match").await;
    let put = s
        .client
        .put(s.url("/b/later"))
        .body("the one")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let resp = within("the waiter", waiter).await.unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["body"], "the one");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The sequence number a `timeout=0` wait with `query` finds, `None` on 408.
async fn seq_of(s: &TestServer, bin: &str, query: String) -> Option<u64> {
    let (status, r) = wait(s, bin, &format!("timeout=0&{query}")).await;
    if status == 200 {
        Some(r["seq"].as_u64().unwrap())
    } else {
        assert_eq!(status, 408, "{query}: {r}");
        None
    }
}

#[tokio::test]
async fn wait_filters_each_narrow_the_match() {
    let s = TestServer::start().await;
    s.put_bin("filters", json!({"schema": {"required": ["ok"]}}))
        .await;
    // seq 1..=4
    send(
        &s,
        "filters",
        "/github/push",
        &[("X-Event", "push")],
        br#"{"ok":1,"n":1}"#,
    )
    .await;
    send(
        &s,
        "filters",
        "/stripe",
        &[("X-Event", "charge.succeeded")],
        br#"{"ok":1,"n":"42","order":{"id":7,"tags":["a"]}}"#,
    )
    .await;
    send(
        &s,
        "filters",
        "/github/issues",
        &[("x-event", "issues")],
        br#"{"n":42}"#,
    )
    .await;
    let put = s
        .client
        .put(s.url("/b/filters/put"))
        .body(r#"{"ok":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let seq = |q: &str| seq_of(&s, "filters", q.to_owned());
    assert_eq!(seq("").await, Some(1), "oldest first");
    assert_eq!(seq("method=put").await, Some(4));
    assert_eq!(seq("path=/stripe").await, Some(2));
    assert_eq!(seq("path=/github/*").await, Some(1));
    assert_eq!(seq("path=/github/i*s").await, Some(3));
    assert_eq!(seq("path=/github").await, None, "exact without a glob");
    assert_eq!(seq("header=x-event:issues").await, Some(3));
    assert_eq!(seq("header=X-EVENT:%20charge.*").await, Some(2));
    assert_eq!(seq("header=X-Event").await, Some(1));
    assert_eq!(seq("header=X-Missing").await, None);
    assert_eq!(
        seq("json=/n=42").await,
        Some(2),
        "42 matches the string \"42\" too"
    );
    assert_eq!(seq("json=/n=%2242%22").await, Some(2));
    assert_eq!(seq("json=/order/id=7").await, Some(2));
    assert_eq!(seq("json=/order/tags/0=a").await, Some(2));
    assert_eq!(seq("json=/order/tags=[%22a%22]").await, Some(2));
    assert_eq!(seq("json=/ok=true").await, Some(4));
    assert_eq!(seq("json=/order").await, Some(2), "presence");
    assert_eq!(
        seq("json=/n=42&json=/ok=1").await,
        Some(2),
        "repeatable, all must match"
    );
    assert_eq!(seq("json=/n=43").await, None);
    assert_eq!(seq("valid=false").await, Some(3), "fails the bin's schema");
    assert_eq!(seq("valid=true&path=/github/*").await, Some(1));
    assert_eq!(seq("after=1").await, Some(2));
    assert_eq!(seq("after=2&path=/github/*").await, Some(3));
    assert_eq!(seq("after=4").await, None);
    let (_, first) = wait(&s, "filters", "timeout=0").await;
    let id = first["id"].as_str().unwrap();
    assert_eq!(seq(&format!("after={id}")).await, Some(2));
    assert_eq!(
        seq("method=POST&path=/github/*&header=X-Event:issues&json=/n=42&valid=false").await,
        Some(3)
    );
}

#[tokio::test]
async fn wait_times_out_with_408_and_a_json_error() {
    let s = TestServer::start().await;
    s.put_bin("quiet", json!({})).await;
    let started = Instant::now();
    let (status, e) = wait(&s, "quiet", "timeout=300ms&method=POST&json=/id=1").await;
    assert_eq!(status, 408);
    assert_eq!(e["error"]["code"], "wait_timeout");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("method=POST") && msg.contains("/id=1") && msg.contains("300ms"),
        "{msg}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// Captures `n` requests straight into the store, without yielding: live subscribers cannot
/// read in between (the memory store's capture never waits), so more than their buffer makes
/// them fall behind.
async fn burst(s: &TestServer, bin: &str, n: usize) {
    use bin_server::store::{NewCapture, RawHeaders};
    for i in 0..n {
        let body = format!("{{\"n\":{i}}}");
        let mut c = NewCapture::new(
            "POST",
            "/burst",
            None,
            &RawHeaders::new(),
            body.len(),
            "127.0.0.1:1".parse().unwrap(),
        );
        c.push_body(body.as_bytes());
        s.state.store.capture(bin, c).await.unwrap();
    }
}

#[tokio::test]
async fn a_waiter_that_falls_behind_the_broadcast_rereads_the_store() {
    let s = TestServer::start().await;
    s.put_bin("burst", json!({})).await;
    let waiter = {
        let client = s.client.clone();
        // An early capture: a lagging subscriber keeps the newest events, so the oldest are the
        // ones it misses, and only rereading the store finds this one.
        let url = s.url("/api/bins/burst/wait?json=/n=10&timeout=10s");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    s.until_metric("hookbin_waiters", 1).await;
    // Far more than the 256 events a subscriber buffers: the match is among the missed ones.
    burst(&s, "burst", 600).await;
    let resp = within("the lagging waiter", waiter).await.unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["seq"], 11);
}

#[tokio::test]
async fn pending_waits_end_when_the_server_shuts_down() {
    let s = TestServer::start().await;
    s.put_bin("bye", json!({})).await;
    let waiter = {
        let client = s.client.clone();
        let url = s.url("/api/bins/bye/wait?timeout=300s");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    s.until_metric("hookbin_waiters", 1).await;
    let started = Instant::now();
    s.shutdown().await.unwrap();
    let resp = within("the waiter", waiter).await.unwrap();
    assert_eq!(resp.status(), 503);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["code"], "shutting_down");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wait_errors_are_clear() {
    let s = TestServer::start().await;
    s.put_bin("errs", json!({})).await;
    for (q, code) in [
        ("timeout=301s", "invalid_query"),
        ("timeout=soon", "invalid_query"),
        ("json=id=1", "invalid_query"),
        ("valid=maybe", "invalid_query"),
        ("colour=red", "invalid_query"),
        ("after=not-an-id", "invalid_query"),
    ] {
        let (status, e) = wait(&s, "errs", q).await;
        assert_eq!(
            (status, e["error"]["code"].as_str().unwrap()),
            (400, code),
            "{q}"
        );
    }
    let (status, e) = wait(&s, "nope", "timeout=1s").await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (404, "bin_not_found")
    );

    // Deleting the bin ends a pending wait with 404.
    let waiter = {
        let client = s.client.clone();
        let url = s.url("/api/bins/errs/wait?timeout=20s");
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    s.until_metric("hookbin_waiters", 1).await;
    let del = s
        .client
        .delete(s.url("/api/bins/errs"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let resp = within("the waiter", waiter).await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_thousand_waiters_are_released_by_one_capture() {
    const WAITERS: usize = 1000;
    let s = TestServer::start().await;
    s.put_bin("crowd", json!({})).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = s.url("/api/bins/crowd/wait?method=POST&json=/go=true&timeout=25s");
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = client.get(url).send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                (status, body["seq"].as_u64(), Instant::now())
            })
        })
        .collect();
    // Every waiter holds; none may return before the matching capture (one released by the
    // non-matching capture would answer seq 1, not 2).
    s.until_metric("hookbin_waiters", WAITERS as u64).await;
    send(&s, "crowd", "", &[], br#"{"go":false}"#).await;
    let released_at = Instant::now();
    send(&s, "crowd", "", &[], br#"{"go":true}"#).await;
    let mut last = released_at;
    for w in waiters {
        let (status, seq, at) = within("a released waiter", w).await.unwrap();
        assert_eq!((status, seq), (200, Some(2)));
        last = last.max(at);
    }
    let spread = last - released_at;
    assert!(
        spread < Duration::from_secs(5),
        "releasing {WAITERS} took {spread:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Export, curl, replay

#[tokio::test]
async fn har_export_parses_back_with_every_request_and_exact_bodies() {
    let s = TestServer::start().await;
    s.put_bin("har", json!({"response": {"status": 202}})).await;
    send(&s, "har", "/a?x=1&y=%20", &[("X-One", "1")], br#"{"n":1}"#).await;
    send(
        &s,
        "har",
        "",
        &[("Content-Type", "application/octet-stream")],
        NASTY,
    )
    .await;
    let r = s
        .client
        .get(s.url("/api/bins/har/export?format=har"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("har.har")
    );
    let har: Value = r.json().await.unwrap();
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "Hookbin");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let first = &entries[0];
    assert_eq!(first["request"]["method"], "POST");
    assert_eq!(first["request"]["url"], s.url("/b/har/a?x=1&y=%20"));
    assert_eq!(first["request"]["httpVersion"], "HTTP/1.1");
    assert_eq!(
        first["request"]["queryString"],
        json!([{"name": "x", "value": "1"}, {"name": "y", "value": "%20"}])
    );
    assert!(
        first["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "x-one" && h["value"] == "1")
    );
    assert_eq!(first["request"]["postData"]["text"], r#"{"n":1}"#);
    assert_eq!(first["response"]["status"], 202);
    for e in entries {
        chrono::DateTime::parse_from_rfc3339(e["startedDateTime"].as_str().unwrap()).unwrap();
        for key in ["time", "cache", "timings"] {
            assert!(e.get(key).is_some(), "HAR entries need {key}");
        }
    }
    let binary = &entries[1]["request"]["postData"];
    assert_eq!(binary["_encoding"], "base64");
    assert_eq!(
        BASE64.decode(binary["text"].as_str().unwrap()).unwrap(),
        NASTY
    );
    assert_eq!(binary["mimeType"], "application/octet-stream");

    // An empty bin is a valid, empty HAR.
    s.put_bin("empty", json!({})).await;
    let (status, har) = s.get_json("/api/bins/empty/export?format=har").await;
    assert_eq!(status, 200);
    assert_eq!(har["log"]["entries"], json!([]));
}

#[tokio::test]
async fn ndjson_export_is_one_request_per_line_oldest_first() {
    let s = TestServer::start().await;
    s.put_bin("nd", json!({})).await;
    for i in 0..3 {
        send(&s, "nd", "", &[], format!("body {i}").as_bytes()).await;
    }
    send(&s, "nd", "", &[], NASTY).await;
    let r = s
        .client
        .get(s.url("/api/bins/nd/export?format=ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<api::CapturedRequestOut> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(lines[0].body.as_deref(), Some("body 0"));
    assert_eq!(lines[3].body_encoding, api::BodyEncoding::Base64);
    let (status, e) = s.get_json("/api/bins/nd/export?format=xml").await;
    assert_eq!(
        (status, e["error"]["code"].as_str().unwrap()),
        (400, "invalid_format")
    );
}

#[tokio::test]
async fn the_curl_command_replays_byte_exact_through_a_real_curl() {
    let s = TestServer::start().await;
    s.put_bin("origin", json!({})).await;
    s.put_bin("copy", json!({})).await;
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("X-Quote", "it's \"quoted\" $HOME `id` %s"),
        ("X-Dup", "1"),
        ("X-Dup", "2"),
    ];
    let ack = send(&s, "origin", "/deep/path", &headers, NASTY).await;
    let id = ack["request_id"].as_str().unwrap();
    let original = request(&s, "origin", &ack["request_id"]).await;

    let target = s.url("/b/copy");
    let r = s
        .client
        .get(s.url(&format!("/api/bins/origin/requests/{id}/curl")))
        .query(&[("url", target.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cmd = r.text().await.unwrap();
    assert!(cmd.contains("--data-binary @-"), "{cmd}");
    let out = within(
        "curl",
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output(),
    )
    .await
    .expect("curl must be installed (scripts/setup.sh --test installs it)");
    assert!(
        out.status.success(),
        "{cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, copy) = wait(&s, "copy", "timeout=5s").await;
    assert_eq!(status, 200);
    assert_eq!(
        body_of(&copy),
        NASTY,
        "the body survives the shell and curl"
    );
    assert_eq!(copy["method"], "POST");
    assert_eq!(copy["path"], "/deep/path");
    let names = |r: &Value| -> Vec<(String, String)> {
        r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["value"].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(n, _)| {
                !["host", "content-length", "expect"].contains(&n.to_ascii_lowercase().as_str())
            })
            .collect()
    };
    assert_eq!(
        names(&copy),
        names(&original),
        "the same headers, in order, case kept"
    );

    // Without `url`, the command targets the request's own capture URL.
    let r = s
        .client
        .get(s.url(&format!("/api/bins/origin/requests/{id}/curl")))
        .send()
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(&s.url("/b/origin/deep/path"))
    );
}

/// Bodies that begin with `-` (every multipart body: `--boundary`) must not be read by `printf`
/// as an option: that printed nothing, so curl sent an empty body and the pipeline still exited 0.
#[tokio::test]
async fn the_curl_command_replays_bodies_that_begin_with_a_dash_in_sh_and_bash() {
    let s = TestServer::start().await;
    s.put_bin("dash-src", json!({})).await;
    let multipart: &[u8] = b"------hookbin7MA4YWxk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n------hookbin7MA4YWxk--\r\n";
    let bodies: [(&str, &[u8]); 3] = [
        (
            "multipart/form-data; boundary=----hookbin7MA4YWxk",
            multipart,
        ),
        ("text/plain", b"-n hello"),
        ("text/plain", b"--"),
    ];
    for (i, (content_type, body)) in bodies.into_iter().enumerate() {
        let ack = send(&s, "dash-src", "/", &[("Content-Type", content_type)], body).await;
        let id = ack["request_id"].as_str().unwrap();
        for shell in ["sh", "bash"] {
            let copy_bin = format!("dash-copy-{i}-{shell}");
            s.put_bin(&copy_bin, json!({})).await;
            let cmd = s
                .client
                .get(s.url(&format!("/api/bins/dash-src/requests/{id}/curl")))
                .query(&[("url", s.url(&format!("/b/{copy_bin}")).as_str())])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let out = within(
                "curl",
                tokio::process::Command::new(shell)
                    .arg("-c")
                    .arg(&cmd)
                    .output(),
            )
            .await
            .unwrap_or_else(|e| panic!("{shell} and curl must be installed: {e}"));
            assert!(
                out.status.success(),
                "{shell}: {cmd}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (status, copy) = wait(&s, &copy_bin, "timeout=5s").await;
            assert_eq!(status, 200);
            assert_eq!(
                body_of(&copy),
                body,
                "{shell} replays {:?} byte-exact: {cmd}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[tokio::test]
async fn replay_sends_the_request_again_and_reports_the_outcome() {
    let s = TestServer::start().await;
    s.put_bin("src", json!({})).await;
    s.put_bin(
        "dst",
        json!({"response": {"status": 418, "body": "short and stout"}}),
    )
    .await;
    let ack = send(
        &s,
        "src",
        "/hook?a=1",
        &[("X-Sig", "abc"), ("Content-Type", "application/x-thing")],
        NASTY,
    )
    .await;
    let id = ack["request_id"].as_str().unwrap();
    let replay = |body: Value| {
        s.client
            .post(s.url(&format!("/api/bins/src/requests/{id}/replay")))
            .json(&body)
            .send()
    };
    let r = replay(json!({"url": s.url("/b/dst")})).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: api::ReplayOut = r.json().await.unwrap();
    assert_eq!(out.status, Some(418));
    assert_eq!(out.response_excerpt.as_deref(), Some("short and stout"));
    assert_eq!(out.url, s.url("/b/dst/hook?a=1"));
    assert!(out.error.is_none());
    let (_, copy) = wait(&s, "dst", "timeout=5s").await;
    assert_eq!(body_of(&copy), NASTY);
    assert_eq!(copy["path"], "/hook");
    assert_eq!(copy["query"], "a=1");
    assert!(
        copy["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "x-sig" && h["value"] == "abc")
    );
    assert!(
        copy["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["value"] == "application/x-thing")
    );

    // Without the path suffix.
    let r = replay(json!({"url": s.url("/b/dst/fixed"), "append_path": false}))
        .await
        .unwrap();
    let out: api::ReplayOut = r.json().await.unwrap();
    assert_eq!(out.url, s.url("/b/dst/fixed?a=1"));

    // A dead target is an outcome, not an API error.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/", dead.local_addr().unwrap());
    drop(dead);
    let r = replay(json!({"url": dead_url})).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: api::ReplayOut = r.json().await.unwrap();
    assert_eq!(out.status, None);
    assert!(out.error.is_some());

    let r = replay(json!({"url": "ftp://x"})).await.unwrap();
    assert_eq!(r.status(), 400);
}

// ---------------------------------------------------------------------------------------------
// Forward, smee

/// Starts `bin-server forward` (the library function) from bin `from` to bin `to` of `s`, and
/// waits until it is connected. Returns its stop switch, its printed lines and its task.
async fn start_forward(
    s: &TestServer,
    from: &str,
    to: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<Result<(), bin_server::cli::client::ClientError>>,
) {
    let client = bin_server::cli::client::Client::new(&s.base).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (from, to) = (from.to_owned(), s.url(&format!("/b/{to}")));
    let forwarding = tokio::spawn(async move {
        bin_server::cli::forward::forward(
            &client,
            &from,
            &to,
            async {
                let _ = stopped.await;
            },
            move |ev| {
                let _ = tx.send(ev.to_string());
            },
        )
        .await
    });
    let connected = within("forward connects", rx.recv()).await.unwrap();
    assert!(connected.starts_with("connected"), "{connected}");
    (stop, rx, forwarding)
}

#[tokio::test]
async fn forward_replays_new_requests_byte_exact_until_stopped() {
    let s = TestServer::start().await;
    s.put_bin("live", json!({})).await;
    s.put_bin("local", json!({})).await;
    send(&s, "live", "", &[], b"before: not forwarded").await;
    let (stop, mut rx, forwarding) = start_forward(&s, "live", "local").await;
    let bodies: Vec<Vec<u8>> = vec![
        NASTY.to_vec(),
        (0..=255u8).collect(),
        br#"{"json":true}"#.to_vec(),
        Vec::new(),
    ];
    for (i, b) in bodies.iter().enumerate() {
        send(&s, "live", &format!("/p{i}"), &[("X-N", &i.to_string())], b).await;
    }
    for i in 0..bodies.len() {
        let line = within("a forwarded line", rx.recv()).await.unwrap();
        assert!(
            line.starts_with(&format!("#{} POST /p{i} -> 200", i + 2)),
            "{line}"
        );
    }
    let (_, page) = s.get_json("/api/bins/local/requests?limit=10").await;
    let got: Vec<Value> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .cloned()
        .collect();
    assert_eq!(got.len(), bodies.len(), "only new requests, each once");
    for (i, (r, b)) in got.iter().zip(&bodies).enumerate() {
        assert_eq!(&body_of(r), b, "request {i}");
        assert_eq!(r["path"], format!("/p{i}"));
        assert!(
            r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "x-n" && h["value"].as_str() == Some(&*i.to_string()))
        );
    }
    stop.send(()).unwrap();
    within("forward stops", forwarding).await.unwrap().unwrap();
}

#[tokio::test]
async fn forward_catches_up_after_falling_behind_without_loss_or_duplicates() {
    let s = TestServer::start().await;
    s.put_bin("fast", json!({})).await;
    s.put_bin("slow", json!({})).await;
    let (stop, mut rx, forwarding) = start_forward(&s, "fast", "slow").await;
    burst(&s, "fast", 400).await;
    let (mut lines, mut notes) = (Vec::new(), Vec::new());
    while lines.len() < 400 {
        let line = within("forwarded lines", rx.recv()).await.unwrap();
        if line.starts_with('#') {
            lines.push(line);
        } else {
            notes.push(line);
        }
    }
    // The burst overflowed the stream's buffer (the test runtime has one thread): the server
    // said `resync`, and forward resumed from its last request with `Last-Event-ID`.
    assert!(notes.iter().any(|n| n.contains("fell behind")), "{notes:?}");
    stop.send(()).unwrap();
    within("forward stops", forwarding).await.unwrap().unwrap();
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("#{} POST /burst -> 200", i + 1)),
            "{line}"
        );
    }
    let (_, page) = s.get_json("/api/bins/slow/requests?limit=1000").await;
    let bodies: Vec<String> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..400).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(bodies, expected, "every request once, in order");
}

#[tokio::test]
async fn forward_fails_clearly_for_an_unknown_bin() {
    let s = TestServer::start().await;
    let client = bin_server::cli::client::Client::new(&s.base).unwrap();
    let err = bin_server::cli::forward::forward(
        &client,
        "ghost",
        "http://127.0.0.1:9/",
        std::future::pending(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
}

#[tokio::test]
async fn smee_stream_speaks_the_smee_client_format() {
    let s = TestServer::start().await;
    s.put_bin("smee", json!({})).await;
    let mut sse = SseReader::open(&s.client, &s.url("/api/bins/smee/smee"), None).await;
    let ready = sse.next().await.unwrap();
    assert_eq!((ready.event.as_str(), ready.data.as_str()), ("ready", "{}"));
    let before = chrono::Utc::now().timestamp_millis();
    let r = s
        .client
        .post(s.url("/b/smee/gh?installation=1&name=a+b%21"))
        .header("X-GitHub-Event", "push")
        .header("X-Multi", "1")
        .header("x-multi", "2")
        .header("Content-Type", "application/json")
        .body(r#"{"ref": "refs/heads/main", "n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let msg = sse.next().await.unwrap();
    assert_eq!(
        msg.event, "message",
        "smee-client listens to default events"
    );
    let data = msg.json();
    assert_eq!(data["x-github-event"], "push");
    assert_eq!(data["x-multi"], "1, 2");
    assert_eq!(data["content-type"], "application/json");
    assert_eq!(data["body"], json!({"ref": "refs/heads/main", "n": 1}));
    assert_eq!(data["query"], json!({"installation": "1", "name": "a b!"}));
    assert!(data["timestamp"].as_i64().unwrap() >= before - 1000);
    for absent in ["host", "content-length", "connection"] {
        assert!(
            data.get(absent).is_none(),
            "{absent} would break smee-client's own request"
        );
    }
    // Text bodies are passed as strings.
    send(
        &s,
        "smee",
        "",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&b=2",
    )
    .await;
    assert_eq!(sse.next().await.unwrap().json()["body"], "a=1&b=2");
}

// ---------------------------------------------------------------------------------------------
// The Rust test helper

#[tokio::test]
async fn test_bin_waits_for_a_signed_request_and_checks_it() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let bin = TestBin::start_with(api::BinIn {
        secret: Some(secret.into()),
        schema: Some(json!({"type": "object", "required": ["type"]})),
        ..Default::default()
    })
    .await;
    let body = br#"{"type":"site.created","data":{"id":3}}"#;
    let ts = now();
    let waiting = bin
        .wait_for(Matcher::new().json("/type", "site.created").valid())
        .timeout(Duration::from_secs(5));
    let sending = async {
        // Sent only once the wait holds on the server (its waiter gauge), so the request is
        // one the wait was woken by, not one it found already stored.
        let waiters = &bin.state().metrics.waiters;
        within("the TestBin wait to hold", async {
            while waiters.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        reqwest::Client::new()
            .post(bin.url())
            .header("webhook-id", "msg_9")
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                standard_signature(secret, "msg_9", ts, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    };
    let (request, sent) = tokio::join!(waiting, sending);
    assert_eq!(sent.status(), 200);
    request.assert_valid();
    assert_eq!(request.json()["data"]["id"], 3);
    assert_eq!(request.header("WEBHOOK-ID"), Some("msg_9"));
    assert_eq!(request.body_bytes(), body);
    request.assert_schema(&json!({"properties": {"data": {"required": ["id"]}}}));

    // A timeout is `None` from try_wait, a panic naming the filters when awaited.
    let none = bin
        .wait_for(Matcher::new().method("DELETE"))
        .timeout(Duration::from_millis(200))
        .try_wait()
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
#[should_panic(expected = "does not match the schema: /amount")]
async fn test_bin_assert_schema_names_the_violation() {
    let bin = TestBin::start().await;
    reqwest::Client::new()
        .post(bin.url())
        .body(r#"{"amount":"ten"}"#)
        .send()
        .await
        .unwrap();
    let r = bin.wait_for(Matcher::new()).await;
    r.assert_schema(&json!({"properties": {"amount": {"type": "integer"}}}));
}
