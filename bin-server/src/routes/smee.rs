//! `GET /api/bins/{bin}/smee`: the bin's captures in the Server-Sent Events format of smee.io,
//! so an existing `smee --url http://HOST/api/bins/BIN/smee --target http://localhost:3000/hook`
//! (the `smee-client` npm package) works against a self-hosted bin.
//!
//! Events: `ready` (data `{}`) once connected; `ping` (data `{}`) every 30 s; one default
//! (`message`) event per capture whose data is a JSON object of the request's headers, names
//! lower-cased (repeated headers joined with `, `, as Node.js does; hop-by-hop headers, `Host`
//! and `Content-Length` left out, since smee-client sets every key as a header on its own
//! request), plus `body` (the JSON document when the body is JSON, else the text; absent when
//! empty), `query` (an object of the decoded query parameters) and `timestamp` (milliseconds
//! since the epoch). Event ids are sequence numbers and `Last-Event-ID` resumes, as on
//! `/stream`.
//!
//! smee-client re-serialises `body`, so the target gets the same JSON, not the same bytes; use
//! `bin-server forward` where bytes matter (signatures).

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
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::store::{CapturedRequest, LiveEvent};
use crate::{AppState, Metrics};

/// smee.io pings every 30 s; clients may rely on seeing traffic that often.
const PING: Duration = Duration::from_secs(30);

pub fn router() -> Router<AppState> {
    Router::new().route("/api/bins/{bin}/smee", get(smee))
}

/// The `data` of a smee message event.
pub fn smee_data(r: &CapturedRequest) -> Value {
    let mut obj = Map::new();
    for (name, value) in r.headers() {
        if crate::replay::is_not_forwarded(name) {
            continue;
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value).into_owned();
        match obj.get_mut(&name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                obj.insert(name, Value::String(value));
            }
        }
    }
    let body = r.body();
    if !body.is_empty() {
        let value = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        obj.insert("body".into(), value);
    }
    let mut query = Map::new();
    for pair in r.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(form_decode(k), Value::String(form_decode(v)));
    }
    obj.insert("query".into(), Value::Object(query));
    obj.insert(
        "timestamp".into(),
        Value::from(r.received_at.timestamp_millis()),
    );
    Value::Object(obj)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3).and_then(crate::checks::hex_decode))
            .flatten();
        match (b[i], escaped) {
            (_, Some(v)) => {
                out.push(v[0]);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (c, None) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's message data, counted in `/metrics` with the other live-stream renders.
fn render(r: &CapturedRequest, metrics: &Metrics) -> String {
    metrics.sse_renders.fetch_add(1, Relaxed);
    smee_data(r).to_string()
}

fn message(data: &str, seq: u64) -> Event {
    Event::default().data(data).id(seq.to_string())
}

fn named(name: &str) -> Event {
    Event::default().event(name).data("{}")
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

async fn smee(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<axum::response::sse::KeepAliveStream<Events>>, ApiError> {
    let rx = state.store.subscribe(&bin)?;
    let (missed, after) = super::stream::missed_since_last_event(&state, &bin, &headers)?;
    let metrics = Arc::clone(&state.metrics);
    let backlog: Vec<_> = missed
        .iter()
        .map(|r| Ok(message(&render(r, &metrics), r.seq)))
        .collect();
    let ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    let live = stream::unfold((rx, ping), move |(mut rx, mut ping)| {
        let metrics = Arc::clone(&metrics);
        async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        // Rendered once per capture, shared by every smee subscriber of the bin.
                        Ok(LiveEvent::Captured { request, rendered, .. }) if request.seq > after => {
                            let data = rendered.smee_json.get_or_init(|| render(&request, &metrics));
                            return Some((Ok(message(data, request.seq)), (rx, ping)));
                        }
                        Ok(LiveEvent::BinDeleted { .. }) | Err(RecvError::Closed) => return None,
                        // smee has no way to say "you missed some": the client sees a gap.
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                    },
                    _ = ping.tick() => return Some((Ok(named("ping")), (rx, ping))),
                }
            }
        }
    });
    let events = stream::iter(std::iter::once(Ok(named("ready"))).chain(backlog))
        .chain(live)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(Box::pin(events) as Events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%20c%2x%"), "a b c%2x%");
        assert_eq!(form_decode("%C3%A9"), "é");
    }
}
