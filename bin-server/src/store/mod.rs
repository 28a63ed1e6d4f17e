//! # The store: bins and the requests captured in them
//!
//! Owns the domain of the receiving side and nothing of HTTP (no axum here). [`Store`] is the
//! seam a shared backend (Redis with pub/sub, for several bin-server instances behind a load
//! balancer) would implement; [`MemoryStore`] is the embedded default.
//!
//! Limits, all enforced here and all counted (nothing is dropped silently):
//! - requests per bin: a ring buffer, the oldest evicted first (`evicted.by_bin_limit`);
//! - a global byte budget for stored bodies and heads: the oldest request across all bins is
//!   evicted first (`evicted.by_byte_budget`);
//! - the number of bins: creating one more is refused with [`StoreError::TooManyBins`];
//! - idle bins expire after the configured TTL ([`MemoryStore::expire_idle`]).

mod captured;
mod memory;
mod search;

pub use captured::{CapturedRequest, HeaderIter, NewCapture, RawHeaders};
pub use memory::MemoryStore;
pub use search::{MAX_TEXT_BYTES, TextSearch, TextTooLong};

use std::sync::{Arc, OnceLock};

use api::{BinResponse, EvictionCounts};
use tokio::sync::broadcast;

/// A bin's name: a UUID v4 or a user-chosen `[a-z0-9][a-z0-9-_]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinName(Arc<str>);

impl BinName {
    /// Parses a bin name, saying what is wrong with a bad one.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Self::check(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// Checks a bin name without keeping it (the capture path looks bins up by `&str`).
    pub fn check(s: &str) -> Result<(), StoreError> {
        let bytes = s.as_bytes();
        let ok_first = bytes
            .first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
        // A UUID in canonical form is 36 characters and fits the same alphabet.
        if !ok_first || !ok_rest || bytes.len() > 64 {
            return Err(StoreError::BadName(format!(
                "bin name {s:?} is not valid: use 1 to 64 characters of a-z, 0-9, '-' and '_', \
                 starting with a letter or digit"
            )));
        }
        Ok(())
    }

    /// A fresh, unguessable name (UUID v4).
    pub fn random() -> Self {
        Self(Arc::from(uuid::Uuid::new_v4().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BinName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server-wide limits the store enforces.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Default and maximum requests kept per bin.
    pub max_requests_per_bin: u32,
    /// Default and maximum body bytes stored per request.
    pub max_body_bytes: u64,
    /// Budget for all stored request bytes (bodies and heads) across bins.
    pub max_bytes: u64,
    /// Bins at most.
    pub max_bins: usize,
    /// Idle bins older than this are deleted; `None` keeps them forever.
    pub bin_ttl: Option<std::time::Duration>,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_requests_per_bin: 1000,
            max_body_bytes: 1024 * 1024,
            max_bytes: 256 * 1024 * 1024,
            max_bins: 10_000,
            bin_ttl: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// The settings of a bin that users choose (all validated before they reach the store).
#[derive(Debug, Clone, Default)]
pub struct BinSettings {
    pub response: BinResponse,
    /// `None`: the server's limit.
    pub max_requests: Option<u32>,
    /// `None`: the server's limit.
    pub max_body_bytes: Option<u64>,
    /// Opaque to the store: the JSON Schema checked at capture time by the routes.
    pub schema: Option<serde_json::Value>,
    /// Opaque to the store: `(scheme, secret)` for signature checks at capture time.
    pub signature: Option<(String, String)>,
    /// The compiled form of `schema` and `signature`, run on every capture (built once per
    /// settings change, so captures never recompile a schema).
    pub checks: Option<Arc<dyn CaptureCheck>>,
    /// SHA-256 of the bin's own token (issued at creation when the server has `--auth-token`),
    /// never the token. Fixed at creation: [`Store::put_bin`] on an existing bin keeps it.
    pub token_hash: Option<[u8; 32]>,
}

/// Checks a bin runs on each request before it is stored (JSON Schema, signature). The routes
/// build them; the store only hands them to the capture path. Implementations fill
/// [`NewCapture::validation`] and [`NewCapture::signature`].
pub trait CaptureCheck: std::fmt::Debug + Send + Sync + 'static {
    fn check(&self, capture: &mut NewCapture);
}

/// A bin's state at one moment, for the API.
#[derive(Debug, Clone)]
pub struct BinSnapshot {
    pub name: BinName,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_activity: chrono::DateTime<chrono::Utc>,
    pub request_count: u64,
    pub total_captured: u64,
    pub bytes_stored: u64,
    pub evicted: EvictionCounts,
    pub settings: BinSettings,
    /// The limits in force (settings capped by the server's).
    pub max_requests: u32,
    pub max_body_bytes: u64,
}

/// Filters of `GET .../requests`; all must match.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Method, case-insensitive.
    pub method: Option<String>,
    /// Path below the bin: exact, or a prefix when it ends with `*`.
    pub path: Option<String>,
    /// Text searched (ASCII case-insensitive) in path, query, header names and values, and
    /// body. The scan reads every stored byte of the bin: with it, call
    /// [`Store::requests`] off the async runtime's worker threads.
    pub text: Option<TextSearch>,
}

/// Which page of a bin's requests, newest first.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub limit: usize,
    /// Only requests with a smaller sequence number (older).
    pub before: Option<u64>,
    /// Only requests with a larger sequence number (newer).
    pub after: Option<u64>,
    pub filter: RequestFilter,
}

/// One page of requests.
#[derive(Debug, Clone)]
pub struct Page {
    pub requests: Vec<Arc<CapturedRequest>>,
    pub total: u64,
    pub matched: u64,
    pub next_before: Option<u64>,
    pub evicted: EvictionCounts,
}

/// What live subscribers receive.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Captured {
        bin: BinName,
        request: Arc<CapturedRequest>,
        /// Shared by every subscriber of this event (bin and all-bins streams alike).
        rendered: Arc<Rendered>,
    },
    Deleted {
        bin: BinName,
        id: uuid::Uuid,
    },
    Cleared {
        bin: BinName,
    },
    BinDeleted {
        bin: BinName,
    },
}

/// A captured request's wire forms for live streams, each rendered at most once per event: the
/// first subscriber that needs a form fills it and every other subscriber sends the same text,
/// so a capture with 1,000 subscribers is serialised once, not 1,000 times. The store creates
/// one only for events somebody receives (a capture nobody watches pays nothing) and knows
/// nothing of the forms; the routes fill them.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The complete `request` event on `/stream` and `/api/stream` (SSE text: name, the
    /// request as JSON, id), ready to be copied into every subscriber's next body frame.
    pub request_event: OnceLock<bytes::Bytes>,
    /// The complete message event on `/smee` (smee.io's format, SSE text).
    pub smee_event: OnceLock<bytes::Bytes>,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub bins: u64,
    pub requests_stored: u64,
    pub bytes_stored: u64,
    pub captures_total: u64,
    pub evicted_by_bin_limit: u64,
    pub evicted_by_byte_budget: u64,
    pub truncated_total: u64,
}

/// Errors of the store; the routes map each to a status code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("bin {0:?} does not exist")]
    NoSuchBin(String),
    #[error("request {0:?} does not exist in this bin")]
    NoSuchRequest(String),
    #[error("{0}")]
    BadName(String),
    #[error("bin {0:?} exists already")]
    BinExists(String),
    #[error("the server holds {0} bins, its limit: delete some or raise --max-bins")]
    TooManyBins(usize),
}

/// The storage seam. Implementations never block for long: the in-memory one takes short
/// critical sections only, so it is called straight from async handlers. The one exception is
/// [`Store::requests`] with a text filter, which reads every stored byte of the bin (outside any
/// lock): callers run it on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Creates a bin; `name` `None` draws a random UUID.
    fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError>;
    /// Creates the bin or replaces its settings (stored requests are kept, and so is the
    /// `token_hash` it was created with). `true` when created.
    fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError>;
    fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError>;
    /// All bins, most recently active first.
    fn list_bins(&self) -> Vec<BinSnapshot>;
    fn delete_bin(&self, name: &str) -> Result<(), StoreError>;

    /// The settings and limits capture needs, without copying the whole snapshot.
    fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError>;
    /// Stores one captured request (evicting what the limits require) and tells subscribers.
    fn capture(&self, name: &str, new: NewCapture) -> Result<Arc<CapturedRequest>, StoreError>;

    fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError>;
    fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError>;
    fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError>;
    /// Deletes all requests of a bin; returns how many.
    fn clear_requests(&self, name: &str) -> Result<u64, StoreError>;

    /// Live events of one bin.
    fn subscribe(&self, name: &str) -> Result<broadcast::Receiver<LiveEvent>, StoreError>;
    /// Live events of all bins.
    fn subscribe_all(&self) -> broadcast::Receiver<LiveEvent>;

    fn stats(&self) -> StoreStats;
    /// Deletes bins idle for longer than the TTL; returns how many.
    fn expire_idle(&self, now: chrono::DateTime<chrono::Utc>) -> usize;
    fn limits(&self) -> &StoreLimits;
}

/// What the capture path needs to know about a bin, shared without copying.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub response: BinResponse,
    pub max_body_bytes: u64,
    /// `None` for bins without schema or secret: their captures pay nothing for checks.
    pub checks: Option<Arc<dyn CaptureCheck>>,
}
