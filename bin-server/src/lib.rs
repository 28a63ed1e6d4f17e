//! # bin-server
//!
//! Hookbin's server: unique capture URLs (`/b/{bin}`) that record every request byte-exact in a
//! bounded in-memory store, a JSON API under `/api`, live Server-Sent Events, and the UI.
//!
//! ## Layout
//! - [`store`]: bins and captured requests, limits and eviction; no HTTP in it. [`store::Store`]
//!   is the seam for other backends, [`store::MemoryStore`] the embedded one. Request matching
//!   (page filters, text search, what a `wait` waits for) is the store's too ([`store::Matcher`]).
//! - [`conn`]: the accept loop, connection caps and deadlines (`conn::watch`), bounded shutdown,
//!   and the tap that keeps headers as they came (checked against hyper's own parse).
//! - [`routes`]: one module per resource, each with a `router()`; [`app`] puts them together
//!   behind the origin guard ([`routes::origin`]: Host names, cross-site writes) and the
//!   credentials check ([`routes::auth`]: `--auth-token`, bin tokens, the session cookie).
//! - [`error`]: [`error::ApiError`], the JSON error body of every route.
//! - [`checks`]: a bin's JSON Schema and signature checks, run on each capture.
//! - [`replay`]: sending a captured request again, byte-exact (replay route, `forward`); the
//!   route's client obeys the outbound policy (`sender::outbound`), `forward`'s does not.
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
    /// This server's URL as browsers and senders reach it, without trailing slash: base of the
    /// URLs the API returns, and a Host it answers to; `None`: the bound address
    /// ([`routes::origin`] has the rule).
    pub public_url: Option<String>,
    /// A capture to an unknown well-formed bin name creates the bin.
    pub auto_create: bool,
    /// `--auth-token`: every `/api` route and `/metrics` need it (or a bin's own token, or the
    /// session cookie); `None` leaves the API open. See [`routes::auth`].
    pub auth_token: Option<routes::auth::AuthToken>,
    /// `--public-bins` (only with `auth_token`): anyone may create a bin and gets its token.
    pub public_bins: bool,
    /// Base of capture URLs on a separate origin (`--capture-url`), without trailing slash. A
    /// request whose Host is this URL's host and port gets captures and `/healthz` only.
    pub capture_url: Option<String>,
    /// The address the listener is bound to: [`run`] sets it from the listener. It decides the
    /// Host names the server answers on and the URLs the API returns ([`routes::origin`]);
    /// `None` (the router called in-process) checks no names.
    pub listen_addr: Option<std::net::SocketAddr>,
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
    /// `wait` long-polls holding now (past their first look at the store, waiting for a capture).
    pub waiters: AtomicU64,
    /// Calls refused by the origin guard ([`routes::origin`]) for a Host that is none of the
    /// server's names (DNS rebinding), ...
    pub refused_host: AtomicU64,
    /// ... for coming from another site (`Origin`, `Sec-Fetch-Site`), ...
    pub refused_origin: AtomicU64,
    /// ... and for a write whose body is not `application/json`.
    pub refused_content_type: AtomicU64,
    /// Captured requests serialised for live streams: once per capture and stream format,
    /// however many subscribers (plus one per request replayed to a reconnecting client).
    pub sse_renders: AtomicU64,
    /// Text searches that found every scan slot taken and waited for one.
    pub searches_queued: AtomicU64,
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
    /// Requests whose raw head (the tap's) disagreed with hyper's parse: captured with the
    /// headers as hyper parsed them (`headers_exact: false`), the tap off for that connection.
    pub tap_fallbacks: AtomicU64,
}

impl Metrics {
    /// Counts a connection closed by one of its deadlines.
    pub fn count_timeout(&self, kind: conn::TimeoutKind) {
        match kind {
            conn::TimeoutKind::Header => &self.timeouts_header,
            conn::TimeoutKind::Idle => &self.timeouts_idle,
            conn::TimeoutKind::Body => &self.timeouts_body,
            conn::TimeoutKind::Write => &self.timeouts_write,
        }
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a connection closed on accept by a connection cap.
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
    /// Credentials and the session key (drawn once per state), from `config`.
    pub auth: Arc<routes::auth::Auth>,
    /// The replay route's HTTP client, under the outbound policy of `hooks`.
    pub replay_client: sender::outbound::OutboundClient,
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
        Self::with_store(Arc::new(MemoryStore::new(limits)), config, hooks)
    }

    /// State over the given store (see [`store::open`]) and sending side.
    pub fn with_store(store: Arc<dyn Store>, config: ServerConfig, hooks: sender::Hooks) -> Self {
        Self {
            store,
            auth: Arc::new(routes::auth::Auth::new(&config)),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
            replay_client: replay::checked_client(hooks.outbound()),
            hooks,
            searches: Arc::new(tokio::sync::Semaphore::new(routes::requests::search_slots())),
        }
    }

    /// Replaces the sending side (with the catalog and delivery settings of the flags).
    pub fn with_hooks(mut self, hooks: sender::Hooks) -> Self {
        self.replay_client = replay::checked_client(hooks.outbound());
        self.hooks = hooks;
        self
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    // The origin guard is outermost: a foreign Host or a cross-site write is refused before
    // any credential is looked at.
    let router = routes::router()
        .merge(ui::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::auth::check,
        ));
    routes::origin::guard(router, &state).with_state(state)
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
    use futures_util::FutureExt;
    use tower::ServiceExt;
    let router = app(state.clone());
    let state = Arc::new(state);
    move |req| {
        if routes::capture::is_capture(req.uri().path()) {
            let state = Arc::clone(&state);
            async move { routes::capture::answer(&state, req).await }.boxed()
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
/// requests finish, and it returns. Also runs the idle-bin expiry in the background. The
/// listener's address becomes [`ServerConfig::listen_addr`]: the names the server answers to and
/// the URLs it returns follow from it.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut state = state;
    Arc::make_mut(&mut state.config).listen_addr = Some(listener.local_addr()?);
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
                        match store.expire_idle(chrono::Utc::now()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!("expired {n} idle bins"),
                            Err(e) => tracing::warn!("expiring idle bins: {e}"),
                        }
                        store.live().prune();
                    }
                    () = token.cancelled() => break,
                }
            }
        });
    }
    // Outbound requests recognise this server from here on: its bins are always reachable, its
    // API never (see sender::outbound).
    let mut own = sender::outbound::OwnServer::new(listener.local_addr()?);
    for url in [&state.config.public_url, &state.config.capture_url]
        .into_iter()
        .flatten()
    {
        own = own.with_base_url(url);
    }
    state.hooks.outbound().set_own_server(own);
    // Deliveries start with the server: retries kept in a persistent store go out now.
    state.hooks.start();
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
