//! # A Hookbin bin for Rust tests (feature `testing`)
//!
//! [`TestBin::start`] runs a real bin-server inside the test, on `127.0.0.1:0`, with a fresh
//! bin. Point the code under test at [`TestBin::url`], then [`TestBin::wait_for`] the request it
//! should send: the wait blocks on the server's `GET /api/bins/{bin}/wait` (woken by the
//! capture, no polling) and fails the test with a clear message when nothing matching arrives in
//! time. The server stops when the `TestBin` is dropped.
//!
//! ```
//! use std::time::Duration;
//! use bin_server::testing::{Matcher, TestBin};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bin = TestBin::start().await;
//!
//! // The code under test sends its webhook (here: by hand).
//! reqwest::Client::new()
//!     .post(bin.url())
//!     .header("X-Event", "order.paid")
//!     .body(r#"{"order": {"id": 42, "total": 1999}}"#)
//!     .send()
//!     .await
//!     .unwrap();
//!
//! let request = bin
//!     .wait_for(Matcher::new().method("POST").json("/order/id", 42))
//!     .timeout(Duration::from_secs(5))
//!     .await;
//! assert_eq!(request.header("x-event"), Some("order.paid"));
//! assert_eq!(request.json()["order"]["total"], 1999);
//! request.assert_schema(&serde_json::json!({
//!     "type": "object",
//!     "required": ["order"],
//!     "properties": {"order": {"required": ["id", "total"]}}
//! }));
//! # }
//! ```

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::checks::{SchemaCheck, describe_failures};
use crate::cli::client::{Client, ClientError};
use crate::store::StoreLimits;
use crate::{AppState, ServerConfig};

/// How long [`TestBin::wait_for`] waits unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running bin-server with one bin, for one test.
#[derive(Debug)]
pub struct TestBin {
    base: String,
    bin: api::BinOut,
    client: Client,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
}

impl TestBin {
    /// Starts a server with a fresh bin of default settings.
    pub async fn start() -> Self {
        Self::start_with(api::BinIn::default()).await
    }

    /// Starts a server with a bin created from `bin` (a name, a response, a schema, a secret).
    /// Panics when the server cannot start or refuses the bin (it says why).
    pub async fn start_with(bin: api::BinIn) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = AppState::new(StoreLimits::default(), ServerConfig::default());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(crate::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let base = format!("http://{addr}");
        let client = Client::new(&base).expect("a local URL");
        let bin = client
            .create_bin(&bin)
            .await
            .unwrap_or_else(|e| panic!("TestBin: cannot create the bin: {e}"));
        Self {
            base,
            bin,
            client,
            state,
            stop: Some(stop),
        }
    }

    /// The capture URL: where the code under test sends its requests.
    pub fn url(&self) -> &str {
        &self.bin.url
    }

    /// The server's base URL (`http://127.0.0.1:PORT`), for the API.
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// The bin's name.
    pub fn name(&self) -> &str {
        &self.bin.id
    }

    /// The server's state (its store), for assertions beyond the API.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits for the oldest request in the bin that matches (requests that arrived before the
    /// call count). Await it; [`WaitFor::timeout`] sets the limit (default 10 s).
    pub fn wait_for(&self, matcher: Matcher) -> WaitFor<'_> {
        WaitFor {
            bin: self,
            matcher,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Drop for TestBin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Which request to wait for; every filter given must match. Built like
/// `Matcher::new().method("POST").path("/hooks/*").header("X-Event", "paid")`: a builder of
/// the wait contract ([`api::WaitQuery`]), which the server matches by its one set of rules.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    query: api::WaitQuery,
}

impl Matcher {
    /// Matches any request.
    pub fn new() -> Self {
        Self::default()
    }

    /// The method, case-insensitive.
    pub fn method(mut self, method: &str) -> Self {
        self.query.method = Some(method.to_owned());
        self
    }

    /// The path below the bin: exact, or a glob with `*` and `?`.
    pub fn path(mut self, path: &str) -> Self {
        self.query.path = Some(path.to_owned());
        self
    }

    /// A header with this value (exact or a glob); names are case-insensitive.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.query
            .headers
            .push((name.to_owned(), Some(value.to_owned())));
        self
    }

    /// The JSON body has `value` at `pointer` (`"/order/id"`).
    pub fn json(mut self, pointer: &str, value: impl Into<serde_json::Value>) -> Self {
        let value = value.into();
        self.query
            .json
            .push((pointer.to_owned(), Some(value.to_string())));
        self
    }

    /// The request passed the bin's schema and signature checks.
    pub fn valid(mut self) -> Self {
        self.query.valid = Some(true);
        self
    }
}

/// A pending [`TestBin::wait_for`]; await it.
#[derive(Debug)]
pub struct WaitFor<'a> {
    bin: &'a TestBin,
    matcher: Matcher,
    timeout: Duration,
}

impl WaitFor<'_> {
    /// How long to wait before failing the test.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Like awaiting, but `None` on timeout instead of a panic.
    pub async fn try_wait(self) -> Result<Option<Captured>, ClientError> {
        let mut left = self.timeout;
        loop {
            let chunk = left.min(api::WAIT_MAX_TIMEOUT);
            let found = self
                .bin
                .client
                .wait_once(self.bin.name(), &self.matcher.query, chunk)
                .await?;
            left -= chunk;
            match found {
                Some(r) => return Ok(Some(Captured(r))),
                None if left.is_zero() => return Ok(None),
                None => {}
            }
        }
    }
}

impl<'a> IntoFuture for WaitFor<'a> {
    type Output = Captured;
    type IntoFuture = Pin<Box<dyn Future<Output = Captured> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let timeout = self.timeout;
            let what = format!("{:?}", self.matcher.query.pairs());
            let name = self.bin.name().to_owned();
            match self.try_wait().await {
                Ok(Some(r)) => r,
                Ok(None) => panic!(
                    "TestBin: no request matching {what} arrived in bin {name:?} within {timeout:?}"
                ),
                Err(e) => panic!("TestBin: waiting for {what} failed: {e}"),
            }
        })
    }
}

/// A captured request, as the API returns it, with helpers for assertions.
#[derive(Debug, Clone)]
pub struct Captured(pub api::CapturedRequestOut);

impl std::ops::Deref for Captured {
    type Target = api::CapturedRequestOut;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Captured {
    /// The exact body bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.0.body_bytes()
    }

    /// The body parsed as JSON; panics when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body_bytes()).unwrap_or_else(|e| {
            panic!(
                "request #{} has no JSON body ({e}): {:?}",
                self.seq,
                String::from_utf8_lossy(&self.body_bytes())
            )
        })
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Panics, listing every violation with its JSON pointer, unless the body satisfies
    /// `schema` (draft 2020-12). Panics too when `schema` itself is invalid.
    pub fn assert_schema(&self, schema: &serde_json::Value) {
        let check =
            SchemaCheck::compile(schema).unwrap_or_else(|e| panic!("invalid JSON Schema: {e}"));
        let v = check.validate_body(&self.body_bytes());
        assert!(
            v.valid,
            "request #{} does not match the schema: {}",
            self.seq,
            describe_failures(Some(&v), None)
        );
    }

    /// Panics unless the request passed its bin's schema and signature checks.
    pub fn assert_valid(&self) {
        assert!(
            api::checks_passed(self.validation.as_ref(), self.signature.as_ref()),
            "request #{} failed its bin's checks: {}",
            self.seq,
            describe_failures(self.validation.as_ref(), self.signature.as_ref())
        );
    }
}
