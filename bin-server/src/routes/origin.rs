//! Who may call this server, and by which name: the guard in front of every route.
//!
//! - **Captures stay open**: `/b/...` and `/healthz` answer whatever the `Host` (senders reach a
//!   bin through tunnels and proxies under any name).
//! - **The capture origin** (`--capture-url`): a request whose `Host` is that URL's host and port
//!   gets captures and `/healthz` only, anything else a JSON 404, so a script in a bin's response
//!   served there can never reach the API or the UI.
//! - **DNS rebinding**: everything else answers only to the server's own names, else `421
//!   host_not_allowed`: any IP literal (it cannot be rebound), the hosts of `--public-url` and
//!   `--capture-url`, and `localhost` (and `*.localhost`) when bound to loopback or to every
//!   address. A request without a Host (not a browser) passes. Without a known listen address
//!   (the router called in-process) names are not checked.
//! - **Cross-site writes** (CSRF): under `/api`, every method but `GET`, `HEAD` and `OPTIONS`
//!   is refused with `403 forbidden_origin` when `Sec-Fetch-Site` is `cross-site` or `same-site`,
//!   or when an `Origin` is sent that is not this server's own (the `--public-url` origin, or
//!   `http(s)://` + the Host it was called on; `null` never is); and when it carries a body, that
//!   body must be `Content-Type: application/json` (`415 unsupported_media_type`), which a page
//!   of another site cannot send without a CORS preflight this server never grants.
//! - **The URLs the API returns** ([`Site::capture_base`]): `--capture-url`, else
//!   `--public-url`, else `http://` + the bound address and port; when bound to every address
//!   (`0.0.0.0`, `::`), the Host the API was called on if it is one of the names above, else the
//!   loopback address. The `Host` header never puts a name of an attacker's choosing there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use crate::error::ApiError;
use crate::{AppState, Metrics, ServerConfig};

/// This server's names and URLs, worked out once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Site {
    public: Option<Url>,
    /// `--public-url` without a trailing slash.
    public_base: Option<String>,
    capture: Option<Url>,
    /// `--capture-url` without a trailing slash.
    capture_base: Option<String>,
    listen: Option<SocketAddr>,
}

/// A `Host` (or `:authority`) value: the name in lower case (an IPv6 address without brackets)
/// and the port when one was given other than 80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    name: String,
    port: Option<u16>,
}

impl HostName {
    /// `None` for anything but `host[:port]` (no user info, path or spaces).
    pub fn parse(value: &str) -> Option<Self> {
        if value.is_empty()
            || value
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b"@/?#\\".contains(&b))
        {
            return None;
        }
        let url = Url::parse(&format!("http://{value}/")).ok()?;
        Some(Self {
            name: bare(url.host_str()?),
            port: url.port(),
        })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.name.parse().ok()
    }

    fn is_localhost(&self) -> bool {
        self.name == "localhost" || self.name.ends_with(".localhost")
    }

    /// Same host as `url`, by name only.
    fn same_name(&self, url: &Url) -> bool {
        url.host_str().is_some_and(|h| bare(h) == self.name)
    }

    /// Same host and port as `url` (no port: the URL scheme's default).
    fn same_authority(&self, url: &Url) -> bool {
        let port = url.port_or_known_default();
        self.same_name(url) && self.port.or(port) == port
    }
}

/// A URL's host as [`HostName`] keeps names: lower case, IPv6 without brackets.
fn bare(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Site {
    pub fn new(config: &ServerConfig) -> Self {
        let base = |u: &Option<String>| u.as_deref().map(|u| u.trim_end_matches('/').to_owned());
        let parse = |u: &Option<String>| u.as_deref().and_then(|u| Url::parse(u).ok());
        Self {
            public: parse(&config.public_url),
            public_base: base(&config.public_url),
            capture: parse(&config.capture_url),
            capture_base: base(&config.capture_url),
            listen: config.listen_addr,
        }
    }

    /// Whether a request to `host` is addressed to the capture origin.
    pub fn is_capture_origin(&self, host: &HostName) -> bool {
        self.capture
            .as_ref()
            .is_some_and(|c| host.same_authority(c))
    }

    /// Whether `host` is one of this server's own names (see the module docs).
    pub fn allows(&self, host: &HostName) -> bool {
        let Some(listen) = self.listen else {
            return true;
        };
        host.ip().is_some()
            || [&self.public, &self.capture]
                .into_iter()
                .flatten()
                .any(|u| host.same_name(u))
            || (host.is_localhost() && (listen.ip().is_loopback() || listen.ip().is_unspecified()))
    }

    /// Whether `origin` (an `Origin` header) is this server's own, for a request that came with
    /// `host` (already allowed).
    pub fn is_own_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let Ok(origin) = Url::parse(origin) else {
            return false; // `null` (sandboxed documents, redirects) and garbage
        };
        let origin = origin.origin();
        if !origin.is_tuple() {
            return false;
        }
        if self.public.as_ref().is_some_and(|p| p.origin() == origin) {
            return true;
        }
        let Some(host) = host.filter(|h| HostName::parse(h).is_some()) else {
            return false;
        };
        ["http", "https"].iter().any(|scheme| {
            Url::parse(&format!("{scheme}://{host}/")).is_ok_and(|u| u.origin() == origin)
        })
    }

    /// The base the API builds URLs on, for a request that came with `host`.
    pub fn api_base(&self, host: Option<&str>) -> String {
        if let Some(public) = &self.public_base {
            return public.clone();
        }
        let allowed = || host.filter(|h| HostName::parse(h).is_some_and(|n| self.allows(&n)));
        match self.listen {
            Some(addr) if !addr.ip().is_unspecified() => format!("http://{addr}"),
            Some(addr) => match allowed() {
                Some(host) => format!("http://{host}"),
                None => {
                    let loopback = match addr.ip() {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    };
                    format!("http://{}", SocketAddr::new(loopback, addr.port()))
                }
            },
            None => format!("http://{}", allowed().unwrap_or("localhost")),
        }
    }

    /// The base of capture URLs: `--capture-url`, else [`Site::api_base`].
    pub fn capture_base(&self, host: Option<&str>) -> String {
        match &self.capture_base {
            Some(capture) => capture.clone(),
            None => self.api_base(host),
        }
    }
}

/// Refuses a configuration whose capture origin is the public one (the API would answer
/// nowhere).
pub fn check_config(config: &ServerConfig) -> Result<(), String> {
    let site = Site::new(config);
    if let (Some(public), Some(capture)) = (&site.public, &site.capture)
        && public.origin() == capture.origin()
    {
        return Err(format!(
            "--capture-url ({capture}) must be another origin than --public-url ({public}): \
             another host name, or another port"
        ));
    }
    Ok(())
}

/// The Host a request was sent to: the `Host` header, else the URI's authority (HTTP/2).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(h) => Some(h.to_str().unwrap_or("\u{fffd}")),
        None => uri.authority().map(|a| a.as_str()),
    }
}

/// The [`Site`] of a request, put there by the guard; computed from the configuration when the
/// guard did not run.
pub fn site_of(parts: &Parts, state: &AppState) -> Arc<Site> {
    parts
        .extensions
        .get::<Arc<Site>>()
        .cloned()
        .unwrap_or_else(|| Arc::new(Site::new(&state.config)))
}

/// Puts the guard in front of every route of `router`.
pub fn guard(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let guard = Guard {
        site: Arc::new(Site::new(&state.config)),
        metrics: Arc::clone(&state.metrics),
    };
    router.layer(axum::middleware::from_fn_with_state(guard, check))
}

/// What the guard needs: the site, and the counters of what it refused.
#[derive(Clone)]
struct Guard {
    site: Arc<Site>,
    metrics: Arc<Metrics>,
}

async fn check(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if super::capture::is_capture(path) || path == "/healthz" {
        return next.run(req).await;
    }
    if let Err(e) = admit(&guard.site, &req) {
        let counter = match e.code {
            "host_not_allowed" => Some(&guard.metrics.refused_host),
            "forbidden_origin" => Some(&guard.metrics.refused_origin),
            "unsupported_media_type" => Some(&guard.metrics.refused_content_type),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        return e.into_response();
    }
    req.extensions_mut().insert(guard.site);
    next.run(req).await
}

fn admit(site: &Site, req: &Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    let raw_host = request_host(req.headers(), req.uri());
    if let Some(raw) = raw_host {
        let host = HostName::parse(raw);
        if host.as_ref().is_some_and(|h| site.is_capture_origin(h)) {
            return Err(ApiError::not_found(
                "not_found",
                format!("no route for {path}: this origin serves captures (/b/...) only"),
            ));
        }
        if !host.is_some_and(|h| site.allows(&h)) {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host_not_allowed",
                format!(
                    "this server does not answer to the Host {raw:?}: call it by its address, \
                     `localhost`, or the host of --public-url"
                ),
            ));
        }
    }
    let api = path == "/api" || path.starts_with("/api/");
    if !api || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let headers = req.headers();
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if fetch_site.eq_ignore_ascii_case(b"cross-site")
        || fetch_site.eq_ignore_ascii_case(b"same-site")
    {
        return Err(forbidden(format!(
            "{} {path} from another site (Sec-Fetch-Site: {}) is refused: use the UI or \
             a client that is not a web page",
            req.method(),
            String::from_utf8_lossy(fetch_site)
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !site.is_own_origin(origin, raw_host) {
            return Err(forbidden(format!(
                "{} {path} from the origin {origin:?} is refused: only this server's own \
                 pages may change its state",
                req.method()
            )));
        }
    }
    if carries_body(req) && !is_json(headers) {
        let given = headers.get(header::CONTENT_TYPE).map_or_else(
            || "none".to_owned(),
            |v| format!("{:?}", String::from_utf8_lossy(v.as_bytes())),
        );
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{} {path} takes a JSON body: send Content-Type: application/json (got {given})",
                req.method()
            ),
        ));
    }
    Ok(())
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message)
}

/// Whether a request has body bytes coming (`Content-Length: 0` and no framing: none).
fn carries_body(req: &Request) -> bool {
    use axum::body::HttpBody as _;
    let body = req.body();
    !body.is_end_stream() && body.size_hint().exact() != Some(0)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(listen: &str, public: Option<&str>, capture: Option<&str>) -> Site {
        Site::new(&ServerConfig {
            public_url: public.map(str::to_owned),
            capture_url: capture.map(str::to_owned),
            listen_addr: Some(listen.parse().unwrap()),
            ..ServerConfig::default()
        })
    }

    fn allows(site: &Site, host: &str) -> bool {
        HostName::parse(host).is_some_and(|h| site.allows(&h))
    }

    #[test]
    fn host_names_parse_strictly() {
        let h = HostName::parse("LocalHost:8080").unwrap();
        assert_eq!((h.name.as_str(), h.port), ("localhost", Some(8080)));
        assert_eq!(HostName::parse("[::1]:9").unwrap().name, "::1");
        assert_eq!(HostName::parse("h:80").unwrap().port, None);
        for bad in ["", "a b", "user@h", "h/x", "h?x", "h:port", "h#"] {
            assert_eq!(HostName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_answers_to_ip_literals_and_localhost_only() {
        let s = site("127.0.0.1:8080", None, None);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "app.localhost",
            "[::1]",
            "10.0.0.7",
        ] {
            assert!(allows(&s, ok), "{ok}");
        }
        for no in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!allows(&s, no), "{no}");
        }
        assert_eq!(s.api_base(Some("localhost:8080")), "http://127.0.0.1:8080");
        assert_eq!(
            s.capture_base(Some("evil.example")),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn a_specific_address_does_not_answer_to_localhost() {
        let s = site("192.168.1.5:8080", None, None);
        assert!(allows(&s, "192.168.1.5:8080"));
        assert!(!allows(&s, "localhost:8080"));
        assert_eq!(s.api_base(None), "http://192.168.1.5:8080");
        let v6 = site("[fd00::5]:8080", None, None);
        assert_eq!(v6.api_base(None), "http://[fd00::5]:8080");
    }

    #[test]
    fn every_address_uses_an_allowed_host_else_loopback() {
        let s = site("0.0.0.0:8080", None, None);
        assert!(allows(&s, "localhost:8080"));
        assert!(!allows(&s, "mybox.lan:8080"));
        assert_eq!(
            s.api_base(Some("192.168.1.5:8080")),
            "http://192.168.1.5:8080"
        );
        assert_eq!(s.api_base(Some("localhost:9000")), "http://localhost:9000");
        assert_eq!(
            s.api_base(Some("evil.example:8080")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(s.api_base(None), "http://127.0.0.1:8080");
        assert_eq!(
            site("[::]:80", None, None).api_base(None),
            "http://[::1]:80"
        );
    }

    #[test]
    fn public_and_capture_urls_name_the_server() {
        let s = site(
            "0.0.0.0:8080",
            Some("https://hooks.example.com/"),
            Some("https://in.example.net"),
        );
        assert!(allows(&s, "hooks.example.com"));
        assert!(allows(&s, "in.example.net:8080"));
        assert!(!allows(&s, "example.com"));
        assert_eq!(s.api_base(Some("10.0.0.1")), "https://hooks.example.com");
        assert_eq!(s.capture_base(None), "https://in.example.net");
        let capture = |h: &str| s.is_capture_origin(&HostName::parse(h).unwrap());
        assert!(capture("in.example.net"));
        assert!(capture("IN.example.net:443"));
        assert!(!capture("in.example.net:8080"));
        assert!(!capture("hooks.example.com"));
    }

    #[test]
    fn own_origins() {
        let s = site("127.0.0.1:8080", Some("https://hooks.example.com"), None);
        let own = |o: &str, h: &str| s.is_own_origin(o, Some(h));
        assert!(own("https://hooks.example.com", "127.0.0.1:8080"));
        assert!(own("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(own("http://localhost:8080", "localhost:8080"));
        assert!(own("https://localhost", "localhost:443"));
        assert!(!own("http://localhost:8081", "localhost:8080"));
        assert!(!own("http://evil.example", "127.0.0.1:8080"));
        assert!(!own("null", "127.0.0.1:8080"));
        assert!(!own("", "127.0.0.1:8080"));
        assert!(!s.is_own_origin("http://127.0.0.1:8080", None));
    }

    #[test]
    fn capture_and_public_origins_must_differ() {
        let config = |p: &str, c: &str| ServerConfig {
            public_url: Some(p.into()),
            capture_url: Some(c.into()),
            ..ServerConfig::default()
        };
        assert!(check_config(&config("https://h.example", "https://H.example:443/")).is_err());
        assert!(check_config(&config("https://h.example", "https://c.example")).is_ok());
        assert!(check_config(&config("http://h.example:8080", "http://h.example:8081")).is_ok());
    }
}
