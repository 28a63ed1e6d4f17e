//! `GET /api/bins/{bin}/wait`: a long poll that answers as soon as a matching request is in the
//! bin, for CI scripts that must block until a webhook arrived.
//!
//! Query parameters (all optional; every one given must match):
//! - `method=POST` (case-insensitive);
//! - `path=/github/*` (the path below the bin; exact, or a glob with `*` and `?`);
//! - `header=Name:value` (repeatable; name case-insensitive, value exact or a glob; `header=Name`
//!   only asks that the header is present);
//! - `json=/pointer=value` (repeatable; the body's value at the JSON pointer equals `value`
//!   read as JSON, or as a string when it is not JSON: `json=/n=42` matches `42` and `"42"`,
//!   `json=/status=paid` matches `"paid"`; `json=/pointer` only asks that it exists);
//! - `valid=true|false`: the request passed (or failed) every check of the bin (schema,
//!   signature); a bin without checks passes everything;
//! - `after=<sequence number or request id>`: only requests captured after it. Without it, a
//!   matching request already stored counts, so a script cannot miss a request that arrived
//!   before it started waiting;
//! - `timeout=30s` (default 30 s, at most 300 s; `ms`, `s` and `m` suffixes; `0` only looks at
//!   what is stored).
//!
//! Answers 200 with the oldest matching request, 408 (`wait_timeout`) when none arrived in time,
//! 404 when the bin does not exist or is deleted while waiting, 503 when the server shuts down.
//!
//! A waiter subscribes to the bin's live events before it looks at the stored requests, so no
//! capture falls between the two; it is woken by the broadcast (no polling), and one capture
//! wakes every waiter at once. A waiter that falls behind the broadcast rereads the store.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::request_out;
use crate::store::{CapturedRequest, LiveEvent, StoreError};

/// How long a wait lasts when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
// The longest wait one request may ask for is `api::WAIT_MAX_TIMEOUT` (300 s): long polls
// longer than this are cut by proxies and load balancers anyway; the CLI chains calls.

pub fn router() -> Router<AppState> {
    Router::new().route("/api/bins/{bin}/wait", get(wait))
}

/// What a waited-for request must look like.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    method: Option<String>,
    path: Option<String>,
    headers: Vec<(String, Option<String>)>,
    json: Vec<(String, Option<JsonExpect>)>,
    valid: Option<bool>,
}

#[derive(Debug, Clone)]
struct JsonExpect {
    raw: String,
    value: serde_json::Value,
}

impl Matcher {
    /// Whether `r` matches every filter.
    pub fn matches(&self, r: &CapturedRequest) -> bool {
        if let Some(m) = &self.method
            && !r.method().eq_ignore_ascii_case(m)
        {
            return false;
        }
        if let Some(p) = &self.path
            && !glob(p.as_bytes(), r.path().as_bytes())
        {
            return false;
        }
        for (name, value) in &self.headers {
            let mut same_name = r
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
            let hit = match value {
                None => same_name.next().is_some(),
                Some(v) => same_name.any(|(_, got)| glob(v.as_bytes(), got.trim_ascii())),
            };
            if !hit {
                return false;
            }
        }
        if let Some(want) = self.valid
            && crate::checks::passed(r.validation.as_deref(), r.signature.as_deref()) != want
        {
            return false;
        }
        if !self.json.is_empty() {
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(r.body()) else {
                return false;
            };
            for (pointer, expect) in &self.json {
                let Some(got) = doc.pointer(pointer) else {
                    return false;
                };
                if let Some(e) = expect
                    && *got != e.value
                    && got.as_str() != Some(e.raw.as_str())
                {
                    return false;
                }
            }
        }
        true
    }

    /// The filters in words, for the timeout message.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.method {
            parts.push(format!("method={m}"));
        }
        if let Some(p) = &self.path {
            parts.push(format!("path={p}"));
        }
        for (n, v) in &self.headers {
            parts.push(match v {
                Some(v) => format!("header {n}: {v}"),
                None => format!("header {n}"),
            });
        }
        for (p, e) in &self.json {
            parts.push(match e {
                Some(e) => format!("json {p}={}", e.raw),
                None => format!("json {p}"),
            });
        }
        if let Some(v) = self.valid {
            parts.push(format!("valid={v}"));
        }
        if parts.is_empty() {
            "any request".into()
        } else {
            format!("a request with {}", parts.join(", "))
        }
    }
}

/// The parsed query of a wait.
#[derive(Debug)]
struct WaitParams {
    matcher: Matcher,
    after: Option<String>,
    timeout: Duration,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

impl WaitParams {
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut m = Matcher::default();
        let mut after = None;
        let mut timeout = DEFAULT_TIMEOUT;
        for (key, value) in pairs {
            match key.as_str() {
                "method" => m.method = Some(value),
                "path" => m.path = Some(value),
                "header" => {
                    let (name, v) = match value.split_once(':') {
                        Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
                        None => (value.trim(), None),
                    };
                    if name.is_empty() {
                        return Err(bad(format!("header={value:?}: use header=Name:value")));
                    }
                    m.headers.push((name.to_owned(), v));
                }
                "json" => {
                    let (pointer, expect) = match value.split_once('=') {
                        Some((p, raw)) => (
                            p,
                            Some(JsonExpect {
                                raw: raw.to_owned(),
                                value: serde_json::from_str(raw)
                                    .unwrap_or_else(|_| serde_json::Value::String(raw.into())),
                            }),
                        ),
                        None => (value.as_str(), None),
                    };
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return Err(bad(format!(
                            "json={value:?}: the JSON pointer must start with '/' (json=/order/id=42)"
                        )));
                    }
                    m.json.push((pointer.to_owned(), expect));
                }
                "valid" => {
                    m.valid = Some(value.parse().map_err(|_| {
                        bad(format!("valid={value:?}: use valid=true or valid=false"))
                    })?);
                }
                "after" => after = Some(value),
                "timeout" => {
                    timeout = api::units::parse_duration(&value)
                        .map_err(|e| bad(format!("timeout: {e}")))?;
                    if timeout > api::WAIT_MAX_TIMEOUT {
                        return Err(bad(format!(
                            "timeout={value} is longer than the maximum of {}s",
                            api::WAIT_MAX_TIMEOUT.as_secs()
                        )));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?}: use method, path, header, json, valid, \
                         after, timeout"
                    )));
                }
            }
        }
        Ok(Self {
            matcher: m,
            after,
            timeout,
        })
    }
}

/// Matches `text` against a pattern where `*` is any run of bytes and `?` any one byte.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The oldest stored request after `*seen` that matches; moves `*seen` past what it read.
async fn scan(
    state: &AppState,
    bin: &str,
    matcher: &Matcher,
    seen: &mut u64,
) -> Result<Option<std::sync::Arc<CapturedRequest>>, ApiError> {
    // A page at a time, oldest first: a remote store is read in bounded round trips.
    const PAGE: usize = 256;
    loop {
        let page = state.store.read_after(bin, *seen, PAGE).await?;
        for r in &page {
            *seen = (*seen).max(r.seq);
            if matcher.matches(r) {
                return Ok(Some(std::sync::Arc::clone(r)));
            }
        }
        if page.len() < PAGE {
            return Ok(None);
        }
    }
}

fn gone(bin: &str) -> ApiError {
    ApiError::not_found(
        "bin_not_found",
        format!("bin {bin:?} was deleted while waiting"),
    )
}

#[utoipa::path(get, path = "/api/bins/{bin}/wait", tag = "ci", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"),
        ("method" = Option<String>, Query, description = "Method, case-insensitive"),
        ("path" = Option<String>, Query, description = "Path below the bin, exact or a glob (* and ?)"),
        ("header" = Option<String>, Query, description = "`Name: value` (glob) or `Name` (present); repeats"),
        ("json" = Option<String>, Query, description = "`/pointer=value` or `/pointer` (present); repeats"),
        ("valid" = Option<bool>, Query, description = "Passed (true) or failed (false) the bin's checks"),
        ("after" = Option<String>, Query, description = "Only requests after this sequence number or id"),
        ("timeout" = Option<String>, Query, description = "At most 300s (default 30s); 0 looks once")),
    responses(
        (status = 200, description = "The oldest matching request", body = api::CapturedRequestOut),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody),
        (status = 408, description = "No match within the timeout", body = api::ErrorBody),
        (status = 503, description = "The server is shutting down", body = api::ErrorBody)))]
async fn wait(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::CapturedRequestOut>, ApiError> {
    let Query(pairs) = query.map_err(|e| bad(e.body_text()))?;
    let params = WaitParams::parse(pairs)?;
    // Subscribe before reading the store: a capture in between is then seen by both, never by
    // neither (duplicates are skipped by sequence number).
    let mut rx = state
        .store
        .live()
        .subscribe(&super::stream::live_name(&bin)?);
    let mut seen = match params.after.as_deref() {
        None => 0,
        Some(c) => match c.parse::<u64>() {
            Ok(seq) => seq,
            Err(_) => match state.store.request(&bin, c).await {
                Ok(r) => r.seq,
                Err(StoreError::NoSuchRequest(_)) => {
                    return Err(bad(format!(
                        "after={c:?} is neither a sequence number nor the id of a request \
                         still stored in this bin"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
        },
    };
    let m = &params.matcher;
    if let Some(r) = scan(&state, &bin, m, &mut seen).await? {
        return Ok(Json(request_out(&bin, &r, true)));
    }
    let deadline = tokio::time::Instant::now() + params.timeout;
    let _holding = Holding::new(&state.metrics);
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Ok(LiveEvent::Captured { request, .. }) => {
                    if request.seq > seen {
                        seen = request.seq;
                        if m.matches(&request) {
                            return Ok(Json(request_out(&bin, &request, true)));
                        }
                    }
                }
                Ok(LiveEvent::BinDeleted { .. }) | Err(RecvError::Closed) => {
                    return Err(gone(&bin));
                }
                Ok(LiveEvent::Deleted { .. } | LiveEvent::Cleared { .. }) => {}
                // Missed events (fell behind, or the live feed reconnected): what was
                // captured meanwhile is in the store.
                Ok(LiveEvent::Resync) | Err(RecvError::Lagged(_)) => {
                    if let Some(r) = scan(&state, &bin, m, &mut seen).await? {
                        return Ok(Json(request_out(&bin, &r, true)));
                    }
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "wait_timeout",
                    format!(
                        "no {} arrived in bin {bin:?} within {}",
                        m.describe(),
                        api::units::format_duration(params.timeout)
                    ),
                ));
            }
            () = state.shutdown.cancelled() => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the server is shutting down",
                ));
            }
        }
    }
}

/// Counts a waiter in `hookbin_waiters` while it holds (whichever way it ends).
struct Holding<'a>(&'a crate::Metrics);

impl<'a> Holding<'a> {
    fn new(metrics: &'a crate::Metrics) -> Self {
        metrics
            .waiters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0
            .waiters
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"/a/*", b"/a/b/c"));
        assert!(glob(b"/a/?", b"/a/b"));
        assert!(!glob(b"/a/?", b"/a/bc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"/x", b"/x"));
        assert!(!glob(b"/x", b"/xy"));
        assert!(glob(b"*.json", b"/events/a.json"));
        assert!(!glob(b"*.json", b"/events/a.jsonx"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn params_are_checked() {
        let p = |v: &[(&str, &str)]| {
            WaitParams::parse(
                v.iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect(),
            )
        };
        assert!(p(&[("timeout", "301s")]).is_err());
        assert!(p(&[("timeout", "soon")]).is_err());
        assert!(p(&[("json", "order=1")]).is_err());
        assert!(p(&[("valid", "yes")]).is_err());
        assert!(p(&[("nope", "1")]).is_err());
        let ok = p(&[
            ("timeout", "1500ms"),
            ("header", "X-A: b"),
            ("json", "/a/b=1"),
        ])
        .unwrap();
        assert_eq!(ok.timeout, Duration::from_millis(1500));
        assert_eq!(
            ok.matcher.describe(),
            "a request with header X-A: b, json /a/b=1"
        );
    }
}
