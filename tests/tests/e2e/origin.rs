//! The browser and the origin: bin responses are sandboxed, a separate capture origin serves
//! captures only, the API refuses cross-site writes and foreign Host names (DNS rebinding), the
//! URLs it returns are pinned to the bind address, and every API error is the JSON error body.

use bin_server::ServerConfig;
use bin_server::store::StoreLimits;
use serde_json::{Value, json};

use crate::support::{TestServer, raw_http};

/// A response read off a raw socket.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one request with exactly these head lines (Host included) and an optional body, on a
/// fresh connection, and parses the answer (Content-Length or close-delimited bodies).
async fn send(s: &TestServer, request_line: &str, lines: &[&str], body: &str) -> Raw {
    let mut req = format!("{request_line}\r\n");
    for l in lines {
        req.push_str(l);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body);
    let out = raw_http(s.addr, req.as_bytes()).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn host(s: &TestServer) -> String {
    format!("Host: {}", s.addr)
}

fn assert_sandboxed(r: &reqwest::Response, what: &str) {
    let csp = r
        .headers()
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(csp, ["sandbox"], "{what}: the sandbox CSP, once");
    assert_eq!(
        r.headers()["x-content-type-options"],
        "nosniff",
        "{what}: nosniff"
    );
}

async fn bin_count(s: &TestServer) -> usize {
    s.get_json("/api/bins").await.1["bins"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn every_capture_response_is_sandboxed_and_never_sniffed() {
    let s = TestServer::with(
        StoreLimits {
            max_body_bytes: 16,
            ..Default::default()
        },
        ServerConfig::default(),
    )
    .await;
    s.put_bin(
        "html",
        json!({"response": {"status": 200,
            "headers": [{"name": "Content-Type", "value": "text/html; charset=utf-8"}],
            "body": "<script>fetch('/api/webhooks').then(r => r.text()).then(alert)</script>"}}),
    )
    .await;
    let r = s.client.post(s.url("/b/html")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_sandboxed(&r, "a custom HTML response");
    assert!(r.text().await.unwrap().starts_with("<script>"));

    s.put_bin("plain", json!({})).await;
    let r = s.client.post(s.url("/b/plain/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_sandboxed(&r, "the default acknowledgement");
    let r = s.client.get(s.url("/b/missing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_sandboxed(&r, "an unknown bin");
    let r = s.client.get(s.url("/b/Not-Valid")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_sandboxed(&r, "a bad bin name");
    let r = s
        .client
        .post(s.url("/b/plain"))
        .body("x".repeat(17))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_sandboxed(&r, "a body over the limit");

    // The raw body route serves captured bytes from the API's origin: sandboxed too.
    let (_, page) = s.get_json("/api/bins/plain/requests?limit=1").await;
    let id = page["requests"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .client
        .get(s.url(&format!("/api/bins/plain/requests/{id}/raw")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.split(';').any(|d| d.trim() == "sandbox"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_configured_header_cannot_drop_the_sandbox() {
    let s = TestServer::start().await;
    s.put_bin("b", json!({"response": {"status": 201}})).await;
    for (name, value) in [
        ("Content-Security-Policy", "default-src *"),
        ("content-security-policy", ""),
        ("X-Content-Type-Options", "sniff"),
    ] {
        for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
            let r = s
                .client
                .request(method.clone(), s.url("/api/bins/b"))
                .json(&json!({"response": {"headers": [{"name": name, "value": value}]}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{method} {name}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "invalid_response", "{e}");
            assert!(
                e["error"]["message"].as_str().unwrap().contains(name),
                "{e}"
            );
        }
    }
    let (_, bin) = s.get_json("/api/bins/b").await;
    assert_eq!(bin["response"]["status"], 201, "nothing changed");
    let r = s.client.post(s.url("/b/b")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_sandboxed(&r, "after refused updates");
}

#[tokio::test]
async fn a_capture_origin_serves_captures_and_health_only() {
    let s = TestServer::with(
        StoreLimits::default(),
        ServerConfig {
            capture_url: Some("http://captures.example.test".into()),
            ..Default::default()
        },
    )
    .await;
    let bin = s.put_bin("hooks", json!({})).await;
    assert_eq!(bin["url"], "http://captures.example.test/b/hooks");

    let on_capture = "Host: captures.example.test";
    let r = send(&s, "POST /b/hooks/x HTTP/1.1", &[on_capture], "hi").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["bin"], "hooks");
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    let r = send(&s, "GET /healthz HTTP/1.1", &[on_capture], "").await;
    assert_eq!(r.status, 200);
    for target in [
        "GET /api/bins",
        "GET /api/bins/hooks/requests",
        "GET /api/webhooks",
        "GET /api/stream",
        "GET /metrics",
        "GET /",
        "GET /bins/hooks",
    ] {
        let r = send(&s, &format!("{target} HTTP/1.1"), &[on_capture], "").await;
        assert_eq!(r.status, 404, "{target}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "not_found", "{target}");
    }
    let r = send(
        &s,
        "DELETE /api/bins/hooks HTTP/1.1",
        &[on_capture, "Origin: http://captures.example.test"],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    // The port is part of the origin: the same name with the default port given is the same.
    let r = send(
        &s,
        "GET /api/bins HTTP/1.1",
        &["Host: CAPTURES.example.test:80"],
        "",
    )
    .await;
    assert_eq!(r.status, 404);

    // The API on the server's own address still answers, and the capture arrived.
    let (status, page) = s.get_json("/api/bins/hooks/requests").await;
    assert_eq!(status, 200);
    assert_eq!(page["requests"][0]["path"], "/x");
    assert_eq!(page["requests"][0]["body"], "hi");
}

#[tokio::test]
async fn cross_site_writes_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    s.put_bin("kept", json!({"response": {"status": 202}}))
        .await;
    let evil = "Origin: http://evil.example";
    let h = host(&s);
    let own = format!("Origin: http://{}", s.addr);
    let cases: Vec<(&str, Vec<&str>, &str, u16, &str)> = vec![
        // The reproduction: a form-like simple request from another site.
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, evil, "Content-Type: text/plain"],
            "{}",
            403,
            "forbidden_origin",
        ),
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, evil, "Content-Type: application/json"],
            "{}",
            403,
            "forbidden_origin",
        ),
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, evil],
            "",
            403,
            "forbidden_origin",
        ),
        // A sandboxed document (a bin's own response) has the opaque origin "null".
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, "Origin: null", "Content-Type: application/json"],
            "{}",
            403,
            "forbidden_origin",
        ),
        // Another port of the same host is another origin.
        (
            "POST /api/bins HTTP/1.1",
            vec![
                &h,
                "Origin: http://127.0.0.1:1",
                "Content-Type: application/json",
            ],
            "{}",
            403,
            "forbidden_origin",
        ),
        (
            "POST /api/bins HTTP/1.1",
            vec![
                &h,
                "Sec-Fetch-Site: cross-site",
                "Content-Type: application/json",
            ],
            "{}",
            403,
            "forbidden_origin",
        ),
        (
            "PUT /api/bins/kept HTTP/1.1",
            vec![&h, evil, "Content-Type: application/json"],
            "{}",
            403,
            "forbidden_origin",
        ),
        (
            "PATCH /api/bins/kept HTTP/1.1",
            vec![&h, evil, "Content-Type: application/json"],
            r#"{"response":{"status":500}}"#,
            403,
            "forbidden_origin",
        ),
        (
            "DELETE /api/bins/kept HTTP/1.1",
            vec![&h, evil],
            "",
            403,
            "forbidden_origin",
        ),
        (
            "POST /api/webhooks HTTP/1.1",
            vec![&h, evil, "Content-Type: text/plain"],
            r#"{"name":"x1","url":"http://127.0.0.1:9/","event":"payment_received"}"#,
            403,
            "forbidden_origin",
        ),
        // Same origin, or no Origin at all (curl, the CLI): a body must be JSON.
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, "Content-Type: text/plain"],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "POST /api/bins HTTP/1.1",
            vec![&h, "Content-Type: application/x-www-form-urlencoded"],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "PUT /api/bins/kept HTTP/1.1",
            vec![&h],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "PATCH /api/bins/kept HTTP/1.1",
            vec![&h, &own, "Content-Type: multipart/form-data; boundary=x"],
            "{}",
            415,
            "unsupported_media_type",
        ),
    ];
    for (line, headers, body, status, code) in cases {
        let r = send(&s, line, &headers, body).await;
        assert_eq!(r.status, status, "{line} {headers:?}: {}", r.body);
        assert_eq!(
            r.json()["error"]["code"],
            code,
            "{line} {headers:?}: {}",
            r.body
        );
    }
    assert_eq!(bin_count(&s).await, 1, "no bin was created or deleted");
    let (_, bin) = s.get_json("/api/bins/kept").await;
    assert_eq!(bin["response"]["status"], 202, "the bin is unchanged");
    let (_, hooks) = s.get_json("/api/webhooks").await;
    assert_eq!(hooks["webhooks"].as_array().unwrap().len(), 0);
    let metrics = metrics(&s).await;
    assert!(
        metrics.contains("hookbin_api_refused_total{reason=\"forbidden_origin\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookbin_api_refused_total{reason=\"unsupported_media_type\"} 4"),
        "{metrics}"
    );
}

async fn metrics(s: &TestServer) -> String {
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn same_origin_and_command_line_writes_still_work() {
    let s = TestServer::start().await;
    let h = host(&s);
    let own = format!("Origin: http://{}", s.addr);
    // The UI: same origin, JSON bodies or none.
    let r = send(
        &s,
        "POST /api/bins HTTP/1.1",
        &[
            &h,
            &own,
            "Sec-Fetch-Site: same-origin",
            "Content-Type: application/json",
        ],
        r#"{"name":"ui"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        &s,
        "POST /api/bins HTTP/1.1",
        &[&h, &own, "Content-Length: 0"],
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = send(
        &s,
        "PATCH /api/bins/ui HTTP/1.1",
        &[&h, &own, "Content-Type: application/json; charset=utf-8"],
        r#"{"response":{"status":204}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Called as localhost: that Origin is this server too.
    let port = s.addr.port();
    let r = send(
        &s,
        "PUT /api/bins/local HTTP/1.1",
        &[
            &format!("Host: localhost:{port}"),
            &format!("Origin: http://localhost:{port}"),
            "Content-Type: application/json",
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A typed-in address (Sec-Fetch-Site: none) is not cross-site.
    let r = send(
        &s,
        "DELETE /api/bins/local HTTP/1.1",
        &[&h, "Sec-Fetch-Site: none"],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // The CLI's client (no Origin, JSON bodies).
    let cli = bin_server::cli::client::Client::new(&s.base).unwrap();
    let made = cli
        .create_bin(&api::BinIn {
            name: Some("from-cli".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(made.url, format!("{}/b/from-cli", s.base));
    // reqwest without a body, as scripts do.
    let r = s.client.post(s.url("/api/bins")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .delete(s.url("/api/bins/from-cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The sender's client (webhooks).
    let hooks =
        sender::client::ServerClient::new(&s.base, std::time::Duration::from_secs(10)).unwrap();
    hooks
        .create_webhook(&api::WebhookIn {
            name: "Billing".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event: Some("payment_received".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bin_count(&s).await, 3);
}

#[tokio::test]
async fn a_foreign_host_name_is_refused_but_captures_stay_open() {
    let s = TestServer::start().await;
    s.put_bin("open", json!({})).await;
    let port = s.addr.port();
    let rebound = format!("Host: attacker.example:{port}");
    for target in [
        "GET /api/bins",
        "GET /api/webhooks",
        "GET /api/bins/open/requests",
        "GET /metrics",
        "GET /",
    ] {
        let r = send(&s, &format!("{target} HTTP/1.1"), &[&rebound], "").await;
        assert_eq!(r.status, 421, "{target}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "host_not_allowed", "{target}");
    }
    let r = send(
        &s,
        "POST /api/bins HTTP/1.1",
        &[
            &rebound,
            &format!("Origin: http://attacker.example:{port}"),
            "Content-Type: application/json",
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.body);
    assert_eq!(bin_count(&s).await, 1);
    let metrics = metrics(&s).await;
    assert!(
        metrics.contains("hookbin_api_refused_total{reason=\"host_not_allowed\"} 6"),
        "{metrics}"
    );
    // Captures and the health check answer whatever the Host.
    let r = send(&s, "POST /b/open/x HTTP/1.1", &[&rebound], "data").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&s, "GET /healthz HTTP/1.1", &[&rebound], "").await;
    assert_eq!(r.status, 200);
    // The server's own names.
    for own in [
        format!("Host: localhost:{port}"),
        format!("Host: LOCALHOST:{port}"),
        format!("Host: {}", s.addr),
        "Host: 127.0.0.1".to_owned(),
    ] {
        let r = send(&s, "GET /api/bins HTTP/1.1", &[&own], "").await;
        assert_eq!(r.status, 200, "{own}: {}", r.body);
    }
}

#[tokio::test]
async fn returned_urls_are_pinned_to_the_bind_address_whatever_the_host() {
    let s = TestServer::start().await;
    let port = s.addr.port();
    let want = format!("http://{}/b/pinned", s.addr);
    for host in [
        format!("Host: localhost:{port}"),
        "Host: 127.0.0.1:1".to_owned(),
        "Host: 127.0.0.2".to_owned(),
    ] {
        let r = send(
            &s,
            "PUT /api/bins/pinned HTTP/1.1",
            &[&host, "Content-Type: application/json"],
            "{}",
        )
        .await;
        assert!(r.status == 200 || r.status == 201, "{host}: {}", r.body);
        assert_eq!(r.json()["url"], want, "{host}");
        let r = send(&s, "GET /api/bins HTTP/1.1", &[&host], "").await;
        assert_eq!(r.json()["bins"][0]["url"], want, "{host}");
    }
}

#[tokio::test]
async fn method_and_extractor_errors_are_the_json_error_body() {
    let s = TestServer::start().await;
    s.put_bin("x", json!({})).await;
    let h = host(&s);
    let cases: Vec<(&str, u16, &str)> = vec![
        ("POST /api/bins/x HTTP/1.1", 405, "method_not_allowed"),
        ("OPTIONS /api/bins HTTP/1.1", 405, "method_not_allowed"),
        ("DELETE /api/webhooks HTTP/1.1", 405, "method_not_allowed"),
        ("GET /api/bins/%ff HTTP/1.1", 400, "invalid_path"),
        ("GET /api/bins/%ff/requests/1 HTTP/1.1", 400, "invalid_path"),
        (
            "GET /api/webhooks/x/deliveries?limit=-1 HTTP/1.1",
            400,
            "invalid_query",
        ),
        (
            "GET /api/bins/x/requests/1/raw?download=maybe HTTP/1.1",
            400,
            "invalid_query",
        ),
    ];
    for (line, status, code) in cases {
        let r = send(&s, line, &[&h], "").await;
        assert_eq!(r.status, status, "{line}: {}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{line}: {:?}",
            r.headers
        );
        let e = r.json();
        assert_eq!(e["error"]["code"], code, "{line}: {e}");
        assert!(
            !e["error"]["message"].as_str().unwrap().is_empty(),
            "{line}"
        );
        if status == 405 {
            assert!(r.header("allow").is_some(), "{line}: Allow kept");
        }
    }
    let r = send(&s, "POST /api/bins/x HTTP/1.1", &[&h], "").await;
    let allow = r.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("PATCH"), "{allow}");
}

#[tokio::test]
async fn patch_with_a_response_array_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    s.put_bin(
        "p",
        json!({"response": {"status": 418, "body": "teapot"}, "limits": {"max_requests": 7}}),
    )
    .await;
    for (method, body) in [
        ("PATCH", json!({"response": []})),
        ("PATCH", json!({"limits": []})),
        ("PATCH", json!({"response": {"headers": [["X-A", "1"]]}})),
        ("PATCH", json!([])),
        ("PUT", json!({"response": []})),
        ("PUT", json!([])),
        ("POST", json!([])),
        ("PATCH", json!({"response": {"colour": "red"}})),
    ] {
        let url = if method == "POST" {
            s.url("/api/bins")
        } else {
            s.url("/api/bins/p")
        };
        let r = s
            .client
            .request(method.parse().unwrap(), url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{method} {body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_body", "{method} {body}: {e}");
    }
    // Not JSON at all stays a 400.
    let r = s
        .client
        .patch(s.url("/api/bins/p"))
        .header("content-type", "application/json")
        .body("{\"response\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_json");

    let (_, bin) = s.get_json("/api/bins/p").await;
    assert_eq!(bin["response"]["status"], 418);
    assert_eq!(bin["response"]["body"], "teapot");
    assert_eq!(bin["limits"]["max_requests"], 7);
    assert_eq!(bin_count(&s).await, 1);
}
