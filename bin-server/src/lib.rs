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
    /// Timeouts, connection caps, the in-flight body budget and the shutdown grace period.
    pub conn_limits: conn::ConnLimits,
}

/// Server-wide counters the store does not own.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open SSE streams (per-bin and all-bins).
    pub sse_subscribers: AtomicU64,
    /// SSE subscribers that fell behind and were told to resync.
    pub sse_resyncs: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed on accept by `--max-connections`.
    pub refused_max_connections: AtomicU64,
    /// Connections closed on accept by `--max-connections-per-ip`.
    pub refused_per_ip: AtomicU64,
    /// Connections closed by `--header-timeout` (a head not complete in time).
    pub timeouts_header: AtomicU64,
    /// Connections closed by `--idle-timeout` with no request in progress.
    pub timeouts_idle: AtomicU64,
    /// Connections closed by `--idle-timeout` while a handler waited for body bytes.
    pub timeouts_body: AtomicU64,
    /// Connections closed by `--idle-timeout` while the client read nothing of a response.
    pub timeouts_write: AtomicU64,
    /// Bytes of capture bodies read and not yet stored or dropped (`--max-inflight-bytes`).
    pub inflight_body_bytes: AtomicU64,
    /// Captures answered `503 server_busy` because of `--max-inflight-bytes`.
    pub captures_refused_busy: AtomicU64,
    /// Capture bodies with broken framing (malformed chunked encoding), answered 400.
    pub body_framing_errors: AtomicU64,
    /// Capture bodies cut off by the client (disconnect or reset) and not stored.
    pub bodies_cut_off: AtomicU64,
}

impl Metrics {
    pub fn count_timeout(&self, kind: conn::TimeoutKind) {
        match kind {
            conn::TimeoutKind::Header => &self.timeouts_header,
            conn::TimeoutKind::Idle => &self.timeouts_idle,
            conn::TimeoutKind::Body => &self.timeouts_body,
            conn::TimeoutKind::Write => &self.timeouts_write,
        }
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn count_refusal(&self, why: conn::Refusal) {
        match why {
            conn::Refusal::MaxConnections => &self.refused_max_connections,
            conn::Refusal::PerIp => &self.refused_per_ip,
        }
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
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
    let limits = state.config.conn_limits.clone();
    let metrics = Arc::clone(&state.metrics);
    let service = service(state);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: closing live streams, finishing in-flight requests");
        token.cancel();
    };
    let served = conn::serve(listener, service, signal, limits, metrics).await;
    // Deliveries stop with the server; messages still waiting for a retry are listed, not
    // dropped silently.
    let report = hooks.shutdown(std::time::Duration::from_secs(5)).await;
    if !report.unfinished.is_empty() || report.timed_out {
        tracing::warn!("deliveries stopped: {report}");
    }
    served
}
