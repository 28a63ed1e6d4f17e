//! The sending side's API: the event catalog, webhooks, test sends, emit, the delivery log and
//! resend. Every handler is one call on [`sender::Hooks`] (in [`AppState`]); this module only
//! maps HTTP to it and its errors to [`ApiError`].
//!
//! Every answer carrying a webhook (its signing `secret` included) takes the [`Admin`] argument:
//! only the admin reaches these routes (see [`super::auth`]), and the handlers say so too.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::auth::Admin;

/// Attempts and messages returned by the delivery log when `limit` is not given.
const DEFAULT_LOG_LIMIT: usize = 100;
/// The most `limit` may ask for: the log itself is bounded by the sender's settings.
const MAX_LOG_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(events))
        .route("/api/events/{slug}/emit", post(emit))
        .route("/api/webhooks", get(list).post(create))
        .route("/api/webhooks/{id}", get(read).patch(update).delete(remove))
        .route("/api/webhooks/{id}/test", post(test))
        .route("/api/webhooks/{id}/secret/rotate", post(rotate_secret))
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
        .route("/api/deliveries/stream", get(changes))
        .route("/api/deliveries/{id}", get(message))
        .route("/api/deliveries/{id}/resend", post(resend))
        .route("/api/webhooks/{id}/messages/{msg}/retry", post(retry_now))
}

impl From<sender::HooksError> for ApiError {
    fn from(e: sender::HooksError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// A refused create or update: the project's error body, and for invalid input one more field,
/// `errors: [{"field", "message"}]`, naming every invalid field (the `message` still joins
/// them, so clients reading only `code` and `message` see no change).
struct WebhookError(sender::HooksError);

impl From<sender::HooksError> for WebhookError {
    fn from(e: sender::HooksError) -> Self {
        Self(e)
    }
}

impl axum::response::IntoResponse for WebhookError {
    fn into_response(self) -> axum::response::Response {
        let e = self.0;
        let fields = match &e {
            sender::HooksError::Registry(r) => r.fields(),
            _ => Vec::new(),
        };
        if fields.is_empty() {
            return ApiError::from(e).into_response();
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let errors = fields
            .into_iter()
            .map(|(field, message)| api::FieldError {
                field: field.to_owned(),
                message,
            })
            .collect();
        let body = api::ErrorBody::with_fields(e.code(), e.to_string(), errors);
        (status, Json(body)).into_response()
    }
}

/// The answers of every webhook route that takes a JSON body and writes to the sender's store,
/// besides its own: stated once here, named in each route's `responses(...)`. (Built by
/// [`ApiJson`] and the store's errors, never as this type: it only describes them.)
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum BodyErrors {
    /// The body is not JSON
    #[response(status = 400)]
    NotJson(api::ErrorBody),
    /// The body is over the server's request size limit
    #[response(status = 413)]
    TooLarge(api::ErrorBody),
    /// A non-empty body without Content-Type: application/json
    #[response(status = 415)]
    NotJsonContentType(api::ErrorBody),
    /// The sender's store is unavailable
    #[response(status = 503)]
    StoreUnavailable(api::ErrorBody),
}

/// The answer of every route that needs the admin (see [`Admin`]) to a call without its token.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "The server has --auth-token and the admin token was not sent"
)]
#[allow(dead_code)]
struct AdminOnly(api::ErrorBody);

#[utoipa::path(get, path = "/api/events", tag = "webhooks",
    responses((status = 200, description = "The event catalog, with an example payload for each event", body = api::EventList)))]
async fn events(State(state): State<AppState>) -> Json<api::EventList> {
    Json(state.hooks.events())
}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Every webhook, with its signing secret", body = api::WebhookList),
        AdminOnly))]
async fn list(_: Admin, State(state): State<AppState>) -> Json<api::WebhookList> {
    Json(state.hooks.list_webhooks())
}

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = api::WebhookIn, security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` is generated when not given", body = api::WebhookOut),
        (status = 409, description = "A webhook of that name exists (`webhook_name_taken`), or the server holds its most webhooks (`webhook_limit`)", body = api::ErrorBody),
        (status = 422, description = "Invalid fields: `errors` names every one (or the body is JSON of the wrong shape)", body = api::ErrorBody),
        BodyErrors, AdminOnly))]
async fn create(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<api::WebhookIn>,
) -> Result<(StatusCode, Json<api::WebhookOut>), WebhookError> {
    Ok((
        StatusCode::CREATED,
        Json(state.hooks.create_webhook(input)?),
    ))
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook")), security((), ("bearer" = [])),
    responses(
        (status = 200, body = api::WebhookOut),
        (status = 404, description = "No such webhook", body = api::ErrorBody),
        AdminOnly))]
async fn read(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::WebhookOut>, ApiError> {
    Ok(Json(state.hooks.get_webhook(&id)?))
}

#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook")), request_body = api::WebhookPatch, security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Updated: only the fields given changed", body = api::WebhookOut),
        (status = 404, description = "No such webhook", body = api::ErrorBody),
        (status = 409, description = "Another webhook has that name", body = api::ErrorBody),
        (status = 422, description = "Invalid fields: `errors` names every one (or the body is JSON of the wrong shape)", body = api::ErrorBody),
        BodyErrors, AdminOnly))]
async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<api::WebhookPatch>,
) -> Result<Json<api::WebhookOut>, WebhookError> {
    Ok(Json(state.hooks.update_webhook(&id, patch).await?))
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook")), security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted (the webhook as it was); its scheduled retries end", body = api::WebhookOut),
        (status = 404, description = "No such webhook", body = api::ErrorBody),
        (status = 503, description = "The sender's store is unavailable", body = api::ErrorBody),
        AdminOnly))]
async fn remove(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::WebhookOut>, ApiError> {
    Ok(Json(state.hooks.delete_webhook(&id).await?))
}

#[utoipa::path(post, path = "/api/webhooks/{id}/secret/rotate", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook")), request_body = api::RotateSecretIn, security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The webhook with its new `secret`; until `previous_secret_expires_at` every delivery is also signed with `previous_secret`", body = api::WebhookOut),
        (status = 404, description = "No such webhook", body = api::ErrorBody),
        (status = 422, description = "Invalid fields (`grace`, `secret`): `errors` names every one (or the body is JSON of the wrong shape)", body = api::ErrorBody),
        BodyErrors, AdminOnly))]
async fn rotate_secret(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<api::RotateSecretIn>,
) -> Result<Json<api::WebhookOut>, WebhookError> {
    Ok(Json(state.hooks.rotate_secret(&id, input)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TestQuery {
    /// The event to send (default: the webhook's first subscribed event).
    #[param(example = "payment_received")]
    event: Option<String>,
}

#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook"), TestQuery),
    responses(
        (status = 200, description = "The true outcome of one attempt: `delivered` is true only for a 2xx answer", body = api::TestOutcome),
        (status = 400, description = "A query parameter is not valid", body = api::ErrorBody),
        (status = 404, description = "No such webhook, or no such event", body = api::ErrorBody),
        (status = 422, description = "The webhook is not subscribed to that event", body = api::ErrorBody),
        (status = 503, description = "The server is shutting down", body = api::ErrorBody)))]
async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TestQuery>,
) -> Result<Json<api::TestOutcome>, ApiError> {
    Ok(Json(
        state.hooks.test_webhook(&id, q.event.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/api/events/{slug}/emit", tag = "webhooks", params(("slug" = String, Path, description = "An event of the catalog", example = "payment_received")), request_body = api::EmitIn,
    responses(
        (status = 202, description = "Queued: one message per active webhook subscribed to the event", body = api::EmitOut),
        (status = 400, description = "The body is not JSON", body = api::ErrorBody),
        (status = 413, description = "The body is over the server's request size limit, or the message over the sender's --max-payload", body = api::ErrorBody),
        (status = 415, description = "A non-empty body without Content-Type: application/json", body = api::ErrorBody),
        (status = 404, description = "No such event", body = api::ErrorBody),
        (status = 422, description = "The body is JSON of the wrong shape", body = api::ErrorBody),
        (status = 429, description = "A webhook's queue is full", body = api::ErrorBody),
        (status = 503, description = "The sender's store is unavailable or the server is shutting down", body = api::ErrorBody)))]
async fn emit(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<api::EmitIn>,
) -> Result<(StatusCode, Json<api::EmitOut>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.hooks.emit(&slug, input.payload).await?),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// The most attempts and messages to return (default 100, at most 1000).
    #[param(example = 10)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook"), LogQuery),
    responses(
        (status = 200, description = "The webhook's attempts and messages, newest first", body = api::DeliveryLog),
        (status = 400, description = "A query parameter is not valid", body = api::ErrorBody),
        (status = 404, description = "No such webhook", body = api::ErrorBody),
        (status = 503, description = "The sender's store is unavailable", body = api::ErrorBody)))]
async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<api::DeliveryLog>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT).min(MAX_LOG_LIMIT);
    Ok(Json(state.hooks.deliveries(&id, limit)?))
}

#[utoipa::path(get, path = "/api/deliveries/{id}", tag = "webhooks", params(("id" = String, Path, description = "A message id (`msg_...`), the `webhook-id` header it was sent with", example = "msg_fuzz")),
    responses(
        (status = 200, description = "Where the message stands", body = api::MessageOut),
        (status = 404, description = "No such message (or evicted from the log)", body = api::ErrorBody)))]
async fn message(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::MessageOut>, ApiError> {
    state
        .hooks
        .delivery()
        .message(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("delivery_not_found", format!("no message `{id}`")))
}

#[utoipa::path(post, path = "/api/deliveries/{id}/resend", tag = "webhooks", params(("id" = String, Path, description = "A message id (`msg_...`), the `webhook-id` header it was sent with", example = "msg_fuzz")),
    responses(
        (status = 202, description = "Queued again, with the same message id", body = api::MessageRef),
        (status = 404, description = "No such message, or its webhook is gone", body = api::ErrorBody),
        (status = 409, description = "The message is being sent now, or its webhook is disabled", body = api::ErrorBody),
        (status = 429, description = "The webhook's queue is full", body = api::ErrorBody),
        (status = 503, description = "The sender's store is unavailable or the server is shutting down", body = api::ErrorBody)))]
async fn resend(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<api::MessageRef>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.hooks.resend(&id).await?)))
}

#[utoipa::path(post, path = "/api/webhooks/{id}/messages/{msg}/retry", tag = "webhooks", params(("id" = String, Path, description = "The webhook's id (`wh_...`) or its name", example = "fuzz-hook"), ("msg" = String, Path, description = "A message id (`msg_...`) of that webhook", example = "msg_fuzz")),
    responses(
        (status = 202, description = "The message's next attempt is due now (the retry schedule goes on from it)", body = api::MessageRef),
        (status = 404, description = "No such webhook, or no such message of it", body = api::ErrorBody),
        (status = 409, description = "The message is not waiting for a retry: being sent now, or finished (`delivery_not_waiting`)", body = api::ErrorBody),
        (status = 503, description = "The sender's store is unavailable or the server is shutting down", body = api::ErrorBody)))]
async fn retry_now(
    State(state): State<AppState>,
    Path((id, msg)): Path<(String, String)>,
) -> Result<(StatusCode, Json<api::MessageRef>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.hooks.retry_now(&id, &msg).await?),
    ))
}

/// How often a client is told at most that something changed: each `changed` event makes it
/// reload, so a busy engine (thousands of deliveries a second) must not turn into as many reloads.
const CHANGES_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// SSE: `ready`, then `changed` (data `{"version": n}`) whenever a webhook or a delivery log
/// changed since the last event, at most every 250 ms. Clients reload what they show.
#[utoipa::path(get, path = "/api/deliveries/stream", tag = "live",
    responses((status = 200, description = "Server-Sent Events: ready, then changed ({\"version\": n}) at most every 250 ms", content_type = "text/event-stream")))]
async fn changes(State(state): State<AppState>) -> super::stream::EventStream {
    use axum::response::sse::Event;
    use futures_util::{StreamExt, stream};
    let rx = state.hooks.registry().changes();
    let ready = Event::default().event("ready").data("{}");
    let changed = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            tokio::time::sleep(CHANGES_EVERY).await;
        }
        rx.changed().await.ok()?;
        let version = *rx.borrow_and_update();
        let event = Event::default()
            .event("changed")
            .data(format!("{{\"version\":{version}}}"));
        Some((Ok(event), (rx, false)))
    });
    super::stream::sse(&state, stream::once(async { Ok(ready) }).chain(changed))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::store::StoreLimits;
    use crate::{AppState, ServerConfig, app};

    async fn call(
        state: &AppState,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn state() -> AppState {
        AppState::new(StoreLimits::default(), ServerConfig::default())
    }

    #[tokio::test]
    async fn webhooks_crud_and_errors_use_the_json_body() {
        let s = state();
        let (status, events) = call(&s, "GET", "/api/events", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(events["events"][0]["slug"], "payment_received");

        let input = serde_json::json!({"name": "Billing", "url": "http://127.0.0.1:9/h",
                                       "event": "payment_received"});
        let (status, w) = call(&s, "POST", "/api/webhooks", Some(input.clone())).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = w["id"].as_str().unwrap().to_owned();
        assert!(w["secret"].as_str().unwrap().starts_with("whsec_"));

        let (status, e) = call(&s, "POST", "/api/webhooks", Some(input)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(e["error"]["code"], "webhook_name_taken");

        let bad = serde_json::json!({"name": "x", "url": "http://a.example/", "event": "payment_received"});
        let (status, e) = call(&s, "POST", "/api/webhooks", Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["error"]["message"], "name: must be at least 2 characters");
        assert_eq!(
            e["error"]["errors"],
            serde_json::json!([{"field": "name", "message": "must be at least 2 characters"}])
        );
        // Every invalid field at once, not only the first.
        let worse = serde_json::json!({"name": "x", "url": "ftp://a.example/", "event": "nope"});
        let (status, e) = call(&s, "POST", "/api/webhooks", Some(worse)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e["error"]["code"], "invalid_webhook");
        let fields: Vec<&str> = e["error"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["name", "url", "event"], "{e}");

        let (status, w) = call(
            &s,
            "PATCH",
            &format!("/api/webhooks/{id}"),
            Some(serde_json::json!({"active": false})),
        )
        .await;
        assert_eq!(
            (status, &w["active"]),
            (StatusCode::OK, &serde_json::json!(false))
        );
        let (_, list) = call(&s, "GET", "/api/webhooks", None).await;
        assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
        let (status, log) = call(&s, "GET", "/api/webhooks/Billing/deliveries", None).await;
        assert_eq!(
            (status, &log["webhook_id"]),
            (StatusCode::OK, &serde_json::json!(id))
        );

        // Inactive: emit reaches nobody, but is accepted.
        let (status, out) = call(&s, "POST", "/api/events/payment_received/emit", None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(out["message_ids"], serde_json::json!([]));
        let (status, e) = call(&s, "POST", "/api/events/nope/emit", None).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("event_not_found"))
        );

        let (status, _) = call(&s, "DELETE", &format!("/api/webhooks/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, e) = call(&s, "GET", &format!("/api/webhooks/{id}"), None).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("webhook_not_found"))
        );
        let (status, e) = call(&s, "POST", "/api/deliveries/msg_nope/resend", None).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("delivery_not_found"))
        );
    }

    #[tokio::test]
    async fn a_test_send_to_nowhere_reports_failure() {
        let s = state();
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/h", closed.local_addr().unwrap());
        drop(closed);
        let input = serde_json::json!({"name": "nobody", "url": url, "events": ["site_published"]});
        let (_, w) = call(&s, "POST", "/api/webhooks", Some(input)).await;
        let (status, out) = call(
            &s,
            "POST",
            &format!("/api/webhooks/{}/test", w["id"].as_str().unwrap()),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out["delivered"], false);
        assert_eq!(out["status"], serde_json::Value::Null);
        assert!(
            out["error"]
                .as_str()
                .unwrap()
                .starts_with("connection failed")
        );
        assert_eq!(out["event"], "site_published");
    }
}
