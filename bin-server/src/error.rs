//! One error type for every handler: a status code and the JSON body
//! `{"error": {"code": "...", "message": "..."}}`; the JSON body extractor [`ApiJson`]; and
//! [`json_rejections`], which gives the responses axum makes itself (405, the path and query
//! extractors' rejections) the same body.

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// An error answered to the client. `code` is stable and snake_case; `message` says what is wrong
/// and, where it can, how to fix it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(api::ErrorBody::new(self.code, self.message)),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NoSuchBin(_) => Self::not_found("bin_not_found", message),
            StoreError::NoSuchRequest(_) => Self::not_found("request_not_found", message),
            StoreError::BadName(_) => Self::bad_request("invalid_bin_name", message),
            StoreError::BinExists(_) => Self::new(
                StatusCode::CONFLICT,
                "bin_exists",
                format!("{message}: use PUT /api/bins/{{name}} to update it"),
            ),
            StoreError::TooManyBins(_) => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "too_many_bins", message)
            }
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{message}; nothing was stored: try again shortly"),
            ),
        }
    }
}

/// A JSON body extractor whose rejections use the project's error body and say where the JSON
/// is wrong: `400 invalid_json` when the body is not JSON, `422 invalid_body` when it is JSON of
/// the wrong shape (an unknown field, a wrong type, not an object). The origin guard has already
/// required `Content-Type: application/json` for a non-empty body; an empty body reads as `{}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // Every body is an object: serde's derived structs would also take an array of their
        // fields in order (`[]` read as every default).
        let mut de = serde_json::Deserializer::from_slice(bytes);
        api::Object::<T>::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| ApiJson(v.0)))
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("the JSON body does not fit: {e}"),
                ),
                _ => ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")),
            })
    }
}

/// Gives the errors axum answers by itself under `/api` the JSON error body: the empty `405` of
/// a known path with another method (axum still adds its `Allow` header), and the plain-text rejections of
/// the path, query and body extractors (status kept). Any other response passes untouched.
pub fn json_rejections<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(rejection_as_json))
}

async fn rejection_as_json(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    let (method, path) = (req.method().clone(), path.to_owned());
    let response = next.run(req).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|ct| ct.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejection texts are a line or two; anything longer is not one of them.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match (status, text.as_str()) {
        (_, t) if t.starts_with("Invalid URL") => "invalid_path",
        (_, t) if t.starts_with("Failed to deserialize query string") => "invalid_query",
        (StatusCode::BAD_REQUEST, _) => "bad_request",
        (StatusCode::NOT_FOUND, _) => "not_found",
        (StatusCode::METHOD_NOT_ALLOWED, _) => "method_not_allowed",
        (StatusCode::PAYLOAD_TOO_LARGE, _) => "body_too_large",
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, _) => "unsupported_media_type",
        (StatusCode::UNPROCESSABLE_ENTITY, _) => "invalid_body",
        (s, _) if s.is_server_error() => "internal_error",
        _ => "http_error",
    };
    // The method router adds `Allow` after this layer has run (it wraps each method's handler
    // and the 405 fallback alike), so the message points at it instead of quoting it.
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "{method} is not allowed on {path}: the Allow header lists the methods it takes"
        ),
        _ if text.is_empty() => format!("{method} {path}: {status}"),
        _ => text,
    };
    let body = serde_json::to_vec(&api::ErrorBody::new(code, message)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}
