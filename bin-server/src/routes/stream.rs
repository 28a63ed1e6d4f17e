//! Live Server-Sent Events: `GET /api/bins/{bin}/stream` (one bin) and `GET /api/stream` (all).
//!
//! Events: `ready` once connected; `request` per capture (data: the request as JSON, SSE id: its
//! sequence number); `deleted` / `cleared` when requests are removed; `bin_deleted` (then the
//! stream ends); `resync` when this subscriber fell more than the store's per-subscriber buffer
//! behind and missed events (data `{"missed": n}`: reload the list). Keep-alive comments every
//! 15 s. A bin stream honours `Last-Event-ID`: requests after it that are still stored are sent
//! first, so a reconnecting client misses nothing the store still has.
//!
//! Fan-out: a capture's JSON is rendered once, by the first subscriber that takes the event, and
//! every other subscriber (of the bin and of all bins) sends the same text
//! ([`crate::store::Rendered`]); `/metrics` counts renders (`hookbin_sse_renders_total`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::ApiError;
use crate::routes::request_out;
use crate::store::{CapturedRequest, LiveEvent, PageQuery, RequestFilter};
use crate::{AppState, Metrics};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bins/{bin}/stream", get(bin_stream))
        .route("/api/stream", get(all_stream))
}

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
pub(crate) type EventStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

fn json_event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

/// A captured request as the `request` event's data (JSON), counted in `/metrics`
/// (`hookbin_sse_renders_total`) so the cost of fan-out stays visible.
pub(crate) fn render_request(bin: &str, request: &CapturedRequest, metrics: &Metrics) -> String {
    metrics.sse_renders.fetch_add(1, Relaxed);
    serde_json::to_string(&request_out(bin, request, true)).unwrap_or_default()
}

fn request_event(data: &str, seq: u64) -> Event {
    Event::default()
        .event("request")
        .data(data)
        .id(seq.to_string())
}

/// Turns a store event into an SSE event; `true` when the stream should end after it. A
/// capture's JSON is rendered by the first subscriber that gets here and shared by all others.
fn to_sse(ev: LiveEvent, after_seq: u64, metrics: &Metrics) -> Option<(Event, bool)> {
    match ev {
        LiveEvent::Captured {
            bin,
            request,
            rendered,
        } => (request.seq > after_seq).then(|| {
            let data = rendered
                .request_json
                .get_or_init(|| render_request(bin.as_str(), &request, metrics));
            (request_event(data, request.seq), false)
        }),
        LiveEvent::Deleted { bin, id } => Some((
            json_event(
                "deleted",
                &api::DeletedEvent {
                    bin: bin.to_string(),
                    id: Some(id.to_string()),
                },
            ),
            false,
        )),
        LiveEvent::Cleared { bin } => Some((
            json_event(
                "cleared",
                &api::DeletedEvent {
                    bin: bin.to_string(),
                    id: None,
                },
            ),
            false,
        )),
        LiveEvent::BinDeleted { bin } => Some((
            json_event(
                "bin_deleted",
                &api::DeletedEvent {
                    bin: bin.to_string(),
                    id: None,
                },
            ),
            true,
        )),
    }
}

/// Counts an open stream for `/metrics` while it lives.
struct Subscribed(std::sync::Arc<Metrics>);

impl Subscribed {
    fn new(m: &std::sync::Arc<Metrics>) -> Self {
        m.sse_subscribers.fetch_add(1, Relaxed);
        Self(std::sync::Arc::clone(m))
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.sse_subscribers.fetch_sub(1, Relaxed);
    }
}

/// Live events from `rx`; `all_bins` streams end only on shutdown.
fn live(
    state: &AppState,
    rx: broadcast::Receiver<LiveEvent>,
    after_seq: u64,
    all_bins: bool,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let metrics = std::sync::Arc::clone(&state.metrics);
    stream::unfold((rx, false), move |(mut rx, done)| {
        let metrics = std::sync::Arc::clone(&metrics);
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        // One bin's deletion does not end the all-bins stream.
                        let after = if all_bins { 0 } else { after_seq };
                        if let Some((event, end)) = to_sse(ev, after, &metrics) {
                            return Some((Ok(event), (rx, end && !all_bins)));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        metrics.sse_resyncs.fetch_add(1, Relaxed);
                        let ev = json_event("resync", &api::ResyncEvent { missed });
                        return Some((Ok(ev), (rx, false)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

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

/// For a client reconnecting with `Last-Event-ID`: the requests after it that are still stored,
/// oldest first, and the sequence number live events must come after (0: no header, all).
/// Call it after subscribing, so nothing falls between the backlog and the live events.
pub fn missed_since_last_event(
    state: &AppState,
    bin: &str,
    headers: &HeaderMap,
) -> Result<(Vec<Arc<CapturedRequest>>, u64), ApiError> {
    let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
    else {
        return Ok((Vec::new(), 0));
    };
    let mut page = state.store.requests(
        bin,
        &PageQuery {
            limit: usize::MAX,
            before: None,
            after: Some(last),
            filter: RequestFilter::default(),
        },
    )?;
    let after = page.requests.first().map_or(last, |r| r.seq);
    page.requests.reverse();
    Ok((page.requests, after))
}

async fn bin_stream(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    // Subscribe before reading the backlog so nothing falls between the two.
    let rx = state.store.subscribe(&bin)?;
    let (missed, after_seq) = missed_since_last_event(&state, &bin, &headers)?;
    let backlog = missed.iter().map(|r| {
        Ok(request_event(
            &render_request(&bin, r, &state.metrics),
            r.seq,
        ))
    });
    let ready = json_event("ready", &serde_json::json!({ "bin": bin }));
    let events = stream::iter(
        std::iter::once(Ok(ready))
            .chain(backlog)
            .collect::<Vec<_>>(),
    )
    .chain(live(&state, rx, after_seq, false));
    Ok(sse(&state, events))
}

async fn all_stream(State(state): State<AppState>) -> EventStream {
    let rx = state.store.subscribe_all();
    let ready = json_event("ready", &serde_json::json!({ "bin": null }));
    let events = stream::once(async { Ok(ready) }).chain(live(&state, rx, 0, true));
    sse(&state, events)
}
