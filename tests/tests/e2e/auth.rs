//! `--auth-token`, bin tokens and `--public-bins` end to end: every API route family and
//! `/metrics` refuse a missing or wrong token and open with the right one, captures, `/healthz`
//! and the UI stay open, the browser session cookie opens a live stream and a mutation, a bin's
//! token opens that bin and nothing else, webhook secrets reach the admin only, and the clients'
//! `--token` (`bin-server new|wait|export|forward`, the sender's client).

use std::time::Duration;

use bin_server::ServerConfig;
use bin_server::routes::auth::AuthToken;
use bin_server::store::StoreLimits;
use clap::Parser;
use serde_json::{Value, json};

use crate::support::{SseReader, TestServer, within};

const ADMIN: &str = "admin-token-0123456789";

async fn server(public_bins: bool) -> TestServer {
    TestServer::with(
        StoreLimits::default(),
        ServerConfig {
            auth_token: Some(AuthToken::parse(ADMIN).unwrap()),
            public_bins,
            ..ServerConfig::default()
        },
    )
    .await
}

/// What a call answered: status, `WWW-Authenticate`, `Set-Cookie`, and the body as JSON (`Null`
/// when it is not JSON). Streams are not read: their status and headers say enough.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    set_cookie: Option<String>,
    json: Value,
}

/// One call with `Authorization: Bearer token` (when given) and extra headers.
async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.client.request(method.clone(), s.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = within(&format!("{method} {path}"), req.send())
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let status = resp.status().as_u16();
    let www_authenticate = header("www-authenticate");
    let set_cookie = header("set-cookie");
    let streaming = header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
    let json = if streaming {
        Value::Null
    } else {
        let bytes = within("a body", resp.bytes()).await.unwrap();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Answer {
        status,
        www_authenticate,
        set_cookie,
        json,
    }
}

fn assert_unauthorized(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.json);
    assert_eq!(a.json["error"]["code"], "unauthorized", "{what}");
    assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"), "{what}");
}

/// A bin `ci` with one captured request, a webhook posting to it and one delivery message;
/// returns (request id, webhook id, message id, event slug).
async fn fixture(s: &TestServer) -> (String, String, String, String) {
    let bin = call(s, "PUT", "/api/bins/ci", Some(ADMIN), &[], Some(json!({}))).await;
    assert_eq!(bin.status, 201, "{}", bin.json);
    let captured = call(s, "POST", "/b/ci/x", None, &[], Some(json!({"a": 1}))).await;
    assert_eq!(captured.status, 200, "captures need no token");
    let events = call(s, "GET", "/api/events", Some(ADMIN), &[], None).await;
    let slug = events.json["events"][0]["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = call(
        s,
        "POST",
        "/api/webhooks",
        Some(ADMIN),
        &[],
        Some(json!({"name": "hook", "url": s.url("/b/ci"), "events": [slug]})),
    )
    .await;
    assert_eq!(hook.status, 201, "{}", hook.json);
    let emitted = call(
        s,
        "POST",
        &format!("/api/events/{slug}/emit"),
        Some(ADMIN),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(emitted.status, 202, "{}", emitted.json);
    (
        captured.json["request_id"].as_str().unwrap().to_owned(),
        hook.json["id"].as_str().unwrap().to_owned(),
        emitted.json["messages"][0]["message_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        slug,
    )
}

/// Every route family of the API, with what the admin gets; destructive calls last.
fn routes(
    s: &TestServer,
    request: &str,
    hook: &str,
    message: &str,
    slug: &str,
) -> Vec<(&'static str, String, Option<Value>, u16)> {
    let replay_to = json!({"url": s.url("/b/ci"), "append_path": false});
    vec![
        ("GET", "/metrics".into(), None, 200),
        ("GET", "/api/bins".into(), None, 200),
        ("POST", "/api/bins".into(), Some(json!({})), 201),
        ("GET", "/api/bins/ci".into(), None, 200),
        ("PUT", "/api/bins/ci".into(), Some(json!({})), 200),
        ("PATCH", "/api/bins/ci".into(), Some(json!({})), 200),
        ("GET", "/api/bins/ci/requests".into(), None, 200),
        ("GET", "/api/bins/ci/requests/1".into(), None, 200),
        ("GET", "/api/bins/ci/requests/1/raw".into(), None, 200),
        ("GET", "/api/bins/ci/requests/1/curl".into(), None, 200),
        (
            "POST",
            "/api/bins/ci/requests/1/replay".into(),
            Some(replay_to),
            200,
        ),
        ("GET", "/api/bins/ci/stream".into(), None, 200),
        ("GET", "/api/bins/ci/smee".into(), None, 200),
        ("GET", "/api/stream".into(), None, 200),
        ("GET", "/api/bins/ci/wait?timeout=0".into(), None, 200),
        ("GET", "/api/bins/ci/export?format=har".into(), None, 200),
        ("GET", "/api/events".into(), None, 200),
        ("GET", "/api/webhooks".into(), None, 200),
        ("GET", format!("/api/webhooks/{hook}"), None, 200),
        (
            "PATCH",
            format!("/api/webhooks/{hook}"),
            Some(json!({"name": "hook2"})),
            200,
        ),
        (
            "POST",
            format!("/api/webhooks/{hook}/test"),
            Some(json!({})),
            200,
        ),
        ("GET", format!("/api/webhooks/{hook}/deliveries"), None, 200),
        ("GET", format!("/api/deliveries/{message}"), None, 200),
        ("GET", "/api/deliveries/stream".into(), None, 200),
        (
            "POST",
            format!("/api/events/{slug}/emit"),
            Some(json!({})),
            202,
        ),
        (
            "POST",
            "/api/webhooks".into(),
            Some(json!({"name": "other", "url": s.url("/b/ci"), "events": [slug]})),
            201,
        ),
        ("GET", "/api/nope".into(), None, 404),
        (
            "DELETE",
            format!("/api/bins/ci/requests/{request}"),
            None,
            204,
        ),
        ("DELETE", "/api/bins/ci/requests".into(), None, 200),
        ("DELETE", format!("/api/webhooks/{hook}"), None, 200),
        ("DELETE", "/api/bins/ci".into(), None, 204),
    ]
}

#[tokio::test]
async fn every_api_route_and_metrics_need_the_admin_token() {
    let s = server(false).await;
    let (request, hook, message, slug) = fixture(&s).await;
    let table = routes(&s, &request, &hook, &message, &slug);
    for (method, path, body, _) in &table {
        let what = format!("{method} {path}");
        let none = call(&s, method, path, None, &[], body.clone()).await;
        assert_unauthorized(&none, &format!("{what} without a token"));
        let wrong = call(
            &s,
            method,
            path,
            Some("wrong-token-0123456789"),
            &[],
            body.clone(),
        )
        .await;
        assert_unauthorized(&wrong, &format!("{what} with a wrong token"));
        let basic = call(
            &s,
            method,
            path,
            None,
            &[("authorization", &format!("Basic {ADMIN}"))],
            body.clone(),
        )
        .await;
        assert_unauthorized(&basic, &format!("{what} with another scheme"));
    }
    // Nothing refused changed anything: every route still answers the admin as it should.
    for (method, path, body, want) in &table {
        let ok = call(&s, method, path, Some(ADMIN), &[], body.clone()).await;
        assert_eq!(
            ok.status, *want,
            "{method} {path} with the admin token: {}",
            ok.json
        );
    }
}

#[tokio::test]
async fn captures_healthz_and_the_ui_shell_stay_open() {
    let s = server(true).await;
    call(
        &s,
        "PUT",
        "/api/bins/open",
        Some(ADMIN),
        &[],
        Some(json!({})),
    )
    .await;
    let captured = call(
        &s,
        "POST",
        "/b/open/deep/path?q=1",
        None,
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(captured.status, 200);
    assert_eq!(captured.json["ok"], true);
    let health = call(&s, "GET", "/healthz", None, &[], None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    for page in ["/", "/bins/open", "/webhooks"] {
        let r = within("the UI shell", s.client.get(s.url(page)).send())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{page}"
        );
    }
    // An unknown page outside the API is the usual 404, not a 401.
    let unknown = call(&s, "GET", "/nope", None, &[], None).await;
    assert_eq!(unknown.status, 404);
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_session_cookie_opens_a_live_stream_and_a_mutation() {
    let s = server(false).await;
    call(
        &s,
        "PUT",
        "/api/bins/live",
        Some(ADMIN),
        &[],
        Some(json!({})),
    )
    .await;

    let refused = call(&s, "POST", "/api/session", None, &[], None).await;
    assert_unauthorized(&refused, "a session without the token");
    let refused = call(
        &s,
        "POST",
        "/api/session",
        Some("wrong-token-0123456789"),
        &[],
        None,
    )
    .await;
    assert_unauthorized(&refused, "a session with a wrong token");

    let login = call(&s, "POST", "/api/session", Some(ADMIN), &[], None).await;
    assert_eq!(login.status, 204);
    let set_cookie = login.set_cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(ADMIN),
        "the cookie is not the token: {set_cookie}"
    );
    let cookie = cookie_pair(&set_cookie);
    assert!(cookie.starts_with("hookbin_session="), "{cookie}");

    // EventSource sends cookies, not headers: the stream opens with the cookie alone.
    let with_cookie = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::COOKIE,
                reqwest::header::HeaderValue::from_str(&cookie).unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let mut stream = SseReader::open(&with_cookie, &s.url("/api/bins/live/stream"), None).await;
    stream.next_named("ready").await;
    let mut all = SseReader::open(&with_cookie, &s.url("/api/stream"), None).await;
    all.next_named("ready").await;
    call(&s, "POST", "/b/live", None, &[], Some(json!({"n": 1}))).await;
    assert_eq!(
        stream.next_named("request").await.json()["body"],
        "{\"n\":1}"
    );
    assert_eq!(all.next_named("request").await.json()["bin"], "live");

    // A mutation with the cookie.
    let cleared = call(
        &s,
        "DELETE",
        "/api/bins/live/requests",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(cleared.status, 200, "{}", cleared.json);
    assert_eq!(cleared.json["deleted"], 1);
    assert_eq!(stream.next_named("cleared").await.json()["bin"], "live");

    // A session cannot extend itself, and a forged one opens nothing.
    let renew = call(
        &s,
        "POST",
        "/api/session",
        None,
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_unauthorized(&renew, "a session renewed with the cookie alone");
    let (_, value) = cookie.split_once('=').unwrap();
    let (expiry, mac) = value.split_once('.').unwrap();
    let later: u64 = expiry.parse::<u64>().unwrap() + 86_400;
    for forged in [
        format!("hookbin_session={later}.{mac}"),
        "hookbin_session=99999999999.AAAA".to_owned(),
        format!("other={value}"),
    ] {
        let a = call(&s, "GET", "/api/bins", None, &[("cookie", &forged)], None).await;
        assert_unauthorized(&a, &forged);
    }

    // Logging out clears the cookie in the browser.
    let logout = call(&s, "DELETE", "/api/session", None, &[], None).await;
    assert_eq!(logout.status, 204);
    let cleared = logout.set_cookie.expect("a clearing cookie");
    assert!(cleared.starts_with("hookbin_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn public_bins_give_a_token_for_that_bin_alone() {
    let s = server(true).await;
    let mine = call(&s, "POST", "/api/bins", None, &[], Some(json!({}))).await;
    assert_eq!(mine.status, 201, "{}", mine.json);
    let token = mine.json["token"].as_str().expect("a bin token").to_owned();
    assert!(token.starts_with("hbt_") && token.len() > 40, "{token}");
    let id = mine.json["id"].as_str().unwrap().to_owned();
    let theirs = call(&s, "POST", "/api/bins", None, &[], Some(json!({}))).await;
    let other = theirs.json["id"].as_str().unwrap().to_owned();
    let other_token = theirs.json["token"].as_str().unwrap().to_owned();
    assert_ne!(token, other_token);

    // The token is shown once: reads and listings never return it.
    let read = call(
        &s,
        "GET",
        &format!("/api/bins/{id}"),
        Some(&token),
        &[],
        None,
    )
    .await;
    assert_eq!(read.status, 200);
    assert!(read.json.get("token").is_none(), "{}", read.json);
    let listed = call(&s, "GET", "/api/bins", Some(ADMIN), &[], None).await;
    assert_eq!(listed.json["bins"].as_array().unwrap().len(), 2);
    assert!(!listed.json.to_string().contains("hbt_"));

    // Its own bin's routes open with it.
    call(
        &s,
        "POST",
        &format!("/b/{id}/hook"),
        None,
        &[],
        Some(json!({"k": "v"})),
    )
    .await;
    for path in [
        format!("/api/bins/{id}/requests"),
        format!("/api/bins/{id}/requests/1"),
        format!("/api/bins/{id}/requests/1/raw"),
        format!("/api/bins/{id}/requests/1/curl"),
        format!("/api/bins/{id}/wait?timeout=0"),
        format!("/api/bins/{id}/export"),
        format!("/api/bins/{id}/stream"),
        format!("/api/bins/{id}/smee"),
    ] {
        let a = call(&s, "GET", &path, Some(&token), &[], None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.json);
    }
    let patched = call(
        &s,
        "PATCH",
        &format!("/api/bins/{id}"),
        Some(&token),
        &[],
        Some(json!({"response": {"status": 202}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.json);
    let put = call(
        &s,
        "PUT",
        &format!("/api/bins/{id}"),
        Some(&token),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.json);
    assert!(
        put.json.get("token").is_none(),
        "an update issues no new token"
    );
    let still = call(
        &s,
        "GET",
        &format!("/api/bins/{id}/requests"),
        Some(&token),
        &[],
        None,
    )
    .await;
    assert_eq!(still.status, 200, "PUT and PATCH keep the bin's token");

    // Nothing else opens with it: another bin, the lists, webhooks, replay, metrics.
    let refused = [
        ("GET", format!("/api/bins/{other}")),
        ("GET", format!("/api/bins/{other}/requests")),
        ("GET", format!("/api/bins/{other}/stream")),
        ("DELETE", format!("/api/bins/{other}")),
        ("PUT", format!("/api/bins/{other}")),
        ("GET", "/api/bins".into()),
        ("GET", "/api/stream".into()),
        ("GET", "/api/webhooks".into()),
        ("POST", "/api/webhooks".into()),
        ("GET", "/api/events".into()),
        ("GET", "/api/deliveries/stream".into()),
        ("POST", format!("/api/bins/{id}/requests/1/replay")),
        ("GET", "/metrics".into()),
        ("POST", "/api/session".into()),
    ];
    for (method, path) in refused {
        let body = (method != "GET").then(|| json!({}));
        let a = call(&s, method, &path, Some(&token), &[], body).await;
        assert_unauthorized(&a, &format!("{method} {path} with a bin token"));
    }
    // And without a token, not even its own bin.
    let a = call(
        &s,
        "GET",
        &format!("/api/bins/{id}/requests"),
        None,
        &[],
        None,
    )
    .await;
    assert_unauthorized(&a, "a bin's requests without a token");

    // Anyone may create a named bin, not take over an existing one.
    let named = call(&s, "PUT", "/api/bins/named", None, &[], Some(json!({}))).await;
    assert_eq!(named.status, 201, "{}", named.json);
    let named_token = named.json["token"].as_str().unwrap().to_owned();
    let takeover = call(
        &s,
        "PUT",
        "/api/bins/named",
        None,
        &[],
        Some(json!({"response": {"status": 500}})),
    )
    .await;
    assert_unauthorized(&takeover, "an anonymous PUT on an existing bin");
    let with_other = call(
        &s,
        "PUT",
        "/api/bins/named",
        Some(&token),
        &[],
        Some(json!({})),
    )
    .await;
    assert_unauthorized(&with_other, "a PUT with another bin's token");
    let own = call(
        &s,
        "PUT",
        "/api/bins/named",
        Some(&named_token),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(own.status, 200);
    assert_eq!(
        own.json["response"]["status"], 200,
        "the takeover changed nothing"
    );

    // The admin reaches every bin; the owner may delete its own.
    let a = call(
        &s,
        "GET",
        &format!("/api/bins/{id}/requests"),
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    let deleted = call(
        &s,
        "DELETE",
        &format!("/api/bins/{id}"),
        Some(&token),
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    let gone = call(
        &s,
        "GET",
        &format!("/api/bins/{id}"),
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn without_public_bins_only_the_admin_creates_bins_and_gets_their_tokens() {
    let s = server(false).await;
    for (method, path) in [("POST", "/api/bins"), ("PUT", "/api/bins/new-one")] {
        let a = call(&s, method, path, None, &[], Some(json!({}))).await;
        assert_unauthorized(&a, &format!("anonymous {method} {path}"));
    }
    let created = call(
        &s,
        "PUT",
        "/api/bins/new-one",
        Some(ADMIN),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(created.status, 201);
    let token = created.json["token"]
        .as_str()
        .expect("a bin token")
        .to_owned();
    let a = call(
        &s,
        "GET",
        "/api/bins/new-one/requests",
        Some(&token),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 200, "the admin may hand a bin's token to CI");
    let a = call(&s, "GET", "/api/bins", Some(&token), &[], None).await;
    assert_unauthorized(&a, "listing with a bin token");

    // Without --auth-token no bin gets a token (nothing would check it), and there is no
    // session to start: POST /api/session is a no-op.
    let open = TestServer::start().await;
    let bin = open.put_bin("plain", json!({})).await;
    assert!(bin.get("token").is_none(), "{bin}");
    let session = call(&open, "POST", "/api/session", None, &[], None).await;
    assert_eq!(session.status, 204);
    assert_eq!(session.set_cookie, None);
}

#[tokio::test]
async fn webhook_secrets_reach_the_admin_only() {
    let s = server(true).await;
    let (_, hook, _, _) = fixture(&s).await;
    let bin = call(&s, "POST", "/api/bins", None, &[], Some(json!({}))).await;
    let token = bin.json["token"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        ("GET", "/api/webhooks".to_owned(), None),
        ("GET", format!("/api/webhooks/{hook}"), None),
        ("PATCH", format!("/api/webhooks/{hook}"), Some(json!({}))),
        (
            "POST",
            "/api/webhooks".to_owned(),
            Some(json!({"name": "x", "url": s.url("/b/ci"), "event": "any"})),
        ),
        ("DELETE", format!("/api/webhooks/{hook}"), None),
    ] {
        for credential in [None, Some(token.as_str())] {
            let a = call(&s, method, &path, credential, &[], body.clone()).await;
            assert_unauthorized(&a, &format!("{method} {path} with {credential:?}"));
            assert!(!a.json.to_string().contains("whsec_"));
        }
    }
    let admin = call(
        &s,
        "GET",
        &format!("/api/webhooks/{hook}"),
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert!(
        admin.json["secret"].as_str().unwrap().starts_with("whsec_"),
        "{}",
        admin.json
    );
}

/// Runs a client subcommand in-process, as `bin-server ARGS` would; returns its exit code (or
/// error) and stdout.
async fn cli(args: &[&str]) -> (Result<i32, String>, String) {
    let parsed = bin_server::config::Cli::try_parse_from(
        std::iter::once("bin-server").chain(args.iter().copied()),
    )
    .unwrap();
    let Some(bin_server::config::Command::Client(command)) = parsed.command else {
        panic!("not a client subcommand: {args:?}");
    };
    let mut out = Vec::new();
    let code = within(
        &format!("bin-server {args:?}"),
        bin_server::cli::execute(command, &mut out, std::future::pending()),
    )
    .await
    .map_err(|e| e.to_string());
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_cli_sends_its_token() {
    let s = server(true).await;
    let base = s.base.as_str();

    // `new` without a token on a public-bins server: the URL, then the bin's token.
    let (code, out) = cli(&["new", "--server", base, "--name", "ci-run"]).await;
    assert_eq!(code, Ok(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], format!("{base}/b/ci-run"));
    let token = lines[1].to_owned();
    assert!(token.starts_with("hbt_"), "{out}");

    // `new` again (an update) needs a token and prints no new one.
    let (code, _) = cli(&["new", "--server", base, "--name", "ci-run"]).await;
    let e = code.unwrap_err();
    assert!(e.contains("401") && e.contains("--token"), "{e}");
    let (code, out) = cli(&[
        "new", "--server", base, "--name", "ci-run", "--token", &token,
    ])
    .await;
    assert_eq!(code, Ok(0));
    assert_eq!(out.trim(), format!("{base}/b/ci-run"));

    call(
        &s,
        "POST",
        "/b/ci-run/order",
        None,
        &[],
        Some(json!({"id": 7})),
    )
    .await;

    // `wait` and `export` with the bin's token; without it, a clear error.
    let (code, _) = cli(&["wait", "--server", base, "ci-run", "--timeout", "5s"]).await;
    assert!(code.unwrap_err().contains("HOOKBIN_TOKEN"));
    let (code, out) = cli(&[
        "wait",
        "--server",
        base,
        "--token",
        &token,
        "ci-run",
        "--timeout",
        "5s",
        "--json",
        "/id=7",
    ])
    .await;
    assert_eq!(code, Ok(0));
    let waited: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(waited["path"], "/order");
    let (code, out) = cli(&["export", "--server", base, "--token", &token, "ci-run"]).await;
    assert_eq!(code, Ok(0));
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _) = cli(&["export", "--server", base, "--token", "hbt_wrong", "ci-run"]).await;
    let e = code.unwrap_err();
    assert!(e.contains("401") && e.contains("not accepted"), "{e}");

    // The admin token works for `new --json`, which carries the token too.
    let (code, out) = cli(&["new", "--server", base, "--token", ADMIN, "--json"]).await;
    assert_eq!(code, Ok(0));
    let bin: Value = serde_json::from_str(&out).unwrap();
    assert!(bin["token"].as_str().unwrap().starts_with("hbt_"));

    // `forward` follows the bin's stream with the token.
    let target = call(
        &s,
        "PUT",
        "/api/bins/target",
        Some(ADMIN),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(target.status, 201);
    let parsed = bin_server::config::Cli::try_parse_from([
        "bin-server",
        "forward",
        "--server",
        base,
        "--token",
        &token,
        "ci-run",
        "--to",
        &s.url("/b/target"),
    ])
    .unwrap();
    let Some(bin_server::config::Command::Client(bin_server::cli::ClientCommand::Forward(args))) =
        parsed.command
    else {
        panic!("forward parses as forward")
    };
    let client = args.server.client().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let forwarding = tokio::spawn(async move {
        bin_server::cli::forward::forward(
            &client,
            &args.bin,
            &args.to,
            async {
                let _ = stopped.await;
            },
            move |ev| {
                let _ = tx.send(ev.to_string());
            },
        )
        .await
    });
    let connected = within("forward connects", events.recv()).await.unwrap();
    assert!(connected.starts_with("connected"), "{connected}");
    call(
        &s,
        "POST",
        "/b/ci-run/again",
        None,
        &[],
        Some(json!({"id": 8})),
    )
    .await;
    let forwarded = within("a forwarded request", events.recv()).await.unwrap();
    assert!(forwarded.contains("POST /again -> 200"), "{forwarded}");
    let arrived = call(
        &s,
        "GET",
        "/api/bins/target/requests/1",
        Some(ADMIN),
        &[],
        None,
    )
    .await;
    assert_eq!(arrived.json["body"], "{\"id\":8}");
    let _ = stop.send(());
    within("forward to stop", forwarding)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_sender_client_sends_its_token() {
    let s = server(false).await;
    let plain = sender::client::ServerClient::new(&s.base, Duration::from_secs(10)).unwrap();
    match plain.list_webhooks().await {
        Err(sender::client::ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "unauthorized"));
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let admin = plain.clone().with_token(ADMIN).unwrap();
    let created = admin
        .create_webhook(&api::WebhookIn {
            name: "with-token".into(),
            url: s.url("/b/nowhere"),
            event: Some(admin.events().await.unwrap().events[0].slug.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(admin.list_webhooks().await.unwrap().webhooks.len(), 1);
    let wrong = plain.with_token("wrong-token-0123456789").unwrap();
    assert!(matches!(
        wrong.list_webhooks().await,
        Err(sender::client::ClientError::Api { status: 401, .. })
    ));
}
