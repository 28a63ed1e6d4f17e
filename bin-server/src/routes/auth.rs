//! # Who may call what: `--auth-token`, bin tokens, the browser session
//!
//! Owns the access rules of the HTTP API and the credentials that open it:
//! - [`classify`] sorts a request into [`Access`]: open (captures `/b/...`, `/healthz`, the UI's
//!   shell and assets, `/api/session`), one bin's routes, creating a bin, or the admin's routes
//!   (every other `/api/...` route, `/metrics`, and unknown `/api/...` paths too, so a typo never
//!   tells an anonymous client more than 401).
//! - [`check`] is the middleware [`crate::app`] puts in front of the router: with `--auth-token`
//!   it lets a request through only with a credential its [`Access`] accepts, else `401
//!   unauthorized` with `WWW-Authenticate: Bearer`. The [`Caller`] it found goes into the
//!   request's extensions for the handlers that decide more (bin creation, [`Admin`]).
//! - Credentials: the admin token as `Authorization: Bearer TOKEN`; a bin's own token (issued
//!   when the bin is created, stored only as a SHA-256 digest in its settings) the same way, for
//!   that bin's routes only; and for the browser, whose `EventSource` cannot send headers, the
//!   `hookbin_session` cookie `POST /api/session` sets for the admin: an expiry and an HMAC of it
//!   keyed by a random key drawn when the state is built, so nothing is stored per session and a
//!   restart ends every session. Every comparison of a secret is in constant time.
//!
//! Without `--auth-token` every caller is the admin and nothing is checked. Captures never get
//! here: [`crate::service`] sends `/b/...` straight to their handler.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::store::BinName;

/// The cookie `POST /api/session` sets.
pub const SESSION_COOKIE: &str = "hookbin_session";
/// How long a browser session lasts; then the UI asks for the token again. Long enough for a
/// working day, short enough that a leaked cookie does not open the server for good.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Shortest admin token `--auth-token` accepts: a short one could be guessed online.
pub const MIN_TOKEN_LEN: usize = 16;
/// Bin tokens start with this, so one found in a log or a script says what it is.
const BIN_TOKEN_PREFIX: &str = "hbt_";
/// What the session cookie's HMAC covers besides the expiry (a version, should the format change).
const SESSION_CONTEXT: &[u8] = b"hookbin-session-v1:";

/// The admin token of `--auth-token`. Its `Debug` never shows it, so a logged config is safe.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// A token as `Authorization: Bearer` can carry it: at least [`MIN_TOKEN_LEN`] visible ASCII
    /// characters, no spaces.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the auth token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the auth token must be visible ASCII without spaces (it is sent in a header)"
                    .into(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

impl std::str::FromStr for AuthToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// The server's credentials, built once with the state.
pub struct Auth {
    /// SHA-256 of the admin token; `None`: auth is off.
    admin: Option<[u8; 32]>,
    /// `--public-bins`: anyone may create a bin (and gets its token).
    public_bins: bool,
    /// Signs session cookies; drawn at startup and never leaves the process.
    session_key: [u8; 32],
    /// Mark the cookie `Secure` (the server is reached over https, per `--public-url`).
    secure_cookie: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.admin.is_some())
            .field("public_bins", &self.public_bins)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: &crate::ServerConfig) -> Self {
        let mut session_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut session_key);
        Self {
            admin: config.auth_token.as_ref().map(|t| digest(t.as_str())),
            public_bins: config.public_bins,
            session_key,
            secure_cookie: config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
        }
    }

    /// Whether `--auth-token` is set.
    pub fn enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether `presented` is the admin token (constant time).
    fn is_admin_token(&self, presented: &[u8; 32]) -> bool {
        self.admin
            .as_ref()
            .is_some_and(|admin| bool::from(admin.ct_eq(presented)))
    }

    /// A session cookie value valid until `expires` (Unix seconds): `expires.hmac`.
    fn session_value(&self, expires: u64) -> String {
        let mac = self.session_mac(expires).finalize().into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    fn session_mac(&self, expires: u64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.session_key).expect("HMAC takes any key length");
        mac.update(SESSION_CONTEXT);
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// Whether a cookie value is a session this process issued and still running.
    fn session_valid(&self, value: &str, now: u64) -> bool {
        let Some((expires, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(expires), Ok(tag)) = (expires.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        // The MAC is checked before the expiry is trusted; `verify_slice` is constant time.
        self.session_mac(expires).verify_slice(&tag).is_ok() && now < expires
    }
}

/// SHA-256 of a token: what is stored and compared, never the token itself.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh bin token (256 random bits) and the digest the bin keeps.
pub fn new_bin_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{BIN_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = digest(&token);
    (token, hash)
}

/// What a request needs, by its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone: captures, `/healthz`, the UI, `/api/session` (which checks for itself).
    Open,
    /// `POST /api/bins`: the admin, or anyone with `--public-bins`.
    CreateBin,
    /// `PUT /api/bins/{bin}`: like [`Access::Bin`], and with `--public-bins` anyone, who may
    /// only create the bin (the handler refuses an anonymous update).
    PutBin(String),
    /// One bin's routes: the admin or that bin's token.
    Bin(String),
    /// Everything else under `/api` and `/metrics`: the admin only. Webhooks (which hold signing
    /// secrets), events, deliveries, replay (it sends requests out from the server), listing bins
    /// and the all-bins stream are here.
    Admin,
}

/// Sorts a request. Paths are matched as raw segments, the way the router splits them; a bin
/// segment that is not a valid bin name (say, percent-encoded) can name no bin, so no bin token
/// opens it (the admin's still does, and the handler answers as usual).
pub fn classify(method: &Method, path: &str) -> Access {
    if path == "/metrics" {
        return Access::Admin;
    }
    let Some(rest) = path.strip_prefix("/api") else {
        return Access::Open;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        // `/apix`: not the API (the router answers 404).
        return Access::Open;
    }
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    match segments.as_slice() {
        // The API's contract describes routes, never data.
        ["session"] | ["openapi.json"] => Access::Open,
        ["bins"] if method == Method::POST => Access::CreateBin,
        ["bins", bin, tail @ ..] if BinName::check(bin).is_ok() => match tail {
            [] | [""] if method == Method::PUT => Access::PutBin((*bin).to_owned()),
            // Replay makes the server send a request anywhere: the admin's call.
            ["requests", _, "replay"] => Access::Admin,
            _ => Access::Bin((*bin).to_owned()),
        },
        _ => Access::Admin,
    }
}

/// Who is calling, as [`check`] established it; in every API request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token or session (or anyone, when auth is off).
    Admin,
    /// The holder of this bin's token.
    Bin(String),
    /// No credential that the route accepts (only on open routes and public bin creation).
    Anonymous,
}

/// As a handler argument: the caller [`check`] found; [`Caller::Anonymous`] (the least) if the
/// router runs without the middleware.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

/// The 401 every refused request gets.
pub fn unauthorized(message: impl Into<String>) -> Response {
    (
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
    )
        .into_response()
}

/// The bearer token of the request, if it sent one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether one of the request's cookies is a valid session.
fn has_session(auth: &Auth, headers: &HeaderMap, now: u64) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == SESSION_COOKIE && auth.session_valid(value, now))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The middleware: lets a request through when its credential opens its route (see the module
/// docs), with its [`Caller`] in the extensions; answers 401 otherwise.
pub async fn check(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = &state.auth;
    if !auth.enabled() {
        req.extensions_mut().insert(Caller::Admin);
        return next.run(req).await;
    }
    let access = classify(req.method(), req.uri().path());
    if access == Access::Open {
        // The UI's shell and assets, `/healthz`: nothing to hash or look up.
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    }
    let caller = match identify(&state, req.headers(), &access).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The [`Caller`] a request's credentials make it, or the refusal: 401 saying why, or 503 when
/// the store that keeps the bin's token cannot be reached.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    access: &Access,
) -> Result<Caller, Response> {
    let auth = &state.auth;
    let presented = bearer(headers).map(digest);
    if presented.as_ref().is_some_and(|p| auth.is_admin_token(p))
        || (presented.is_none() && has_session(auth, headers, unix_now()))
    {
        return Ok(Caller::Admin);
    }
    let bin = match access {
        Access::Open => return Ok(Caller::Anonymous),
        Access::CreateBin if auth.public_bins => return Ok(Caller::Anonymous),
        Access::CreateBin | Access::Admin => {
            return Err(unauthorized(
                "this route needs the admin token: send Authorization: Bearer TOKEN \
                 (the --auth-token of the server)",
            ));
        }
        Access::Bin(bin) | Access::PutBin(bin) => bin,
    };
    if let Some(presented) = presented {
        let stored = match state.store.get_bin(bin).await {
            Ok(b) => b.settings.token_hash,
            Err(e @ crate::store::StoreError::Unavailable(_)) => {
                return Err(crate::error::ApiError::from(e).into_response());
            }
            Err(_) => None,
        };
        if stored.is_some_and(|stored| bool::from(stored.ct_eq(&presented))) {
            return Ok(Caller::Bin(bin.clone()));
        }
    } else if matches!(access, Access::PutBin(_)) && auth.public_bins {
        // Creating a named bin is open; updating one is not (the handler checks which).
        return Ok(Caller::Anonymous);
    }
    Err(unauthorized(format!(
        "bin {bin:?} needs its token or the admin token: send Authorization: Bearer TOKEN"
    )))
}

/// A handler argument that only the admin gets past: for the routes that return secrets
/// (webhooks carry their signing secret), so the rule holds whatever [`classify`] says.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(Caller::Admin) => Ok(Admin),
            _ => Err(unauthorized("this route needs the admin token")),
        }
    }
}

/// `POST /api/session` and `DELETE /api/session`.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/session", post(login).delete(logout))
}

#[utoipa::path(post, path = "/api/session", tag = "server",
    responses(
        (status = 204, description = "A session cookie for the admin (or no auth configured)"),
        (status = 401, body = api::ErrorBody)))]
/// Trades the admin bearer token for the session cookie (204). Only the bearer token will do: a
/// session cannot extend itself, so a leaked cookie dies with its expiry.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let auth = &state.auth;
    if !auth.enabled() {
        // Nothing to log in to: every caller is the admin.
        return StatusCode::NO_CONTENT.into_response();
    }
    if !bearer(&headers).is_some_and(|t| auth.is_admin_token(&digest(t))) {
        return unauthorized(
            "POST /api/session needs the admin token: send Authorization: Bearer TOKEN",
        );
    }
    let expires = unix_now() + SESSION_TTL.as_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth.session_value(expires),
        SESSION_TTL.as_secs(),
        if auth.secure_cookie { "; Secure" } else { "" }
    );
    session_response(cookie)
}

#[utoipa::path(delete, path = "/api/session", tag = "server",
    responses((status = 204, description = "The session cookie is cleared")))]
/// Clears the session cookie (204); open, so a browser can always log out.
async fn logout() -> Response {
    session_response(format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    ))
}

fn session_response(cookie: String) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, value);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        let get = Method::GET;
        let cases: &[(&Method, &str, Access)] = &[
            (&get, "/", Access::Open),
            (&get, "/bins/x", Access::Open),
            (&get, "/webhooks", Access::Open),
            (&get, "/assets/v1/app.wasm", Access::Open),
            (&get, "/healthz", Access::Open),
            (&Method::POST, "/b/x/y", Access::Open),
            (&get, "/apix", Access::Open),
            (&Method::POST, "/api/session", Access::Open),
            (&get, "/api/openapi.json", Access::Open),
            (&get, "/metrics", Access::Admin),
            (&get, "/api", Access::Admin),
            (&get, "/api/nope", Access::Admin),
            (&get, "/api/bins", Access::Admin),
            (&Method::POST, "/api/bins", Access::CreateBin),
            (&Method::PUT, "/api/bins/ci", Access::PutBin("ci".into())),
            (&get, "/api/bins/ci", Access::Bin("ci".into())),
            (&Method::PATCH, "/api/bins/ci", Access::Bin("ci".into())),
            (&Method::DELETE, "/api/bins/ci", Access::Bin("ci".into())),
            (
                &get,
                "/api/bins/ci/requests/3/raw",
                Access::Bin("ci".into()),
            ),
            (&get, "/api/bins/ci/stream", Access::Bin("ci".into())),
            (
                &Method::POST,
                "/api/bins/ci/requests/3/replay",
                Access::Admin,
            ),
            (&get, "/api/bins/%63i/requests", Access::Admin),
            (&get, "/api/bins//requests", Access::Admin),
            (&get, "/api/stream", Access::Admin),
            (&get, "/api/webhooks/w1", Access::Admin),
            (&get, "/api/events", Access::Admin),
            (&Method::POST, "/api/deliveries/m1/resend", Access::Admin),
        ];
        for (method, path, want) in cases {
            assert_eq!(&classify(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(AuthToken::parse("short").is_err());
        assert!(AuthToken::parse("has a space in it ok").is_err());
        let t = AuthToken::parse("0123456789abcdef").unwrap();
        assert_eq!(format!("{t:?}"), "AuthToken(<redacted>)");
        let (token, hash) = new_bin_token();
        assert!(token.starts_with("hbt_") && token.len() == 4 + 43);
        assert_eq!(digest(&token), hash);
        assert_ne!(new_bin_token().0, token);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn sessions_expire_and_cannot_be_forged() {
        let config = crate::ServerConfig {
            auth_token: Some(AuthToken::parse("0123456789abcdef").unwrap()),
            ..Default::default()
        };
        let auth = Auth::new(&config);
        let value = auth.session_value(1_000);
        assert!(auth.session_valid(&value, 999));
        assert!(!auth.session_valid(&value, 1_000), "expired");
        let (_, tag) = value.split_once('.').unwrap();
        assert!(
            !auth.session_valid(&format!("2000.{tag}"), 999),
            "a changed expiry breaks the MAC"
        );
        assert!(!auth.session_valid("1000", 999));
        assert!(!auth.session_valid("x.y", 999));
        let other = Auth::new(&config);
        assert!(
            !other.session_valid(&value, 999),
            "another process's key does not verify it"
        );
    }
}
