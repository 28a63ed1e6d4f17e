//! The receiving side end to end: capture, the JSON API, limits and eviction, live streams,
//! errors, shutdown.

use std::time::{Duration, Instant};

use base64::Engine;
use bin_server::ServerConfig;
use bin_server::store::StoreLimits;
use serde_json::{Value, json};

use crate::support::{SseReader, TestServer, raw_http, within};

fn find_header<'a>(req: &'a Value, name: &str) -> Vec<&'a str> {
    req["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == name)
        .map(|h| h["value"].as_str().unwrap())
        .collect()
}

async fn latest(s: &TestServer, bin: &str) -> Value {
    let (status, page) = s
        .get_json(&format!("/api/bins/{bin}/requests?limit=1"))
        .await;
    assert_eq!(status, 200);
    page["requests"][0].clone()
}

#[tokio::test]
async fn post_creates_a_random_bin_with_its_capture_url() {
    let s = TestServer::start().await;
    let r = s.client.post(s.url("/api/bins")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let bin: Value = r.json().await.unwrap();
    let id = bin["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(bin["url"], format!("{}/b/{id}", s.base));
    assert_eq!(bin["limits"]["max_requests"], 1000);
    assert_eq!(bin["request_count"], 0);
    let (status, listed) = s.get_json("/api/bins").await;
    assert_eq!(status, 200);
    assert_eq!(listed["bins"][0]["id"], id);
}

#[tokio::test]
async fn public_url_builds_capture_urls() {
    let cfg = ServerConfig {
        public_url: Some("https://hooks.example.test/".into()),
        ..Default::default()
    };
    let s = TestServer::with(StoreLimits::default(), cfg).await;
    let bin = s.put_bin("ci", json!({})).await;
    assert_eq!(bin["url"], "https://hooks.example.test/b/ci");
}

#[tokio::test]
async fn capture_is_byte_exact_headers_case_order_duplicates_query_and_binary_body() {
    let s = TestServer::start().await;
    s.put_bin("exact", json!({})).await;
    let body: Vec<u8> = (0..=255u8).chain([0, 0, 13, 10]).collect();
    let mut req = format!(
        "PATCH /b/exact/some/Path%20x?b=2&a=1&a=&flag HTTP/1.1\r\nHost: h\r\nX-Trace: one\r\n\
         x-trace: two\r\nX-TRACE: three\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let resp = raw_http(s.addr, &req).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    let r = latest(&s, "exact").await;
    assert_eq!(r["method"], "PATCH");
    assert_eq!(r["path"], "/some/Path%20x");
    assert_eq!(r["query"], "b=2&a=1&a=&flag");
    let names: Vec<&str> = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Host",
            "X-Trace",
            "x-trace",
            "X-TRACE",
            "Content-Type",
            "Content-Length",
            "Connection"
        ]
    );
    assert_eq!(r["headers"][2]["value"], "two");
    assert_eq!(r["body_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(r["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, body);
    assert_eq!(r["body_size"], body.len());
    assert_eq!(r["truncated"], false);
    assert!(r["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(r["seq"], 1);

    let id = r["id"].as_str().unwrap();
    let raw = s
        .client
        .get(s.url(&format!("/api/bins/exact/requests/{id}/raw")))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(raw.headers()["x-content-type-options"], "nosniff");
    assert!(
        raw.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(raw.bytes().await.unwrap().as_ref(), &body[..]);

    // A URL without '?' has no query at all, which differs from an empty one.
    raw_http(
        s.addr,
        b"GET /b/exact HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = latest(&s, "exact").await;
    assert_eq!(r["query"], Value::Null);
    assert_eq!(r["path"], "/");
    raw_http(
        s.addr,
        b"GET /b/exact? HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(latest(&s, "exact").await["query"], "");
}

#[tokio::test]
async fn keep_alive_pipelined_and_chunked_requests_keep_their_own_headers() {
    let s = TestServer::start().await;
    s.put_bin("pipe", json!({})).await;
    let wire = b"POST /b/pipe/1 HTTP/1.1\r\nHost: h\r\nX-One: a\r\nContent-Length: 3\r\n\r\nabc\
        POST /b/pipe/2 HTTP/1.1\r\nHost: h\r\nX-Two: b\r\nTransfer-Encoding: chunked\r\n\r\n\
        4\r\nwxyz\r\n2\r\n!!\r\n0\r\n\r\n\
        GET /b/pipe/3 HTTP/1.1\r\nHost: h\r\nx-three: c\r\nConnection: close\r\n\r\n";
    let resp = raw_http(s.addr, wire).await;
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let (_, page) = s.get_json("/api/bins/pipe/requests").await;
    let reqs = page["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2]["path"], "/1");
    assert_eq!(find_header(&reqs[2], "X-One"), ["a"]);
    assert_eq!(reqs[1]["body"], "wxyz!!");
    assert_eq!(find_header(&reqs[1], "X-Two"), ["b"]);
    assert!(find_header(&reqs[1], "X-One").is_empty());
    assert_eq!(find_header(&reqs[0], "x-three"), ["c"]);
}

#[tokio::test]
async fn text_bodies_come_back_as_utf8_and_json_views_are_not_rewrites() {
    let s = TestServer::start().await;
    s.put_bin("t", json!({})).await;
    let body = "{ \"amount\" : 10,\n  \"name\": \"Zoë\" }";
    s.client
        .post(s.url("/b/t/hook"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let r = latest(&s, "t").await;
    assert_eq!(r["body_encoding"], "utf8");
    assert_eq!(r["body"], body);
    assert_eq!(r["content_type"], "application/json");
    let one = s
        .get_json(&format!(
            "/api/bins/t/requests/{}",
            r["id"].as_str().unwrap()
        ))
        .await
        .1;
    assert_eq!(one, r);
    // By sequence number too.
    assert_eq!(s.get_json("/api/bins/t/requests/1").await.1["id"], r["id"]);
}

#[tokio::test]
async fn oversize_body_is_answered_413_and_stored_truncated() {
    let s = TestServer::with(
        StoreLimits {
            max_body_bytes: 1024,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    s.put_bin("big", json!({})).await;
    let r = s
        .client
        .post(s.url("/b/big"))
        .body(vec![b'x'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "body_too_large");
    let stored = latest(&s, "big").await;
    assert_eq!(stored["truncated"], true);
    assert_eq!(stored["body_size"], 1024);
    assert_eq!(stored["body"].as_str().unwrap().len(), 1024);
    // A body exactly at the limit is whole.
    let r = s
        .client
        .post(s.url("/b/big"))
        .body(vec![b'y'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(latest(&s, "big").await["truncated"], false);
    // A bin can lower its own limit.
    s.put_bin("small", json!({"limits": {"max_body_bytes": 10}}))
        .await;
    let r = s
        .client
        .post(s.url("/b/small"))
        .body("01234567890")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(latest(&s, "small").await["body"], "0123456789");
}

#[tokio::test]
async fn per_bin_limit_evicts_oldest_and_says_so() {
    let s = TestServer::start().await;
    s.put_bin("ring", json!({"limits": {"max_requests": 3}}))
        .await;
    for i in 1..=5 {
        s.client
            .post(s.url("/b/ring"))
            .body(format!("n{i}"))
            .send()
            .await
            .unwrap();
    }
    let (_, page) = s.get_json("/api/bins/ring/requests").await;
    let bodies: Vec<&str> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["n5", "n4", "n3"]);
    assert_eq!(page["evicted"]["by_bin_limit"], 2);
    let (_, bin) = s.get_json("/api/bins/ring").await;
    assert_eq!(bin["evicted"]["total"], 2);
    assert_eq!(bin["total_captured"], 5);
    assert_eq!(bin["request_count"], 3);
}

#[tokio::test]
async fn global_byte_budget_evicts_oldest_across_bins() {
    let s = TestServer::with(
        StoreLimits {
            max_body_bytes: 10_000,
            max_bytes: 30_000,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    s.put_bin("a", json!({})).await;
    s.put_bin("b", json!({})).await;
    for bin in ["a", "b", "a", "b"] {
        let r = s
            .client
            .post(s.url(&format!("/b/{bin}")))
            .body(vec![b'z'; 9000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Four ~9 KB requests do not fit in 30 KB: the oldest (a's first) went.
    let (_, a) = s.get_json("/api/bins/a").await;
    let (_, b) = s.get_json("/api/bins/b").await;
    assert_eq!(a["request_count"], 1);
    assert_eq!(a["evicted"]["by_byte_budget"], 1);
    assert_eq!(b["request_count"], 2);
    assert_eq!(b["evicted"]["total"], 0);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("hookbin_evictions_total{reason=\"byte_budget\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hookbin_requests_stored 3"), "{metrics}");
    assert!(metrics.contains("hookbin_captures_total 4"), "{metrics}");
}

#[tokio::test]
async fn named_bins_are_idempotent_and_keep_requests_on_update() {
    let s = TestServer::start().await;
    let r = s
        .client
        .put(s.url("/api/bins/ci-run-1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.client
        .post(s.url("/b/ci-run-1"))
        .body("x")
        .send()
        .await
        .unwrap();
    let r = s
        .client
        .put(s.url("/api/bins/ci-run-1"))
        .json(&json!({"response": {"status": 202}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bin: Value = r.json().await.unwrap();
    assert_eq!(bin["request_count"], 1);
    assert_eq!(bin["response"]["status"], 202);
    // POST with a taken name is a conflict, not an overwrite.
    let r = s
        .client
        .post(s.url("/api/bins"))
        .json(&json!({"name": "ci-run-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = s
        .client
        .delete(s.url("/api/bins/ci-run-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_json("/api/bins/ci-run-1").await.0, 404);
}

#[tokio::test]
async fn patch_changes_only_the_settings_it_names() {
    let s = TestServer::start().await;
    s.put_bin(
        "p",
        json!({"limits": {"max_requests": 5}, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "signature_scheme": "standard"}),
    )
    .await;
    s.client
        .post(s.url("/b/p"))
        .body("kept")
        .send()
        .await
        .unwrap();
    let r = s
        .client
        .patch(s.url("/api/bins/p"))
        .json(&json!({"response": {"status": 202}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bin: Value = r.json().await.unwrap();
    assert_eq!(bin["response"]["status"], 202);
    assert_eq!(bin["limits"]["max_requests"], 5, "limits kept");
    assert_eq!(bin["signature_scheme"], "standard", "the secret was kept");
    assert_eq!(bin["request_count"], 1);
    // The kept secret still checks captures: an unsigned request is flagged missing.
    s.client.post(s.url("/b/p")).body("x").send().await.unwrap();
    assert_eq!(latest(&s, "p").await["signature"]["status"], "missing");
    let r = s
        .client
        .patch(s.url("/api/bins/nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .client
        .patch(s.url("/api/bins/p"))
        .json(&json!({"limits": {"max_requests": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.get_json("/api/bins/p").await.1["limits"]["max_requests"],
        5
    );
}

#[tokio::test]
async fn custom_response_status_headers_body_and_delay() {
    let s = TestServer::start().await;
    s.put_bin(
        "custom",
        json!({"response": {"status": 418, "headers": [
            {"name": "X-Custom", "value": "1"}, {"name": "X-Custom", "value": "2"},
            {"name": "Content-Type", "value": "application/xml"}],
            "body": "<ok/>", "delay_ms": 300}}),
    )
    .await;
    let t = Instant::now();
    let r = s
        .client
        .post(s.url("/b/custom/x"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.status(), 418);
    let values: Vec<_> = r.headers().get_all("x-custom").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(r.headers()["content-type"], "application/xml");
    assert_eq!(r.text().await.unwrap(), "<ok/>");

    // The default names the request.
    s.put_bin("plain", json!({})).await;
    let ack: Value = s
        .client
        .get(s.url("/b/plain"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["request_id"], latest(&s, "plain").await["id"]);
}

#[tokio::test]
async fn listing_filters_cursors_and_deletes() {
    let s = TestServer::start().await;
    s.put_bin("f", json!({})).await;
    for (m, p, b) in [
        ("POST", "/orders", "order created"),
        ("GET", "/health", ""),
        ("POST", "/orders/2", "ORDER updated"),
        ("DELETE", "/orders/2", "gone"),
    ] {
        s.client
            .request(m.parse().unwrap(), s.url(&format!("/b/f{p}")))
            .body(b)
            .send()
            .await
            .unwrap();
    }
    let seqs = |v: &Value| -> Vec<u64> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect()
    };
    let (_, p) = s.get_json("/api/bins/f/requests?method=post").await;
    assert_eq!(seqs(&p), [3, 1]);
    let (_, p) = s.get_json("/api/bins/f/requests?path=/orders/*").await;
    assert_eq!(seqs(&p), [4, 3]);
    let (_, p) = s.get_json("/api/bins/f/requests?q=order%20").await;
    assert_eq!(seqs(&p), [3, 1]);
    let (_, p) = s.get_json("/api/bins/f/requests?limit=2").await;
    assert_eq!(seqs(&p), [4, 3]);
    assert_eq!(p["next_before"], 3);
    assert_eq!(p["matched"], 4);
    let (_, p) = s.get_json("/api/bins/f/requests?limit=2&before=3").await;
    assert_eq!(seqs(&p), [2, 1]);
    assert_eq!(p["next_before"], Value::Null);
    let first_id = p["requests"][1]["id"].as_str().unwrap().to_owned();
    let (_, p) = s
        .get_json(&format!("/api/bins/f/requests?after={first_id}"))
        .await;
    assert_eq!(seqs(&p), [4, 3, 2]);
    let (_, p) = s.get_json("/api/bins/f/requests?summary=true").await;
    assert!(p["requests"][0].get("body").is_none());

    let r = s
        .client
        .delete(s.url(&format!("/api/bins/f/requests/{first_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get_json(&format!("/api/bins/f/requests/{first_id}"))
            .await
            .0,
        404
    );
    let r: Value = s
        .client
        .delete(s.url("/api/bins/f/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["deleted"], 3);
    let (_, bin) = s.get_json("/api/bins/f").await;
    assert_eq!(bin["request_count"], 0);
    assert_eq!(bin["total_captured"], 4);
}

#[tokio::test]
async fn bad_input_gets_clear_json_errors_and_loses_nothing() {
    let s = TestServer::start().await;
    s.put_bin("keep", json!({})).await;
    s.client
        .post(s.url("/b/keep"))
        .body("precious")
        .send()
        .await
        .unwrap();

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            s.client
                .post(s.url("/api/bins"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid_json",
        ),
        (
            s.client
                .post(s.url("/api/bins"))
                .json(&json!({"name": "Bad Name"})),
            400,
            "invalid_bin_name",
        ),
        (
            s.client
                .post(s.url("/api/bins"))
                .json(&json!({"nmae": "x"})),
            422,
            "invalid_body",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"limits": {"max_requests": 0}})),
            400,
            "invalid_limits",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"limits": {"max_requests": 5000}})),
            400,
            "invalid_limits",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"response": {"status": 99}})),
            400,
            "invalid_response",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"response": {"delay_ms": 60000}})),
            400,
            "invalid_response",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"response": {"headers": [{"name": "bad name", "value": "x"}]}})),
            400,
            "invalid_response",
        ),
        (
            s.client
                .put(s.url("/api/bins/keep"))
                .json(&json!({"name": "other"})),
            400,
            "name_mismatch",
        ),
        (
            s.client.get(s.url("/api/bins/missing")),
            404,
            "bin_not_found",
        ),
        (
            s.client.get(s.url("/api/bins/keep/requests/123456")),
            404,
            "request_not_found",
        ),
        (
            s.client.get(s.url("/api/bins/keep/requests?limit=0")),
            400,
            "invalid_limit",
        ),
        (
            s.client
                .get(s.url("/api/bins/keep/requests?before=yesterday")),
            400,
            "invalid_cursor",
        ),
        (
            s.client.get(s.url("/api/bins/keep/requests?colour=red")),
            400,
            "invalid_query",
        ),
        (s.client.post(s.url("/b/missing")), 404, "bin_not_found"),
        (
            s.client.post(s.url("/b/NOT_VALID")),
            400,
            "invalid_bin_name",
        ),
        (s.client.get(s.url("/api/nothing-here")), 404, "not_found"),
    ];
    for (req, status, code) in cases {
        let r = req.send().await.unwrap();
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = latest(&s, "keep").await;
    assert_eq!(r["body"], "precious");
    let (_, bin) = s.get_json("/api/bins/keep").await;
    assert_eq!(
        bin["limits"]["max_requests"], 1000,
        "a rejected update changed nothing"
    );
}

#[tokio::test]
async fn bin_limit_is_refused_with_507() {
    let s = TestServer::with(
        StoreLimits {
            max_bins: 2,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    s.put_bin("one", json!({})).await;
    s.put_bin("two", json!({})).await;
    let r = s.client.post(s.url("/api/bins")).send().await.unwrap();
    assert_eq!(r.status(), 507);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_bins");
}

#[tokio::test]
async fn auto_create_makes_bins_on_first_capture() {
    let s = TestServer::with(
        StoreLimits::default(),
        ServerConfig {
            auto_create: true,
            ..Default::default()
        },
    )
    .await;
    let r = s
        .client
        .post(s.url("/b/fresh-name/x"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.get_json("/api/bins/fresh-name").await.1["request_count"],
        1
    );
    let r = s.client.post(s.url("/b/Not-OK")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn sse_streams_captures_live_per_bin_and_for_all_bins() {
    let s = TestServer::start().await;
    s.put_bin("live", json!({})).await;
    s.put_bin("other", json!({})).await;
    let mut bin = SseReader::open(&s.client, &s.url("/api/bins/live/stream"), None).await;
    let mut all = SseReader::open(&s.client, &s.url("/api/stream"), None).await;
    assert_eq!(bin.next().await.unwrap().event, "ready");
    assert_eq!(all.next().await.unwrap().event, "ready");

    s.client
        .post(s.url("/b/live/a"))
        .body("first")
        .send()
        .await
        .unwrap();
    s.client
        .post(s.url("/b/other"))
        .body("elsewhere")
        .send()
        .await
        .unwrap();
    s.client
        .post(s.url("/b/live/b"))
        .body("second")
        .send()
        .await
        .unwrap();
    let e = bin.next_named("request").await;
    assert_eq!(e.json()["body"], "first");
    assert_eq!(e.id.as_deref(), Some("1"));
    let e = bin.next_named("request").await;
    assert_eq!(
        e.json()["body"],
        "second",
        "the other bin's capture is not on this stream"
    );
    let bins: Vec<String> = [
        all.next_named("request").await,
        all.next_named("request").await,
        all.next_named("request").await,
    ]
    .iter()
    .map(|e| e.json()["bin"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(bins, ["live", "other", "live"]);

    // Reconnecting with Last-Event-ID replays what was missed.
    let mut again = SseReader::open(&s.client, &s.url("/api/bins/live/stream"), Some("1")).await;
    assert_eq!(again.next().await.unwrap().event, "ready");
    assert_eq!(again.next_named("request").await.json()["body"], "second");

    s.client
        .delete(s.url("/api/bins/live/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(bin.next_named("cleared").await.json()["bin"], "live");
    s.client
        .delete(s.url("/api/bins/live"))
        .send()
        .await
        .unwrap();
    bin.next_named("bin_deleted").await;
    assert!(
        bin.next().await.is_none(),
        "the stream of a deleted bin ends"
    );
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_resync_not_unbounded_memory() {
    let s = TestServer::start().await;
    s.put_bin("flood", json!({})).await;
    let mut slow = SseReader::open(&s.client, &s.url("/api/bins/flood/stream"), None).await;
    assert_eq!(slow.next().await.unwrap().event, "ready");
    // Do not read while ~40 MB of events pile up: more than socket buffers hold, so the server
    // side of the stream falls behind its 256-event buffer.
    let body = vec![b'q'; 40 * 1024];
    for _ in 0..1000 {
        let r = s
            .client
            .post(s.url("/b/flood"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut saw_resync = None;
    for _ in 0..2000 {
        let e = slow.next().await.expect("stream open");
        if e.event == "resync" {
            saw_resync = Some(e.json()["missed"].as_u64().unwrap());
            break;
        }
    }
    let missed = saw_resync.expect("a resync event");
    assert!(missed > 0);
    let metrics = s.metrics().await;
    assert!(metrics.contains("hookbin_sse_resyncs_total 1"), "{metrics}");
}

#[tokio::test]
async fn health_and_metrics() {
    let s = TestServer::start().await;
    let (status, h) = s.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], "ok");
    s.put_bin("m", json!({})).await;
    let _sub = SseReader::open(&s.client, &s.url("/api/bins/m/stream"), None).await;
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for line in [
        "hookbin_bins 1",
        "hookbin_sse_subscribers 1",
        "# TYPE hookbin_captures_total counter",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
}

#[tokio::test]
async fn graceful_shutdown_ends_streams_and_finishes_in_flight_requests() {
    let s = TestServer::start().await;
    s.put_bin(
        "slow",
        json!({"response": {"delay_ms": 2000, "body": "done"}}),
    )
    .await;
    let mut stream = SseReader::open(&s.client, &s.url("/api/bins/slow/stream"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "ready");
    let client = s.client.clone();
    let url = s.url("/b/slow");
    let in_flight = tokio::spawn(async move { client.post(url).body("x").send().await });
    // Wait until the request is captured (its response is then being delayed).
    stream.next_named("request").await;
    let t = Instant::now();
    let addr = s.addr;
    s.shutdown().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    let resp = within("in-flight response", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    assert!(stream.next().await.is_none(), "the live stream ended");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_is_captured_with_http2_header_names() {
    let s = TestServer::start().await;
    s.put_bin("h2", json!({})).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = within(
        "an HTTP/2 capture",
        h2.post(s.url("/b/h2/x?q=1"))
            .header("X-Case", "A")
            .body("over h2")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let req = latest(&s, "h2").await;
    assert_eq!(req["path"], "/x");
    assert_eq!(req["query"], "q=1");
    assert_eq!(req["body"], "over h2");
    // HTTP/2 sends names in lower case; the value is as sent.
    assert_eq!(find_header(&req, "x-case"), ["A"]);
}

#[tokio::test]
async fn the_server_sweeps_idle_bins_after_their_ttl() {
    let limits = StoreLimits {
        bin_ttl: Some(Duration::from_secs(1)),
        ..StoreLimits::default()
    };
    let s = TestServer::with(limits, ServerConfig::default()).await;
    s.put_bin("idle", json!({})).await;
    let r = s
        .client
        .post(s.url("/b/idle"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The sweeper runs inside `run` every second for a 1 s TTL: gone within a few seconds,
    // with nobody calling the store's expiry by hand.
    within("the idle bin to be swept", async {
        loop {
            let (status, _) = s.get_json("/api/bins/idle").await;
            if status == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(s.metric("hookbin_bins").await, 0);
    assert_eq!(s.metric("hookbin_requests_stored").await, 0);
}
