//! # Connection limits: deadlines, caps and the shutdown cut-off
//!
//! Owns what a connection may cost: how long it may take to send a request head
//! (`--header-timeout`), how long it may sit idle or stall a body (`--idle-timeout`), how many
//! connections may be open at once (`--max-connections`, `--max-connections-per-ip`), and the
//! grace period of a shutdown.
//!
//! hyper's own `header_read_timeout` is not used: hyper 1.x starts that timer whenever the
//! connection waits for a head, which includes the wait of an idle keep-alive connection
//! (`proto/h1/conn.rs`: `State::idle` sets `notify_read` "so the next read starts the header read
//! timeout"), so a 10 s header timeout would also close every keep-alive connection after 10 s
//! and `--idle-timeout` could not mean anything. Instead [`Watched`] wraps the socket and checks,
//! each time a read would wait, which deadline applies from what the connection is doing
//! ([`Activity`], shared with the service and the request bodies):
//! - no request in progress, bytes of a head arrived: the head must be complete within the
//!   header timeout of its first byte;
//! - no request in progress, nothing arrived (a keep-alive connection, or a new one): closed
//!   after the idle timeout;
//! - a handler waits for body bytes that do not come: closed after the idle timeout since the
//!   last byte;
//! - a handler is running otherwise (a response delay, a long poll, a live stream): no deadline
//!   on reads; but a response the client does not read (no byte written for the idle timeout)
//!   closes the connection.
//!
//! A timeout is an I/O error (`TimedOut`) on the read, so hyper closes the connection, and a
//! handler waiting for the body sees it as a body error.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// Limits of the HTTP layer (flags of `bin-server serve`).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A request head must arrive whole within this of its first byte.
    pub header_timeout: Duration,
    /// A connection with no request in progress, or a body with no bytes arriving, is closed
    /// after this long.
    pub idle_timeout: Duration,
    /// Connections open at once; more are accepted and closed at once, without a response.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64); `0`: no per-address
    /// limit. Loopback clients are not limited per address: they are this machine (local tools,
    /// a CI script with a thousand waiters, a reverse proxy on the same host).
    pub max_connections_per_ip: usize,
    /// Bytes of request bodies being read, across all captures; past it a capture is answered
    /// `503 server_busy`.
    pub max_inflight_bytes: u64,
    /// How long requests still running get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_inflight_bytes: 64 << 20,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Which deadline closed a connection (a label of `hookbin_connection_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    Header,
    Idle,
    Body,
    /// The client stopped reading the response.
    Write,
}

/// What one connection is doing, as far as its deadlines care. Written by the service (requests
/// starting and finishing) and the request bodies (waiting for bytes), read by [`Watched`] on
/// the connection's own task: plain atomics, no lock (one connection, nothing contended).
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Requests whose handler or response is still running.
    busy: AtomicU32,
    /// Requests handed to the service so far: a new one ends the head the header clock timed.
    requests: AtomicU64,
    /// When `busy` last dropped to zero (microseconds since `start`).
    idle_since: AtomicU64,
    /// Request bodies whose reader waits for bytes that have not arrived.
    bodies_waiting: AtomicU32,
    /// When `bodies_waiting` last rose from zero (microseconds since `start`).
    body_wait_since: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            busy: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            bodies_waiting: AtomicU32::new(0),
            body_wait_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A request head was handed to the service; the returned guard ends it when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Relaxed);
        self.busy.fetch_add(1, Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// Whether a handler is running that is not waiting for body bytes: such a request is let
    /// finish on shutdown; everything else (idle, mid-head, mid-body) is closed at once.
    pub fn handler_running(&self) -> bool {
        self.busy.load(Relaxed) > 0 && self.bodies_waiting.load(Relaxed) == 0
    }
}

/// Keeps a request counted as in progress until its response body is dropped (hyper drops it
/// once written, or with the connection).
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Relaxed);
        }
    }
}

/// A response body that holds its request's [`RequestGuard`].
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    pub fn new(body: B, guard: RequestGuard) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that tells the connection's [`Activity`] when its reader waits for bytes.
#[derive(Debug)]
pub struct WatchedBody<B> {
    body: B,
    activity: Arc<Activity>,
    waiting: bool,
}

impl<B> WatchedBody<B> {
    pub fn new(body: B, activity: Arc<Activity>) -> Self {
        Self {
            body,
            activity,
            waiting: false,
        }
    }

    fn set_waiting(&mut self, waiting: bool) {
        if waiting == self.waiting {
            return;
        }
        self.waiting = waiting;
        let a = &self.activity;
        if waiting {
            if a.bodies_waiting.fetch_add(1, Relaxed) == 0 {
                a.body_wait_since.store(a.now(), Relaxed);
            }
        } else {
            a.bodies_waiting.fetch_sub(1, Relaxed);
        }
    }
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl<B: Body + Unpin> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        self.set_waiting(poll.is_pending());
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket of one connection, with its deadlines (see the module docs).
pub struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
    header_timeout: u64,
    idle_timeout: u64,
    metrics: Arc<Metrics>,
    /// Cancelled on shutdown: from then on nothing but a running handler keeps it open.
    closing: CancellationToken,
    /// An HTTP/2 connection (its preface seen): frames between requests (pings, settings) are
    /// not a request head, so only the idle deadline applies between requests.
    http2: bool,
    first_read: bool,
    /// A deadline already failed a read (counted once).
    timed_out: Option<TimeoutKind>,
    /// Since when a write has been waiting for the client to read (microseconds).
    write_stalled_since: Option<u64>,
    /// The head being received: the request count when its first byte came, and when.
    head: Option<(u64, u64)>,
    /// One timer per connection, moved only when a deadline comes earlier than where it is set
    /// (so a busy keep-alive connection does not touch the timer wheel per request).
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<u64>,
}

impl<T> Watched<T> {
    pub fn new(
        io: T,
        activity: Arc<Activity>,
        limits: &ConnLimits,
        metrics: Arc<Metrics>,
        closing: CancellationToken,
    ) -> Self {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self {
            io,
            activity,
            header_timeout: micros(limits.header_timeout),
            idle_timeout: micros(limits.idle_timeout),
            metrics,
            closing,
            http2: false,
            first_read: true,
            timed_out: None,
            write_stalled_since: None,
            head: None,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            sleep_at: None,
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        if self.first_read {
            self.first_read = false;
            self.http2 = bytes.starts_with(b"PRI * HTTP/2");
        }
        // Only the first byte of a head needs the clock: a body's stall is timed from when its
        // reader last started waiting (each delivered frame ends a wait).
        let a = &self.activity;
        if a.busy.load(Relaxed) == 0 && !self.http2 {
            let n = a.requests.load(Relaxed);
            if self.head.is_none_or(|(of, _)| of != n) {
                self.head = Some((n, a.now()));
            }
        }
    }

    /// The deadline that applies while a read waits, if any.
    fn deadline(&self) -> Option<(u64, TimeoutKind)> {
        let a = &self.activity;
        if a.busy.load(Relaxed) > 0 {
            if a.bodies_waiting.load(Relaxed) == 0 {
                return None;
            }
            let since = a.body_wait_since.load(Relaxed);
            return Some((since.saturating_add(self.idle_timeout), TimeoutKind::Body));
        }
        let n = a.requests.load(Relaxed);
        match self.head {
            Some((of, first)) if of == n => Some((
                first.saturating_add(self.header_timeout),
                TimeoutKind::Header,
            )),
            _ => Some((
                a.idle_since.load(Relaxed).saturating_add(self.idle_timeout),
                TimeoutKind::Idle,
            )),
        }
    }

    /// A read would wait: fail it if its deadline passed, else make sure the timer wakes the
    /// connection by then.
    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(kind) = self.timed_out {
                return Poll::Ready(Err(timeout_error(kind)));
            }
            let deadline = self.deadline();
            if self.closing.is_cancelled() && deadline.is_some() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "server shutting down",
                )));
            }
            // The usual case while a handler runs (hyper reads to notice a client closing): no
            // deadline and the timer set, so no clock read.
            if deadline.is_none() && self.sleep_at.is_some() && !self.sleep.is_elapsed() {
                return match self.sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.sleep_at = None;
                        continue;
                    }
                };
            }
            let now = self.activity.now();
            let wake_at = match deadline {
                Some((at, kind)) if at <= now => {
                    self.metrics.count_timeout(kind);
                    self.timed_out = Some(kind);
                    return Poll::Ready(Err(timeout_error(kind)));
                }
                Some((at, _)) => at,
                // A handler is running: no deadline, but the timer must fire by the idle deadline
                // that starts when the response is done (hyper does not read again by itself
                // then); any time up to `now + idle` is early enough, as that deadline is later.
                None => now.saturating_add(self.idle_timeout),
            };
            if self.arm(cx, now, wake_at).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// A write would wait (the client does not read): fail it once no byte could be written for
    /// the idle timeout, else make sure the timer wakes the connection by then.
    fn on_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if let Some(kind) = self.timed_out {
                return Poll::Ready(timeout_error(kind));
            }
            let now = self.activity.now();
            let since = *self.write_stalled_since.get_or_insert(now);
            let at = since.saturating_add(self.idle_timeout);
            if at <= now {
                self.metrics.count_timeout(TimeoutKind::Write);
                self.timed_out = Some(TimeoutKind::Write);
                return Poll::Ready(timeout_error(TimeoutKind::Write));
            }
            if self.arm(cx, now, at).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Makes sure the timer wakes the connection by `wake_at`; `Ready` when it already fired
    /// (the caller looks again: its deadline may have moved meanwhile).
    fn arm(&mut self, cx: &mut Context<'_>, now: u64, wake_at: u64) -> Poll<()> {
        if self.sleep_at.is_none_or(|at| at <= now || at > wake_at) {
            let at = self.activity.start + Duration::from_micros(wake_at);
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
            self.sleep_at = Some(wake_at);
        }
        let fired = self.sleep.as_mut().poll(cx);
        if fired.is_ready() {
            self.sleep_at = None;
        }
        fired
    }
}

impl<T> Watched<T> {
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Pending => self.on_write_pending(cx).map(Err),
            Poll::Ready(Ok(n)) if n > 0 => {
                self.write_stalled_since = None;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

fn timeout_error(kind: TimeoutKind) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        match kind {
            TimeoutKind::Header => "request head not received within --header-timeout",
            TimeoutKind::Idle => "connection idle for --idle-timeout",
            TimeoutKind::Body => "request body stalled for --idle-timeout",
            TimeoutKind::Write => "client read nothing of the response for --idle-timeout",
        },
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.on_bytes(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.on_pending(cx),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(cx, poll)
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

/// Descriptors the process needs besides its connections (listener, stdio, outbound requests).
const SPARE_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files toward the hard limit, since every connection is a
/// descriptor, and warns when `--max-connections` cannot be reached under it (accepts then fail
/// with EMFILE before the cap refuses anything).
pub fn raise_open_files_limit(max_connections: usize) {
    let wanted = (max_connections as u64).saturating_add(SPARE_DESCRIPTORS);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            "--max-connections {max_connections} needs about {wanted} open files, but the limit \
             is {limit} (raise the hard limit, e.g. `ulimit -Hn`): accepts will fail first"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not read or raise the open files limit: {e}"),
    }
}

/// Open connections, in total and per client address. A connection holds a [`Slot`] for as
/// long as it is open.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    per_ip_max: usize,
    /// Open connections per address; only touched on accept and close (a sharded map: accepts
    /// on one runtime thread and closes on others do not wait for each other much).
    per_ip: DashMap<IpAddr, usize>,
    metrics: Arc<Metrics>,
}

/// Why a connection was refused (a label of `hookbin_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    PerIp,
}

impl Slots {
    pub fn new(limits: &ConnLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max: limits.max_connections,
            per_ip_max: limits.max_connections_per_ip,
            per_ip: DashMap::new(),
            metrics,
        })
    }

    /// Takes a slot for a connection from `peer`, or says why there is none.
    pub fn take(self: &Arc<Self>, peer: SocketAddr) -> Result<Slot, Refusal> {
        let open = &self.metrics.connections_open;
        // Only the accept loop increments, so checking before adding cannot overshoot.
        if open.load(Relaxed) >= self.max as u64 {
            self.metrics.count_refusal(Refusal::MaxConnections);
            return Err(Refusal::MaxConnections);
        }
        let ip = client_key(peer.ip());
        // `::1` masks to `::`, and `::ffff:127.0.0.1` maps to `127.0.0.1`: ask both forms.
        let limited = self.per_ip_max > 0 && !(peer.ip().is_loopback() || ip.is_loopback());
        if limited {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip_max {
                drop(n);
                self.metrics.count_refusal(Refusal::PerIp);
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        open.fetch_add(1, Relaxed);
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
            per_ip: limited,
        })
    }
}

/// IPv6 clients usually hold a whole /64: count them by it, or one client is millions.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// One open connection's place; released when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    /// Counted in `per_ip`.
    per_ip: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = &self.slots;
        if self.per_ip {
            s.per_ip.remove_if_mut(&self.ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
        s.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_cap_in_total_and_per_address_and_come_back() {
        let metrics = Arc::new(Metrics::default());
        let limits = ConnLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnLimits::default()
        };
        let slots = Slots::new(&limits, Arc::clone(&metrics));
        let a = slots.take(addr("10.0.0.1:1")).unwrap();
        let _b = slots.take(addr("10.0.0.1:2")).unwrap();
        assert_eq!(slots.take(addr("10.0.0.1:3")).unwrap_err(), Refusal::PerIp);
        let _c = slots.take(addr("10.0.0.2:1")).unwrap();
        assert_eq!(
            slots.take(addr("10.0.0.3:1")).unwrap_err(),
            Refusal::MaxConnections
        );
        drop(a);
        let _d = slots.take(addr("10.0.0.1:4")).unwrap();
        assert_eq!(metrics.connections_open.load(Relaxed), 3);
    }

    #[test]
    fn loopback_clients_are_not_limited_per_address() {
        let metrics = Arc::new(Metrics::default());
        let limits = ConnLimits {
            max_connections: 10,
            max_connections_per_ip: 1,
            ..ConnLimits::default()
        };
        let slots = Slots::new(&limits, Arc::clone(&metrics));
        let held: Vec<_> = (0..5)
            .map(|i| slots.take(addr(&format!("127.0.0.1:{i}"))).unwrap())
            .chain((0..4).map(|i| slots.take(addr(&format!("[::1]:{i}"))).unwrap()))
            .chain([slots.take(addr("[::ffff:127.0.0.1]:1")).unwrap()])
            .collect();
        assert_eq!(
            slots.take(addr("127.0.0.1:9")).unwrap_err(),
            Refusal::MaxConnections
        );
        drop(held);
        assert!(slots.per_ip.is_empty());
        assert_eq!(metrics.connections_open.load(Relaxed), 0);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = client_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
