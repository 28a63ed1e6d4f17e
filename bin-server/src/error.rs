//! One error type for every handler: a status code and the JSON body
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
        }
    }
}

/// A JSON body extractor whose rejections use the project's error body and say where the JSON
/// is wrong. Any content type is accepted (curl's `-d` sends form content type by default); an
/// empty body reads as `{}`.
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
        serde_json::from_slice(bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
    }
}
