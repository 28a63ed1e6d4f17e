//! Differential test of the tap against hyper: random pipelined requests (methods, targets,
//! mixed-case and repeated header names, `Content-Length` and chunked bodies with extensions
//! and trailers, bare LFs wherever hyper accepts them) go through hyper's real HTTP/1 server
//! connection, the one `serve()` builds, in random read splits, over a [`Tap`]. For every request
//! hyper hands the service, the tracker's queued head must be that request's head, byte for byte;
//! a second set of cases mutates one byte, and then whatever hyper still serves must carry its own
//! head or none.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proptest::prelude::*;
use proptest::test_runner::Config;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{RawHead, Tap, Tracker};

/// A connection whose reads return the scripted chunks one at a time, then nothing more (the
/// peer is silent, the connection open); writes vanish.
struct Script(VecDeque<Vec<u8>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(front) = self.0.front_mut() else {
            return Poll::Pending;
        };
        let n = front.len().min(buf.remaining());
        buf.put_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.0.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the service saw for one request.
#[derive(Debug)]
struct Served {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    /// The tracker's queued head before `next_head` checked it (the tracker on its own).
    queued: Option<RawHead>,
    /// What `next_head` handed on.
    handed: Option<RawHead>,
    /// The body hyper decoded, or `None` when it failed.
    body: Option<Vec<u8>>,
}

/// Runs `chunks` through hyper's server connection over a tap and returns what it served.
fn serve_script(rt: &tokio::runtime::Runtime, chunks: Vec<Vec<u8>>) -> Vec<Served> {
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let served = Arc::new(Mutex::new(Vec::new()));
    let io = TokioIo::new(Tap {
        io: Script(chunks.into()),
        tracker: Arc::clone(&tracker),
    });
    let log = Arc::clone(&served);
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let (queued, handed) = {
            let mut t = tracker.lock().unwrap();
            let queued = t.heads.front().cloned();
            (queued, t.next_head(req.method(), req.uri(), req.headers()))
        };
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
            log.lock().unwrap().push(Served {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                queued,
                handed,
                body,
            });
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }
    });
    rt.block_on(async {
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(io, service);
        // The clock is paused: it jumps to the deadline as soon as hyper waits for bytes the
        // script no longer has, so this returns when hyper has done all it can, at once.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3600), conn).await;
    });
    Arc::try_unwrap(served)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_else(|a| std::mem::take(&mut *a.lock().unwrap()))
}

/// One generated request and the bytes that make it.
#[derive(Clone)]
struct Generated {
    method: String,
    target: String,
    /// The header lines as sent, from after the request line through the blank line.
    header_block: Vec<u8>,
    body: Vec<u8>,
    wire: Vec<u8>,
    /// Both `Content-Length` and `Transfer-Encoding`: hyper serves it, then closes.
    closes: bool,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.wire))
    }
}

const TCHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
const VALUE_BYTES: &[u8] = b"aZ09 \t,;=\"/:@()<>?{}[]\\~\xe9\xff";
const NAMES: &[&str] = &[
    "Host",
    "host",
    "X-Dup",
    "x-dup",
    "X-DUP",
    "Authorization",
    "X-Signature",
    "Accept",
    "Content-Type",
    "Trailer",
];

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just("\r\n"), 1 => Just("\n")]
}

fn ows() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\t", "  \t"])
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_owned),
        prop::collection::vec(prop::sample::select(TCHARS), 1..16)
            .prop_map(|b| String::from_utf8(b).unwrap()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    // No white space at either end: hyper and the tap both trim it, so it goes in `ows()`.
    prop::collection::vec(prop::sample::select(VALUE_BYTES), 0..12).prop_map(|mut v| {
        while v.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.remove(0);
        }
        while v.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.pop();
        }
        v
    })
}

fn header_line() -> impl Strategy<Value = Vec<u8>> {
    (name(), ows(), value(), ows(), eol()).prop_map(|(n, a, v, b, e)| {
        let mut l = n.into_bytes();
        l.push(b':');
        l.extend_from_slice(a.as_bytes());
        l.extend_from_slice(&v);
        if !v.is_empty() {
            l.extend_from_slice(b.as_bytes());
        }
        l.extend_from_slice(e.as_bytes());
        l
    })
}

fn target() -> impl Strategy<Value = String> {
    let path = prop::collection::vec(
        prop::sample::select(b"abcXYZ019/._~%-!$&'()*+,;=:@".to_vec()),
        0..12,
    );
    let query = prop::option::of(prop::collection::vec(
        prop::sample::select(b"a=1&b?/%".to_vec()),
        0..8,
    ));
    (path, query, 0..6u8).prop_map(|(p, q, form)| {
        let mut t = format!("/{}", String::from_utf8(p).unwrap());
        if let Some(q) = q {
            t.push('?');
            t.push_str(&String::from_utf8(q).unwrap());
        }
        match form {
            0 => format!("http://example.test{t}"),
            1 => format!("{t}#frag"),
            _ => t,
        }
    })
}

/// A body and the header lines that frame it.
#[derive(Debug, Clone)]
enum BodySpec {
    None,
    Length {
        body: Vec<u8>,
        repeat: bool,
    },
    Chunked {
        chunks: Vec<(Vec<u8>, String)>,
        last: String,
        trailer: Vec<u8>,
        cl: bool,
    },
}

fn chunk_size_line() -> impl Strategy<Value = (bool, u8, String)> {
    // Upper-case hex, leading zeros, white space before an extension.
    let ext = prop::collection::vec(prop::sample::select(b"a=b;\"x y\t".to_vec()), 0..8)
        .prop_map(|e| String::from_utf8(e).unwrap());
    (
        any::<bool>(),
        0..3u8,
        prop_oneof![
            Just(String::new()),
            ext.prop_map(|e| format!(";{e}")),
            Just(" \t;x".to_owned())
        ],
    )
}

fn trailer_section() -> impl Strategy<Value = Vec<u8>> {
    let line = (name(), value()).prop_map(|(n, v)| {
        let mut l = n.into_bytes();
        l.extend_from_slice(b": ");
        l.extend_from_slice(&v);
        l.extend_from_slice(b"\r\n");
        l
    });
    prop_oneof![
        3 => Just(b"\r\n".to_vec()),
        2 => prop::collection::vec(line, 1..4).prop_map(|ls| {
            let mut s = ls.concat();
            s.extend_from_slice(b"\r\n");
            s
        }),
        // Issue 8: a bare LF, then what looks like a request head: trailers for hyper.
        2 => (target(), header_line()).prop_map(|(t, h)| {
            let mut s = format!("\nPOST {t} HTTP/1.1\r\n").into_bytes();
            s.extend_from_slice(&h);
            if !s.ends_with(b"\r\n") {
                s.pop();
                s.extend_from_slice(b"\r\n");
            }
            s.extend_from_slice(b"\r\n");
            s
        }),
    ]
}

fn body_spec() -> impl Strategy<Value = BodySpec> {
    let bytes = prop::collection::vec(
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b"\r\n0GET / HTTP/1.1".to_vec())
        ],
        0..24,
    );
    let chunk = (prop::collection::vec(any::<u8>(), 1..20), chunk_size_line()).prop_map(
        |(data, (upper, zeros, ext))| {
            let hex = format!("{:x}", data.len());
            let hex = if upper { hex.to_uppercase() } else { hex };
            (data, format!("{}{hex}{ext}", "0".repeat(zeros.into())))
        },
    );
    prop_oneof![
        1 => Just(BodySpec::None),
        2 => (bytes, any::<bool>()).prop_map(|(body, repeat)| BodySpec::Length { body, repeat }),
        3 => (prop::collection::vec(chunk, 0..4), chunk_size_line(), trailer_section(), any::<bool>())
            .prop_map(|(chunks, (_, zeros, ext), trailer, cl)| BodySpec::Chunked {
                chunks,
                last: format!("{}{ext}", "0".repeat(usize::from(zeros) + 1)),
                trailer,
                cl,
            }),
    ]
}

fn request() -> impl Strategy<Value = Generated> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "M-SEARCH", "PROPFIND",
    ]);
    (
        prop::collection::vec(eol(), 0..2),
        method,
        target(),
        eol(),
        prop::collection::vec(header_line(), 0..8),
        body_spec(),
        any::<prop::sample::Index>(),
        eol(),
    )
        .prop_map(|(blank, method, target, eol1, mut lines, spec, at, end)| {
            let closes = matches!(spec, BodySpec::Chunked { cl: true, .. });
            let (framing, body, tail): (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) = match spec {
                BodySpec::None => (vec![], vec![], vec![]),
                BodySpec::Length { body, repeat } => {
                    let cl = format!("Content-Length: {}\r\n", body.len()).into_bytes();
                    let mut f = vec![cl.clone()];
                    if repeat {
                        f.push(format!("content-length:0{}\n", body.len()).into_bytes());
                    }
                    (f, body.clone(), body)
                }
                BodySpec::Chunked {
                    chunks,
                    last,
                    trailer,
                    cl,
                } => {
                    let mut f = vec![b"Transfer-Encoding: chunked\r\n".to_vec()];
                    if cl {
                        f.insert(0, b"Content-Length: 3\r\n".to_vec());
                    }
                    let mut wire = Vec::new();
                    let mut body = Vec::new();
                    for (data, size) in chunks {
                        wire.extend_from_slice(size.as_bytes());
                        wire.extend_from_slice(b"\r\n");
                        wire.extend_from_slice(&data);
                        wire.extend_from_slice(b"\r\n");
                        body.extend_from_slice(&data);
                    }
                    wire.extend_from_slice(last.as_bytes());
                    wire.extend_from_slice(b"\r\n");
                    wire.extend_from_slice(&trailer);
                    (f, body, wire)
                }
            };
            let pos = at.index(lines.len() + 1);
            for (i, l) in framing.into_iter().enumerate() {
                lines.insert((pos + i).min(lines.len()), l);
            }
            let mut header_block = lines.concat();
            header_block.extend_from_slice(end.as_bytes());
            let mut wire = blank.concat().into_bytes();
            wire.extend_from_slice(format!("{method} {target} HTTP/1.1{eol1}").as_bytes());
            wire.extend_from_slice(&header_block);
            wire.extend_from_slice(&tail);
            Generated {
                method: method.to_owned(),
                target,
                header_block,
                body,
                wire,
                closes,
            }
        })
}

/// Cuts `wire` into reads of the given lengths (cycled), the last one taking the rest.
fn split(wire: &[u8], lens: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = wire;
    for &n in lens
        .iter()
        .cycle()
        .take(if lens.is_empty() { 0 } else { 4096 })
    {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a.to_vec());
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

/// An oracle independent of `same_headers`: every queued line is in hyper's map under its name,
/// and hyper has no other values (`Content-Length` aside, which hyper may drop).
fn agrees_with_hyper(head: &RawHead, s: &Served) -> bool {
    let is_cl = |n: &[u8]| n.eq_ignore_ascii_case(b"content-length");
    let lines: Vec<_> = head.headers.iter().filter(|(n, _)| !is_cl(n)).collect();
    let map_values = s.headers.len() - s.headers.get_all("content-length").iter().count();
    head.method.as_ref() == s.method.as_str().as_bytes()
        && head.target_is(&s.uri)
        && lines.len() == map_values
        && lines.iter().all(|(n, v)| {
            std::str::from_utf8(n)
                .is_ok_and(|n| s.headers.get_all(n).iter().any(|hv| hv.as_bytes() == *v))
        })
}

/// 256 cases a run (a second or so); `HOOKBIN_PROPTEST_CASES=50000` for a long hunt.
fn cases() -> u32 {
    std::env::var("HOOKBIN_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    /// Well-formed pipelines: hyper serves every request, and the tap follows every one.
    #[test]
    fn the_tap_queues_exactly_the_heads_hyper_serves(
        reqs in prop::collection::vec(request(), 1..8),
        lens in prop::collection::vec(1usize..48, 0..8),
    ) {
        let wire: Vec<u8> = reqs.iter().flat_map(|r| r.wire.clone()).collect();
        let served = serve_script(&runtime(), split(&wire, &lens));
        let expected = reqs.iter().position(|r| r.closes).map_or(reqs.len(), |i| i + 1);
        prop_assert_eq!(served.len(), expected, "hyper served them all");
        for (i, (g, s)) in reqs.iter().zip(&served).enumerate() {
            prop_assert_eq!(s.method.as_str(), g.method.as_str(), "request {}", i);
            prop_assert_eq!(s.body.as_deref(), Some(&g.body[..]), "request {}'s body", i);
            let queued = s.queued.as_ref();
            prop_assert!(queued.is_some(), "request {}: the tap lost the connection", i);
            let q = queued.unwrap();
            prop_assert_eq!(
                String::from_utf8_lossy(q.headers.as_bytes()),
                String::from_utf8_lossy(&g.header_block),
                "request {}'s header lines", i
            );
            prop_assert_eq!(&q.target[..], g.target.as_bytes());
            prop_assert!(agrees_with_hyper(q, s), "request {}: {:?}", i, s.headers);
            prop_assert!(s.handed.is_some(), "request {}: next_head disagreed", i);
        }
    }

    /// One byte changed (an edge byte inserted, replaced or removed): hyper may refuse part of
    /// the pipeline, but every head the tap queued or handed for a request hyper served is that
    /// request's own.
    #[test]
    fn a_head_handed_on_is_always_the_served_requests(
        reqs in prop::collection::vec(request(), 1..6),
        lens in prop::collection::vec(1usize..48, 0..8),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"\n\r \t;0:G\x80".to_vec()),
        how in 0..3u8,
    ) {
        let mut wire: Vec<u8> = reqs.iter().flat_map(|r| r.wire.clone()).collect();
        let i = at.index(wire.len());
        match how {
            0 => wire.insert(i, byte),
            1 => wire[i] = byte,
            _ => { wire.remove(i); }
        }
        let served = serve_script(&runtime(), split(&wire, &lens));
        for (i, s) in served.iter().enumerate() {
            if let Some(q) = &s.queued {
                prop_assert!(agrees_with_hyper(q, s), "request {}: queued {:?} for {:?}", i, q, s);
            }
            if let Some(h) = &s.handed {
                prop_assert!(agrees_with_hyper(h, s), "request {}: handed {:?} for {:?}", i, h, s);
            }
        }
    }
}
