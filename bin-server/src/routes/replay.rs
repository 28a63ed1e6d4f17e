//! `POST /api/bins/{bin}/requests/{id}/replay` `{"url": "...", "append_path": true}`: sends a
//! captured request again, byte-exact (see [`crate::replay`]), and answers 200 with what
//! happened ([`api::ReplayOut`]: the target's status, duration and the start of its answer, or
//! the error). The server makes the request, so `url` must be reachable from the server; the
//! `bin-server forward` CLI replays from the caller's machine instead.
//!
//! The server's outbound policy applies (see [`sender::outbound`]): a refused target is answered
//! 200 with the refusal, naming the address and the policy, as the outcome's `error`; this
//! server's own API is never a target, whatever the policy.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

use crate::AppState;
use crate::error::{ApiError, ApiJson};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/bins/{bin}/requests/{id}/replay", post(replay))
}

#[utoipa::path(post, path = "/api/bins/{bin}/requests/{id}/replay", tag = "ci", params(("bin" = String, Path, description = "The bin's name", example = "fuzz"), ("id" = String, Path, description = "A request id (UUID) or sequence number", example = "1")), request_body = api::ReplayIn,
    responses(
        (status = 200, description = "What the target answered (or why it could not be reached)", body = api::ReplayOut),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    Path((bin, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<api::ReplayIn>,
) -> Result<Json<api::ReplayOut>, ApiError> {
    let r = state.store.request(&bin, &id).await?;
    let url = crate::replay::target_url(&input.url, r.path(), r.query(), input.append_path)
        .map_err(|e| ApiError::bad_request("invalid_url", e))?;
    let out = crate::replay::send_checked(
        &state.replay_client,
        url,
        r.method(),
        r.headers(),
        r.body().to_vec(),
    )
    .await;
    Ok(Json(out))
}
