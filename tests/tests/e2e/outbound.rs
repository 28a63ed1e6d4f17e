//! Outbound requests (deliveries, test events, replays) under `--outbound-policy`: private
//! targets refused when a webhook is saved and when connecting (a name that resolves to
//! loopback), this server's own API refused whatever the policy, its bins always reachable, and
//! webhook URLs with control characters refused.

use std::collections::HashMap;
use std::net::IpAddr;

use bin_server::store::StoreLimits;
use bin_server::{AppState, ServerConfig};
use serde_json::{Value, json};

use crate::support::{TestServer, within};

/// The name the servers here resolve to loopback without DNS: it passes when a webhook is saved
/// (it is a name) and is caught when connecting, as a rebinding DNS would play it.
const REBIND: &str = "rebind.test";

/// A server with `policy`, `public_url`, and [`REBIND`] resolving to 127.0.0.1.
async fn server(policy: sender::OutboundPolicy, public_url: Option<&str>) -> TestServer {
    let config = sender::HooksConfig {
        outbound: sender::OutboundConfig {
            policy,
            hosts: HashMap::from([(REBIND.to_owned(), vec![IpAddr::from([127, 0, 0, 1])])]),
        },
        ..sender::HooksConfig::default()
    };
    let hooks = sender::Hooks::new(config).unwrap();
    let state = AppState::with_sender(
        StoreLimits::default(),
        ServerConfig {
            public_url: public_url.map(str::to_owned),
            ..ServerConfig::default()
        },
        hooks,
    );
    TestServer::with_state(state).await
}

async fn create_webhook(s: &TestServer, name: &str, url: &str) -> (u16, Value) {
    let r = s
        .client
        .post(s.url("/api/webhooks"))
        .json(&json!({"name": name, "url": url, "event": "payment_received"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn test_event(s: &TestServer, id: &str) -> api::TestOutcome {
    let r = within(
        "a test event",
        s.client
            .post(s.url(&format!("/api/webhooks/{id}/test")))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A loopback port something listens on, and a check that nothing connected to it. The
/// listener is non-blocking: `accept` answers at once from the kernel's queue, where a
/// connection sits as soon as the client's `connect` returned.
struct Receiver {
    listener: std::net::TcpListener,
    port: u16,
}

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        Self { listener, port }
    }

    fn assert_untouched(&self) {
        let e = self
            .listener
            .accept()
            .expect_err("a refused request connected");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}

#[tokio::test]
async fn public_only_refuses_webhooks_to_private_addresses_naming_them() {
    let s = server(sender::OutboundPolicy::PublicOnly, None).await;
    // Each URL, and the address (or name) the refusal must name.
    let cases = [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1"),
        ("http://[::ffff:7f00:1]:3000/hook", "::ffff:127.0.0.1"),
        ("http://2130706433/hook", "127.0.0.1"),
        ("http://0x7f.1/hook", "127.0.0.1"),
        ("http://[64:ff9b::a00:1]/hook", "64:ff9b::a00:1"),
        ("http://100.64.0.1/hook", "100.64.0.1"),
        ("http://[fd00::1]/hook", "fd00::1"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://0.0.0.0:3000/hook", "0.0.0.0"),
        ("http://localhost:3000/hook", "localhost"),
    ];
    for (url, address) in cases {
        let (status, body) = create_webhook(&s, "private", url).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_webhook", "{url}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(address), "{url}: {message}");
        assert!(message.contains("public-only"), "{url}: {message}");
    }
    let (_, list) = s.get_json("/api/webhooks").await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 0);

    // An update is checked the same way, and a refused one changes nothing.
    let (status, hook) = create_webhook(&s, "public", "https://hooks.example.com/x").await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap();
    let r = s
        .client
        .patch(s.url(&format!("/api/webhooks/{id}")))
        .json(&json!({"url": "http://192.168.1.1/admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("192.168.1.1"),
        "{body}"
    );
    let (_, now) = s.get_json(&format!("/api/webhooks/{id}")).await;
    assert_eq!(now["url"], "https://hooks.example.com/x");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
    let s = server(sender::OutboundPolicy::PublicOnly, None).await;
    let receiver = Receiver::start();
    let url = format!("http://{REBIND}:{}/hook", receiver.port);
    let (status, hook) = create_webhook(&s, "rebinding", &url).await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap();

    // A test event: the outcome names the address and the policy.
    let out = test_event(&s, id).await;
    assert!(!out.delivered);
    assert_eq!(out.status, None);
    let error = out.error.unwrap();
    assert!(error.contains("127.0.0.1"), "{error}");
    assert!(error.contains("public-only"), "{error}");

    // A delivery: failed after one attempt (the policy will refuse it again), logged.
    let r = s
        .client
        .post(s.url("/api/events/payment_received/emit"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let emitted: api::EmitOut = r.json().await.unwrap();
    let message = &emitted.message_ids[0];
    let failed = within("the delivery to fail", async {
        loop {
            let (_, m) = s.get_json(&format!("/api/deliveries/{message}")).await;
            let m: api::MessageOut = serde_json::from_value(m).unwrap();
            if m.state == api::MessageState::Failed {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(failed.attempts, 1);
    assert!(failed.next_attempt_at.is_none());
    let (_, log) = s.get_json(&format!("/api/webhooks/{id}/deliveries")).await;
    let log: api::DeliveryLog = serde_json::from_value(log).unwrap();
    let delivery = log
        .attempts
        .iter()
        .find(|a| a.trigger == api::AttemptTrigger::Scheduled)
        .unwrap();
    let error = delivery.error.as_deref().unwrap();
    assert!(
        error.contains("127.0.0.1") && error.contains("public-only"),
        "{error}"
    );

    // A replay to `localhost`, through the system's resolver: the same refusal.
    s.put_bin("src", json!({})).await;
    let ack: Value = s
        .client
        .post(s.url("/b/src"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = ack["request_id"].as_str().unwrap();
    let out = replay(
        &s,
        "src",
        rid,
        &format!("http://localhost:{}/hook", receiver.port),
    )
    .await;
    let error = out.error.unwrap();
    assert!(
        (error.contains("127.0.0.1") || error.contains("::1")) && error.contains("public-only"),
        "{error}"
    );
    assert_eq!(out.status, None);

    receiver.assert_untouched();
    // Each refusal when sending is counted: the test event, the delivery, the replay.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("hookbin_outbound_refused_total 3"),
        "{metrics}"
    );
}

async fn replay(s: &TestServer, bin: &str, id: &str, url: &str) -> api::ReplayOut {
    let r = within(
        "a replay",
        s.client
            .post(s.url(&format!("/api/bins/{bin}/requests/{id}/replay")))
            .json(&json!({"url": url, "append_path": false}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn this_servers_api_is_never_a_target_even_under_all() {
    let s = server(sender::OutboundPolicy::All, None).await;
    s.put_bin("victim", json!({})).await;
    s.put_bin("src", json!({})).await;
    // A captured DELETE: replayed to the API it would delete the bin.
    let ack: Value = s
        .client
        .delete(s.url("/b/src"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = ack["request_id"].as_str().unwrap();
    let port = s.addr.port();
    for target in [
        s.url("/api/bins/victim"),
        format!("http://localhost:{port}/api/bins/victim"),
        format!("http://[::ffff:127.0.0.1]:{port}/api/bins/victim"),
        format!("http://2130706433:{port}/api/bins/victim"),
        format!("http://0.0.0.0:{port}/api/bins/victim"),
        // Dot segments are resolved before the check.
        s.url("/b/src/../../api/bins/victim"),
        // A name that resolves to this server, on its port, checked when connecting.
        format!("http://{REBIND}:{port}/api/bins/victim"),
    ] {
        let out = replay(&s, "src", rid, &target).await;
        let error = out
            .error
            .unwrap_or_else(|| panic!("{target} was not refused"));
        assert!(error.contains("this server"), "{target}: {error}");
        assert!(error.contains("--outbound-policy all"), "{target}: {error}");
        assert_eq!(out.status, None, "{target}");
    }
    let (status, _) = s.get_json("/api/bins/victim").await;
    assert_eq!(status, 200, "the bin was deleted");

    // A webhook to the API is refused when saved (read: its secrets).
    let (status, body) = create_webhook(&s, "self", &s.url("/api/webhooks")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this server"),
        "{body}"
    );
    // Loopback on another port is another app: `all` allows it.
    let other = Receiver::start();
    let (status, body) = create_webhook(
        &s,
        "local app",
        &format!("http://127.0.0.1:{}/api/webhooks", other.port),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_webhook_to_this_servers_bin_is_delivered_under_public_only() {
    let public = "https://hooks.example.test";
    let s = server(sender::OutboundPolicy::PublicOnly, Some(public)).await;
    s.put_bin("inbox", json!({})).await;
    // As the UI's "Use a new bin" makes it, by the bound address; by `--public-url` (served
    // by a proxy the server cannot see: sent straight to the server instead); and by a name
    // that resolves to the server.
    let urls = [
        s.url("/b/inbox/bound"),
        format!("{public}/b/inbox/public"),
        format!("http://{REBIND}:{}/b/inbox/named", s.addr.port()),
    ];
    for (i, url) in urls.iter().enumerate() {
        let (status, hook) = create_webhook(&s, &format!("own bin {i}"), url).await;
        assert_eq!(status, 201, "{url}: {hook}");
        let out = test_event(&s, hook["id"].as_str().unwrap()).await;
        assert!(out.delivered, "{url}: {:?}", out.error);
        assert_eq!(out.status, Some(200), "{url}");
    }
    let (_, page) = s.get_json("/api/bins/inbox/requests").await;
    let requests = page["requests"].as_array().unwrap();
    let paths: Vec<&str> = requests
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/named", "/public", "/bound"]);
    // The captured Host is the one the webhook's URL names.
    let rid = requests[1]["id"].as_str().unwrap();
    let (_, full) = s.get_json(&format!("/api/bins/inbox/requests/{rid}")).await;
    let host = full["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case("host"))
        .unwrap()["value"]
        .clone();
    assert_eq!(host, "hooks.example.test");

    // Its API under the public URL is refused like any other way to name it.
    let (status, body) = create_webhook(&s, "api", &format!("{public}/api/webhooks")).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn webhook_urls_with_control_characters_are_refused() {
    let s = TestServer::start().await;
    for url in [
        "http://a.example/x\r\nX-Injected: 1",
        "http://a.example/\nx",
        "http://a.example/x\r\n",
        "http://a.example/\tx",
    ] {
        let (status, body) = create_webhook(&s, "crlf", url).await;
        assert_eq!(status, 422, "{url:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_webhook");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control characters"),
            "{body}"
        );
    }
    let (status, hook) = create_webhook(&s, "fine", "http://a.example/x").await;
    assert_eq!(status, 201);
    let id = hook["id"].as_str().unwrap();
    let r = s
        .client
        .patch(s.url(&format!("/api/webhooks/{id}")))
        .json(&json!({"url": "http://a.example/y\r\nX-Injected: 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (_, now) = s.get_json(&format!("/api/webhooks/{id}")).await;
    assert_eq!(now["url"], "http://a.example/x");
}
