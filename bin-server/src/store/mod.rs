//! # The store: bins and the requests captured in them
//!
//! Owns the domain of the receiving side and nothing of HTTP (no axum here). [`Store`] is the
//! async seam every backend implements: [`MemoryStore`] (the embedded default), SQLite (one
//! file, survives restarts) and Redis (several instances share bins, live streams and waits).
//! [`open`] picks one from `--store`.
//!
//! Live events reach subscribers through the instance's [`LiveHub`]: each backend publishes
//! what this instance must hear (the memory and SQLite stores their own captures, Redis what
//! its one reader hears from every instance). Readers never hold a channel of the store's:
//! they read a backlog with [`Store::read_after`] and then follow the hub, rereading the store
//! when they fall behind.
//!
//! Limits, all enforced here and all counted (nothing is dropped silently):
//! - requests per bin: a ring buffer, the oldest evicted first (`evicted.by_bin_limit`);
//! - a global byte budget for stored bodies and heads: the oldest request across all bins is
//!   evicted first (`evicted.by_byte_budget`);
//! - the number of bins: creating one more is refused with [`StoreError::TooManyBins`];
//! - idle bins expire after the configured TTL ([`MemoryStore::expire_idle`]).
//!
//! Request matching has one home, `matching`: the page filters every backend applies
//! ([`RequestFilter`], with the text search [`TextSearch`]) and what a `wait` waits for
//! ([`Matcher`]).

mod captured;
pub mod codec;
mod live;
mod matching;
mod memory;
mod redis;
mod sqlite;

pub use self::redis::{RedisStore, split_prefix as split_redis_prefix};
/// Implementations of [`Store`] outside this crate use this attribute (no dependency of their
/// own to keep in step).
pub use async_trait::async_trait;
pub use captured::{CapturedRequest, HeaderIter, NewCapture, RawHeaders};
pub use live::LiveHub;
pub use matching::{MAX_TEXT_BYTES, Matcher, RequestFilter, TextSearch, TextTooLong};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use std::sync::{Arc, OnceLock};

use api::{BinResponse, EvictionCounts};

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

/// The settings of a bin that users choose (all validated before they reach the store). All of
/// it is data (serialisable by [`codec`]); compiled checks live in [`CaptureSettings`].
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// SHA-256 of the bin's own token (issued at creation when the server has `--auth-token`),
    /// never the token. Fixed at creation: [`Store::put_bin`] on an existing bin keeps it.
    pub token_hash: Option<[u8; 32]>,
}

/// Checks a bin runs on each request before it is stored (JSON Schema, signature). The routes
/// compile them from [`CaptureSettings`] (once per settings change and instance); the store
/// never sees them. Implementations fill [`NewCapture::validation`] and
/// [`NewCapture::signature`].
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

/// What live subscribers receive (through the instance's [`LiveHub`]).
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
    /// This instance's live feed was interrupted (a Redis backend reconnected): events may
    /// have been missed. Subscribers reread the store from their cursor (`wait`) or tell their
    /// client to reload (SSE `resync`), as when they fall behind.
    Resync,
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
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// The backend cannot be reached or failed (SQLite I/O, Redis down): answered 503, and the
    /// request may be retried. Nothing is half-stored.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// The storage seam, one implementation per backend. Every method may wait on I/O (a SQLite
/// commit, a Redis round trip); none blocks the runtime's workers for long (the memory store
/// takes short critical sections, the others do their blocking work on threads of their own).
///
/// What every implementation promises (checked by one conformance suite run against each, in
/// `bin-server/tests/store_conformance.rs`):
/// - sequence numbers per bin start at 1, strictly increase, are never reused (not even after
///   a restart), and two captures never get the same one, whatever instance stores them;
/// - a bin holds at most its `max_requests`, the oldest evicted first and counted in
///   `evicted.by_bin_limit`; the byte budget evicts across bins oldest first
///   (`evicted.by_byte_budget`), as exactly as the backend can (see the README);
/// - a capture that returned `Ok` is stored (durably, for SQLite and Redis) and has been
///   published to the live feed of every instance;
/// - `--max-bins` is never exceeded; idle bins expire after the TTL.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for `/metrics` and `/healthz`: `memory`, `sqlite` or `redis`.
    fn backend(&self) -> &'static str;
    fn limits(&self) -> &StoreLimits;
    /// This instance's live feed: captures, deletions and bin deletions of every bin, as this
    /// instance hears of them.
    fn live(&self) -> &LiveHub;

    /// Creates a bin; `name` `None` draws a random UUID.
    async fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError>;
    /// Creates the bin or replaces its settings (stored requests are kept, and so is the
    /// `token_hash` it was created with). `true` when created. A lowered `max_requests`
    /// evicts at once, counted as bin-limit evictions.
    async fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError>;
    async fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError>;
    /// All bins, most recently active first (ties by name).
    async fn list_bins(&self) -> Result<Vec<BinSnapshot>, StoreError>;
    /// Deletes the bin and its requests, and publishes [`LiveEvent::BinDeleted`].
    async fn delete_bin(&self, name: &str) -> Result<(), StoreError>;

    /// The settings and limits capture needs. Cheap: served from a cache the backend keeps
    /// current (a settings change on any instance applies to the next capture), so a capture
    /// costs one round trip to a remote backend, not two. The same `Arc` is returned until the
    /// settings change, so what the routes compile into it is compiled once.
    async fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError>;
    /// Stores one captured request (evicting what the limits require) and publishes
    /// [`LiveEvent::Captured`].
    async fn capture(
        &self,
        name: &str,
        new: NewCapture,
    ) -> Result<Arc<CapturedRequest>, StoreError>;

    /// A page of requests, newest first. With a text filter this reads every stored byte of
    /// the bin: callers run it on a blocking thread (the routes bound how many at once).
    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError>;
    /// The cursor read of live streams and `wait`: the stored requests with a sequence number
    /// above `after`, oldest first, at most `limit`.
    async fn read_after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError>;
    /// One request, by id or by sequence number given as digits.
    async fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError>;
    async fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError>;
    /// Deletes all requests of a bin; returns how many.
    async fn clear_requests(&self, name: &str) -> Result<u64, StoreError>;

    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Deletes bins idle for longer than the TTL; returns how many. A backend whose data
    /// expires by itself (Redis) returns 0.
    async fn expire_idle(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError>;
    /// `Ok` when the backend answers (for `/healthz`).
    async fn health(&self) -> Result<(), StoreError>;
}

/// What the capture path needs to know about a bin, shared without copying. One value per bin
/// and settings version: the backend hands out the same `Arc` until the settings change.
#[derive(Debug, Default)]
pub struct CaptureSettings {
    pub response: BinResponse,
    pub max_body_bytes: u64,
    pub schema: Option<serde_json::Value>,
    pub signature: Option<(String, String)>,
    /// The compiled form of `schema` and `signature`, filled by the routes on first use; `None`
    /// inside for bins without checks (their captures pay nothing for them).
    pub compiled: OnceLock<Option<Arc<dyn CaptureCheck>>>,
}

impl CaptureSettings {
    /// What a bin with these settings and this body limit captures with.
    pub fn new(settings: &BinSettings, max_body_bytes: u64) -> Self {
        Self {
            response: settings.response.clone(),
            max_body_bytes,
            schema: settings.schema.clone(),
            signature: settings.signature.clone(),
            compiled: OnceLock::new(),
        }
    }
}

/// Which backend `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory`: this process's memory, lost on restart.
    Memory,
    /// `sqlite:PATH`: one file, created if missing.
    Sqlite(std::path::PathBuf),
    /// `redis://[:PASSWORD@]HOST:PORT[/DB][?prefix=P]`: shared by every instance that names it
    /// (keys under the prefix, `hookbin:` by default).
    Redis(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("sqlite: needs a file path, e.g. sqlite:hookbin.db".into());
            }
            Ok(Self::Sqlite(path.into()))
        } else if s.starts_with("redis://") {
            Ok(Self::Redis(s.to_owned()))
        } else if s.starts_with("rediss://") {
            Err(
                "rediss:// (Redis over TLS) is not built into this server: use redis:// on a \
                 trusted network, or a TLS tunnel to the server"
                    .into(),
            )
        } else {
            Err(format!(
                "unknown store {s:?}: use memory, sqlite:PATH or redis://HOST:PORT[/DB]"
            ))
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Redis(u) => f.write_str(u),
        }
    }
}

/// Opens the store `url` names with these limits.
pub async fn open(url: &StoreUrl, limits: StoreLimits) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Memory => Ok(Arc::new(MemoryStore::new(limits))),
        StoreUrl::Sqlite(path) => {
            // Opening reads the file (and may evict to fit lowered limits): not on a worker.
            let path = path.clone();
            tokio::task::spawn_blocking(move || SqliteStore::open(path, limits))
                .await
                .map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?
                .map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        StoreUrl::Redis(u) => RedisStore::open(u, limits)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>),
    }
}
