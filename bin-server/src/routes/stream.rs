//! Live Server-Sent Events: `GET /api/bins/{bin}/stream` (one bin) and `GET /api/stream` (all).
//!
//! Events: `ready` once connected; `request` per capture (data: the request as JSON, SSE id: its
//! sequence number); `deleted` / `cleared` when requests are removed; `bin_deleted` (then the
//! stream ends); `resync` when this subscriber fell more than the store's per-subscriber buffer
//! behind and missed events (data `{"missed": n}`: reload the list). A keep-alive comment after
//! 15 s without an event. A bin stream honours `Last-Event-ID`: requests after it that are still
//! stored are sent first, so a reconnecting client misses nothing the store still has.
//!
//! Fan-out: a capture's event is rendered once, by the first subscriber that takes it, and
//! every other subscriber (of the bin and of all bins) copies the same bytes
//! ([`crate::store::Rendered`]); `/metrics` counts renders (`hookbin_sse_renders_total`).
//! Each subscriber is a [`coalesced`] stream: when woken it takes every event already queued
//! for it and sends them as one body frame (one write), at most one frame per 10 ms, so under
//! load the wakeups and writes per subscriber stay bounded (by the window and by how often it is
//! scheduled), not driven by the capture rate.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::{Instant, Interval, Sleep};

use crate::error::ApiError;
use crate::routes::request_out;
use crate::store::{BinName, CapturedRequest, LiveEvent, StoreError};
use crate::{AppState, Metrics};

/// Silence after which a stream sends a keep-alive comment, so proxies and clients that drop idle
/// connections keep the stream.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Least time between two frames of one subscriber: a stream that just wrote waits this long
/// before taking more events, so under load each write carries every event of the window
/// (fewer, larger writes, fewer wakeups). Measured with `bench/sse.sh` at 1,000 subscribers and
/// 2,000 captures/s: p99 15 ms with 10 ms, 25-62 ms with 5 ms, 75-164 ms with 2 ms, 145-313 ms
/// without a window. Costs at most this much latency to an event that follows another within
/// it; an event after a quiet spell goes out at once.
const FLUSH_WINDOW: Duration = Duration::from_millis(10);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bins/{bin}/stream", get(bin_stream))
        .route("/api/stream", get(all_stream))
}

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
/// An SSE stream of [`Event`]s, for streams that send rarely (the webhooks `changes` stream).
pub(crate) type EventStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

/// Appends one SSE event to `out`: `event:` when named, a `data:` line per line of `data`
/// (CR, LF and CRLF all end a line, as for the reader), `id:` when given, then the blank line.
pub(crate) fn write_event(out: &mut BytesMut, name: Option<&str>, data: &str, id: Option<u64>) {
    if let Some(name) = name {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.put_slice(b"data: ");
        out.put_slice(&rest.as_bytes()[..end]);
        out.put_u8(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.to_string().as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// One named event with JSON data, as SSE text.
pub(crate) fn json_frame(name: &str, data: &impl serde::Serialize) -> BytesMut {
    let mut out = BytesMut::new();
    let json = serde_json::to_string(data).unwrap_or_default();
    write_event(&mut out, Some(name), &json, None);
    out
}

/// A captured request as the complete `request` event (SSE text, the request as JSON, its
/// sequence number as id), counted in `/metrics` (`hookbin_sse_renders_total`) so the cost of
/// fan-out stays visible.
pub(crate) fn render_request(bin: &str, request: &CapturedRequest, metrics: &Metrics) -> Bytes {
    metrics.sse_renders.fetch_add(1, Relaxed);
    let json = serde_json::to_string(&request_out(bin, request, true)).unwrap_or_default();
    let mut out = BytesMut::with_capacity(json.len() + 48);
    write_event(&mut out, Some("request"), &json, Some(request.seq));
    out.freeze()
}

/// What a [`coalesced`] stream hands its writer.
pub(crate) enum Incoming {
    /// An event from the store.
    Event(LiveEvent),
    /// The subscriber fell behind and `n` events were dropped for it.
    Lagged(u64),
}

/// Whether a [`coalesced`] stream goes on after an event.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Send what is written so far, then end the stream.
    End,
}

/// Optional periodic event of a [`coalesced`] stream, sent whatever the traffic (smee's `ping`).
pub(crate) struct Ping {
    pub interval: Interval,
    pub text: &'static [u8],
}

/// State of one subscriber's [`coalesced`] stream.
struct Coalescing<W> {
    rx: broadcast::Receiver<LiveEvent>,
    write: W,
    ping: Option<Ping>,
    /// Fires when a keep-alive may be due: re-armed from the last frame's time only when it
    /// fires, so a busy stream touches the timer once per [`KEEP_ALIVE`], not once per frame.
    keep_alive: std::pin::Pin<Box<Sleep>>,
    last_sent: Instant,
    /// The store's channel is closed or the writer said [`Flow::End`]: nothing more to send.
    done: bool,
}

/// Live events from `rx` as SSE body frames. Each time the subscriber is woken it takes every
/// event already queued for it (`try_recv` until empty) and `write` appends their SSE text to
/// one buffer, sent as one frame: one wakeup and one write however many events arrived since
/// the last, and at most one frame per [`FLUSH_WINDOW`]. A frame holds at most the channel's
/// capacity of events (more is a lag, reported to `write` as [`Incoming::Lagged`]). Ends when
/// the channel closes or `write` returns [`Flow::End`]; keep-alive comments (`:`) after
/// [`KEEP_ALIVE`] of silence, and `ping`'s event at its interval.
pub(crate) fn coalesced<W>(
    rx: broadcast::Receiver<LiveEvent>,
    ping: Option<Ping>,
    write: W,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static
where
    W: FnMut(Incoming, &mut BytesMut) -> Flow + Send + 'static,
{
    let now = Instant::now();
    let state = Coalescing {
        rx,
        write,
        ping,
        keep_alive: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE)),
        last_sent: now,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out = BytesMut::new();
        // Not before the flush window after the last frame: events meanwhile join this one.
        let open_at = st.last_sent + FLUSH_WINDOW;
        if Instant::now() < open_at {
            tokio::time::sleep_until(open_at).await;
        }
        loop {
            let first = tokio::select! {
                first = st.rx.recv() => first,
                () = st.keep_alive.as_mut() => {
                    let now = Instant::now();
                    let due = st.last_sent + KEEP_ALIVE;
                    if now < due {
                        st.keep_alive.as_mut().reset(due);
                        continue;
                    }
                    out.put_slice(b":\n\n");
                    break;
                }
                _ = async {
                    match st.ping.as_mut() {
                        Some(p) => p.interval.tick().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(p) = &st.ping {
                        out.put_slice(p.text);
                    }
                    break;
                }
            };
            let mut next = match first {
                Ok(ev) => Incoming::Event(ev),
                Err(RecvError::Lagged(n)) => Incoming::Lagged(n),
                Err(RecvError::Closed) => {
                    st.done = true;
                    break;
                }
            };
            // Everything already queued goes into this frame.
            loop {
                if (st.write)(next, &mut out) == Flow::End {
                    st.done = true;
                    break;
                }
                next = match st.rx.try_recv() {
                    Ok(ev) => Incoming::Event(ev),
                    Err(TryRecvError::Lagged(n)) => Incoming::Lagged(n),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => {
                        st.done = true;
                        break;
                    }
                };
            }
            if !out.is_empty() || st.done {
                break;
            }
        }
        if out.is_empty() {
            return None;
        }
        st.last_sent = Instant::now();
        st.keep_alive.as_mut().reset(st.last_sent + KEEP_ALIVE);
        Some((Ok(out.freeze()), st))
    })
}

/// Counts an open stream for `/metrics` while it lives.
struct Subscribed(Arc<Metrics>);

impl Subscribed {
    fn new(m: &Arc<Metrics>) -> Self {
        m.sse_subscribers.fetch_add(1, Relaxed);
        Self(Arc::clone(m))
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.sse_subscribers.fetch_sub(1, Relaxed);
    }
}

/// An SSE response over `frames` (each already SSE text), counted as a subscriber while open
/// and ended by shutdown.
pub(crate) fn sse_body(
    state: &AppState,
    frames: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let guard = Subscribed::new(&state.metrics);
    let frames = frames
        .take_until(state.shutdown.clone().cancelled_owned())
        .map(move |f| {
            let _alive = &guard;
            f
        });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

/// An SSE response over [`Event`]s, for streams that send rarely; counted and ended like
/// [`sse_body`].
pub(crate) fn sse(
    state: &AppState,
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> EventStream {
    let guard = Subscribed::new(&state.metrics);
    let events = events
        .take_until(state.shutdown.clone().cancelled_owned())
        .map(move |e| {
            let _alive = &guard;
            e
        });
    Sse::new(Box::pin(events) as BoxedEvents).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Writes one store event of a `/stream` subscriber. A capture is rendered by the first
/// subscriber that gets here and copied by all others; `after_seq` skips captures a
/// `Last-Event-ID` backlog already sent. A bin's deletion ends a bin stream, not `all_bins`.
fn write_live(
    incoming: Incoming,
    out: &mut BytesMut,
    after_seq: u64,
    all_bins: bool,
    metrics: &Metrics,
) -> Flow {
    let (missed, reason) = match incoming {
        Incoming::Event(LiveEvent::Resync) => (0, Some("live_feed_restarted".to_owned())),
        Incoming::Event(ev) => return write_event_of(ev, out, after_seq, all_bins, metrics),
        Incoming::Lagged(missed) => (missed, None),
    };
    metrics.sse_resyncs.fetch_add(1, Relaxed);
    out.put(json_frame("resync", &api::ResyncEvent { missed, reason }));
    Flow::Continue
}

/// [`write_live`] of one store event other than a resync.
fn write_event_of(
    ev: LiveEvent,
    out: &mut BytesMut,
    after_seq: u64,
    all_bins: bool,
    metrics: &Metrics,
) -> Flow {
    let (name, bin, id, end) = match ev {
        LiveEvent::Captured {
            bin,
            request,
            rendered,
        } => {
            if request.seq > after_seq {
                out.put_slice(
                    rendered
                        .request_event
                        .get_or_init(|| render_request(bin.as_str(), &request, metrics)),
                );
            }
            return Flow::Continue;
        }
        LiveEvent::Deleted { bin, id } => ("deleted", bin, Some(id.to_string()), false),
        LiveEvent::Cleared { bin } => ("cleared", bin, None, false),
        LiveEvent::BinDeleted { bin } => ("bin_deleted", bin, None, !all_bins),
        LiveEvent::Resync => return Flow::Continue,
    };
    let data = api::DeletedEvent {
        bin: bin.to_string(),
        id,
    };
    out.put(json_frame(name, &data));
    if end { Flow::End } else { Flow::Continue }
}

/// Where a live stream starts: the backlog to send first and the sequence number live events
/// must come after. The one "backlog, then live" routine of `/stream`, `/smee` and `wait`.
#[derive(Debug, Default)]
pub struct Resume {
    /// Stored requests after the client's last one, oldest first.
    pub backlog: Vec<Arc<CapturedRequest>>,
    /// Live captures at or below this were in the backlog (or before it).
    pub after: u64,
    /// The client's `Last-Event-ID` is past anything this bin ever held (the bin was re-created,
    /// or a memory store restarted): it gets `resync` and then every new capture, rather than
    /// silence until the bin's numbers catch up with its stale id.
    pub stale: bool,
}

/// The `Last-Event-ID` a reconnecting `EventSource` sends, if any.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
}

/// Reads what a subscriber resuming after `last` (a sequence number; `None`: a new subscriber,
/// no backlog) has missed. Call it after subscribing to the live feed, so nothing falls between
/// the backlog and the live events. Errors when the bin does not exist.
pub async fn resume(state: &AppState, bin: &str, last: Option<u64>) -> Result<Resume, ApiError> {
    let Some(last) = last else {
        // The bin must exist all the same.
        state.store.get_bin(bin).await?;
        return Ok(Resume::default());
    };
    let limit = state.store.limits().max_requests_per_bin as usize;
    let backlog = state.store.read_after(bin, last, limit).await?;
    if let Some(newest) = backlog.last() {
        let after = newest.seq;
        return Ok(Resume {
            backlog,
            after,
            stale: false,
        });
    }
    let held = state.store.get_bin(bin).await?.total_captured;
    if last > held {
        return Ok(Resume {
            backlog,
            after: held,
            stale: true,
        });
    }
    Ok(Resume {
        backlog,
        after: last,
        stale: false,
    })
}

/// The name of a bin to follow live; one that cannot be a bin's does not exist.
pub fn live_name(bin: &str) -> Result<BinName, ApiError> {
    BinName::parse(bin).map_err(|_| StoreError::NoSuchBin(bin.to_owned()).into())
}

/// The `resync` frame for a client whose `Last-Event-ID` is stale (see [`Resume::stale`]).
pub fn stale_resync(state: &AppState) -> BytesMut {
    state.metrics.sse_resyncs.fetch_add(1, Relaxed);
    json_frame(
        "resync",
        &api::ResyncEvent {
            missed: 0,
            reason: Some("last_event_id_ahead".into()),
        },
    )
}

#[utoipa::path(get, path = "/api/bins/{bin}/stream", tag = "live", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")),
    responses(
        (status = 200, description = "Server-Sent Events: ready, request, deleted, cleared, bin_deleted, resync", content_type = "text/event-stream"),
        (status = 404, body = api::ErrorBody)))]
async fn bin_stream(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = live_name(&bin)?;
    // Subscribe before reading the backlog so nothing falls between the two.
    let rx = state.store.live().subscribe(&name);
    let resume = resume(&state, &bin, last_event_id(&headers)).await?;
    // `ready` and the backlog go out as the first frame.
    let mut first = json_frame("ready", &serde_json::json!({ "bin": bin }));
    if resume.stale {
        first.put(stale_resync(&state));
    }
    for r in &resume.backlog {
        first.put(render_request(&bin, r, &state.metrics));
    }
    let metrics = Arc::clone(&state.metrics);
    let after_seq = resume.after;
    let live = coalesced(rx, None, move |ev, out| {
        write_live(ev, out, after_seq, false, &metrics)
    });
    let frames = stream::once(async move { Ok(first.freeze()) }).chain(live);
    Ok(sse_body(&state, frames))
}

#[utoipa::path(get, path = "/api/stream", tag = "live",
    responses((status = 200, description = "Server-Sent Events of every bin", content_type = "text/event-stream")))]
async fn all_stream(State(state): State<AppState>) -> Response {
    let rx = state.store.live().subscribe_all();
    let ready = json_frame("ready", &serde_json::json!({ "bin": null })).freeze();
    let metrics = Arc::clone(&state.metrics);
    let live = coalesced(rx, None, move |ev, out| {
        write_live(ev, out, 0, true, &metrics)
    });
    sse_body(&state, stream::once(async { Ok(ready) }).chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BinName;

    async fn next_text(s: &mut (impl Stream<Item = Result<Bytes, Infallible>> + Unpin)) -> String {
        let frame = s.next().await.expect("a frame").unwrap();
        String::from_utf8(frame.to_vec()).unwrap()
    }

    fn deleted(bin: &BinName) -> LiveEvent {
        LiveEvent::Deleted {
            bin: bin.clone(),
            id: uuid::Uuid::nil(),
        }
    }

    // Paused clock: the runtime jumps to each timer, so the waits below take no real time.
    #[tokio::test(start_paused = true)]
    async fn a_live_stream_keeps_alive_coalesces_resyncs_and_ends_on_bin_deletion() {
        let bin = BinName::parse("b").unwrap();
        let (tx, rx) = broadcast::channel(4);
        let metrics = Arc::new(Metrics::default());
        let m = Arc::clone(&metrics);
        let mut s = Box::pin(coalesced(rx, None, move |ev, out| {
            write_live(ev, out, 0, false, &m)
        }));

        // Silence: a keep-alive comment, not before 15 s.
        let start = Instant::now();
        assert_eq!(next_text(&mut s).await, ":\n\n");
        assert!(start.elapsed() >= KEEP_ALIVE);

        // Six events into a buffer of four: one frame says two were missed, then has the rest.
        for _ in 0..6 {
            tx.send(deleted(&bin)).unwrap();
        }
        let one = "event: deleted\ndata: {\"bin\":\"b\",\"id\":\"00000000-0000-0000-0000-000000000000\"}\n\n";
        let frame = next_text(&mut s).await;
        assert_eq!(
            frame,
            format!("event: resync\ndata: {{\"missed\":2}}\n\n{}", one.repeat(4))
        );
        assert_eq!(metrics.sse_resyncs.load(Relaxed), 1);

        // The next frame waits out the flush window after the last one.
        let sent = Instant::now();
        tx.send(deleted(&bin)).unwrap();
        tx.send(LiveEvent::BinDeleted { bin: bin.clone() }).unwrap();
        tx.send(deleted(&bin)).unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("{one}event: bin_deleted\ndata: {{\"bin\":\"b\"}}\n\n")
        );
        assert!(sent.elapsed() >= FLUSH_WINDOW);
        // The bin is gone: the stream ends, and what followed is not sent.
        assert!(s.next().await.is_none());
    }

    fn text(name: Option<&str>, data: &str, id: Option<u64>) -> String {
        let mut out = BytesMut::new();
        write_event(&mut out, name, data, id);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn events_are_framed_as_sse() {
        assert_eq!(
            text(Some("request"), "{\"a\":1}", Some(7)),
            "event: request\ndata: {\"a\":1}\nid: 7\n\n"
        );
        assert_eq!(text(None, "", None), "data: \n\n");
        // Every kind of line break starts a new data line; none reaches the stream raw.
        assert_eq!(
            text(None, "a\nb\r\nc\rd", None),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }
}
