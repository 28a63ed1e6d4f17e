//! The client subcommands as a CI job runs them: the real `bin-server` binary (cargo builds it
//! fresh for this test) against a server started in-process on 127.0.0.1:0. Checks the exit
//! codes of `wait` (0 matched, 1 violation, 2 timeout, 3 usage or connection error), what goes
//! to stdout and stderr, `new`, `export`, and `forward` ending cleanly on Ctrl-C.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bin_server::store::StoreLimits;
use bin_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The longest any step of these tests may take.
const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Server {
    base: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(StoreLimits::default(), ServerConfig::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bin_server::run(listener, state, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn put_bin(&self, name: &str, body: Value) {
        let r = self
            .http
            .put(format!("{}/api/bins/{name}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn send(&self, bin: &str, headers: &[(&str, &str)], body: &str) {
        let mut req = self.http.post(format!("{}/b/{bin}", self.base));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let r = req.body(body.to_owned()).send().await.unwrap();
        assert!(r.status().is_success());
    }
}

fn bin_server(server: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bin-server"));
    c.args(args)
        .env("HOOKBIN_SERVER", server)
        .env_remove("HOOKBIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(server: &str, args: &[&str]) -> Output {
    within(
        &format!("bin-server {args:?}"),
        bin_server(server, args).output(),
    )
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in the temp dir, unique to this test process.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "hookbin-cli-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

/// Exit code and the one line the command printed on stderr.
fn code_and_stderr(out: &Output) -> (i32, String) {
    let err = text(&out.stderr);
    (out.status.code().unwrap(), err.trim().to_owned())
}

#[tokio::test]
async fn wait_exit_0_prints_each_match_as_a_json_line() {
    let s = Server::start().await;
    s.put_bin("ci", json!({})).await;
    s.send("ci", &[("X-Event", "order.paid")], r#"{"order":{"id":1}}"#)
        .await;
    let waiting = bin_server(
        &s.base,
        &[
            "wait",
            "ci",
            "--count",
            "2",
            "--timeout",
            "10s",
            "--method",
            "post",
            "--header",
            "X-Event: order.*",
            "--json",
            "/order/id",
        ],
    )
    .output();
    let sending = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.send("ci", &[("X-Event", "other")], r#"{"order":{"id":2}}"#)
            .await;
        s.send(
            "ci",
            &[("X-Event", "order.refunded")],
            r#"{"order":{"id":3}}"#,
        )
        .await;
    };
    let (out, ()) = within("wait --count 2", async { tokio::join!(waiting, sending) }).await;
    let out = out.unwrap();
    assert_eq!(code_and_stderr(&out), (0, String::new()));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["seq"], 1,
        "a request stored before the wait counts"
    );
    assert_eq!(lines[1]["seq"], 3);
    assert_eq!(lines[1]["body"], r#"{"order":{"id":3}}"#);

    // --after skips what came before; a capture URL works as the bin.
    let out = run(
        &s.base,
        &[
            "wait",
            &format!("{}/b/ci", s.base),
            "--after",
            "2",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["seq"], 3);
}

#[tokio::test]
async fn wait_exit_1_on_a_schema_violation_names_the_paths() {
    let s = Server::start().await;
    let schema = json!({"type": "object", "properties": {"amount": {"type": "integer"}}});
    s.put_bin("shaped", json!({"schema": schema})).await;
    s.send("shaped", &[], r#"{"amount":"ten"}"#).await;
    let out = run(&s.base, &["wait", "shaped", "--timeout", "5s"]).await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("#1") && err.contains("/amount"), "{err}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["validation"]["valid"], false,
        "the request is printed too"
    );

    // A local --schema on a bin without one.
    s.put_bin("loose", json!({})).await;
    s.send("loose", &[], r#"{"id":"x"}"#).await;
    let file = temp_file(
        "schema.json",
        r#"{"type":"object","required":["id","total"]}"#,
    );
    let out = run(
        &s.base,
        &[
            "wait",
            "loose",
            "--schema",
            file.to_str().unwrap(),
            "--timeout",
            "5s",
        ],
    )
    .await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--schema") && err.contains("total"), "{err}");
    // The same request against a schema it satisfies.
    let ok = temp_file("ok.json", r#"{"type":"object","required":["id"]}"#);
    let out = run(
        &s.base,
        &["wait", "loose", "--schema", ok.to_str().unwrap()],
    )
    .await;
    assert_eq!(code_and_stderr(&out), (0, String::new()));
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(ok);
}

#[tokio::test]
async fn wait_exit_1_on_a_bad_signature() {
    let s = Server::start().await;
    s.put_bin(
        "signed",
        json!({"secret": "gh-secret", "signature_scheme": "github"}),
    )
    .await;
    s.send("signed", &[("X-Hub-Signature-256", "sha256=00")], "{}")
        .await;
    let out = run(&s.base, &["wait", "signed", "--timeout", "5s"]).await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signature invalid"), "{err}");
}

#[tokio::test]
async fn wait_exit_2_on_timeout() {
    let s = Server::start().await;
    s.put_bin("quiet", json!({})).await;
    s.send("quiet", &[], "not the one").await;
    let out = run(
        &s.base,
        &["wait", "quiet", "--timeout", "700ms", "--method", "PUT"],
    )
    .await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        "timed out after 700ms waiting for a request with method PUT in bin \"quiet\" \
         (0 of 1 arrived)"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn wait_exit_3_on_usage_and_connection_errors() {
    let s = Server::start().await;
    s.put_bin("there", json!({})).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let bad_schema = temp_file("bad.json", r#"{"type": "integr"}"#);
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            s.base.clone(),
            vec!["wait".into(), "there".into(), "--bogus".into()],
            "--bogus",
        ),
        (s.base.clone(), vec!["wait".into()], "BIN"),
        (
            s.base.clone(),
            vec![
                "wait".into(),
                "there".into(),
                "--timeout".into(),
                "soon".into(),
            ],
            "soon",
        ),
        (dead, vec!["wait".into(), "there".into()], "cannot reach"),
        (s.base.clone(), vec!["wait".into(), "ghost".into()], "ghost"),
        (
            s.base.clone(),
            vec!["wait".into(), "Not A Bin".into()],
            "not valid",
        ),
        (
            s.base.clone(),
            vec![
                "wait".into(),
                "there".into(),
                "--schema".into(),
                bad_schema.to_str().unwrap().into(),
            ],
            "integr",
        ),
        (
            s.base.clone(),
            vec![
                "wait".into(),
                "there".into(),
                "--schema".into(),
                "/no/such/file".into(),
            ],
            "/no/such/file",
        ),
    ];
    for (server, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&server, &args).await;
        let (code, err) = code_and_stderr(&out);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(bad_schema);
    // Help is not an error.
    assert_eq!(
        run(&s.base, &["wait", "--help"]).await.status.code(),
        Some(0)
    );
}

#[tokio::test]
async fn new_creates_and_updates_named_bins_with_checks() {
    let s = Server::start().await;
    let schema = temp_file("new.json", r#"{"type":"object","required":["event"]}"#);
    let out = run(
        &s.base,
        &[
            "new",
            "--name",
            "ci-run",
            "--schema",
            schema.to_str().unwrap(),
            "--secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bin: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bin["id"], "ci-run");
    assert_eq!(bin["schema"]["required"], json!(["event"]));
    assert_eq!(bin["signature_scheme"], "standard");
    assert!(bin.get("secret").is_none(), "the secret is never printed");
    // Again: idempotent, and plain output is the capture URL.
    let out = run(
        &s.base,
        &[
            "new", "--name", "ci-run", "--scheme", "github", "--secret", "s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}/b/ci-run\n", s.base));
    let out = run(&s.base, &["new"]).await;
    assert!(text(&out.stdout).starts_with(&format!("{}/b/", s.base)));
    // A secret the scheme cannot use is refused by the server, exit 3.
    let out = run(&s.base, &["new", "--secret", "not-whsec"]).await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 3);
    assert!(err.contains("whsec_"), "{err}");
    let _ = std::fs::remove_file(schema);
}

#[tokio::test]
async fn export_writes_har_or_ndjson() {
    let s = Server::start().await;
    s.put_bin("exp", json!({})).await;
    s.send("exp", &[], "one").await;
    s.send("exp", &[], "two").await;
    let file = temp_file("out.har", "");
    let out = run(
        &s.base,
        &[
            "export",
            "exp",
            "--format",
            "har",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let har: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    let out = run(&s.base, &["export", "exp"]).await;
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "ndjson by default");
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn forward_prints_one_line_per_request_and_stops_on_ctrl_c() {
    let s = Server::start().await;
    s.put_bin("fw", json!({})).await;
    s.put_bin("sink", json!({"response": {"status": 201}}))
        .await;
    let mut child = bin_server(
        &s.base,
        &["forward", "fw", "--to", &format!("{}/b/sink", s.base)],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = within("forward connects", err.next_line())
            .await
            .unwrap()
            .unwrap();
        if line.starts_with("connected") {
            break;
        }
    }
    s.send("fw", &[], "hello").await;
    let line = within("a forwarded line", out.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(line.starts_with("#1 POST / -> 201 ("), "{line}");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = within("forward exits", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn token_from_flag_or_env_reaches_a_server_with_auth() {
    const ADMIN: &str = "admin-token-0123456789";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig {
        auth_token: Some(bin_server::routes::auth::AuthToken::parse(ADMIN).unwrap()),
        public_bins: true,
        ..ServerConfig::default()
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bin_server::run(
        listener,
        AppState::new(StoreLimits::default(), config),
        async move {
            let _ = stopped.await;
        },
    ));

    // A public bin: the URL, then its token, on stdout.
    let out = run(&base, &["new", "--name", "private"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{base}/b/private"));
    let token = lines[1];
    assert!(token.starts_with("hbt_"), "{stdout}");

    // Without a token: exit 3 and a line saying what to pass.
    let out = run(&base, &["export", "private"]).await;
    let (code, err) = code_and_stderr(&out);
    assert_eq!(code, 3);
    assert!(
        err.contains("401") && err.contains("HOOKBIN_TOKEN"),
        "{err}"
    );

    // The bin's token from HOOKBIN_TOKEN, then the admin's from --token.
    let out = within(
        "export with HOOKBIN_TOKEN",
        bin_server(&base, &["export", "private"])
            .env("HOOKBIN_TOKEN", token)
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        &base,
        &["wait", "private", "--timeout", "0", "--token", ADMIN],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "reached the bin, nothing arrived"
    );
}

#[tokio::test]
async fn export_into_a_closed_pipe_exits_quietly() {
    let s = Server::start().await;
    s.put_bin("big", json!({})).await;
    // More than a pipe holds, so the export is still writing when the reader has gone.
    let body = "x".repeat(200 * 1024);
    for _ in 0..3 {
        s.send("big", &[], &body).await;
    }
    let mut child = bin_server(&s.base, &["export", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c 0`: the reader closes its end before reading anything.
    drop(child.stdout.take());
    let out = within("export ends", child.wait_with_output())
        .await
        .unwrap();
    assert_eq!(
        code_and_stderr(&out),
        (0, String::new()),
        "a closed stdout is not an error"
    );
}

/// Starts `bin-server serve` on a free port with these extra flags; returns the child and its
/// stderr lines, after the line that says where it listens (and that line).
async fn serve_logging(
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    String,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bin-server"));
    child
        .args(["serve", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("HOOKBIN_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = child.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = within("the server to say where it listens", lines.next_line())
            .await
            .unwrap()
            .expect("the server is running");
        if line.contains("listening on") {
            return (child, lines, line);
        }
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_api_calls_are_logged() {
    let (_child, mut lines, first) = serve_logging(&["--log-format", "json"]).await;
    let first: Value = serde_json::from_str(&first).expect("a JSON log line");
    assert_eq!(first["level"], "INFO");
    let message = first["fields"]["message"].as_str().unwrap();
    let base = message
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let r = reqwest::get(format!("{base}/api/bins")).await.unwrap();
    assert_eq!(r.status(), 200);
    loop {
        let line = within("the API call's log line", lines.next_line())
            .await
            .unwrap()
            .expect("the server is running");
        let v: Value = serde_json::from_str(&line).expect("every line is JSON");
        if v["fields"]["message"] == "finished processing request" {
            assert_eq!(v["fields"]["status"], 200, "{line}");
            break;
        }
    }
}

#[tokio::test]
async fn text_logs_have_no_colour_codes_when_not_on_a_terminal() {
    let (_child, _lines, first) = serve_logging(&[]).await;
    assert!(!first.contains('\u{1b}'), "{first:?}");
    assert!(first.contains("INFO"), "{first:?}");
}
