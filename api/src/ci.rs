//! The CI toolkit's wire types: the `wait` contract, replaying a captured request.
//!
//! `GET /api/bins/{bin}/wait` answers with a [`crate::CapturedRequestOut`] (or a 408 error body);
//! exports are HAR 1.2 or NDJSON of [`crate::CapturedRequestOut`], so they need no types here.

use serde::{Deserialize, Serialize};

/// The longest `timeout=` one `GET /api/bins/{bin}/wait` accepts; clients wait longer by
/// chaining polls.
pub const WAIT_MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Body of `POST /api/bins/{bin}/requests/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// Where to send the request (`http://` or `https://`).
    pub url: String,
    /// Append the path the request had below the bin (`/b/{bin}/github` -> `{url}/github`);
    /// a request to the bin itself adds nothing. Default true.
    #[serde(default = "yes")]
    pub append_path: bool,
}

fn yes() -> bool {
    true
}

/// What happened when a captured request was sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayOut {
    /// The URL the request went to (with the captured path and query).
    pub url: String,
    /// The answer's status; absent when none came (connection error, timeout).
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The first 4 KiB of the answer's body (lossy UTF-8).
    pub response_excerpt: Option<String>,
    /// What went wrong, when no answer came.
    pub error: Option<String>,
}
