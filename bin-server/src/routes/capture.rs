//! Capture: any method on `/b/{bin}` and `/b/{bin}/{*rest}` is recorded byte-exact and answered
//! with the bin's configured response.
//!
//! Capture is the router's fallback rather than a route with path parameters: it is the hot path,
//! and it splits the raw path itself, so it skips axum's parameter extraction (measured with
//! callgrind: about 1,500 instructions a request, 5% of the whole).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::AppState;
use crate::conn::ConnInfo;
use crate::error::ApiError;
use crate::store::{BinName, BinSettings, CaptureSettings, NewCapture, RawHeaders, StoreError};

/// The longest configurable response delay: long enough to test client timeouts, short enough
/// that a slow bin cannot hold a connection (and shutdown) for long.
pub const MAX_DELAY_MS: u64 = 30_000;

/// Whether a path is a capture URL.
pub fn is_capture(path: &str) -> bool {
    path.starts_with("/b/")
}

/// The router's fallback: captures under `/b/`, the UI's "Page not found" for a browser asking
/// for a page ([`crate::ui::not_found_page`]), the JSON 404 anywhere else.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    if is_capture(req.uri().path()) {
        answer(&state, req).await
    } else if let Some(page) = crate::ui::not_found_page(&req) {
        page
    } else {
        ApiError::not_found("not_found", format!("no route for {}", req.uri().path()))
            .into_response()
    }
}

/// Every answer under `/b/` (the acknowledgement, a bin's configured response, the errors)
/// comes from the same origin as the UI and the API unless `--capture-url` moves it, and a
/// bin's response is whatever its owner configured, `text/html` with scripts included. So each
/// is sandboxed (`Content-Security-Policy: sandbox`: no scripts, an opaque origin that can read
/// nothing of this one) and never sniffed. Inserted last, over anything configured (which
/// [`validate_response`] refuses anyway).
pub async fn answer(state: &AppState, req: Request) -> Response {
    let mut response = capture(state, req).await.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Records one request and answers it with the bin's response; callers answer through
/// [`answer`], which adds the sandbox.
pub async fn capture(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    // The raw path, percent-encoding kept: "/b/{bin}" then the rest.
    let raw = parts.uri.path().strip_prefix("/b/").unwrap_or("");
    let (bin, rest) = raw.split_at(raw.find('/').unwrap_or(raw.len()));
    BinName::check(bin)?;
    let settings = match state.store.capture_settings(bin).await {
        Ok(s) => s,
        Err(StoreError::NoSuchBin(_)) if state.config.auto_create => {
            let name = BinName::parse(bin)?;
            match state
                .store
                .create_bin(Some(name), BinSettings::default())
                .await
            {
                Ok(_) | Err(StoreError::BinExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            state.store.capture_settings(bin).await?
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

    // Read the body into owned storage, up to the limit, each byte counted against the
    // server-wide in-flight budget until the capture is stored or dropped.
    let mut body = body;
    let mut inflight = Inflight::new(state);
    let mut stored: u64 = 0;
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Err(body_error(state, bin, &e)),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = limit - stored;
        let keep = (data.len() as u64).min(room) as usize;
        if !inflight.add(keep as u64) {
            state.metrics.captures_refused_busy.fetch_add(1, Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                format!(
                    "the server is receiving {} bytes of request bodies already \
                     (--max-inflight-bytes): try again shortly; nothing was stored",
                    state.config.conn_limits.max_inflight_bytes
                ),
            ));
        }
        if keep < data.len() {
            new.push_body(&data[..keep]);
            new.truncated = true;
            too_large = true;
            break;
        }
        stored += data.len() as u64;
        new.push_body(&data);
    }

    // The bin's schema and signature checks, compiled once per settings change; none: nothing
    // to pay.
    if let Some(checks) = super::checks::compiled(&settings) {
        checks.check(&mut new);
    }
    let request = state.store.capture(bin, new).await?;
    drop(inflight);
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
    Ok(respond(state, &settings, bin, &request).await)
}

/// Body bytes of one capture counted in `Metrics::inflight_body_bytes`; given back when dropped
/// (the capture stored, refused or abandoned). An atomic add per frame, no lock: this is the hot
/// path.
struct Inflight<'a> {
    total: &'a AtomicU64,
    budget: u64,
    held: u64,
}

impl<'a> Inflight<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            total: &state.metrics.inflight_body_bytes,
            budget: state.config.conn_limits.max_inflight_bytes,
            held: 0,
        }
    }

    /// Counts `n` more bytes, unless that would pass the budget.
    fn add(&mut self, n: u64) -> bool {
        let before = self.total.fetch_add(n, Relaxed);
        if before + n > self.budget {
            self.total.fetch_sub(n, Relaxed);
            return false;
        }
        self.held += n;
        true
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.total.fetch_sub(self.held, Relaxed);
        }
    }
}

/// What a body that failed to arrive whole is answered. Nothing is stored in any case: a cut-off
/// body is not the request the sender made (a sender that retries sends it again), and
/// `truncated` means "over the size limit" only.
///
/// hyper reports a body error as `hyper::Error` (kind "body") whose source is the `io::Error` of
/// its decoder or of the socket (`proto/h1/decode.rs`): `InvalidInput` or `InvalidData` for
/// broken chunked framing (a size line that is not hex, a bare LF after the size, no CRLF after
/// the data), `UnexpectedEof` when the connection closed before the announced end, `TimedOut`
/// when the connection's body deadline passed and `ConnectionAborted` when a shutdown closed it
/// ([`crate::conn`]), and other kinds (reset) when
/// the peer went away. HTTP/2 stream errors come as `h2::Error`: the client went away too.
fn body_error(state: &AppState, bin: &str, e: &axum::Error) -> ApiError {
    let io = io_error(e);
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData) => {
            state.metrics.body_framing_errors.fetch_add(1, Relaxed);
            let detail = io.map_or_else(String::new, ToString::to_string);
            ApiError::bad_request(
                "invalid_body",
                format!(
                    "the request body's chunked framing is malformed ({detail}); nothing was stored"
                ),
            )
        }
        // The connection's read side was closed by a shutdown (`crate::conn`).
        Some(std::io::ErrorKind::ConnectionAborted) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; the body was not received and nothing was stored",
        ),
        Some(std::io::ErrorKind::TimedOut) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "no body bytes arrived within --idle-timeout; nothing was stored",
        ),
        _ => {
            tracing::debug!("body of a capture to {bin} was cut off: {e}");
            state.metrics.bodies_cut_off.fetch_add(1, Relaxed);
            ApiError::bad_request(
                "body_cut_off",
                "the connection ended before the whole body arrived; nothing was stored",
            )
        }
    }
}

/// The `io::Error` at the root of a body error, if there is one.
fn io_error(e: &axum::Error) -> Option<&std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
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
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            ack_json(bin, request),
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

/// The default answer, `api::CaptureAck` as JSON, written by hand: serde and `fmt` cost about
/// 1,400 instructions a capture. Bin names are `[a-z0-9-_]` and ids are UUIDs: nothing needs
/// escaping.
fn ack_json(bin: &str, request: &crate::store::CapturedRequest) -> String {
    let mut id = uuid::Uuid::encode_buffer();
    let id = request.id.as_hyphenated().encode_lower(&mut id);
    let mut digits = [0u8; 20];
    let mut n = request.seq;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let seq = std::str::from_utf8(&digits[at..]).unwrap_or("0");
    let mut out = String::with_capacity(96 + bin.len());
    for part in [
        r#"{"ok":true,"bin":""#,
        bin,
        r#"","request_id":""#,
        id,
        r#"","seq":"#,
        seq,
        "}",
    ] {
        out.push_str(part);
    }
    out
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
        if ["content-security-policy", "x-content-type-options"].contains(&lower.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_response",
                format!(
                    "response.headers[{i}]: {} is set by the server (Content-Security-Policy: \
                     sandbox, X-Content-Type-Options: nosniff) so that a bin's response can \
                     run no script on this origin, and cannot be configured",
                    h.name
                ),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawHeaders;

    #[test]
    fn the_hand_written_ack_is_the_api_type() {
        let addr = "127.0.0.1:1".parse().unwrap();
        for seq in [0, 1, 9, 10, 4_294_967_296, u64::MAX] {
            let r = NewCapture::new("GET", "/", None, &RawHeaders::new(), 0, addr)
                .finish(seq, chrono::Utc::now());
            let ack: api::CaptureAck = serde_json::from_str(&ack_json("ci-bin_1", &r)).unwrap();
            assert_eq!(
                ack,
                api::CaptureAck {
                    ok: true,
                    bin: "ci-bin_1".into(),
                    request_id: r.id.to_string(),
                    seq,
                }
            );
        }
    }
}
