//! # Connections: accept loop, graceful shutdown, and the raw-head tap
//!
//! hyper parses headers into a `HeaderMap`, which lower-cases names and groups duplicates by
//! name. A capture must keep them as they came: original case, arrival order, duplicates in
//! place. So every HTTP/1 connection's bytes pass through a [`Tap`] that follows the message
//! framing (head, then a `Content-Length` or chunked body) exactly as hyper does, and queues each
//! request head's header lines. Requests on a connection are served in order, so the handler for
//! the n-th request takes the n-th queued head ([`ConnInfo`]). When the tap cannot follow
//! (HTTP/2, upgrades, heads over [`MAX_HEAD`]) it steps aside and captures fall back to the
//! `HeaderMap` (lower-case names, as HTTP/2 sends them anyway).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::RawHeaders;

mod watch;

pub use watch::{
    Activity, ConnLimits, Refusal, RequestGuard, Slot, Slots, TimeoutKind, Tracked, Watched,
    WatchedBody, raise_open_files_limit,
};

/// Largest request head the tap follows (hyper's own limit is larger; past this we fall back).
const MAX_HEAD: usize = 64 * 1024;
/// Heads queued ahead of the handlers on one connection (pipelining); past this the tap steps
/// aside rather than buffer without bound.
const MAX_QUEUED_HEADS: usize = 64;

/// One request head as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawHead {
    method: Box<[u8]>,
    target: Box<[u8]>,
    pub headers: RawHeaders,
}

/// What the connection knows about a request, put in its extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: SocketAddr,
    /// The exact head, when the tap could follow the connection.
    pub head: Option<RawHead>,
}

#[derive(Debug)]
enum Framing {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    /// Not following any more (HTTP/2, upgrade, oversize or malformed head).
    Off,
}

/// Follows HTTP/1 framing over the bytes read from a connection.
#[derive(Debug)]
struct Tracker {
    framing: Framing,
    buf: Vec<u8>,
    heads: VecDeque<RawHead>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            framing: Framing::Head,
            buf: Vec::new(),
            heads: VecDeque::new(),
        }
    }
}

impl Tracker {
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.framing {
                Framing::Off => return,
                Framing::Head if self.buf.is_empty() => {
                    // The usual case: a whole head in this read, parsed where it lies.
                    let taken = self.parse_head(input);
                    if taken == 0 {
                        if !matches!(self.framing, Framing::Off) {
                            self.buf.extend_from_slice(input);
                        }
                        return;
                    }
                    input = &input[taken..];
                }
                Framing::Head => {
                    // A head split across reads: parse it from the buffer, then go on with
                    // whatever followed it. The depth of this recursion is bounded by
                    // MAX_QUEUED_HEADS.
                    self.buf.extend_from_slice(input);
                    let buf = std::mem::take(&mut self.buf);
                    let taken = self.parse_head(&buf);
                    if taken == 0 {
                        if !matches!(self.framing, Framing::Off) {
                            self.buf = buf;
                        }
                        return;
                    }
                    self.feed(&buf[taken..]);
                    return;
                }
                Framing::Body(n) => {
                    let k = n.min(input.len() as u64);
                    input = &input[k as usize..];
                    self.framing = if n == k {
                        Framing::Head
                    } else {
                        Framing::Body(n - k)
                    };
                }
                Framing::ChunkData(n) => {
                    let k = n.min(input.len() as u64);
                    input = &input[k as usize..];
                    self.framing = if n == k {
                        Framing::ChunkEnd
                    } else {
                        Framing::ChunkData(n - k)
                    };
                }
                Framing::ChunkSize | Framing::ChunkEnd | Framing::Trailers => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        self.line_bytes(input);
                        return;
                    };
                    self.line_bytes(&input[..nl]);
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.end_line(line);
                }
            }
        }
    }

    fn line_bytes(&mut self, part: &[u8]) {
        self.buf.extend_from_slice(part);
        if self.buf.len() > MAX_HEAD {
            self.off();
        }
    }

    fn end_line(&mut self, line: &[u8]) {
        self.framing = match self.framing {
            Framing::ChunkSize => {
                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
                match size {
                    Some(0) => Framing::Trailers,
                    Some(n) => Framing::ChunkData(n),
                    None => Framing::Off,
                }
            }
            Framing::ChunkEnd => Framing::ChunkSize,
            Framing::Trailers if line.is_empty() => Framing::Head,
            Framing::Trailers => Framing::Trailers,
            _ => Framing::Off,
        };
        if matches!(self.framing, Framing::Off) {
            self.off();
        }
    }

    fn off(&mut self) {
        self.framing = Framing::Off;
        self.buf = Vec::new();
    }

    /// Parses one head at the start of `data` and sets the body framing. Returns the bytes it
    /// took, or 0 when the head is incomplete (or the tap turned off).
    fn parse_head(&mut self, data: &[u8]) -> usize {
        // Blank lines between messages are allowed (RFC 9112 section 2.2).
        let lead = data
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        // Uninitialised slots: zeroing 128 headers cost more than parsing a typical head.
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(&data[lead..], &mut slots) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if data.len() <= MAX_HEAD => return 0,
            _ => {
                self.off();
                return 0;
            }
        };
        // The header lines, kept as they came: from after the request line to the blank line.
        let head = &data[lead..lead + len];
        let lines_start = head.iter().position(|&b| b == b'\n').map_or(len, |i| i + 1);
        let headers = RawHeaders::from_wire(&head[lines_start.min(len)..]);
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let method = req.method.unwrap_or("").as_bytes();
        let connect = method == b"CONNECT";
        if self.heads.len() >= MAX_QUEUED_HEADS {
            self.off();
            return 0;
        }
        self.heads.push_back(RawHead {
            method: method.into(),
            target: req.path.unwrap_or("").as_bytes().into(),
            headers,
        });
        self.framing = if upgrade || connect {
            Framing::Off
        } else if chunked {
            Framing::ChunkSize
        } else {
            match content_length {
                Some(n) if n > 0 => Framing::Body(n),
                _ => Framing::Head,
            }
        };
        if matches!(self.framing, Framing::Off) {
            self.buf = Vec::new();
            return 0;
        }
        lead + len
    }

    /// The head of the next request hyper hands us, if it is the one we expect.
    fn next_head(&mut self, method: &http::Method, uri: &http::Uri) -> Option<RawHead> {
        let head = self.heads.pop_front()?;
        let target = uri
            .path_and_query()
            .map_or(uri.path(), |pq| pq.as_str())
            .as_bytes();
        // hyper may normalise an absolute-form target; the method and path suffix still agree.
        (head.method.as_ref() == method.as_str().as_bytes() && head.target.ends_with(target))
            .then_some(head)
    }
}

/// An I/O wrapper that shows every byte read to the connection's [`Tracker`].
struct Tap<T> {
    io: T,
    /// Shared with the connection's service; only this connection's task touches it, so the
    /// lock is never contended (it exists because hyper wants `Send + 'static` services).
    tracker: Arc<Mutex<Tracker>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let mut t = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
                t.feed(new);
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, within `limits` (see [`watch`]): each
/// connection takes a [`Slot`] (or is closed at once) and has its deadlines. On shutdown it stops
/// accepting, closes at once every connection that is idle, mid-head or mid-body, lets running
/// handlers finish for up to `limits.shutdown_grace` (a bin's response delay ends early on
/// shutdown by itself), then drops whatever is left and returns.
pub async fn serve<S, F>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()> + Send,
    limits: ConnLimits,
    metrics: Arc<crate::Metrics>,
) -> io::Result<()>
where
    S: Fn(axum::extract::Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = axum::response::Response> + Send + 'static,
{
    // No hyper timer and so no hyper `header_read_timeout`: `Watched` keeps the deadlines (its
    // module docs say why).
    let builder = auto::Builder::new(TokioExecutor::new());
    let slots = Slots::new(&limits, Arc::clone(&metrics));
    // `closing`: stop taking requests, close what is not running a handler; `force`: the grace
    // period is over, drop everything.
    let closing = CancellationToken::new();
    let force = CancellationToken::new();
    // Each connection task holds a sender; when the last one is gone, every connection is.
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a cap: closed at once, no response (answering would cost what the cap saves).
        let Ok(slot) = slots.take(remote_addr) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let watched = Watched::new(
            stream,
            Arc::clone(&activity),
            &limits,
            Arc::clone(&metrics),
            closing.clone(),
        );
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let io = TokioIo::new(Tap {
            io: watched,
            tracker: Arc::clone(&tracker),
        });
        let app = app.clone();
        let conn_activity = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let head = tracker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_head(req.method(), req.uri());
            req.extensions_mut().insert(ConnInfo { remote_addr, head });
            let guard = activity.request_started();
            let activity = Arc::clone(&activity);
            let response =
                app(req.map(|body| axum::body::Body::new(WatchedBody::new(body, activity))));
            async move {
                let response = response.await;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        });
        let conn = builder.serve_connection(io, service).into_owned();
        let closing = closing.clone();
        let force = force.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                // Shutdown first: a connection woken by it is closed, not read from again.
                biased;
                () = closing.cancelled() => {}
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!("connection from {remote_addr} ended: {e}");
                    }
                    return;
                }
            }
            // Idle, mid-head or mid-body: close now (dropping the connection).
            if !conn_activity.handler_running() {
                return;
            }
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                () = force.cancelled() => {}
            }
        });
    }
    drop(listener);
    drop(open_tx);
    closing.cancel();
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                "shutdown: requests still running after {:?}; closing their connections",
                limits.shutdown_grace
            );
            force.cancel();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &mut Tracker) -> Vec<Vec<(String, String)>> {
        t.heads
            .drain(..)
            .map(|h| {
                h.headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8_lossy(n).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    const PIPELINE: &[u8] =
        b"POST /b/x HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nContent-Length: 5\r\n\r\n\
        hello\
        PUT /b/x/y?q HTTP/1.1\r\nHOST: a\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n\
        \r\nGET /b/x HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn follows_pipelined_requests_in_one_read() {
        let mut t = Tracker::default();
        t.feed(PIPELINE);
        let heads = names(&mut t);
        assert_eq!(heads.len(), 3);
        assert_eq!(heads[0][1], ("X-Dup".into(), "1".into()));
        assert_eq!(heads[0][2], ("x-dup".into(), "2".into()));
        assert_eq!(heads[1][0], ("HOST".into(), "a".into()));
        assert_eq!(heads[2].len(), 1);
        assert!(matches!(t.framing, Framing::Head));
    }

    #[test]
    fn follows_the_same_bytes_one_at_a_time() {
        let mut t = Tracker::default();
        for b in PIPELINE {
            t.feed(std::slice::from_ref(b));
        }
        assert_eq!(names(&mut t).len(), 3);
    }

    #[test]
    fn body_that_looks_like_a_request_is_not_a_head() {
        let mut t = Tracker::default();
        let fake = b"GET /b/x HTTP/1.1\r\nX-Fake: 1\r\n\r\n";
        let mut wire = format!(
            "POST /b/x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            fake.len()
        )
        .into_bytes();
        wire.extend_from_slice(fake);
        wire.extend_from_slice(b"GET /b/x HTTP/1.1\r\nX-Real: 1\r\n\r\n");
        t.feed(&wire);
        let heads = names(&mut t);
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1][0].0, "X-Real");
    }

    #[test]
    fn steps_aside_for_http2_and_upgrades() {
        let mut t = Tracker::default();
        t.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(matches!(t.framing, Framing::Off));
        let mut t = Tracker::default();
        t.feed(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(t.heads.len(), 1);
        assert!(matches!(t.framing, Framing::Off));
    }

    #[test]
    fn oversize_head_turns_the_tap_off() {
        let mut t = Tracker::default();
        t.feed(b"GET / HTTP/1.1\r\n");
        for _ in 0..2000 {
            t.feed(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(t.framing, Framing::Off));
        assert!(t.buf.capacity() <= MAX_HEAD * 2);
    }

    #[test]
    fn next_head_checks_method_and_target() {
        let mut t = Tracker::default();
        t.feed(b"GET /b/x?a=1 HTTP/1.1\r\n\r\nGET /b/y HTTP/1.1\r\n\r\n");
        let m = http::Method::GET;
        assert!(t.next_head(&m, &"/b/x?a=1".parse().unwrap()).is_some());
        assert!(t.next_head(&m, &"/b/other".parse().unwrap()).is_none());
    }
}
