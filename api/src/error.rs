//! The error body of every route: `{"error": {"code": "...", "message": "..."}}`, and for
//! invalid input also `"errors": [{"field": "...", "message": "..."}]`, naming every invalid field.

use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable `code` (snake_case, stable) and a human-readable `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    /// For invalid input, every field's problem joined (`name: ...; url: ...`).
    pub message: String,
    /// Every invalid field at once (absent when the error is not about fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's name in the body, e.g. `url`.
    pub field: String,
    /// What is wrong with it, e.g. `must start with http:// or https://`.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                errors: Vec::new(),
            },
        }
    }

    /// An error about fields: `message` joins them, `errors` lists each.
    pub fn with_fields(
        code: impl Into<String>,
        message: impl Into<String>,
        errors: Vec<FieldError>,
    ) -> Self {
        let mut body = Self::new(code, message);
        body.error.errors = errors;
        body
    }
}

/// An error with its causes on one line, e.g. "error sending request: connection refused"
/// (a cause its parent already quotes is left out): how both CLIs and the sender's delivery log
/// report a failed call.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
