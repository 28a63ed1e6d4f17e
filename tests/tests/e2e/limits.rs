//! What a connection may cost, tried on raw sockets: a head that never ends, an idle keep-alive
//! connection, a stalled body, more connections than allowed, more body bytes in flight than
//! the budget, malformed chunked bodies, and a shutdown with slow clients. Timeouts are set to a
//! few hundred milliseconds so the tests stay fast; every wait for the server to close a
//! connection is bounded by `within`.

use futures_util::FutureExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bin_server::ServerConfig;
use bin_server::conn::ConnLimits;
use bin_server::store::StoreLimits;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestServer, raw_http, within};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(30);

async fn server(limits: ConnLimits) -> TestServer {
    TestServer::with(
        StoreLimits::default(),
        ServerConfig {
            auto_create: true,
            conn_limits: limits,
            ..ServerConfig::default()
        },
    )
    .await
}

/// Reads until the server closes the connection (EOF or an error such as a reset); returns what
/// arrived before.
async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    within(what, async {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// Reads one response with a `Content-Length` body off a keep-alive connection.
async fn read_response(s: &mut TcpStream) -> (u16, Value) {
    within("a response", async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                return (status, body);
            }
        }
    })
    .await
}

/// Splits a raw `Connection: close` exchange into status and JSON body.
fn parse(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Waits until `check` holds (it reads the server's counters), bounded by `within`.
async fn until(what: &str, check: impl Fn() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

const GET: &[u8] = b"GET /b/keep HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test]
async fn a_head_that_never_ends_is_closed_after_the_header_timeout() {
    let s = server(ConnLimits {
        header_timeout: SHORT,
        idle_timeout: LONG,
        ..ConnLimits::default()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /b/slow HTTP/1.1\r\nHost: a\r\nX-Trickle: ")
        .await
        .unwrap();
    let t = Instant::now();
    let got = until_closed(&mut c, "the server to close a partial head").await;
    assert!(got.is_empty(), "no response to a partial head: {got:?}");
    assert!(t.elapsed() >= SHORT - Duration::from_millis(50));
    assert_eq!(s.state.metrics.timeouts_header.load(Relaxed), 1);
    assert_eq!(s.state.store.stats().await.unwrap().captures_total, 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = server(ConnLimits {
        header_timeout: LONG,
        idle_timeout: SHORT,
        ..ConnLimits::default()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
    let t = Instant::now();
    assert!(
        until_closed(&mut c, "the idle connection to close")
            .await
            .is_empty()
    );
    assert!(t.elapsed() >= SHORT - Duration::from_millis(50));
    assert_eq!(s.state.metrics.timeouts_idle.load(Relaxed), 1);
    // A connection that never sends anything is idle too.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    until_closed(&mut silent, "the silent connection to close").await;
    assert_eq!(s.state.metrics.timeouts_idle.load(Relaxed), 2);
}

#[tokio::test]
async fn the_header_timeout_does_not_cut_idle_keep_alive_connections() {
    // hyper's own header_read_timeout would: it runs while a keep-alive connection waits.
    let s = server(ConnLimits {
        header_timeout: SHORT,
        idle_timeout: LONG,
        ..ConnLimits::default()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
    // Deliberately idle for three header timeouts, then the connection still serves.
    tokio::time::sleep(SHORT * 3).await;
    c.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
    assert_eq!(s.state.metrics.timeouts_header.load(Relaxed), 0);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    let s = server(ConnLimits {
        header_timeout: Duration::from_millis(100),
        idle_timeout: SHORT,
        ..ConnLimits::default()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    // The prior-knowledge preface and an empty SETTINGS frame: frames, but no request.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let t = Instant::now();
    until_closed(&mut c, "the idle HTTP/2 connection to close").await;
    assert!(t.elapsed() >= SHORT - Duration::from_millis(50));
    assert_eq!(s.state.metrics.timeouts_idle.load(Relaxed), 1);
    assert_eq!(s.state.metrics.timeouts_header.load(Relaxed), 0);
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_closed_and_not_stored() {
    let s = server(ConnLimits {
        header_timeout: LONG,
        idle_timeout: SHORT,
        ..ConnLimits::default()
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /b/stall HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let t = Instant::now();
    let got = until_closed(&mut c, "the stalled body's connection to close").await;
    assert!(t.elapsed() >= SHORT - Duration::from_millis(50));
    let (status, body) = parse(&got);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&got));
    assert_eq!(body["error"]["code"], "body_timeout");
    assert_eq!(s.state.metrics.timeouts_body.load(Relaxed), 1);
    assert_eq!(s.state.store.stats().await.unwrap().captures_total, 0);
    assert_eq!(s.state.metrics.inflight_body_bytes.load(Relaxed), 0);
}

#[tokio::test]
async fn a_client_that_reads_no_response_is_closed_after_the_idle_timeout() {
    let s = server(ConnLimits {
        header_timeout: LONG,
        idle_timeout: SHORT,
        ..ConnLimits::default()
    })
    .await;
    let big = "x".repeat(1_000_000);
    s.put_bin("big", serde_json::json!({"response": {"body": big}}))
        .await;
    // Far more response bytes than the socket buffers hold, and the client never reads.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&b"GET /b/big HTTP/1.1\r\nHost: a\r\n\r\n".repeat(40))
        .await
        .unwrap();
    let m = &s.state.metrics;
    until("the stalled response to time out", || {
        m.timeouts_write.load(Relaxed) == 1
    })
    .await;
    let got = until_closed(&mut c, "the connection to close").await;
    assert!(got.len() < 40 * 1_000_000, "the server stopped writing");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_slots_come_back() {
    let s = server(ConnLimits {
        max_connections: 2,
        max_connections_per_ip: 0,
        ..ConnLimits::default()
    })
    .await;
    let m = &s.state.metrics;
    let mut a = TcpStream::connect(s.addr).await.unwrap();
    let mut b = TcpStream::connect(s.addr).await.unwrap();
    for c in [&mut a, &mut b] {
        c.write_all(GET).await.unwrap();
        assert_eq!(read_response(c).await.0, 200);
    }
    let mut refused = TcpStream::connect(s.addr).await.unwrap();
    let _ = refused.write_all(GET).await;
    let got = until_closed(&mut refused, "the refused connection to close").await;
    assert!(got.is_empty(), "refused without a response: {got:?}");
    assert_eq!(m.refused_max_connections.load(Relaxed), 1);
    assert_eq!(m.connections_open.load(Relaxed), 2);
    // One closes; its slot serves a new connection.
    drop(a);
    until("the closed connection's slot to free", || {
        m.connections_open.load(Relaxed) == 1
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
    assert_eq!(m.refused_max_connections.load(Relaxed), 1);
}

#[tokio::test]
async fn past_the_in_flight_budget_a_capture_gets_503_and_the_bytes_come_back() {
    let s = server(ConnLimits {
        max_inflight_bytes: 1000,
        ..ConnLimits::default()
    })
    .await;
    let m = &s.state.metrics;
    // A slow sender holds 800 bytes in flight.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"POST /b/budget HTTP/1.1\r\nHost: a\r\nContent-Length: 900\r\n\r\n")
        .await
        .unwrap();
    slow.write_all(&[b'a'; 800]).await.unwrap();
    until("800 bytes in flight", || {
        m.inflight_body_bytes.load(Relaxed) == 800
    })
    .await;
    let big = |n: usize| {
        let mut r = format!(
            "POST /b/budget HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: {n}\r\n\r\n"
        )
        .into_bytes();
        r.extend(std::iter::repeat_n(b'b', n));
        r
    };
    let (status, body) = parse(&raw_http(s.addr, &big(500)).await);
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "server_busy");
    assert_eq!(m.captures_refused_busy.load(Relaxed), 1);
    assert_eq!(m.inflight_body_bytes.load(Relaxed), 800);
    // The slow body completes: stored, and its bytes are given back.
    slow.write_all(&[b'a'; 100]).await.unwrap();
    assert_eq!(read_response(&mut slow).await.0, 200);
    assert_eq!(m.inflight_body_bytes.load(Relaxed), 0);
    assert_eq!(parse(&raw_http(s.addr, &big(500)).await).0, 200);
    assert_eq!(s.state.store.stats().await.unwrap().captures_total, 2);
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_and_not_stored_or_truncated() {
    let s = server(ConnLimits::default()).await;
    let head = "POST /b/chunks HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    for (what, body) in [
        ("a size that is not hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("a bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        ("no CRLF after the data", "5\r\nhelloXX0\r\n\r\n"),
    ] {
        let raw = raw_http(s.addr, format!("{head}{body}").as_bytes()).await;
        let (status, json) = parse(&raw);
        assert_eq!(status, 400, "{what}: {}", String::from_utf8_lossy(&raw));
        assert_eq!(json["error"]["code"], "invalid_body", "{what}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("chunked")
        );
    }
    assert_eq!(s.state.store.stats().await.unwrap().captures_total, 0);
    assert_eq!(s.state.store.stats().await.unwrap().truncated_total, 0);
    assert_eq!(s.state.metrics.body_framing_errors.load(Relaxed), 3);
    // Well-formed chunks are still captured whole.
    let raw = raw_http(s.addr, format!("{head}5\r\nhello\r\n0\r\n\r\n").as_bytes()).await;
    assert_eq!(parse(&raw).0, 200);
    let (_, page) = s.get_json("/api/bins/chunks/requests").await;
    assert_eq!(page["requests"][0]["body"], "hello");
    assert_eq!(page["requests"][0]["truncated"], false);
}

#[tokio::test]
async fn shutdown_closes_slow_clients_at_once_and_answers_delayed_bins() {
    let grace = Duration::from_secs(3);
    let s = server(ConnLimits {
        header_timeout: LONG,
        idle_timeout: LONG,
        shutdown_grace: grace,
        ..ConnLimits::default()
    })
    .await;
    s.put_bin("late", serde_json::json!({"response": {"delay_ms": 20000}}))
        .await;
    let mut mid_head = TcpStream::connect(s.addr).await.unwrap();
    mid_head
        .write_all(b"POST /b/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut mid_body = TcpStream::connect(s.addr).await.unwrap();
    mid_body
        .write_all(b"POST /b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    read_response(&mut idle).await;
    let mut delayed = TcpStream::connect(s.addr).await.unwrap();
    delayed
        .write_all(b"POST /b/late HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let m = &s.state.metrics;
    until(
        "the delayed request to be stored and the body to be read",
        || {
            // The memory store answers at once: its future is ready on the first poll.
            let stats = s.state.store.stats().now_or_never().unwrap().unwrap();
            stats.captures_total == 2 && m.inflight_body_bytes.load(Relaxed) == 5
        },
    )
    .await;
    let t = Instant::now();
    s.shutdown().await.unwrap();
    assert!(t.elapsed() < grace, "shutdown took {:?}", t.elapsed());
    for (what, c) in [
        ("mid-head", &mut mid_head),
        ("mid-body", &mut mid_body),
        ("idle", &mut idle),
    ] {
        let got = until_closed(c, what).await;
        assert!(got.is_empty(), "{what}: {}", String::from_utf8_lossy(&got));
    }
    let got = until_closed(&mut delayed, "the delayed response").await;
    assert_eq!(parse(&got).0, 200, "{}", String::from_utf8_lossy(&got));
}
