//! Command-line flags (each also read from a `HOOKBIN_*` environment variable) and the parsing of
//! sizes (`1MiB`, `512k`) and durations (`30s`, `7d`, `0` = off).

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::conn::ConnLimits;
use crate::routes::auth::AuthToken;
use crate::store::StoreLimits;
pub use api::units::{parse_duration, parse_size};

/// Hookbin: self-hosted webhook capture and testing.
#[derive(Debug, Parser)]
#[command(name = "bin-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per line, for log
    /// collectors). The level comes from RUST_LOG (default `info`).
    #[arg(
        long,
        global = true,
        env = "HOOKBIN_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// `serve`'s flags also work without the subcommand (it is the default).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How the server writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Client subcommands for CI (`new`, `wait`, `forward`, `export`).
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Flags of `bin-server serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKBIN_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "HOOKBIN_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Where bins and requests live: `memory` (lost on restart), `sqlite:PATH` (one file on this
    /// machine, created if missing; survives restarts and kill -9), or
    /// `redis://[:PASSWORD@]HOST:PORT[/DB][?prefix=P]` (several instances share bins, live
    /// streams and waits; keys under P, default `hookbin:`). See the README's "Storage".
    #[arg(long, env = "HOOKBIN_STORE", default_value = "memory")]
    pub store: crate::store::StoreUrl,
    /// Base URL of this server as browsers and senders reach it (e.g. https://hooks.example.com):
    /// the URLs the API returns are built on it, and its host is one the API answers to.
    /// Default: http:// + the bind address and port (see the README's "Origins" section).
    #[arg(long, env = "HOOKBIN_PUBLIC_URL", value_parser = parse_base_url)]
    pub public_url: Option<String>,
    /// Largest body stored per request (bytes; k/KiB/M/MiB/G/GiB suffixes). Larger bodies are
    /// answered 413 and stored cut at this size with `truncated: true`.
    #[arg(long, env = "HOOKBIN_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: u64,
    /// Requests kept per bin; the oldest is evicted first.
    #[arg(long, env = "HOOKBIN_MAX_REQUESTS_PER_BIN", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_requests_per_bin: u32,
    /// Budget for all stored requests (bodies and heads) across bins; the oldest request of any
    /// bin is evicted first.
    #[arg(long, env = "HOOKBIN_MAX_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_bytes: u64,
    /// Bins at most; creating one more is answered 507.
    #[arg(long, env = "HOOKBIN_MAX_BINS", default_value_t = 10_000)]
    pub max_bins: usize,
    /// Bins idle (no capture, no update) for longer are deleted. `0` keeps bins forever.
    #[arg(long, env = "HOOKBIN_BIN_TTL", default_value = "7d", value_parser = parse_duration)]
    pub bin_ttl: Duration,
    /// A capture to an unknown, well-formed bin name creates the bin (otherwise: 404).
    #[arg(long, env = "HOOKBIN_AUTO_CREATE", default_value_t = false)]
    pub auto_create: bool,
    /// The sending side: catalog, retry schedule, delivery timeouts, limits.
    #[command(flatten)]
    pub webhooks: sender::HooksArgs,
    /// Every /api route and /metrics need `Authorization: Bearer TOKEN` (or a bin's own token
    /// for that bin, or the browser session of POST /api/session). Captures (/b/...), /healthz
    /// and the UI's page stay open. At least 16 visible ASCII characters.
    #[arg(long, env = "HOOKBIN_AUTH_TOKEN", hide_env_values = true,
          value_parser = AuthToken::parse)]
    pub auth_token: Option<AuthToken>,
    /// With --auth-token: anyone may create a bin (POST /api/bins, PUT of a new name) and gets
    /// a token for that bin alone; everything else still needs the admin token.
    #[arg(
        long,
        env = "HOOKBIN_PUBLIC_BINS",
        default_value_t = false,
        requires = "auth_token"
    )]
    pub public_bins: bool,
    /// Where deliveries, test events and replays may connect: `all`, or `public-only` (no
    /// loopback, private, link-local, CGNAT... address, checked on the address connected to).
    /// Default: `all` when --bind is a loopback address, `public-only` otherwise. This
    /// server's own bins are always reachable, its API never.
    #[arg(long, env = "HOOKBIN_OUTBOUND_POLICY", value_enum)]
    pub outbound_policy: Option<sender::OutboundPolicy>,
    /// A separate origin for captures (e.g. https://hooks-capture.example.com), for public
    /// deployments: the capture URLs the API returns use it, and requests to its host get
    /// captures (/b/...) and /healthz only, so a bin's response can never script the API.
    #[arg(long, env = "HOOKBIN_CAPTURE_URL", value_parser = parse_base_url)]
    pub capture_url: Option<String>,
    /// A request head must arrive whole within this of its first byte, or the connection is
    /// closed.
    #[arg(long, env = "HOOKBIN_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection with no request in progress (keep-alive, HTTP/2, or new), or a request body
    /// with no bytes arriving, is closed after this long.
    #[arg(long, env = "HOOKBIN_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Connections open at once; past it new connections are closed at once, without a response.
    #[arg(long, env = "HOOKBIN_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64); `0` turns the limit
    /// off. Behind a reverse proxy every connection comes from the proxy: raise it or use `0`.
    #[arg(long, env = "HOOKBIN_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,
    /// Bytes of capture bodies being received at once, across all connections; a capture that
    /// would go past it is answered 503 `server_busy`.
    #[arg(long, env = "HOOKBIN_MAX_INFLIGHT_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub max_inflight_bytes: u64,
    /// On shutdown, how long requests still running get to finish.
    #[arg(long, env = "HOOKBIN_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServeArgs {
    /// `--outbound-policy`, or the default for `--bind` (see
    /// [`sender::OutboundPolicy::for_bind`]).
    pub fn outbound_policy(&self) -> sender::OutboundPolicy {
        self.outbound_policy
            .unwrap_or_else(|| sender::OutboundPolicy::for_bind(self.bind))
    }

    /// The store limits these flags set, checked for consistency.
    pub fn limits(&self) -> Result<StoreLimits, String> {
        if self.max_body > self.max_bytes {
            return Err(format!(
                "--max-body ({}) cannot exceed --max-bytes ({})",
                self.max_body, self.max_bytes
            ));
        }
        if self.max_body > u64::from(u32::MAX) / 2 {
            return Err("--max-body must stay under 2 GiB".into());
        }
        if self.max_bins == 0 {
            return Err("--max-bins must be at least 1".into());
        }
        Ok(StoreLimits {
            max_requests_per_bin: self.max_requests_per_bin,
            max_body_bytes: self.max_body,
            max_bytes: self.max_bytes,
            max_bins: self.max_bins,
            bin_ttl: (!self.bin_ttl.is_zero()).then_some(self.bin_ttl),
        })
    }
}

/// Checks a base URL (`--public-url`, `--capture-url`): `http://` or `https://` with a host, no
/// query or fragment; returned without a trailing slash.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{s:?} must be an http:// or https:// URL with a host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{s:?} must not have a query, fragment or user name"
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

impl ServeArgs {
    /// The HTTP layer's limits these flags set, checked.
    pub fn conn_limits(&self) -> Result<ConnLimits, String> {
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err("--header-timeout and --idle-timeout must be longer than 0".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_inflight_bytes < self.max_body {
            return Err(format!(
                "--max-inflight-bytes ({}) must be at least --max-body ({}): otherwise a body \
                 at the size limit could never be received",
                self.max_inflight_bytes, self.max_body
            ));
        }
        Ok(ConnLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_inflight_bytes: self.max_inflight_bytes,
            shutdown_grace: self.shutdown_grace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults_and_env_names() {
        let cli = Cli::try_parse_from(["bin-server", "--port", "0", "--max-body", "2k"]).unwrap();
        assert_eq!(cli.serve.port, 0);
        assert_eq!(cli.serve.max_body, 2048);
        assert_eq!(cli.serve.max_requests_per_bin, 1000);
        assert_eq!(
            cli.serve.limits().unwrap().bin_ttl,
            Some(Duration::from_secs(604_800))
        );
        let bad =
            Cli::try_parse_from(["bin-server", "--max-body", "2G", "--max-bytes", "1G"]).unwrap();
        assert!(bad.serve.limits().is_err());
    }

    #[test]
    fn public_bins_need_an_auth_token_and_tokens_are_checked() {
        let e = Cli::try_parse_from(["bin-server", "--public-bins"]).unwrap_err();
        assert!(e.to_string().contains("--auth-token"), "{e}");
        let e = Cli::try_parse_from(["bin-server", "--auth-token", "short"]).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
        let cli = Cli::try_parse_from([
            "bin-server",
            "--auth-token",
            "0123456789abcdef",
            "--public-bins",
        ])
        .unwrap();
        assert_eq!(
            cli.serve.auth_token.as_ref().map(AuthToken::as_str),
            Some("0123456789abcdef")
        );
        assert!(cli.serve.public_bins);
        assert!(!format!("{cli:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn the_outbound_policy_defaults_from_the_bind_address() {
        use sender::OutboundPolicy::{All, PublicOnly};
        let policy = |args: &[&str]| {
            let mut argv = vec!["bin-server"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap().serve.outbound_policy()
        };
        assert_eq!(policy(&[]), All);
        assert_eq!(policy(&["--bind", "::1"]), All);
        assert_eq!(policy(&["--bind", "0.0.0.0"]), PublicOnly);
        assert_eq!(policy(&["--bind", "::"]), PublicOnly);
        assert_eq!(policy(&["--bind", "192.168.1.5"]), PublicOnly);
        // Said explicitly, it wins either way.
        assert_eq!(
            policy(&["--bind", "0.0.0.0", "--outbound-policy", "all"]),
            All
        );
        assert_eq!(policy(&["--outbound-policy", "public-only"]), PublicOnly);
        assert!(Cli::try_parse_from(["bin-server", "--outbound-policy", "some"]).is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://hooks.example.com/"),
            Ok("https://hooks.example.com".into())
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/hookbin"),
            Ok("http://127.0.0.1:8080/hookbin".into())
        );
        for bad in [
            "hooks.example.com",
            "ftp://h/",
            "https://h/?a=1",
            "http://u@h/",
            "x",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_flags_default_to_the_documented_limits() {
        let cli = Cli::try_parse_from(["bin-server"]).unwrap();
        let l = cli.serve.conn_limits().unwrap();
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.max_connections, 10_000);
        assert_eq!(l.max_connections_per_ip, 1_000);
        assert_eq!(l.max_inflight_bytes, 64 << 20);
        assert_eq!(l.shutdown_grace, Duration::from_secs(5));
        let cli = Cli::try_parse_from(["bin-server", "--header-timeout", "300ms"]).unwrap();
        assert_eq!(
            cli.serve.conn_limits().unwrap().header_timeout,
            Duration::from_millis(300)
        );
        for bad in [
            &["bin-server", "--idle-timeout", "0"][..],
            &["bin-server", "--max-connections", "0"],
            &["bin-server", "--max-inflight-bytes", "1k"],
        ] {
            let cli = Cli::try_parse_from(bad).unwrap();
            assert!(cli.serve.conn_limits().is_err(), "{bad:?}");
        }
    }
}
