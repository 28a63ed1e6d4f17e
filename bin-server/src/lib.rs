//! # bin-server
//!
//! Hookbin's server: unique capture URLs (`/b/{bin}`) that record every request byte-exact in a
//! bounded in-memory store, a JSON API under `/api`, live Server-Sent Events, and the UI.
//!
//! ## Layout
//! - [`store`]: bins and captured requests, limits and eviction; no HTTP in it. [`store::Store`]
//!   is the seam for other backends, [`store::MemoryStore`] the embedded one.
//! - [`conn`]: the accept loop, graceful shutdown, and the tap that keeps headers as they came.
//! - [`routes`]: one module per resource, each with a `router()`; [`app`] puts them together.
//! - [`error`]: [`error::ApiError`], the JSON error body of every route.
//! - [`checks`]: a bin's JSON Schema and signature checks, run on each capture.
//! - [`replay`]: sending a captured request again, byte-exact (replay route, `forward`).
//! - [`config`]: flags and environment variables.
//! - [`cli`]: the client subcommands for CI (`new`, `wait`, `forward`, `export`).
//! - `testing` (feature `testing`): `TestBin`, a real server and bin inside a Rust test.
//!
//! `main.rs` only parses flags, sets up tracing, binds and calls [`run`].

pub mod checks;
pub mod cli;
pub mod config;
pub mod conn;
pub mod error;
pub mod replay;
pub mod routes;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ui;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::{MemoryStore, Store, StoreLimits};

/// Settings of the HTTP layer (the store has its own limits).
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Base of capture URLs, without trailing slash; `None`: `http://` + the request's Host.
    pub public_url: Option<String>,
    /// A capture to an unknown well-formed bin name creates the bin.
    pub auto_create: bool,
}

/// Server-wide counters the store does not own.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open SSE streams (per-bin and all-bins).
    pub sse_subscribers: AtomicU64,
    /// SSE subscribers that fell behind and were told to resync.
    pub sse_resyncs: AtomicU64,
    /// Captured requests serialised for live streams: once per capture and stream format,
    /// however many subscribers (plus one per request replayed to a reconnecting client).
    pub sse_renders: AtomicU64,
    /// Text searches that found every scan slot taken and waited for one.
    pub searches_queued: AtomicU64,
}

/// Everything handlers share: cheap to clone (handles only).
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: live streams end so connections can drain.
    pub shutdown: CancellationToken,
    /// The sending side: event catalog, webhooks and their delivery engine.
    pub hooks: sender::Hooks,
    /// Scan slots for text searches (`q=`): a search reads every stored byte of a bin, so it
    /// runs on a blocking thread, never on the runtime's workers that serve captures; this bounds
    /// how many run at once (see [`routes::requests::search_slots`]). Further searches wait
    /// for a slot in arrival order, holding no thread, and are counted
    /// (`hookbin_searches_queued_total`).
    pub searches: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a fresh in-memory store, with the built-in event catalog and default delivery
    /// settings.
    pub fn new(limits: StoreLimits, config: ServerConfig) -> Self {
        let hooks = sender::Hooks::with_catalog(
            Arc::new(sender::Catalog::builtin()),
            sender::HooksConfig::default(),
        );
        Self::with_sender(limits, config, hooks)
    }

    /// State over a fresh in-memory store and the given sending side.
    pub fn with_sender(limits: StoreLimits, config: ServerConfig, hooks: sender::Hooks) -> Self {
        Self {
            store: Arc::new(MemoryStore::new(limits)),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
            hooks,
            searches: Arc::new(tokio::sync::Semaphore::new(routes::requests::search_slots())),
        }
    }

    /// Replaces the sending side (with the catalog and delivery settings of the flags).
    pub fn with_hooks(mut self, hooks: sender::Hooks) -> Self {
        self.hooks = hooks;
        self
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    routes::router().merge(ui::router()).with_state(state)
}

/// [`app`] as the connections call it, with one fast path: captures (`/b/...`), the hot path,
/// go straight to their handler instead of through the router (route matching, the fallback's
/// wildcard parameter, and moving the request through tower's layers cost about 1,800
/// instructions a capture, measured with callgrind). The router sends `/b/...` to the same
/// handler, so both paths behave the same.
fn service(
    state: AppState,
) -> impl Fn(
    axum::extract::Request,
) -> futures_util::future::BoxFuture<'static, axum::response::Response>
+ Clone
+ Send
+ Sync
+ 'static {
    use axum::response::IntoResponse;
    use futures_util::FutureExt;
    use tower::ServiceExt;
    let router = app(state.clone());
    let state = Arc::new(state);
    move |req| {
        if routes::capture::is_capture(req.uri().path()) {
            let state = Arc::clone(&state);
            async move { routes::capture::capture(&state, req).await.into_response() }.boxed()
        } else {
            router
                .clone()
                .oneshot(req)
                .map(|r| r.unwrap_or_else(|never| match never {}))
                .boxed()
        }
    }
}

/// Serves [`app`] on `listener` until `shutdown` resolves; then live streams end, in-flight
/// requests finish, and it returns. Also runs the idle-bin expiry in the background.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    if let Some(ttl) = state.store.limits().bin_ttl {
        let store = Arc::clone(&state.store);
        let token = token.clone();
        // Sweep often enough that a bin outlives its TTL by at most a tenth of it (or a minute).
        let every = (ttl / 10).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let n = store.expire_idle(chrono::Utc::now());
                        if n > 0 {
                            tracing::info!("expired {n} idle bins");
                        }
                    }
                    () = token.cancelled() => break,
                }
            }
        });
    }
    let hooks = state.hooks.clone();
    let service = service(state);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: closing live streams, finishing in-flight requests");
        token.cancel();
    };
    let served = conn::serve(listener, service, signal).await;
    // Deliveries stop with the server; messages still waiting for a retry are listed, not
    // dropped silently.
    let report = hooks.shutdown(std::time::Duration::from_secs(5)).await;
    if !report.unfinished.is_empty() || report.timed_out {
        tracing::warn!("deliveries stopped: {report}");
    }
    served
}
