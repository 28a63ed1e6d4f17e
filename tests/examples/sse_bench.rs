//! SSE fan-out benchmark: N subscribers on one bin's live stream, captures sent at a fixed rate,
//! capture-to-SSE latency measured at every subscriber. Run by `bench/sse.sh` against a release
//! bin-server; not part of the test run.
//!
//!     sse_bench --server http://127.0.0.1:3960 --subscribers 1000 --rate 2000 --seconds 10
//!
//! `--capture-server ADDR` sends the captures to another instance (two bin-servers sharing one
//! Redis: capture on A, subscribers on B, so the latency includes the trip through Redis).
//!
//! Captures go to `/b/sse-bench/t/<µs>` where `<µs>` is the time the capture was *scheduled*
//! (microseconds since the benchmark started), so a server that falls behind shows it as latency
//! (no coordinated omission). Each subscriber finds `"path":"/t/<µs>"` in every `request` event
//! and records now - µs. Prints one line: captures/s achieved, events received out of those
//! expected, resyncs, and latency p50/p99/max.
//!
//! Raw HTTP/1.1 over tokio sockets keeps the client cheap (no JSON parsing per event): the
//! client, not only the server, has to read N x rate events a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const BIN: &str = "sse-bench";
/// How long connecting every subscriber, and draining events after the last capture, may take.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

struct Args {
    addr: String,
    /// Where captures go (default: `addr`).
    capture_addr: Option<String>,
    subscribers: usize,
    rate: u64,
    seconds: u64,
    connections: usize,
    threads: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:3960".into(),
        capture_addr: None,
        subscribers: 1000,
        rate: 2000,
        seconds: 10,
        connections: 16,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => {
                a.addr = v
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
            }
            "--capture-server" => {
                a.capture_addr = Some(
                    v.trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_owned(),
                );
            }
            "--subscribers" => a.subscribers = v.parse().expect("--subscribers N"),
            "--rate" => a.rate = v.parse().expect("--rate R"),
            "--seconds" => a.seconds = v.parse().expect("--seconds T"),
            "--connections" => a.connections = v.parse().expect("--connections K"),
            "--threads" => a.threads = v.parse().expect("--threads N"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.rate > 0 && a.connections > 0 && a.threads > 0);
    a
}

/// One request on a fresh connection; returns the response head and body as text.
async fn once(addr: &str, request: String) -> String {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response with a Content-Length body from a keep-alive connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = memmem::find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let ok = head.starts_with("http/1.1 2");
                buf.drain(..end + 4 + len);
                return ok;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One subscriber: connects, reports `ready`, then records one latency per `request` event until
/// told to stop. Returns the latencies (µs) and the number of `resync` events.
async fn subscribe(
    addr: String,
    epoch: Instant,
    ready: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<u32>, u64) {
    let mut s = TcpStream::connect(&addr).await.expect("connect subscriber");
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET /api/bins/{BIN}/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let path = memmem::Finder::new(b"\"path\":\"/t/");
    let resync = memmem::Finder::new(b"event: resync");
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut lat = Vec::new();
    let mut resyncs = 0u64;
    let mut is_ready = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = s.read(&mut chunk) => r.unwrap_or(0),
            _ = stop.changed() => break,
        };
        if n == 0 {
            break;
        }
        let now = epoch.elapsed().as_micros() as u64;
        buf.extend_from_slice(&chunk[..n]);
        if !is_ready && memmem::find(&buf, b"event: ready").is_some() {
            is_ready = true;
            ready.fetch_add(1, Relaxed);
        }
        resyncs += resync.find_iter(&buf).count() as u64;
        // Consume whole markers; keep an unfinished one (and anything after it) for the next read.
        let mut keep_from = buf.len().saturating_sub(32);
        let mut pos = 0;
        while let Some(i) = path.find(&buf[pos..]) {
            let start = pos + i + path.needle().len();
            let digits = buf[start..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if start + digits >= buf.len() {
                keep_from = pos + i;
                break;
            }
            let sent: u64 = std::str::from_utf8(&buf[start..start + digits])
                .unwrap()
                .parse()
                .unwrap_or(now);
            lat.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
            received.fetch_add(1, Relaxed);
            pos = start + digits;
            keep_from = keep_from.max(pos);
        }
        buf.drain(..keep_from.min(buf.len()));
    }
    (lat, resyncs)
}

/// One capture connection: sends capture `i` (for `i = first, first + step, ...`) at its
/// scheduled time, keep-alive. Returns how many were answered 2xx.
async fn send_captures(
    addr: String,
    epoch: Instant,
    start: Duration,
    (first, step, total, rate): (u64, u64, u64, u64),
) -> u64 {
    let mut s = TcpStream::connect(&addr).await.expect("connect sender");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut ok = 0;
    let mut i = first;
    while i < total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until((epoch + at).into()).await;
        let t = at.as_micros();
        let req = format!(
            "POST /b/{BIN}/t/{t} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{{}}"
        );
        if s.write_all(req.as_bytes()).await.is_err() || !read_response(&mut s, &mut buf).await {
            break;
        }
        ok += 1;
        i += step;
    }
    ok
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let a = parse_args();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(a));
}

async fn run(a: Args) {
    let created = once(
        &a.addr,
        format!(
            "PUT /api/bins/{BIN} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            a.addr
        ),
    )
    .await;
    assert!(
        created.starts_with("HTTP/1.1 20"),
        "creating the bin: {created}"
    );

    let epoch = Instant::now();
    let ready = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let subs: Vec<_> = (0..a.subscribers)
        .map(|_| {
            tokio::spawn(subscribe(
                a.addr.clone(),
                epoch,
                Arc::clone(&ready),
                Arc::clone(&received),
                stop_rx.clone(),
            ))
        })
        .collect();
    let setup = Instant::now();
    while ready.load(Relaxed) < a.subscribers as u64 {
        assert!(
            setup.elapsed() < SETUP_LIMIT,
            "only {} of {} subscribers connected",
            ready.load(Relaxed),
            a.subscribers
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Captures are scheduled from now on, so setup time is not counted as latency.
    let start = epoch.elapsed();
    let total = a.rate * a.seconds;
    let senders: Vec<_> = (0..a.connections as u64)
        .map(|k| {
            let addr = a.capture_addr.clone().unwrap_or_else(|| a.addr.clone());
            tokio::spawn(async move {
                let plan = (k, a.connections as u64, total, a.rate);
                send_captures(addr, epoch, start, plan).await
            })
        })
        .collect();
    let mut sent = 0;
    for s in senders {
        sent += s.await.unwrap();
    }
    let send_secs = epoch.elapsed().saturating_sub(start).as_secs_f64();

    let expected = sent * a.subscribers as u64;
    let drain = Instant::now();
    while received.load(Relaxed) < expected && drain.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    let mut all = Vec::with_capacity(expected as usize);
    let mut resyncs = 0;
    for s in subs {
        let (lat, r) = s.await.unwrap();
        all.extend(lat);
        resyncs += r;
    }
    all.sort_unstable();
    println!(
        "subscribers={} rate={} seconds={} captures={} captures_per_s={:.0} events={} expected={} \
         resyncs={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        a.subscribers,
        a.rate,
        a.seconds,
        sent,
        sent as f64 / send_secs,
        all.len(),
        expected,
        resyncs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
}
