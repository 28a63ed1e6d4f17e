//! Capture: any method on `/b/{bin}` and `/b/{bin}/{*rest}` is recorded byte-exact and answered
//! with the bin's configured response.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::BodyExt;

use crate::AppState;
use crate::conn::ConnInfo;
use crate::error::ApiError;
use crate::store::{BinName, BinSettings, CaptureSettings, NewCapture, RawHeaders, StoreError};

/// The longest configurable response delay: long enough to test client timeouts, short enough
/// that a slow bin cannot hold a connection (and shutdown) for long.
pub const MAX_DELAY_MS: u64 = 30_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/b/{bin}", any(capture))
        .route("/b/{bin}/{*rest}", any(capture))
}

async fn capture(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    // The raw path, percent-encoding kept: "/b/{bin}" then the rest.
    let raw = parts.uri.path().strip_prefix("/b/").unwrap_or("");
    let (bin, rest) = raw.split_at(raw.find('/').unwrap_or(raw.len()));
    let name = BinName::parse(bin)?;
    let settings = match state.store.capture_settings(name.as_str()) {
        Ok(s) => s,
        Err(StoreError::NoSuchBin(_)) if state.config.auto_create => {
            match state
                .store
                .create_bin(Some(name.clone()), BinSettings::default())
            {
                Ok(_) | Err(StoreError::BinExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            state.store.capture_settings(name.as_str())?
        }
        Err(e) => return Err(e.into()),
    };

    let conn = parts.extensions.remove::<ConnInfo>();
    let remote_addr = conn
        .as_ref()
        .map_or_else(|| ([0, 0, 0, 0], 0).into(), |c| c.remote_addr);
    let headers = match conn.and_then(|c| c.head) {
        Some(head) => head.headers,
        // No tap (HTTP/2, or called in-process): names as hyper keeps them, lower-case.
        None => {
            let mut h = RawHeaders::with_capacity(256);
            for (n, v) in &parts.headers {
                h.push(n.as_str().as_bytes(), v.as_bytes());
            }
            h
        }
    };
    let limit = settings.max_body_bytes;
    let hint = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0)
        .min(limit) as usize;
    let path = if rest.is_empty() { "/" } else { rest };
    let mut new = NewCapture::new(
        parts.method.as_str(),
        path,
        parts.uri.query(),
        &headers,
        hint,
        remote_addr,
    );
    drop(headers);

    // Read the body into owned storage, up to the limit.
    let mut body = body;
    let mut stored: u64 = 0;
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // The client went away mid-body: keep what arrived, marked as cut short.
                tracing::debug!("body of a capture to {name} ended early: {e}");
                new.truncated = true;
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = limit - stored;
        if data.len() as u64 > room {
            new.push_body(&data[..room as usize]);
            new.truncated = true;
            too_large = true;
            break;
        }
        stored += data.len() as u64;
        new.push_body(&data);
    }

    // The bin's schema and signature checks, compiled when it was saved; none: nothing to pay.
    if let Some(checks) = &settings.checks {
        checks.check(&mut new);
    }
    let request = state.store.capture(name.as_str(), new)?;
    if too_large {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body is larger than this bin's limit of {limit} bytes: stored cut at the \
                 limit as request {} (truncated: true)",
                request.id
            ),
        ));
    }
    Ok(respond(&state, &settings, name.as_str(), &request).await)
}

async fn respond(
    state: &AppState,
    settings: &CaptureSettings,
    bin: &str,
    request: &crate::store::CapturedRequest,
) -> Response {
    let r = &settings.response;
    if r.delay_ms > 0 {
        let delay = Duration::from_millis(r.delay_ms.min(MAX_DELAY_MS));
        // On shutdown answer at once rather than hold the drain.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut response = match &r.body {
        None => (
            status,
            axum::Json(api::CaptureAck {
                ok: true,
                bin: bin.to_owned(),
                request_id: request.id.to_string(),
                seq: request.seq,
            }),
        )
            .into_response(),
        Some(text) => {
            let mut resp = (status, Body::from(text.clone())).into_response();
            let json = serde_json::from_str::<serde_json::Value>(text).is_ok();
            let ct = if json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            resp
        }
    };
    // Configured headers were validated when the bin was saved; replace defaults of the same
    // name, keep duplicates among themselves.
    let mut replaced: Vec<HeaderName> = Vec::new();
    for h in &r.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) else {
            continue;
        };
        if !replaced.contains(&name) {
            response.headers_mut().remove(&name);
            replaced.push(name.clone());
        }
        response.headers_mut().append(name, value);
    }
    response
}

/// Checks a configured response before it is saved, naming the field that is wrong.
pub fn validate_response(r: &api::BinResponse) -> Result<(), ApiError> {
    if !(200..=599).contains(&r.status) {
        return Err(ApiError::bad_request(
            "invalid_response",
            format!(
                "response.status {} is not a final HTTP status (200 to 599)",
                r.status
            ),
        ));
    }
    if r.delay_ms > MAX_DELAY_MS {
        return Err(ApiError::bad_request(
            "invalid_response",
            format!(
                "response.delay_ms {} exceeds the maximum of {MAX_DELAY_MS}",
                r.delay_ms
            ),
        ));
    }
    for (i, h) in r.headers.iter().enumerate() {
        if HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(ApiError::bad_request(
                "invalid_response",
                format!(
                    "response.headers[{i}].name {:?} is not a valid header name",
                    h.name
                ),
            ));
        }
        if HeaderValue::from_str(&h.value).is_err() {
            return Err(ApiError::bad_request(
                "invalid_response",
                format!(
                    "response.headers[{i}].value for {:?} is not a valid header value",
                    h.name
                ),
            ));
        }
        let lower = h.name.to_ascii_lowercase();
        if ["content-length", "transfer-encoding", "connection"].contains(&lower.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_response",
                format!(
                    "response.headers[{i}]: {} is set by the server and cannot be configured",
                    h.name
                ),
            ));
        }
    }
    if r.body.as_ref().is_some_and(|b| b.len() > 1024 * 1024) {
        return Err(ApiError::bad_request(
            "invalid_response",
            "response.body is larger than 1 MiB",
        ));
    }
    Ok(())
}
