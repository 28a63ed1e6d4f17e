//! The server's HTTP API seen from the browser: JSON over `fetch`, and live events over
//! `EventSource`. Types are the `api` crate's; nothing here redefines them.
//!
//! On a server started with `--auth-token`, the first call answered `401` asks for the token
//! (once, however many calls were refused at the same time), trades it for the session cookie
//! (`POST /api/session`), retries the call, and tells the live streams to reconnect now. The
//! token is kept in the tab's `sessionStorage` (gone when the tab closes): when the cookie is
//! refused later (it expired, the server restarted), the tab trades the kept token again without
//! asking; only a token the server refuses is forgotten and asked for again.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{EventSource, MessageEvent, Request, RequestInit, Response};

/// What went wrong with a call: the API's `{"error": {code, message}}`, or a network failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
    /// Every invalid field the server named (`error.errors`), in its order; empty when it named
    /// none.
    pub fields: Vec<api::FieldError>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    fn network(e: JsValue) -> Self {
        let detail = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "unknown error".to_owned());
        ApiError {
            status: None,
            code: "network".to_owned(),
            message: format!("Could not reach the server: {detail}"),
            fields: Vec::new(),
        }
    }

    fn from_response(status: u16, text: &str) -> Self {
        match serde_json::from_str::<api::ErrorBody>(text) {
            Ok(body) => ApiError {
                status: Some(status),
                code: body.error.code,
                message: body.error.message,
                fields: body.error.errors,
            },
            Err(_) => ApiError {
                status: Some(status),
                code: "http".to_owned(),
                message: format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                ),
                fields: Vec::new(),
            },
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// Where the tab keeps the token for its session.
const TOKEN_KEY: &str = "hookbin-token";

/// Fired on `window` when the browser got a session: streams refused before reconnect at once.
const SESSION_EVENT: &str = "hookbin-session";

thread_local! {
    /// The login in flight: every call refused while it runs waits for it instead of asking again.
    /// (wasm is single-threaded: a thread-local is the page's global.)
    static LOGIN: RefCell<Option<js_sys::Promise>> = const { RefCell::new(None) };
    /// Successful logins so far: a call sent before the latest one is retried without asking.
    static SESSIONS: Cell<u32> = const { Cell::new(0) };
}

async fn call(method: &str, url: &str, body: Option<String>) -> Result<(u16, String), ApiError> {
    let sessions = SESSIONS.with(Cell::get);
    match call_once(method, url, body.as_deref()).await {
        Err(e) if e.status == Some(401) && log_in(sessions).await => {
            call_once(method, url, body.as_deref()).await
        }
        other => other,
    }
}

/// After a `401`: gets the browser a session, asking for the token unless a login is running or
/// has succeeded since the refused call was sent. True when the call should be tried again.
async fn log_in(sessions_before: u32) -> bool {
    if SESSIONS.with(Cell::get) != sessions_before {
        return true;
    }
    if let Some(pending) = LOGIN.with(|l| l.borrow().clone()) {
        return JsFuture::from(pending)
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    }
    let window = leptos::prelude::window();
    let storage = window.session_storage().ok().flatten();
    let kept = storage
        .as_ref()
        .and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
        .filter(|t| !t.is_empty());
    let login = wasm_bindgen_futures::future_to_promise(async move {
        let window = leptos::prelude::window();
        let storage = window.session_storage().ok().flatten();
        let mut ok = false;
        if let Some(token) = kept {
            ok = start_session(&token).await;
            if !ok && let Some(s) = &storage {
                let _ = s.remove_item(TOKEN_KEY);
            }
        }
        if !ok {
            let token = match window.prompt_with_message(
                "This Hookbin server needs its access token (its --auth-token):",
            ) {
                Ok(Some(token)) if !token.trim().is_empty() => token.trim().to_owned(),
                _ => {
                    LOGIN.with(|l| l.borrow_mut().take());
                    return Ok(JsValue::from_bool(false));
                }
            };
            ok = start_session(&token).await;
            if ok && let Some(s) = &storage {
                let _ = s.set_item(TOKEN_KEY, &token);
            }
        }
        LOGIN.with(|l| l.borrow_mut().take());
        if ok {
            SESSIONS.with(|s| s.set(s.get() + 1));
            if let Ok(event) = web_sys::Event::new(SESSION_EVENT) {
                let _ = leptos::prelude::window().dispatch_event(&event);
            }
        }
        Ok(JsValue::from_bool(ok))
    });
    LOGIN.with(|l| *l.borrow_mut() = Some(login.clone()));
    JsFuture::from(login)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// `POST /api/session` with the token: true when the server set the session cookie.
async fn start_session(token: &str) -> bool {
    let init = RequestInit::new();
    init.set_method("POST");
    let Ok(headers) = web_sys::Headers::new() else {
        return false;
    };
    if headers
        .set("authorization", &format!("Bearer {token}"))
        .is_err()
    {
        return false;
    }
    init.set_headers(&headers);
    let Ok(request) = Request::new_with_str_and_init("/api/session", &init) else {
        return false;
    };
    match JsFuture::from(leptos::prelude::window().fetch_with_request(&request)).await {
        Ok(response) => response.unchecked_into::<Response>().status() == 204,
        Err(_) => false,
    }
}

async fn call_once(method: &str, url: &str, body: Option<&str>) -> Result<(u16, String), ApiError> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        let headers = web_sys::Headers::new().map_err(ApiError::network)?;
        headers
            .set("content-type", "application/json")
            .map_err(ApiError::network)?;
        init.set_headers(&headers);
        init.set_body(&JsValue::from_str(body));
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(ApiError::network)?;
    let response: Response = JsFuture::from(leptos::prelude::window().fetch_with_request(&request))
        .await
        .map_err(ApiError::network)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(ApiError::network)?)
        .await
        .map_err(ApiError::network)?
        .as_string()
        .unwrap_or_default();
    let status = response.status();
    if response.ok() {
        Ok((status, text))
    } else {
        Err(ApiError::from_response(status, &text))
    }
}

fn parse<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError {
        status: Some(status),
        code: "bad_json".to_owned(),
        message: format!("Unexpected answer from the server: {e}"),
        fields: Vec::new(),
    })
}

/// `GET url` as JSON.
pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let (status, text) = call("GET", url, None).await?;
    parse(status, &text)
}

/// `method url` with a JSON body, answered with JSON.
pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    url: &str,
    body: &B,
) -> Result<T, ApiError> {
    let body = serde_json::to_string(body).map_err(|e| ApiError {
        status: None,
        code: "encode".to_owned(),
        message: e.to_string(),
        fields: Vec::new(),
    })?;
    let (status, text) = call(method, url, Some(body)).await?;
    parse(status, &text)
}

/// `POST url` without a body, answered with JSON.
pub async fn post_empty<T: DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    let (status, text) = call("POST", url, None).await?;
    parse(status, &text)
}

/// `DELETE url`, answered with no body.
pub async fn delete(url: &str) -> Result<(), ApiError> {
    call("DELETE", url, None).await.map(|_| ())
}

/// The state of a live stream, as the connection indicator shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    /// Lost; the browser (or we) will try again.
    Reconnecting,
    /// Closed for good (the bin is gone).
    Closed,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
            Connection::Closed => "closed",
        }
    }
}

/// One SSE message: its event name and data.
pub struct StreamEvent {
    pub name: String,
    pub data: String,
}

/// An `EventSource` on `url` that survives failures: the browser retries on its own while it can;
/// when it gives up (the server answered with an error, or restarted) a new one is opened after a
/// growing delay. `on_state` is told each change; after a reconnect the caller should reload,
/// since events may have been missed. Dropping the handle closes the stream.
pub struct LiveStream {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    url: String,
    events: Vec<&'static str>,
    source: Option<EventSource>,
    on_event: Rc<dyn Fn(StreamEvent)>,
    on_state: Rc<dyn Fn(Connection)>,
    /// Kept alive as long as the source listens with them.
    closures: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    /// Listens on `window` for [`SESSION_EVENT`]; removed when the stream is dropped.
    on_session: Option<Closure<dyn FnMut(web_sys::Event)>>,
    retry_ms: u32,
    closed: bool,
}

impl LiveStream {
    /// Listens for the named `events` (SSE `event:` names) on `url`.
    pub fn open(
        url: String,
        events: Vec<&'static str>,
        on_event: impl Fn(StreamEvent) + 'static,
        on_state: impl Fn(Connection) + 'static,
    ) -> Self {
        let inner = Rc::new(RefCell::new(Inner {
            url,
            events,
            source: None,
            on_event: Rc::new(on_event),
            on_state: Rc::new(on_state),
            closures: Vec::new(),
            on_session: None,
            retry_ms: 500,
            closed: false,
        }));
        {
            // Refused for want of a session (401), the stream waits out its backoff; once the
            // browser has one, it reconnects at once.
            let weak = Rc::downgrade(&inner);
            let on_session = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                let Some(inner) = weak.upgrade() else { return };
                let refused = inner
                    .borrow()
                    .source
                    .as_ref()
                    .is_none_or(|s| s.ready_state() == EventSource::CLOSED);
                if refused {
                    inner.borrow_mut().retry_ms = 500;
                    connect(&inner);
                }
            });
            let _ = leptos::prelude::window().add_event_listener_with_callback(
                SESSION_EVENT,
                on_session.as_ref().unchecked_ref(),
            );
            inner.borrow_mut().on_session = Some(on_session);
        }
        if leptos::prelude::document().ready_state() == "complete" {
            connect(&inner);
        } else {
            // An EventSource opened before the page's `load` event keeps Chromium's load (and
            // so headless screenshots and "wait for load") pending for as long as it is open.
            let weak = Rc::downgrade(&inner);
            let on_load = Closure::once_into_js(move || {
                if let Some(inner) = weak.upgrade() {
                    connect(&inner);
                }
            });
            let _ = leptos::prelude::window()
                .add_event_listener_with_callback("load", on_load.unchecked_ref());
        }
        LiveStream { inner }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed = true;
        if let Some(s) = inner.source.take() {
            s.close();
        }
        if let Some(on_session) = inner.on_session.take() {
            let _ = leptos::prelude::window().remove_event_listener_with_callback(
                SESSION_EVENT,
                on_session.as_ref().unchecked_ref(),
            );
            // We may be dropped from inside it (a reconnect that navigated away): next tick.
            leptos::prelude::set_timeout(move || drop(on_session), std::time::Duration::ZERO);
        }
        // We may be dropped from inside one of the closures (an event that navigated away):
        // release them on the next tick, not while one runs.
        let closures = std::mem::take(&mut inner.closures);
        if !closures.is_empty() {
            leptos::prelude::set_timeout(move || drop(closures), std::time::Duration::ZERO);
        }
    }
}

fn connect(inner: &Rc<RefCell<Inner>>) {
    let (url, events, on_event, on_state) = {
        let i = inner.borrow();
        if i.closed {
            return;
        }
        (
            i.url.clone(),
            i.events.clone(),
            i.on_event.clone(),
            i.on_state.clone(),
        )
    };
    on_state(Connection::Connecting);
    let Ok(source) = EventSource::new(&url) else {
        schedule_reconnect(inner);
        return;
    };
    let mut closures: Vec<Closure<dyn FnMut(web_sys::Event)>> = Vec::new();
    for name in events {
        let on_event = on_event.clone();
        let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            if let Some(m) = e.dyn_ref::<MessageEvent>() {
                on_event(StreamEvent {
                    name: name.to_owned(),
                    data: m.data().as_string().unwrap_or_default(),
                });
            }
        });
        let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        closures.push(cb);
    }
    {
        let on_state = on_state.clone();
        let weak = Rc::downgrade(inner);
        let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().retry_ms = 500;
            }
            on_state(Connection::Live);
        });
        source.set_onopen(Some(cb.as_ref().unchecked_ref()));
        closures.push(cb);
    }
    {
        let weak = Rc::downgrade(inner);
        let cb = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let Some(inner) = weak.upgrade() else { return };
            on_state(Connection::Reconnecting);
            let gave_up = inner
                .borrow()
                .source
                .as_ref()
                .is_some_and(|s| s.ready_state() == EventSource::CLOSED);
            if gave_up {
                schedule_reconnect(&inner);
            }
        });
        source.set_onerror(Some(cb.as_ref().unchecked_ref()));
        closures.push(cb);
    }
    let mut i = inner.borrow_mut();
    if let Some(old) = i.source.replace(source) {
        old.close();
    }
    // The old source's closures may still be on the stack (we may be inside its onerror):
    // release them on the next tick rather than now.
    let old = std::mem::replace(&mut i.closures, closures);
    if !old.is_empty() {
        leptos::prelude::set_timeout(move || drop(old), std::time::Duration::ZERO);
    }
}

fn schedule_reconnect(inner: &Rc<RefCell<Inner>>) {
    let delay = {
        let mut i = inner.borrow_mut();
        if i.closed {
            return;
        }
        if let Some(s) = i.source.take() {
            s.close();
        }
        let d = i.retry_ms;
        i.retry_ms = (d * 2).min(15_000);
        d
    };
    let weak = Rc::downgrade(inner);
    leptos::prelude::set_timeout(
        move || {
            if let Some(inner) = weak.upgrade() {
                connect(&inner);
            }
        },
        std::time::Duration::from_millis(u64::from(delay)),
    );
}
