//! `GET /api/bins/{bin}/wait`: a long poll that answers as soon as a matching request is in the
//! bin, for CI scripts that must block until a webhook arrived.
//!
//! Query parameters (all optional; every one given must match): `method`, `path` (glob),
//! `header` and `json` (repeatable), `valid`, `after`, `timeout`: the contract is
//! [`api::WaitQuery`], shared with the clients (`bin-server wait`, `bin_server::testing`); the
//! matching rules are [`crate::store::Matcher`]'s. Without `after`, a matching request already
//! stored counts, so a script cannot miss a request that arrived before it started waiting.
//!
//! Answers 200 with the oldest matching request, 408 (`wait_timeout`) when none arrived in time,
//! 404 when the bin does not exist or is deleted while waiting, 503 when the server shuts down.
//!
//! A waiter subscribes to the bin's live events before it looks at the stored requests, so no
//! capture falls between the two; it is woken by the broadcast (no polling), and one capture
//! wakes every waiter at once. A waiter that falls behind the broadcast rereads the store.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::request_out;
use crate::store::{CapturedRequest, LiveEvent, Matcher, StoreError};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/bins/{bin}/wait", get(wait))
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
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
    let params = api::WaitQuery::parse(pairs).map_err(bad)?;
    let timeout = params.timeout.unwrap_or(api::WAIT_DEFAULT_TIMEOUT);
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
    let m = &Matcher::new(&params);
    if let Some(r) = scan(&state, &bin, m, &mut seen).await? {
        return Ok(Json(request_out(&bin, &r, true)));
    }
    let deadline = tokio::time::Instant::now() + timeout;
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
                        params.describe(),
                        api::units::format_duration(timeout)
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
