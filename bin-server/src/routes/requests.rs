//! Captured requests of a bin: list (newest first, cursors, filters), read as JSON, read the
//! exact body bytes, delete one, clear all.
//!
//! A text search (`q=`, at most [`crate::store::MAX_TEXT_BYTES`] bytes, else `400 invalid_query`) reads every
//! stored byte of the bin, up to the store's whole byte budget: it runs on a blocking thread
//! with a scan slot ([`AppState::searches`]), so captures and live streams never wait for it.
//! Lists without `q` only copy pointers and run inline.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::request_out;
use crate::store::{Page, PageQuery, RequestFilter, TextSearch};

/// Page size when none is asked for, and the most one page may hold.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// How many text searches scan at once: half the CPUs (at least one), so however many searches
/// arrive, the rest of the machine keeps serving captures and live streams.
pub fn search_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bins/{bin}/requests", get(list).delete(clear))
        .route("/api/bins/{bin}/requests/{id}", get(read).delete(delete))
        .route("/api/bins/{bin}/requests/{id}/raw", get(raw))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 50).
    limit: Option<usize>,
    /// A sequence number or request id: only older requests.
    before: Option<String>,
    /// A sequence number or request id: only newer requests.
    after: Option<String>,
    /// Method, case-insensitive.
    method: Option<String>,
    /// Path below the bin: exact, or a prefix when it ends with `*`.
    path: Option<String>,
    /// Text searched (ASCII case-insensitive) in path, query, headers and body.
    q: Option<String>,
    /// `true`: leave bodies out (lists in the UI).
    #[serde(default)]
    summary: bool,
}

/// A cursor is a sequence number, or a request id that is still stored.
async fn cursor(
    state: &AppState,
    bin: &str,
    c: Option<&str>,
    which: &str,
) -> Result<Option<u64>, ApiError> {
    let Some(c) = c else { return Ok(None) };
    if let Ok(seq) = c.parse::<u64>() {
        return Ok(Some(seq));
    }
    if uuid::Uuid::parse_str(c).is_err() {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!("{which}={c:?} is neither a sequence number nor a request id"),
        ));
    }
    Ok(Some(state.store.request(bin, c).await?.seq))
}

#[utoipa::path(get, path = "/api/bins/{bin}/requests", tag = "requests", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ListParams),
    responses(
        (status = 200, description = "A page of requests, newest first", body = api::RequestPage),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::RequestPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let text = match p.q.filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => Some(
            TextSearch::new(&q)
                .map_err(|e| ApiError::bad_request("invalid_query", format!("q: {e}")))?,
        ),
    };
    let query = PageQuery {
        limit,
        before: cursor(&state, &bin, p.before.as_deref(), "before").await?,
        after: cursor(&state, &bin, p.after.as_deref(), "after").await?,
        filter: RequestFilter {
            method: p.method,
            path: p.path,
            text,
        },
    };
    let page = if query.filter.text.is_some() {
        search(&state, bin.clone(), query).await?
    } else {
        state.store.requests(&bin, &query).await?
    };
    Ok(Json(api::RequestPage {
        requests: page
            .requests
            .iter()
            .map(|r| request_out(&bin, r, !p.summary))
            .collect(),
        total: page.total,
        matched: page.matched,
        next_before: page.next_before,
        evicted: page.evicted,
    }))
}

/// Runs a text search on a blocking thread once a scan slot is free. Waiting for a slot holds no
/// thread; a search whose client left still finishes its (linear, bounded) scan.
async fn search(state: &AppState, bin: String, query: PageQuery) -> Result<Page, ApiError> {
    let slots = Arc::clone(&state.searches);
    let slot = match Arc::clone(&slots).try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            state.metrics.searches_queued.fetch_add(1, Relaxed);
            slots
                .acquire_owned()
                .await
                .expect("the scan slots are never closed")
        }
    };
    let store = Arc::clone(&state.store);
    // The scan runs on a blocking thread, which may wait on the store's I/O too.
    let runtime = tokio::runtime::Handle::current();
    let scan = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        runtime.block_on(store.requests(&bin, &query))
    });
    match scan.await {
        Ok(page) => Ok(page?),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "search_failed",
            format!("the search failed: {e}"),
        )),
    }
}

#[utoipa::path(get, path = "/api/bins/{bin}/requests/{id}", tag = "requests", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ("id" = String, Path, description = "A request id (UUID) or sequence number", example = "1")),
    responses((status = 200, body = api::CapturedRequestOut), (status = 404, body = api::ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    Path((bin, id)): Path<(String, String)>,
) -> Result<Json<api::CapturedRequestOut>, ApiError> {
    let r = state.store.request(&bin, &id).await?;
    Ok(Json(request_out(&bin, &r, true)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawParams {
    /// `true`: `Content-Disposition: attachment`.
    #[serde(default)]
    download: bool,
}

#[utoipa::path(get, path = "/api/bins/{bin}/requests/{id}/raw", tag = "requests", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ("id" = String, Path, description = "A request id (UUID) or sequence number", example = "1"), RawParams),
    responses(
        (status = 200, description = "The exact body bytes with their original Content-Type, sandboxed (CSP sandbox, nosniff)", content_type = "*/*"),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
/// The exact body bytes with the original content type. Captured content is hostile and this is
/// served from the UI's origin, so it is sandboxed (no scripts, own origin) and never sniffed.
async fn raw(
    State(state): State<AppState>,
    Path((bin, id)): Path<(String, String)>,
    Query(p): Query<RawParams>,
) -> Result<Response, ApiError> {
    let r = state.store.request(&bin, &id).await?;
    let ct = r
        .content_type()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut resp = r.body().to_vec().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if r.truncated() {
        h.insert("x-hookbin-truncated", HeaderValue::from_static("true"));
    }
    if p.download {
        let v = format!("attachment; filename=\"request-{}-{}.bin\"", bin, r.seq);
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

#[utoipa::path(delete, path = "/api/bins/{bin}/requests/{id}", tag = "requests", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ("id" = String, Path, description = "A request id (UUID) or sequence number", example = "1")),
    responses((status = 204, description = "Deleted"), (status = 404, body = api::ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    Path((bin, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_request(&bin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Cleared {
    deleted: u64,
}

#[utoipa::path(delete, path = "/api/bins/{bin}/requests", tag = "requests", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")),
    responses((status = 200, description = "How many were deleted", body = Cleared), (status = 404, body = api::ErrorBody)))]
async fn clear(
    State(state): State<AppState>,
    Path(bin): Path<String>,
) -> Result<Json<Cleared>, ApiError> {
    let deleted = state.store.clear_requests(&bin).await?;
    Ok(Json(Cleared { deleted }))
}
