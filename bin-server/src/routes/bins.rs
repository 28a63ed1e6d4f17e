//! Bins: create (random or named), create-or-update by name (`PUT` replaces every setting),
//! change some settings (`PATCH` keeps the fields it is not given), read, list, delete.
//!
//! With `--auth-token`, creating a bin issues its token (see [`super::auth`]): returned once,
//! in the creation answer, and kept only as a hash.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::auth::{self, Caller};
use crate::routes::{BaseUrl, bin_out};
use crate::store::{BinName, BinSettings, StoreError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/bins", get(list).post(create))
        .route(
            "/api/bins/{bin}",
            get(read).put(put).patch(patch).delete(delete),
        )
}

/// Turns a request body into settings, checking every field against the server's limits.
fn settings(state: &AppState, input: api::BinIn) -> Result<BinSettings, ApiError> {
    let limits = state.store.limits();
    let response = input.response.unwrap_or_default();
    super::capture::validate_response(&response)?;
    let bin_limits = input.limits.unwrap_or_default();
    if let Some(n) = bin_limits.max_requests
        && (n == 0 || n > limits.max_requests_per_bin)
    {
        return Err(ApiError::bad_request(
            "invalid_limits",
            format!(
                "limits.max_requests must be between 1 and the server's --max-requests-per-bin ({}), got {n}",
                limits.max_requests_per_bin
            ),
        ));
    }
    if let Some(n) = bin_limits.max_body_bytes
        && n > limits.max_body_bytes
    {
        return Err(ApiError::bad_request(
            "invalid_limits",
            format!(
                "limits.max_body_bytes must be at most the server's --max-body ({}), got {n}",
                limits.max_body_bytes
            ),
        ));
    }
    let checks = crate::routes::checks::BinChecks::parse(
        input.schema.as_ref(),
        input.secret.as_deref(),
        input.signature_scheme.as_deref(),
    )?;
    Ok(BinSettings {
        response,
        max_requests: bin_limits.max_requests,
        max_body_bytes: bin_limits.max_body_bytes,
        schema: checks.schema,
        signature: checks.signature,
        token_hash: None,
    })
}

/// With auth on, a new token for a bin about to be created: its hash goes into `settings`, the
/// token itself into the creation answer only.
fn issue_token(state: &AppState, settings: &mut BinSettings) -> Option<String> {
    if !state.auth.enabled() {
        return None;
    }
    let (token, hash) = auth::new_bin_token();
    settings.token_hash = Some(hash);
    Some(token)
}

#[utoipa::path(post, path = "/api/bins", tag = "bins", request_body = api::BinIn,
    responses(
        (status = 201, description = "Created (with its token when the server has --auth-token)", body = api::BinOut),
        (status = 400, description = "A setting is not valid", body = api::ErrorBody),
        (status = 409, description = "A bin of that name exists", body = api::ErrorBody),
        (status = 422, description = "The body is JSON of the wrong shape", body = api::ErrorBody),
        (status = 507, description = "The server holds --max-bins bins", body = api::ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    base: BaseUrl,
    ApiJson(input): ApiJson<api::BinIn>,
) -> Result<(StatusCode, Json<api::BinOut>), ApiError> {
    let name = input.name.as_deref().map(BinName::parse).transpose()?;
    let mut settings = settings(&state, input)?;
    let token = issue_token(&state, &mut settings);
    let bin = state.store.create_bin(name, settings).await?;
    let mut out = bin_out(bin, &base);
    out.token = token;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(put, path = "/api/bins/{bin}", tag = "bins", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")), request_body = api::BinIn,
    responses(
        (status = 200, description = "Updated: every setting replaced, requests kept", body = api::BinOut),
        (status = 201, description = "Created", body = api::BinOut),
        (status = 400, body = api::ErrorBody), (status = 422, body = api::ErrorBody), (status = 507, body = api::ErrorBody)))]
/// Creates the bin (`201`, with its token when auth is on) or replaces its settings (`200`). An
/// anonymous caller (`--public-bins`) may only create: an existing bin needs its token or the
/// admin's.
async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(bin): Path<String>,
    base: BaseUrl,
    ApiJson(input): ApiJson<api::BinIn>,
) -> Result<(StatusCode, Json<api::BinOut>), Response> {
    let name = BinName::parse(&bin).map_err(|e| ApiError::from(e).into_response())?;
    if let Some(other) = input.name.as_deref()
        && other != bin
    {
        return Err(ApiError::bad_request(
            "name_mismatch",
            format!("the body names bin {other:?} but the URL names {bin:?}"),
        )
        .into_response());
    }
    let mut settings = settings(&state, input).map_err(IntoResponse::into_response)?;
    let token = issue_token(&state, &mut settings);
    let (bin, created) = if caller == Caller::Anonymous {
        match state.store.create_bin(Some(name), settings).await {
            Ok(bin) => (bin, true),
            Err(StoreError::BinExists(_)) => {
                return Err(auth::unauthorized(format!(
                    "bin {bin:?} exists: changing it needs its token or the admin token"
                )));
            }
            Err(e) => return Err(ApiError::from(e).into_response()),
        }
    } else {
        state
            .store
            .put_bin(name, settings)
            .await
            .map_err(|e| ApiError::from(e).into_response())?
    };
    let mut out = bin_out(bin, &base);
    let status = if created {
        // An update keeps the bin's first token (the store ignores the new hash).
        out.token = token;
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

#[utoipa::path(patch, path = "/api/bins/{bin}", tag = "bins", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")), request_body = api::BinIn,
    responses(
        (status = 200, description = "The settings given changed, the others kept", body = api::BinOut),
        (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
/// Changes the settings the body names and keeps the others (the secret too, which the API never
/// returns and so a client could not send back). Stored requests are kept.
async fn patch(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    base: BaseUrl,
    ApiJson(input): ApiJson<api::BinIn>,
) -> Result<Json<api::BinOut>, ApiError> {
    let name = BinName::parse(&bin)?;
    if input.name.as_deref().is_some_and(|other| other != bin) {
        return Err(ApiError::bad_request(
            "name_mismatch",
            "a bin cannot be renamed: leave out name, or give the one in the URL",
        ));
    }
    let current = state.store.get_bin(&bin).await?.settings;
    let (scheme, secret) = current.signature.unzip();
    let limits = input.limits.unwrap_or_default();
    let merged = api::BinIn {
        name: None,
        response: input.response.or(Some(current.response)),
        limits: Some(api::BinLimitsIn {
            max_requests: limits.max_requests.or(current.max_requests),
            max_body_bytes: limits.max_body_bytes.or(current.max_body_bytes),
        }),
        schema: input.schema.or(current.schema),
        secret: input.secret.or(secret),
        signature_scheme: input.signature_scheme.or(scheme),
    };
    let settings = settings(&state, merged)?;
    let (bin, _) = state.store.put_bin(name, settings).await?;
    Ok(Json(bin_out(bin, &base)))
}

#[utoipa::path(get, path = "/api/bins/{bin}", tag = "bins", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")),
    responses((status = 200, body = api::BinOut), (status = 404, body = api::ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    Path(bin): Path<String>,
    base: BaseUrl,
) -> Result<Json<api::BinOut>, ApiError> {
    Ok(Json(bin_out(state.store.get_bin(&bin).await?, &base)))
}

#[utoipa::path(get, path = "/api/bins", tag = "bins",
    responses((status = 200, description = "Every bin, most recently active first", body = api::BinList)))]
async fn list(
    State(state): State<AppState>,
    base: BaseUrl,
) -> Result<Json<api::BinList>, ApiError> {
    let bins = state
        .store
        .list_bins()
        .await?
        .into_iter()
        .map(|b| bin_out(b, &base))
        .collect();
    Ok(Json(api::BinList { bins }))
}

#[utoipa::path(delete, path = "/api/bins/{bin}", tag = "bins", params(("bin" = String, Path, description = "The bin's name", example = "fuzz")),
    responses((status = 204, description = "Deleted with its requests"), (status = 404, body = api::ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    Path(bin): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_bin(&bin).await?;
    Ok(StatusCode::NO_CONTENT)
}
