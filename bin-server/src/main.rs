//! The `bin-server` binary: parses flags, sets up logging, binds, and runs the library.

use std::net::SocketAddr;

use anyhow::Context;
use bin_server::config::{Cli, Command, LogFormat};
use bin_server::{AppState, ServerConfig};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: the capture path allocates and frees a few small buffers per request, and glibc's
/// allocator took about a fifth of its instructions (callgrind); mimalloc cuts that by half.
/// The `mimalloc` feature (on by default) chooses it; without it, the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Bad flags exit 3, not clap's 2: `wait` uses 2 for a timeout.
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                bin_server::cli::EXIT_ERROR
            } else {
                0
            });
        }
    };
    init_logging(cli.log_format);
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Client(command)) => {
            std::process::exit(bin_server::cli::run(command, shutdown_signal()).await)
        }
        None => cli.serve,
    };
    let limits = args.limits().map_err(anyhow::Error::msg)?;
    let conn_limits = args.conn_limits().map_err(anyhow::Error::msg)?;
    bin_server::conn::raise_open_files_limit(conn_limits.max_connections);
    let mut hooks_config = args.webhooks.to_config();
    hooks_config.outbound.policy = args.outbound_policy();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let config = ServerConfig {
        public_url: args.public_url.clone(),
        auto_create: args.auto_create,
        auth_token: args.auth_token.clone(),
        public_bins: args.public_bins,
        capture_url: args.capture_url.clone(),
        listen_addr: Some(local),
        conn_limits,
    };
    bin_server::routes::origin::check_config(&config).map_err(anyhow::Error::msg)?;
    let store = bin_server::store::open(&args.store, limits)
        .await
        .with_context(|| format!("cannot open the store {}", args.store))?;
    tracing::info!("store: {}", args.store);
    // The sending side keeps its webhooks, messages and retry schedule beside the store: in
    // `PATH.sender.db` next to a `sqlite:PATH` file (the store locks its own file), in the same
    // Redis (shared by every instance there) for `redis://`, in memory otherwise.
    let hooks = match &args.store {
        bin_server::store::StoreUrl::Sqlite(path) => {
            let sender_path = sender::journal::sibling_path(path);
            tracing::info!("sender store: sqlite:{}", sender_path.display());
            sender::Hooks::open_sqlite(hooks_config, &sender_path).await?
        }
        bin_server::store::StoreUrl::Redis(url) => {
            // The same server and prefix as the capture store: keys under `<prefix>sender:`.
            let (client_url, prefix) =
                bin_server::store::split_redis_prefix(url).map_err(anyhow::Error::msg)?;
            tracing::info!("sender store: redis, keys under {prefix}sender:");
            sender::Hooks::open_redis(hooks_config, &client_url, &prefix).await?
        }
        _ => sender::Hooks::new(hooks_config)?,
    };
    let state = AppState::with_store(store, config, hooks);
    let base = bin_server::routes::origin::Site::new(&state.config).api_base(None);
    tracing::info!("Hookbin listening on http://{local} (UI at {base}/)");
    tracing::info!(
        "outbound requests (deliveries, test events, replays): --outbound-policy {}",
        args.outbound_policy()
    );
    bin_server::run(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Logs to stderr at RUST_LOG's level (default `info`): text, coloured only when stderr is a
/// terminal, or one JSON object per line.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
