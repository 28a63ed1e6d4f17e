//! `GET /api/bins/{bin}/smee`: the bin's captures in the Server-Sent Events format of smee.io,
//! so an existing `smee --url http://HOST/api/bins/BIN/smee --target http://localhost:3000/hook`
//! (the `smee-client` npm package) works against a self-hosted bin.
//!
//! Events: `ready` (data `{}`) once connected; `ping` (data `{}`) every 30 s (and a keep-alive
//! comment after 15 s of silence, as on `/stream`); one default
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

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use serde_json::{Map, Value};

use super::stream::{Flow, Incoming, Ping, coalesced, sse_body, write_event};
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
    // Decoded as a form (`+` a space, `%XX` a byte), as smee's Express server does; a later
    // value of a repeated name wins.
    let query: Map<String, Value> = form_urlencoded::parse(r.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    obj.insert("query".into(), Value::Object(query));
    obj.insert(
        "timestamp".into(),
        Value::from(r.received_at.timestamp_millis()),
    );
    Value::Object(obj)
}

/// A request's complete message event (SSE text, its sequence number as id), counted in
/// `/metrics` with the other live-stream renders.
fn render(r: &CapturedRequest, metrics: &Metrics) -> Bytes {
    metrics.sse_renders.fetch_add(1, Relaxed);
    let mut out = BytesMut::new();
    write_event(&mut out, None, &smee_data(r).to_string(), Some(r.seq));
    out.freeze()
}

/// smee's `ready` and `ping` events: named, data `{}`.
const READY: &[u8] = b"event: ready\ndata: {}\n\n";
const PING_EVENT: &[u8] = b"event: ping\ndata: {}\n\n";

#[utoipa::path(get, path = "/api/bins/{bin}/smee", tag = "live", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")),
    responses(
        (status = 200, description = "smee.io's event stream (for smee-client)", content_type = "text/event-stream"),
        (status = 404, body = api::ErrorBody)))]
async fn smee(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = super::stream::live_name(&bin)?;
    let rx = state.store.live().subscribe(&name);
    let resume =
        super::stream::resume(&state, &bin, super::stream::last_event_id(&headers)).await?;
    let after = resume.after;
    let metrics = Arc::clone(&state.metrics);
    // `ready` and the backlog go out as the first frame. (smee has no `resync`: a client with
    // a stale id simply gets every new capture.)
    let mut first = BytesMut::from(READY);
    for r in &resume.backlog {
        first.put(render(r, &metrics));
    }
    let ping = Ping {
        interval: tokio::time::interval_at(tokio::time::Instant::now() + PING, PING),
        text: PING_EVENT,
    };
    let live = coalesced(rx, Some(ping), move |incoming, out| match incoming {
        // Rendered once per capture, shared by every smee subscriber of the bin.
        Incoming::Event(LiveEvent::Captured {
            request, rendered, ..
        }) => {
            if request.seq > after {
                out.put_slice(
                    rendered
                        .smee_event
                        .get_or_init(|| render(&request, &metrics)),
                );
            }
            Flow::Continue
        }
        Incoming::Event(LiveEvent::BinDeleted { .. }) => Flow::End,
        // smee has no way to say "you missed some": the client sees a gap.
        Incoming::Event(_) | Incoming::Lagged(_) => Flow::Continue,
    });
    let frames = stream::once(async move { Ok(first.freeze()) }).chain(live);
    Ok(sse_body(&state, frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_decoded_as_a_form() {
        let mut c = crate::store::NewCapture::new(
            "POST",
            "/",
            Some("a+b=1&x=%20c%2x%&e=%C3%A9&flag&a+b=last"),
            &crate::store::RawHeaders::new(),
            0,
            "127.0.0.1:1".parse().unwrap(),
        );
        c.push_body(b"");
        let r = c.finish(1, chrono::Utc::now());
        let data = smee_data(&r);
        assert_eq!(
            data["query"],
            serde_json::json!({"a b": "last", "x": " c%2x%", "e": "é", "flag": ""})
        );
    }
}
