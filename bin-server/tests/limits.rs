//! Memory under many slow captures, measured on the real `bin-server` binary: its resident set
//! (`VmRSS` in `/proc/<pid>/status`) while 1,000 connections each announce a 1 MiB body and send
//! one byte of it. A head's `Content-Length` is a claim, not bytes: it must not be reserved.

#![cfg(target_os = "linux")]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The longest any step of this test may take.
const WAIT: Duration = Duration::from_secs(60);
const CONNECTIONS: usize = 1_000;
/// The goal of issue 8: 1,000 connections holding 1 MiB heads grow the server by less than this.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Starts the binary with room for the connections (`ulimit -n` in the shell that execs it) and
/// returns it with its address, read from its log line.
async fn start_server() -> (Child, String) {
    let bin = env!("CARGO_BIN_EXE_bin-server");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 4096 2>/dev/null || true; exec '{bin}' serve --port 0 --auto-create \
             --max-connections 2000 --max-connections-per-ip 0"
        ))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = within("the server's listening line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("server exited");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    })
    .await;
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// One exchange on a fresh connection (`Connection: close`); returns the response.
async fn http(addr: &str, request: &str) -> String {
    within("an HTTP exchange", async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    })
    .await
}

async fn metric(addr: &str, name: &str) -> u64 {
    // The API answers only to the server's own names (DNS rebinding): call it by its address.
    let text = http(
        addr,
        &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_announced_megabyte_bodies_do_not_take_a_gigabyte() {
    // This process holds the client ends; raise its own soft limit (no unsafe code).
    let limit = rlimit::increase_nofile_limit(4096).unwrap();
    assert!(limit >= CONNECTIONS as u64 + 64, "open files limit {limit}");
    let (child, addr) = start_server().await;
    let pid = child.id().unwrap();
    // Warm up: the first capture creates the bin and the lazily built parts of the server.
    let ok = http(
        &addr,
        "POST /b/mem HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let before = rss_kib(pid);

    let head = "POST /b/mem HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\nx";
    let mut held = Vec::with_capacity(CONNECTIONS);
    within("1,000 connections", async {
        for _ in 0..CONNECTIONS {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            held.push(s);
        }
    })
    .await;
    // Every capture has started reading its body once each first byte is counted in flight.
    within("every capture to start", async {
        while metric(&addr, "hookbin_inflight_body_bytes").await < CONNECTIONS as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let after = rss_kib(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB -> {after} KiB with {CONNECTIONS} connections holding 1 MiB heads: \
         growth {growth} KiB ({} KiB per connection)",
        growth / CONNECTIONS as u64
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB (limit {MAX_GROWTH_KIB} KiB)"
    );
    assert_eq!(
        metric(&addr, "hookbin_connections_open").await,
        CONNECTIONS as u64 + 1
    );
    drop(held);
}
