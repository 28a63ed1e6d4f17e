//! One bin: its capture URL, the live list of captured requests, the selected request in detail,
//! and the bin's settings (custom response, clear, delete).
//!
//! The list can hold a bin's whole cap (10,000 requests or more) and take 1,000 new ones a
//! second, so:
//! - it is windowed: only the rows in view (plus a few) are in the DOM, all of one height;
//! - live requests are queued as they come and applied once per animation frame;
//! - it keeps at most the bin's cap (the server evicts past it anyway), and the queue too, so a
//!   hidden tab (no animation frames) cannot grow without bound;
//! - rows keep summaries only (no body, no headers); the selected request is fetched whole.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use api::{
    BinIn, BinOut, BinResponse, CapturedRequestOut, DeletedEvent, Header, ReplayIn, ReplayOut,
    RequestPage,
};
use leptos::html::{Div, Input};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_location, use_navigate, use_params_map};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;

use crate::app::{now, set_title};
use crate::body::{self, View};
use crate::components::{Ago, CopyButton, JsonView, KeyValueTable, copy_text, exact};
use crate::server::{self, ApiError, Connection, LiveStream, StreamEvent, enc};
use crate::{curl, units};

/// A touch screen without a keyboard in sight: keyboard hints are left out.
fn touch_screen() -> bool {
    window()
        .match_media("(hover: none) and (pointer: coarse)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

/// Height of one row of the list, in CSS pixels (the stylesheet's `--row`).
const ROW_HEIGHT: i32 = 56;
/// Rows rendered above and below the visible ones, so fast scrolling shows no gaps.
const OVERSCAN: usize = 8;
/// The first page is small so the list shows at once; the rest comes in larger pages.
const FIRST_PAGE: usize = 200;
const NEXT_PAGE: usize = 1000;
/// When the bin's limits are not known yet.
const DEFAULT_CAP: usize = 1000;

type Row = Arc<CapturedRequestOut>;

#[component]
pub fn BinPage() -> impl IntoView {
    let params = use_params_map();
    let bin_id = Memo::new(move |_| params.read().get("bin").unwrap_or_default());
    // The selected request is in the URL (`/bins/{bin}/requests/{seq}`), so it can be shared.
    // A new view per bin: state, stream and listeners start fresh when the id changes (or when
    // a missing bin has just been created).
    let remount = RwSignal::new(0u32);
    provide_context(Remount(remount));
    move || {
        remount.track();
        let id = bin_id.get();
        view! { <BinView id=id/> }
    }
}

/// Starts the bin's page afresh.
#[derive(Clone, Copy)]
struct Remount(RwSignal<u32>);

/// The list's filters, mirrored on the client for live requests (same rules as the server).
#[derive(Debug, Clone, Default, PartialEq)]
struct Filter {
    method: String,
    text: String,
    /// `valid`, `invalid` or `missing`: the signature check's outcome. The server's list has no
    /// such filter, so it is applied here, to every page as it loads and to live requests (the
    /// list holds the whole bin up to its cap, so nothing is missed).
    signature: String,
}

impl Filter {
    fn query(&self) -> String {
        let mut q = String::new();
        if !self.method.is_empty() {
            q.push_str(&format!("&method={}", enc(&self.method)));
        }
        if !self.text.is_empty() {
            q.push_str(&format!("&q={}", enc(&self.text)));
        }
        q
    }

    fn signature_matches(&self, r: &CapturedRequestOut) -> bool {
        self.signature.is_empty()
            || r.signature
                .as_ref()
                .is_some_and(|s| s.status == self.signature)
    }

    fn matches(&self, r: &CapturedRequestOut) -> bool {
        if !self.signature_matches(r) {
            return false;
        }
        if !self.method.is_empty() && !r.method.eq_ignore_ascii_case(&self.method) {
            return false;
        }
        if self.text.is_empty() {
            return true;
        }
        let needle = self.text.to_ascii_lowercase();
        let has = |s: &str| s.to_ascii_lowercase().contains(&needle);
        has(&r.path)
            || r.query.as_deref().is_some_and(has)
            || r.headers.iter().any(|h| has(&h.name) || has(&h.value))
            || has(&String::from_utf8_lossy(&body::bytes(r)))
    }
}

/// What the list needs of a request: everything but its body and headers.
fn summary(mut r: CapturedRequestOut) -> Row {
    r.body = None;
    r.headers = Vec::new();
    Arc::new(r)
}

/// Shared state of one bin's page.
#[derive(Clone, Copy)]
struct BinState {
    id: StoredValue<String>,
    bin: RwSignal<Option<Result<BinOut, ApiError>>>,
    /// Newest first, summaries only, at most `cap()`.
    list: RwSignal<Vec<Row>>,
    /// Requests matching the filters on the server (all pages).
    matched: RwSignal<u64>,
    loaded_all: RwSignal<bool>,
    load_error: RwSignal<Option<String>>,
    filter: RwSignal<Filter>,
    /// The selected request's sequence number: follows the URL (see [`BinState::select`]).
    selected: RwSignal<Option<u64>>,
    /// Puts a selection in the URL (replacing the history entry); the URL sets `selected`.
    navigate: Callback<Option<u64>>,
    /// A webhook message to select when it arrives (`?message=` from "View in bin").
    pending_message: StoredValue<Option<String>>,
    conn: RwSignal<Connection>,
    /// Set by the `deleted` event without an id: the bin is gone.
    gone: RwSignal<bool>,
    /// The bin was not there when the page opened: it never existed (or expired before).
    missing: RwSignal<bool>,
    /// Bumped by every load; a load whose number is stale stops.
    load_gen: StoredValue<u64>,
    /// Whether bin counters may have changed since the last refresh.
    bin_dirty: StoredValue<bool>,
    /// The list's scroll container, to keep the view steady and follow the keyboard.
    viewport: NodeRef<Div>,
}

impl BinState {
    fn cap(&self) -> usize {
        self.bin.with_untracked(|b| match b {
            Some(Ok(b)) => b.limits.max_requests as usize,
            _ => DEFAULT_CAP,
        })
    }

    fn api(&self, rest: &str) -> String {
        format!("/api/bins/{}{rest}", enc(&self.id.get_value()))
    }

    /// Selects a request (or none) through the URL.
    fn select(self, seq: Option<u64>) {
        self.navigate.run(seq);
    }

    fn refresh_bin(self) {
        self.bin_dirty.set_value(false);
        let url = self.api("");
        spawn_local(async move {
            let res = server::get::<BinOut>(&url).await;
            if let Err(e) = &res
                && e.status == Some(404)
            {
                // Never seen on this page: it is not there at all (rather than deleted now).
                if self.bin.with_untracked(|b| !matches!(b, Some(Ok(_)))) {
                    self.missing.set(true);
                }
                self.gone.set(true);
            }
            self.bin.set(Some(res));
        });
    }

    /// (Re)loads the list from the newest request, page by page, until the cap or the end.
    fn load(self) {
        let generation = self.load_gen.get_value() + 1;
        self.load_gen.set_value(generation);
        self.list.set(Vec::new());
        self.loaded_all.set(false);
        self.load_error.set(None);
        let full_filter = self.filter.get_untracked();
        let filter = full_filter.query();
        let by_signature = !full_filter.signature.is_empty();
        spawn_local(async move {
            let mut before: Option<u64> = None;
            let mut limit = FIRST_PAGE;
            loop {
                let mut url = self.api(&format!("/requests?summary=true&limit={limit}{filter}"));
                if let Some(b) = before {
                    url.push_str(&format!("&before={b}"));
                }
                let page = server::get::<RequestPage>(&url).await;
                if self.load_gen.get_value() != generation {
                    return;
                }
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        if e.status == Some(404) {
                            self.gone.set(true);
                        }
                        self.load_error.set(Some(e.message));
                        return;
                    }
                };
                let cap = self.cap();
                // `matched` counts the whole bin on the first page (later pages count below
                // their cursor).
                if before.is_none() && !by_signature {
                    self.matched.set(page.matched);
                }
                self.list.update(|list| {
                    // Live requests may have landed first: only append what is older.
                    let oldest = list.last().map_or(u64::MAX, |r| r.seq);
                    list.extend(
                        page.requests
                            .into_iter()
                            .filter(|r| r.seq < oldest && full_filter.signature_matches(r))
                            .map(summary),
                    );
                    list.truncate(cap);
                });
                if by_signature {
                    // Counted here: the server's count knows nothing of signatures.
                    self.matched
                        .set(self.list.with_untracked(|l| l.len() as u64));
                }
                before = page.next_before;
                if before.is_none() || self.list.with_untracked(|l| l.len()) >= cap {
                    self.loaded_all.set(true);
                    return;
                }
                limit = NEXT_PAGE;
            }
        });
    }

    /// Applies a batch of live requests (oldest first) in one update.
    fn apply_live(self, batch: Vec<CapturedRequestOut>) {
        let filter = self.filter.get_untracked();
        let fresh: Vec<Row> = batch
            .into_iter()
            .filter(|r| filter.matches(r))
            .map(summary)
            .collect();
        self.bin_dirty.set_value(true);
        if fresh.is_empty() {
            return;
        }
        let cap = self.cap();
        let mut added = 0usize;
        self.list.update(|list| {
            let newest = list.first().map_or(0, |r| r.seq);
            let fresh: Vec<Row> = fresh.into_iter().rev().filter(|r| r.seq > newest).collect();
            added = fresh.len();
            list.splice(0..0, fresh);
            list.truncate(cap);
        });
        self.matched.update(|m| *m += added as u64);
        // Keep what the user is looking at in place when rows land above it.
        if let Some(el) = self.viewport.get_untracked() {
            let top = el.scroll_top();
            if top > 0 {
                el.set_scroll_top(top + added as i32 * ROW_HEIGHT);
            }
        }
    }

    fn handle(self, ev: StreamEvent, queue: &LiveQueue) {
        match ev.name.as_str() {
            "request" => {
                if let Ok(r) = serde_json::from_str::<CapturedRequestOut>(&ev.data) {
                    if let Some(msg) = self.pending_message.get_value()
                        && r.headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("webhook-id") && h.value == msg)
                    {
                        self.pending_message.set_value(None);
                        self.select(Some(r.seq));
                    }
                    queue.push(r, self.cap(), move |batch| self.apply_live(batch));
                }
            }
            "resync" => {
                queue.clear();
                self.load();
                self.bin_dirty.set_value(true);
            }
            "bin_deleted" => {
                queue.clear();
                self.gone.set(true);
            }
            "deleted" | "cleared" => {
                let Ok(d) = serde_json::from_str::<DeletedEvent>(&ev.data) else {
                    return;
                };
                match d.id {
                    Some(id) => {
                        let gone = self
                            .list
                            .with_untracked(|l| l.iter().find(|r| r.id == id).map(|r| r.seq));
                        self.list.update(|l| l.retain(|r| r.id != id));
                        if gone.is_some() && self.selected.get_untracked() == gone {
                            self.select(None);
                        }
                    }
                    None => {
                        queue.clear();
                        self.list.set(Vec::new());
                        self.select(None);
                        self.matched.set(0);
                    }
                }
                self.bin_dirty.set_value(true);
            }
            _ => {}
        }
    }

    /// Selects the request `delta` rows away from the selected one, and scrolls to it.
    fn step(self, delta: isize) {
        let target = self.list.with_untracked(|l| {
            if l.is_empty() {
                return None;
            }
            let current = self
                .selected
                .with_untracked(|s| s.and_then(|seq| l.iter().position(|r| r.seq == seq)));
            let idx = match current {
                Some(i) => (i as isize + delta).clamp(0, l.len() as isize - 1) as usize,
                None => 0,
            };
            Some((idx, l[idx].seq))
        });
        let Some((idx, seq)) = target else { return };
        self.select(Some(seq));
        if let Some(el) = self.viewport.get_untracked() {
            let top = idx as i32 * ROW_HEIGHT;
            let view_top = el.scroll_top();
            let height = el.client_height();
            if top < view_top {
                el.set_scroll_top(top);
            } else if top + ROW_HEIGHT > view_top + height {
                el.set_scroll_top(top + ROW_HEIGHT - height);
            }
        }
    }
}

/// Live requests waiting for the next animation frame. At most the bin's cap is kept: older
/// ones would be dropped from the list right away anyway.
#[derive(Clone, Default)]
struct LiveQueue {
    inner: Rc<RefCell<(VecDeque<CapturedRequestOut>, bool)>>,
}

impl LiveQueue {
    fn push(
        &self,
        r: CapturedRequestOut,
        cap: usize,
        flush: impl FnOnce(Vec<CapturedRequestOut>) + 'static,
    ) {
        let mut inner = self.inner.borrow_mut();
        inner.0.push_back(r);
        while inner.0.len() > cap.max(1) {
            inner.0.pop_front();
        }
        if inner.1 {
            return;
        }
        inner.1 = true;
        let queue = self.clone();
        request_animation_frame(move || {
            let batch: Vec<_> = {
                let mut inner = queue.inner.borrow_mut();
                inner.1 = false;
                inner.0.drain(..).collect()
            };
            flush(batch);
        });
    }

    fn clear(&self) {
        self.inner.borrow_mut().0.clear();
    }
}

#[component]
fn BinView(id: String) -> impl IntoView {
    let title_id = id.clone();
    set_title(move || format!("Bin {title_id}"));
    let location = use_location();
    let navigate = SendWrapper::new(use_navigate());
    let base = format!("/bins/{}", enc(&id));
    let navigate = Callback::new(move |seq: Option<u64>| {
        let path = match seq {
            Some(seq) => format!("{base}/requests/{seq}"),
            None => base.clone(),
        };
        let here = location.pathname.get_untracked();
        if here != path {
            navigate(
                &path,
                NavigateOptions {
                    replace: true,
                    scroll: false,
                    ..Default::default()
                },
            );
        }
    });
    let state = BinState {
        id: StoredValue::new(id.clone()),
        bin: RwSignal::new(None),
        list: RwSignal::new(Vec::new()),
        matched: RwSignal::new(0),
        loaded_all: RwSignal::new(false),
        load_error: RwSignal::new(None),
        filter: RwSignal::new(Filter::default()),
        selected: RwSignal::new(None),
        navigate,
        pending_message: StoredValue::new(None),
        conn: RwSignal::new(Connection::Connecting),
        gone: RwSignal::new(false),
        missing: RwSignal::new(false),
        load_gen: StoredValue::new(0),
        bin_dirty: StoredValue::new(false),
        viewport: NodeRef::new(),
    };
    state.refresh_bin();
    state.load();

    // The URL says which request is selected; without one, the newest is.
    let url_seq = Memo::new(move |_| {
        let path = location.pathname.get();
        path.split_once("/requests/")
            .and_then(|(_, seq)| seq.trim_end_matches('/').parse::<u64>().ok())
    });
    Effect::new(move |_| state.selected.set(url_seq.get()));
    Effect::new(move |_| {
        let newest = state.list.with(|l| l.first().map(|r| r.seq));
        if url_seq.get().is_none()
            && state.pending_message.with_value(Option::is_none)
            && let Some(seq) = newest
        {
            state.select(Some(seq));
        }
    });
    // "View in bin" from a webhook: `?message=msg_…` selects the request that carried it (its
    // `webhook-id` header), now if it is stored, else when it arrives.
    let message = location
        .query
        .with_untracked(|q| q.get("message"))
        .filter(|m| !m.is_empty());
    if let Some(msg) = message {
        state.pending_message.set_value(Some(msg.clone()));
        let url = state.api(&format!("/requests?summary=true&limit=1&q={}", enc(&msg)));
        spawn_local(async move {
            if let Ok(page) = server::get::<RequestPage>(&url).await
                && let Some(r) = page.requests.first()
                && state.pending_message.get_value().as_deref() == Some(msg.as_str())
            {
                state.pending_message.set_value(None);
                state.select(Some(r.seq));
            }
        });
    }

    // Counters (stored, captured, evicted) follow the live stream, a refresh every 3 s at most.
    let refresher = set_interval_with_handle(
        move || {
            if state.bin_dirty.get_value() {
                state.refresh_bin();
            }
        },
        Duration::from_secs(3),
    )
    .ok();
    on_cleanup(move || {
        if let Some(h) = refresher {
            h.clear();
        }
    });

    // The live stream; a reconnect reloads the list, since requests may have been missed.
    let queue = LiveQueue::default();
    let stream = StoredValue::new(None::<SendWrapper<LiveStream>>);
    let open_stream = {
        let queue = queue.clone();
        move || {
            let queue = queue.clone();
            let was_down = Rc::new(Cell::new(false));
            let s = LiveStream::open(
                state.api("/stream"),
                vec!["request", "resync", "deleted", "cleared", "bin_deleted"],
                move |ev| state.handle(ev, &queue),
                move |c| {
                    state.conn.set(c);
                    match c {
                        // Still there? (A restarted server has forgotten its bins.) Asked once
                        // per outage.
                        Connection::Reconnecting if !was_down.replace(true) => state.refresh_bin(),
                        Connection::Live if was_down.take() => {
                            state.load();
                            state.refresh_bin();
                        }
                        _ => {}
                    }
                },
            );
            // Drop the old one first (closes it), then keep the new one.
            stream.set_value(None);
            stream.set_value(Some(SendWrapper::new(s)));
        }
    };
    open_stream();
    let reconnect = SendWrapper::new(open_stream);
    let reconnect = move |_| (*reconnect)();
    on_cleanup(move || stream.set_value(None));
    // A deleted bin has nothing more to say: stop listening (and retrying).
    Effect::new(move |_| {
        if state.gone.get() {
            stream.set_value(None);
            state.conn.set(Connection::Closed);
        }
    });

    // Keyboard: j/k or arrows move the selection, `/` searches, Escape leaves the search box.
    let search_ref = NodeRef::<Input>::new();
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.default_prevented() || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        let in_field = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|el| {
                matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                    || el
                        .closest("[contenteditable], dialog")
                        .ok()
                        .flatten()
                        .is_some()
            });
        if in_field {
            if ev.key() == "Escape"
                && let Some(input) = search_ref.get_untracked()
            {
                let _ = input.blur();
            }
            return;
        }
        match ev.key().as_str() {
            "j" | "ArrowDown" => {
                ev.prevent_default();
                state.step(1);
            }
            "k" | "ArrowUp" => {
                ev.prevent_default();
                state.step(-1);
            }
            "/" => {
                if let Some(input) = search_ref.get_untracked() {
                    ev.prevent_default();
                    let _ = input.focus();
                }
            }
            _ => {}
        }
    });
    on_cleanup(move || keys.remove());

    view! {
        {move || state.missing.get().then(|| view! { <MissingBin name=state.id.get_value()/> })}
        <section class="page bin-page" hidden=move || state.missing.get()>
            <BinHeader state=state/>
            {move || (state.gone.get() && !state.missing.get()).then(|| view! {
                <p class="banner error" role="alert">
                    "This bin no longer exists (deleted or expired). "
                    <a href="/">"Back to your bins"</a>
                </p>
            })}
            <div class="bin-body">
                <div class="list-pane">
                    <div class="list-tools">
                        <Filters state=state search_ref=search_ref/>
                        <div class="live" role="status" aria-live="polite">
                            <span class=move || format!("dot {}", state.conn.get().label())></span>
                            <span class="conn-label">{move || state.conn.get().label()}</span>
                            {move || (state.conn.get() == Connection::Reconnecting).then(|| view! {
                                <button type="button" class="small" on:click=reconnect.clone()>"Reconnect"</button>
                            })}
                        </div>
                    </div>
                    <ListSummary state=state/>
                    <RequestList state=state/>
                </div>
                <div class="detail-pane">
                    {move || match state.selected.get() {
                        Some(seq) => view! { <RequestDetail state=state id=seq.to_string()/> }.into_any(),
                        None => view! { <EmptyDetail state=state/> }.into_any(),
                    }}
                </div>
            </div>
            <BinSettings state=state/>
        </section>
    }
}

/// `/bins/{name}` for a bin that does not exist: say so, and offer to create it.
#[component]
fn MissingBin(name: String) -> impl IntoView {
    let remount = use_context::<Remount>();
    let (creating, set_creating) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let create = {
        let name = name.clone();
        move |_| {
            set_creating.set(true);
            let url = format!("/api/bins/{}", enc(&name));
            spawn_local(async move {
                match server::send::<_, BinOut>("PUT", &url, &BinIn::default()).await {
                    Ok(_) => {
                        if let Some(Remount(r)) = remount {
                            r.update(|n| *n += 1);
                        }
                    }
                    Err(e) => {
                        let _ = set_error.try_set(Some(e.message));
                        let _ = set_creating.try_set(false);
                    }
                }
            });
        }
    };
    view! {
        <section class="page bin-missing">
            <h1>"No bin named " <span class="mono break">{name.clone()}</span></h1>
            <p>"This bin does not exist on this server: it was never created, or it expired or was deleted."</p>
            <div class="row">
                <button type="button" class="primary" on:click=create disabled=creating>
                    {move || if creating.get() { "Creating…".to_owned() } else { "Create this bin".to_owned() }}
                </button>
                <a class="button" href="/">"Back to your bins"</a>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn BinHeader(state: BinState) -> impl IntoView {
    let url = Signal::derive(move || {
        state.bin.with(|b| match b {
            Some(Ok(b)) => b.url.clone(),
            _ => String::new(),
        })
    });
    let example = Signal::derive(move || curl::example(&url.get()));
    view! {
        <div class="page-head">
            <h1>"Bin " <span class="mono">{state.id.get_value()}</span></h1>
        </div>
        <div class="capture card">
            <label for="capture-url">"Capture URL"</label>
            <div class="row">
                <input id="capture-url" class="mono" readonly prop:value=url
                    on:focus=|ev| {
                        if let Some(i) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                            i.select();
                        }
                    }/>
                <CopyButton text=url label="Copy URL"/>
            </div>
            <div class="example">
                <pre class="code mono" aria-label="Example request">{example}</pre>
                <CopyButton text=example label="Copy" aria_label="Copy the example curl command"/>
            </div>
            <p class="muted">"Any method, any path below it. Requests show up below as they arrive."</p>
        </div>
        {move || match state.bin.get() {
            Some(Err(e)) if e.status != Some(404) => Some(view! { <p class="error" role="alert">{e.message}</p> }.into_any()),
            _ => None,
        }}
    }
}

#[component]
fn Filters(state: BinState, search_ref: NodeRef<Input>) -> impl IntoView {
    // Typing reloads the list 250 ms after the last key.
    let typed = StoredValue::new(0u64);
    let on_search = move |ev: leptos::ev::Event| {
        let text = event_target_value(&ev);
        let n = typed.get_value() + 1;
        typed.set_value(n);
        set_timeout(
            move || {
                if typed.get_value() == n {
                    state.filter.update(|f| f.text = text);
                    state.load();
                }
            },
            Duration::from_millis(250),
        );
    };
    let on_method = move |ev: leptos::ev::Event| {
        let method = event_target_value(&ev);
        state.filter.update(|f| f.method = method);
        state.load();
    };
    let on_signature = move |ev: leptos::ev::Event| {
        let signature = event_target_value(&ev);
        state.filter.update(|f| f.signature = signature);
        state.load();
    };
    let signed = move || {
        state
            .bin
            .with(|b| matches!(b, Some(Ok(b)) if b.signature_scheme.is_some()))
            || state.filter.with(|f| !f.signature.is_empty())
    };
    view! {
        <div class="filters" role="search">
            <label for="req-search" class="visually-hidden">"Search requests"</label>
            <input id="req-search" type="search" node_ref=search_ref
                placeholder=if touch_screen() { "Search path, headers, body" } else { "Search path, headers, body  ( / )" } on:input=on_search
                autocomplete="off" spellcheck="false"/>
            <label for="req-method" class="visually-hidden">"Method"</label>
            <select id="req-method" on:change=on_method>
                <option value="">"Any method"</option>
                {["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                    .into_iter()
                    .map(|m| view! { <option value=m>{m}</option> })
                    .collect_view()}
            </select>
            {move || signed().then(|| view! {
                <label for="req-signature" class="visually-hidden">"Signature"</label>
                <select id="req-signature" on:change=on_signature>
                    <option value="">"Any signature"</option>
                    <option value="valid">"Valid signature"</option>
                    <option value="invalid">"Invalid signature"</option>
                    <option value="missing">"Missing signature"</option>
                </select>
            })}
        </div>
    }
}

#[component]
fn ListSummary(state: BinState) -> impl IntoView {
    let counts = move || {
        let shown = state.list.with(|l| l.len());
        let matched = state.matched.get();
        let filtered = state.filter.with(|f| *f != Filter::default());
        let mut s = if filtered {
            format!("{matched} matching")
        } else {
            units::count(matched, "request", "requests")
        };
        if !state.loaded_all.get() && shown > 0 {
            s.push_str(&format!(" · loading {shown}…"));
        }
        s
    };
    let evicted = move || {
        state.bin.with(|b| match b {
            Some(Ok(b)) if b.evicted.total > 0 => Some(view! {
                <span class="badge warn" title=format!(
                    "{} by the bin's limit of {} requests, {} by the server's byte budget",
                    b.evicted.by_bin_limit, b.limits.max_requests, b.evicted.by_byte_budget
                )>
                    {format!("{} evicted", b.evicted.total)}
                </span>
            }),
            _ => None,
        })
    };
    view! {
        <div class="list-summary">
            <span class="count">{counts}</span>
            {evicted}
            {move || state.load_error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
        </div>
    }
}

/// The windowed list of requests.
#[component]
fn RequestList(state: BinState) -> impl IntoView {
    let (scroll_top, set_scroll_top) = signal(0i32);
    let (height, set_height) = signal(600i32);
    let viewport = state.viewport;
    let measure = move || {
        if let Some(el) = viewport.get_untracked() {
            set_height.set(el.client_height());
        }
    };
    Effect::new(move |_| {
        if viewport.get().is_some() {
            measure();
        }
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());

    let len = move || state.list.with(|l| l.len());
    let range = Memo::new(move |_| {
        let n = len();
        let top = scroll_top.get().max(0) as usize;
        let rows = ROW_HEIGHT as usize;
        let start = (top / rows).saturating_sub(OVERSCAN).min(n);
        let end = (top + height.get().max(0) as usize).div_ceil(rows) + OVERSCAN;
        (start, end.min(n))
    });
    let visible = move || {
        let (start, end) = range.get();
        state
            .list
            .with(|l| l[start.min(l.len())..end.min(l.len())].to_vec())
    };
    let on_scroll = move |_| {
        if let Some(el) = viewport.get_untracked() {
            set_scroll_top.set(el.scroll_top());
        }
    };
    let active = move || state.selected.get().map(|seq| format!("req-{seq}"));

    view! {
        <div
            class="req-list"
            node_ref=viewport
            on:scroll=on_scroll
            role="listbox"
            aria-label="Captured requests"
            aria-activedescendant=active
            tabindex="0"
            data-loaded=move || if state.loaded_all.get() { "all" } else { "partial" }
            data-count=len
        >
            <div class="req-spacer" style:height=move || format!("{}px", len() as i64 * i64::from(ROW_HEIGHT))>
                <div class="req-window" style:transform=move || format!("translateY({}px)", range.get().0 as i64 * i64::from(ROW_HEIGHT))>
                    <For each=visible key=|r| r.seq let:r>
                        <RequestRow r=r state=state/>
                    </For>
                </div>
            </div>
            {move || (len() == 0 && state.loaded_all.get()).then(|| view! {
                <p class="muted empty">
                    {move || if state.filter.with(|f| *f == Filter::default()) {
                        "No requests yet. Send one to the capture URL: it appears here at once."
                    } else {
                        "No request matches."
                    }}
                </p>
            })}
        </div>
    }
}

#[component]
fn RequestRow(r: Row, state: BinState) -> impl IntoView {
    let now = now();
    let id = r.id.clone();
    let seq = r.seq;
    let selected = move || state.selected.with(|s| *s == Some(seq));
    let received = js_sys::Date::parse(&r.received_at);
    let exact_time = exact(&r.received_at);
    let mut target = r.path.clone();
    if let Some(q) = &r.query {
        target.push('?');
        target.push_str(q);
    }
    let title = target.clone();
    let meta = format!(
        "{}{}{}",
        units::size(r.body_size),
        r.content_type
            .as_deref()
            .map(|c| format!(" · {c}"))
            .unwrap_or_default(),
        if r.truncated { " · truncated" } else { "" },
    );
    let select = move |_| state.select(Some(seq));
    view! {
        <div
            class="req-row"
            class:selected=selected
            role="option"
            id=format!("req-{seq}")
            data-id=id
            aria-selected=move || selected().to_string()
            on:click=select
        >
            <div class="line1">
                <span class=format!("method m-{}", r.method.to_ascii_lowercase())>{r.method.clone()}</span>
                <span class="path mono" title=title>{target}</span>
                <span class="seq">"#"{r.seq}</span>
            </div>
            <div class="line2">
                <span class="time" title=exact_time>{move || units::ago(received, now.get())}</span>
                <span class="meta">{meta}</span>
                <Badges r=r.clone()/>
            </div>
        </div>
    }
}

/// Schema and signature check results, when the bin has them.
#[component]
fn Badges(r: Row) -> impl IntoView {
    let schema = r.validation.as_ref().map(|v| {
        if v.valid {
            let why = "Schema ✓: the body is valid against the bin's JSON Schema.";
            view! { <span class="badge ok" tabindex="0" title=why aria-label=why>"schema ✓"</span> }.into_any()
        } else {
            let first = v.errors.first().map(|e| format!(" First: {} {}", if e.path.is_empty() { "/" } else { &e.path }, e.message)).unwrap_or_default();
            let why = format!(
                "Schema ✗: the body breaks the bin's JSON Schema ({}).{first}",
                units::count(v.errors.len() as u64, "violation", "violations")
            );
            view! { <span class="badge bad" tabindex="0" title=why.clone() aria-label=why>"schema ✗"</span> }.into_any()
        }
    });
    let signature = r.signature.as_ref().map(|s| {
        let class = if s.status == "valid" { "badge ok" } else { "badge bad" };
        let what = match s.status.as_str() {
            "valid" => "Signature valid: it matches the bin's secret.".to_owned(),
            "missing" => "Signature missing: the request carries no signature for the bin's scheme.".to_owned(),
            "invalid" => "Signature invalid: it does not match the bin's secret.".to_owned(),
            other => format!("Signature {other}."),
        };
        let why = match &s.reason {
            Some(r) => format!("{what} {r}"),
            None => what,
        };
        view! { <span class=class tabindex="0" title=why.clone() aria-label=why>{format!("signature {}", s.status)}</span> }
    });
    view! { {schema}{signature} }
}

#[component]
fn EmptyDetail(state: BinState) -> impl IntoView {
    view! {
        <div class="empty-detail muted">
            {move || if state.list.with(|l| l.is_empty()) {
                "Waiting for the first request…"
            } else {
                if touch_screen() { "Select a request." } else { "Select a request (click, or j / k)." }
            }}
        </div>
    }
}

/// The selected request, fetched whole.
#[component]
fn RequestDetail(state: BinState, id: String) -> impl IntoView {
    let req = RwSignal::new(None::<Result<CapturedRequestOut, ApiError>>);
    let url = state.api(&format!("/requests/{}", enc(&id)));
    {
        let url = url.clone();
        spawn_local(async move {
            let res = server::get::<CapturedRequestOut>(&url).await;
            // The view may be gone by now (another selection).
            let _ = req.try_set(Some(res));
        });
    }
    move || match req.get() {
        None => view! { <p class="muted">"Loading…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
        Some(Ok(r)) => view! { <RequestView state=state r=r api_url=url.clone()/> }.into_any(),
    }
}

#[component]
fn RequestView(state: BinState, r: CapturedRequestOut, api_url: String) -> impl IntoView {
    let capture_url = state.bin.with_untracked(|b| match b {
        Some(Ok(b)) => b.url.clone(),
        _ => String::new(),
    });
    let full_url = curl::request_url(&capture_url, &r);
    let curl_cmd = curl::command(&capture_url, &r);
    let (curl_shown, set_curl_shown) = signal(false);
    let (copied, set_copied) = signal(None::<bool>);
    let copy_curl = {
        let cmd = curl_cmd.clone();
        move |_| {
            let cmd = cmd.clone();
            set_curl_shown.set(true);
            spawn_local(async move {
                let ok = copy_text(cmd).await;
                set_copied.set(Some(ok));
                set_timeout(move || set_copied.set(None), Duration::from_millis(1500));
            });
        }
    };
    let (deleting, set_deleting) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let delete = {
        let url = api_url.clone();
        let id = r.id.clone();
        move |_| {
            set_deleting.set(true);
            let url = url.clone();
            let id = id.clone();
            spawn_local(async move {
                match server::delete(&url).await {
                    Ok(()) => {
                        state.list.update(|l| l.retain(|x| x.id != id));
                        state.select(None);
                        state.bin_dirty.set_value(true);
                    }
                    Err(e) => {
                        let _ = set_error.try_set(Some(e.message));
                        let _ = set_deleting.try_set(false);
                    }
                }
            });
        }
    };
    let bytes = body::bytes(&r);
    let headers = r.headers.clone();
    let query = r.query.as_deref().map(body::query_params);
    let download = format!("{api_url}/raw?download=true");
    let validation = r.validation.clone();
    let truncation = r.truncated.then(|| {
        let kept = units::size(r.body_size);
        let limit = state.bin.with_untracked(|b| match b {
            Some(Ok(b)) => format!(" (this bin keeps at most {} of a body)", units::size(b.limits.max_body_bytes)),
            _ => String::new(),
        });
        let arrived = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| h.value.trim().parse::<u64>().ok());
        match arrived {
            Some(n) => format!("Truncated: {} arrived, the first {kept} were kept{limit}.", units::size(n)),
            None => format!("Truncated: more than {kept} arrived (sent without a Content-Length); the first {kept} were kept{limit}."),
        }
    });

    view! {
        <article class="request" aria-label="Selected request">
            <div class="request-head">
                <span class=format!("method m-{}", r.method.to_ascii_lowercase())>{r.method.clone()}</span>
                <h2 class="path mono">{r.path.clone()}</h2>
            </div>
            <div class="actions">
                <button type="button" class="small" on:click=copy_curl>
                    {move || match copied.get() {
                        Some(true) => "Copied",
                        Some(false) => "Copy failed: select below",
                        None => "Copy as cURL",
                    }}
                </button>
                <a class="button small" href=download download="">"Download raw"</a>
                <button type="button" class="small danger" on:click=delete disabled=deleting>
                    {move || if deleting.get() { "Deleting…" } else { "Delete" }}
                </button>
                {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
            </div>
            {move || curl_shown.get().then(|| view! {
                <pre class="code mono curl" aria-label="cURL command">{curl_cmd.clone()}</pre>
            })}
            <ReplayForm api_url=api_url.clone()/>
            <h3>"Overview"</h3>
            <dl class="overview">
                <dt>"Method"</dt><dd>{r.method.clone()}</dd>
                <dt>"URL"</dt><dd class="mono break">{full_url}</dd>
                <dt>"Remote address"</dt><dd class="mono">{r.remote_addr.clone()}</dd>
                <dt>"Received"</dt>
                <dd>
                    <Ago at=r.received_at.clone()/>
                    " · " <span class="muted">{exact(&r.received_at)}</span>
                </dd>
                <dt>"Size"</dt>
                <dd>
                    {units::size(r.body_size)}
                    {r.truncated.then(|| view! { <span class="badge warn">"truncated at the bin's limit"</span> })}
                </dd>
                <dt>"Sequence"</dt><dd>"#"{r.seq}</dd>
                {r.signature.clone().map(|s| view! {
                    <dt>"Signature"</dt>
                    <dd>{s.status}{s.reason.map(|why| format!(": {why}"))}</dd>
                })}
            </dl>
            {validation.map(|v| view! {
                <h3>"Schema"</h3>
                {if v.valid {
                    view! { <p class="ok">"Valid against the bin's schema."</p> }.into_any()
                } else {
                    view! {
                        <ul class="violations">
                            {v.errors.into_iter().map(|e| view! {
                                <li><code>{if e.path.is_empty() { "/".to_owned() } else { e.path }}</code>" "{e.message}</li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            })}
            <h3>"Headers " <span class="muted">"(" {headers.len()} {if r.headers_exact { ", as received)" } else { ")" }}</span></h3>
            {(!r.headers_exact).then(|| view! {
                <p class="muted headers-note">"headers as parsed: lower-case names, repeats grouped"</p>
            })}
            <KeyValueTable rows=headers.into_iter().map(|Header { name, value }| (name, value)).collect() label="Headers"/>
            {query.map(|q| view! {
                <h3>"Query parameters"</h3>
                <KeyValueTable rows=q label="Query parameters"/>
            })}
            <h3>"Body"</h3>
            <BodyView content_type=r.content_type.clone() bytes=bytes truncation=truncation/>
        </article>
    }
}

/// Replay to URL: the server sends the request again, byte-exact, and says what came back.
#[component]
fn ReplayForm(api_url: String) -> impl IntoView {
    const KEY: &str = "hookbin-replay-url";
    // The last target is remembered for the session: replays usually go to one place.
    let storage = window().session_storage().ok().flatten();
    let target = RwSignal::new(
        storage
            .as_ref()
            .and_then(|s| s.get_item(KEY).ok().flatten())
            .unwrap_or_default(),
    );
    let append = RwSignal::new(true);
    let (result, set_result) = signal(None::<Result<ReplayOut, ApiError>>);
    let (sending, set_sending) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let url = format!("{api_url}/replay");
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let t = target.get_untracked().trim().to_owned();
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            set_error.set(Some("A URL starting with http:// or https://.".to_owned()));
            if let Some(el) = document().get_element_by_id("replay-url")
                && let Ok(el) = el.dyn_into::<web_sys::HtmlElement>()
            {
                let _ = el.focus();
            }
            return;
        }
        set_error.set(None);
        if let Ok(Some(s)) = window().session_storage() {
            let _ = s.set_item(KEY, &t);
        }
        set_sending.set(true);
        set_result.set(None);
        let url = url.clone();
        let input = ReplayIn {
            url: t,
            append_path: append.get_untracked(),
        };
        spawn_local(async move {
            let res = server::send::<_, ReplayOut>("POST", &url, &input).await;
            let _ = set_result.try_set(Some(res));
            let _ = set_sending.try_set(false);
        });
    };
    view! {
        <details class="replay">
            <summary>"Replay to URL"</summary>
            <form on:submit=submit novalidate aria-label="Replay to URL">
                <div class="field">
                    <label for="replay-url">"Send this request again to"</label>
                    <input id="replay-url" type="url" class="mono" spellcheck="false" autocomplete="url"
                        placeholder="http://localhost:3000/webhooks"
                        prop:value=target on:input=move |ev| target.set(event_target_value(&ev))
                        aria-invalid=move || error.get().is_some().to_string()
                        aria-describedby="replay-url-error"/>
                    <p id="replay-url-error" class="error field-error">{move || error.get()}</p>
                </div>
                <div class="field check">
                    <input id="replay-append" type="checkbox" prop:checked=append
                        on:change=move |ev| append.set(event_target_checked(&ev))/>
                    <label for="replay-append">"Append the path it had below the bin"</label>
                </div>
                <div class="row">
                    <button type="submit" class="primary small" disabled=sending>
                        {move || if sending.get() { "Replaying…" } else { "Replay" }}
                    </button>
                    <span class="muted small">"Sent by the server, byte-exact: the URL must be reachable from it."</span>
                </div>
            </form>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <div class="result bad" role="alert"><p>{e.message}</p></div> }.into_any(),
                Ok(o) => {
                    let ok = o.status.is_some_and(|s| (200..300).contains(&s));
                    let line = match o.status {
                        Some(s) => format!("HTTP {s} in {}", units::millis(o.duration_ms)),
                        None => format!("No answer after {}", units::millis(o.duration_ms)),
                    };
                    view! {
                        <div class=if ok { "result ok" } else { "result bad" } role="status">
                            <p class="status-line">{line}" · "<span class="mono break">{o.url}</span></p>
                            {o.error.map(|e| view! { <p class="error-text"><strong>"Error: "</strong>{e}</p> })}
                            {o.response_excerpt.filter(|b| !b.is_empty()).map(|b| view! {
                                <pre class="code mono response">{b}</pre>
                            })}
                        </div>
                    }.into_any()
                }
            })}
        </details>
    }
}

/// The body in every view that fits it, as tabs.
#[component]
fn BodyView(
    content_type: Option<String>,
    bytes: Vec<u8>,
    /// What the truncation banner says, when the body was cut.
    truncation: Option<String>,
) -> impl IntoView {
    if bytes.is_empty() {
        return view! { <p class="muted">"Empty body."</p> }.into_any();
    }
    let views = body::views(content_type.as_deref(), &bytes);
    let (current, set_current) = signal(views[0]);
    let bytes = Arc::new(bytes);
    let tabs = views
        .iter()
        .map(|&v| {
            view! {
                <button
                    type="button"
                    role="tab"
                    class="tab"
                    aria-selected=move || (current.get() == v).to_string()
                    on:click=move |_| set_current.set(v)
                >
                    {v.label()}
                </button>
            }
        })
        .collect_view();
    let panel = move || {
        let bytes = bytes.clone();
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match current.get() {
            View::Json => view! { <JsonView text=text()/> }.into_any(),
            View::Form => {
                let rows = body::form_fields(&text());
                view! { <KeyValueTable rows=rows label="Form fields"/> }.into_any()
            }
            View::Multipart => {
                let boundary =
                    body::boundary(content_type.as_deref().unwrap_or("")).unwrap_or_default();
                view! { <MultipartView parts=body::multipart_parts(&bytes, &boundary)/> }.into_any()
            }
            View::Raw => view! { <pre class="code mono raw">{text()}</pre> }.into_any(),
            View::Hex => {
                let note = (bytes.len() > body::HEX_LIMIT).then(|| view! {
                    <p class="muted">{format!("First {} of {}: download raw for the rest.", units::size(body::HEX_LIMIT as u64), units::size(bytes.len() as u64))}</p>
                });
                view! { {note}<pre class="code mono hex">{body::hex_dump(&bytes)}</pre> }.into_any()
            }
        }
    };
    view! {
        {truncation.map(|t| view! { <p class="banner warn truncated" role="note">{t}</p> })}
        <div class="tabs" role="tablist" aria-label="Body views">{tabs}</div>
        <div class="tab-panel" role="tabpanel">{panel}</div>
    }
    .into_any()
}

#[component]
fn MultipartView(parts: Vec<body::Part>) -> impl IntoView {
    if parts.is_empty() {
        return view! { <p class="muted">"No parts found."</p> }.into_any();
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let title = format!(
                "Part {}{}{}",
                i + 1,
                p.name.as_deref().map(|n| format!(": {n}")).unwrap_or_default(),
                p.filename.as_deref().map(|f| format!(" (file {f})")).unwrap_or_default(),
            );
            let meta = format!(
                "{}{}",
                units::size(p.body.len() as u64),
                p.content_type.as_deref().map(|c| format!(" · {c}")).unwrap_or_default()
            );
            let content = match std::str::from_utf8(&p.body) {
                Ok(t) if p.filename.is_none() || !t.contains('\0') => {
                    view! { <pre class="code mono raw">{t.to_owned()}</pre> }.into_any()
                }
                _ => view! { <pre class="code mono hex">{body::hex_dump(&p.body[..p.body.len().min(4096)])}</pre> }.into_any(),
            };
            view! {
                <section class="part">
                    <h4>{title}" "<span class="muted">{meta}</span></h4>
                    <KeyValueTable rows=p.headers label="Part headers"/>
                    {content}
                </section>
            }
        })
        .collect_view()
        .into_any()
}

/// The bin's settings: its custom response, clear, delete.
#[component]
fn BinSettings(state: BinState) -> impl IntoView {
    let navigate = use_navigate();
    let loaded = Memo::new(move |_| state.bin.with(|b| matches!(b, Some(Ok(_)))));
    let (clearing, set_clearing) = signal(0u8);
    let (deleting, set_deleting) = signal(0u8);
    let (error, set_error) = signal(None::<String>);
    let clear = move |_| {
        if clearing.get_untracked() == 0 {
            set_clearing.set(1);
            return;
        }
        set_clearing.set(2);
        let url = state.api("/requests");
        spawn_local(async move {
            match server::delete(&url).await {
                Ok(()) => {
                    state.list.set(Vec::new());
                    state.select(None);
                    state.matched.set(0);
                    state.refresh_bin();
                }
                Err(e) => set_error.set(Some(e.message)),
            }
            set_clearing.set(0);
        });
    };
    let delete = move |_| {
        if deleting.get_untracked() == 0 {
            set_deleting.set(1);
            return;
        }
        set_deleting.set(2);
        let url = state.api("");
        let navigate = navigate.clone();
        spawn_local(async move {
            match server::delete(&url).await {
                Ok(()) => navigate("/", Default::default()),
                Err(e) => {
                    set_error.set(Some(e.message));
                    set_deleting.set(0);
                }
            }
        });
    };
    view! {
        <section class="settings">
            <h2>"Bin settings"</h2>
            // Built once, when the bin first loads: refreshes of the counters must not reset
            // what the user is typing.
            {move || loaded.get().then(|| {
                let bin = state.bin.with_untracked(|b| b.clone().and_then(Result::ok));
                bin.map(|bin| view! {
                    <ResponseEditor state=state bin=bin.clone()/>
                    <ChecksPanel state=state bin=bin/>
                })
            })}
            <div class="export card">
                <h3>"Export"</h3>
                <p class="muted">"Every stored request, oldest first."</p>
                <div class="row">
                    <a class="button" href=state.api("/export?format=har") download=format!("{}.har", state.id.get_value())>"Export HAR"</a>
                    <a class="button" href=state.api("/export?format=ndjson") download=format!("{}.ndjson", state.id.get_value())>"Export NDJSON"</a>
                </div>
            </div>
            <div class="danger-zone">
                <button type="button" class="danger" on:click=clear disabled=move || clearing.get() == 2>
                    {move || match clearing.get() { 0 => "Clear all requests", 1 => "Confirm: clear all requests", _ => "Clearing…" }}
                </button>
                <button type="button" class="danger" on:click=delete disabled=move || deleting.get() == 2>
                    {move || match deleting.get() { 0 => "Delete bin", 1 => "Confirm: delete this bin", _ => "Deleting…" }}
                </button>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </div>
        </section>
    }
}

/// The bin's checks: a JSON Schema every body is validated against, and a signature secret and
/// scheme every request is verified with. The secret is never returned by the API: the panel
/// says whether one is set, and a new one can be given.
#[component]
fn ChecksPanel(state: BinState, bin: BinOut) -> impl IntoView {
    let schema = RwSignal::new(
        bin.schema
            .as_ref()
            .and_then(|s| serde_json::to_string_pretty(s).ok())
            .unwrap_or_default(),
    );
    let scheme = RwSignal::new(bin.signature_scheme.clone().unwrap_or_default());
    let secret = RwSignal::new(String::new());
    let current = StoredValue::new(bin);
    let errors = RwSignal::new(Vec::<(&'static str, String)>::new());
    let (saving, set_saving) = signal(false);
    let (saved, set_saved) = signal(false);
    let error_of = move |field: &'static str| {
        move || errors.with(|e| e.iter().find(|(f, _)| *f == field).map(|(_, m)| m.clone()))
    };
    let secret_field = secret;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        set_saved.set(false);
        let mut errs = Vec::new();
        let text = schema.get_untracked();
        let schema_v = if text.trim().is_empty() {
            None
        } else {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(("schema", format!("Not JSON: {e}")));
                    None
                }
            }
        };
        let scheme_v = scheme.get_untracked();
        let secret_v = secret.get_untracked().trim().to_owned();
        let bin = current.get_value();
        let had_signature = bin.signature_scheme.is_some();
        if !scheme_v.is_empty() && secret_v.is_empty() && !had_signature {
            errs.push((
                "secret",
                "Give the secret the sender signs with.".to_owned(),
            ));
        }
        // Removing a check replaces every setting (PUT): the secret, which the API never
        // returns, must then be given again to be kept.
        let removing =
            (schema_v.is_none() && bin.schema.is_some()) || (scheme_v.is_empty() && had_signature);
        if removing && !scheme_v.is_empty() && secret_v.is_empty() {
            errs.push((
                "secret",
                "Removing the schema replaces every setting: give the secret again to keep the signature check.".to_owned(),
            ));
        }
        if !errs.is_empty() {
            errors.set(errs);
            return;
        }
        errors.set(Vec::new());
        let signature = (!scheme_v.is_empty()).then_some(scheme_v);
        let secret = (!secret_v.is_empty()).then_some(secret_v);
        let (method, input) = if removing {
            (
                "PUT",
                BinIn {
                    response: Some(bin.response.clone()),
                    limits: Some(api::BinLimitsIn {
                        max_requests: Some(bin.limits.max_requests),
                        max_body_bytes: Some(bin.limits.max_body_bytes),
                    }),
                    schema: schema_v,
                    secret: signature.as_ref().and(secret),
                    signature_scheme: signature,
                    ..BinIn::default()
                },
            )
        } else {
            (
                "PATCH",
                BinIn {
                    schema: schema_v,
                    secret,
                    signature_scheme: signature,
                    ..BinIn::default()
                },
            )
        };
        set_saving.set(true);
        let url = state.api("");
        spawn_local(async move {
            match server::send::<_, BinOut>(method, &url, &input).await {
                Ok(b) => {
                    current.set_value(b.clone());
                    state.bin.set(Some(Ok(b)));
                    // The secret typed is not kept on screen once saved.
                    let _ = secret_field.try_set(String::new());
                    set_saved.set(true);
                }
                Err(e) => {
                    let field = if e.code.contains("schema") {
                        "schema"
                    } else if e.code.contains("signature") || e.message.contains("secret") {
                        "secret"
                    } else {
                        "form"
                    };
                    errors.set(vec![(field, e.message)]);
                }
            }
            let _ = set_saving.try_set(false);
        });
    };
    let secret_state = move || {
        if scheme.get().is_empty() {
            "No signature check.".to_owned()
        } else if current.with_value(|b| b.signature_scheme.is_some()) {
            "A secret is set (the server never shows it). Type a new one to replace it.".to_owned()
        } else {
            "Type the secret the sender signs with.".to_owned()
        }
    };
    view! {
        <details class="card checks" open=current.with_value(|b| b.schema.is_some() || b.signature_scheme.is_some())>
            <summary>"Checks"</summary>
            <form on:submit=save novalidate aria-label="Checks">
                <p class="muted">"Run on every captured request: the list shows a badge for each, and can be filtered by signature."</p>
                <div class="field">
                    <label for="checks-schema">"JSON Schema"</label>
                    <textarea id="checks-schema" class="mono" rows="6" spellcheck="false"
                        placeholder="{\"type\": \"object\", \"required\": [\"event\"]}"
                        prop:value=schema on:input=move |ev| schema.set(event_target_value(&ev))
                        aria-invalid=move || error_of("schema")().is_some().to_string()
                        aria-describedby="checks-schema-error"></textarea>
                    <p id="checks-schema-error" class="error field-error">{error_of("schema")}</p>
                </div>
                <div class="field small-field">
                    <label for="checks-scheme">"Signature scheme"</label>
                    <select id="checks-scheme" on:change=move |ev| scheme.set(event_target_value(&ev))>
                        {[("", "None"), ("standard", "Standard Webhooks"), ("github", "GitHub"), ("stripe", "Stripe")]
                            .into_iter()
                            .map(|(v, label)| view! { <option value=v prop:selected=move || scheme.with(|s| s == v)>{label}</option> })
                            .collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="checks-secret">"Secret"</label>
                    <input id="checks-secret" class="mono" type="password" autocomplete="off" spellcheck="false"
                        disabled=move || scheme.with(String::is_empty)
                        prop:value=secret on:input=move |ev| secret.set(event_target_value(&ev))
                        aria-invalid=move || error_of("secret")().is_some().to_string()
                        aria-describedby="checks-secret-hint checks-secret-error"/>
                    <p id="checks-secret-hint" class="muted small">{secret_state}</p>
                    <p id="checks-secret-error" class="error field-error">{error_of("secret")}</p>
                </div>
                <div class="row">
                    <button type="submit" class="primary" disabled=saving>
                        {move || if saving.get() { "Saving…" } else { "Save checks" }}
                    </button>
                    {move || saved.get().then(|| view! { <span class="ok" role="status">"Saved: new requests are checked."</span> })}
                    <p class="error" role="alert">{error_of("form")}</p>
                </div>
            </form>
        </details>
    }
}

/// Parses "Name: value" lines into headers, in order.
fn parse_header_lines(text: &str) -> Result<Vec<Header>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("\"{line}\" is not \"Name: value\""))?;
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("\"{name}\" is not a header name"));
            }
            Ok(Header {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            })
        })
        .collect()
}

/// Edits what the bin answers: status, headers, body, delay.
#[component]
fn ResponseEditor(state: BinState, bin: BinOut) -> impl IntoView {
    let r = bin.response.clone();
    let status = RwSignal::new(r.status.to_string());
    let headers = RwSignal::new(
        r.headers
            .iter()
            .map(|h| format!("{}: {}", h.name, h.value))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let default_body = RwSignal::new(r.body.is_none());
    let body_text = RwSignal::new(r.body.clone().unwrap_or_default());
    let delay = RwSignal::new(r.delay_ms.to_string());
    let errors = RwSignal::new(Vec::<(&'static str, String)>::new());
    let (saving, set_saving) = signal(false);
    let (saved, set_saved) = signal(false);
    let bin = StoredValue::new(bin);
    let field_error = move |field: &'static str| {
        move || errors.with(|e| e.iter().find(|(f, _)| *f == field).map(|(_, m)| m.clone()))
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        set_saved.set(false);
        let mut errs = Vec::new();
        let status_v = match status.get_untracked().trim().parse::<u16>() {
            Ok(s) if (200..=599).contains(&s) => s,
            _ => {
                errs.push(("status", "A status code from 200 to 599.".to_owned()));
                0
            }
        };
        let headers_v = parse_header_lines(&headers.get_untracked()).unwrap_or_else(|e| {
            errs.push(("headers", e));
            Vec::new()
        });
        let delay_v = match delay.get_untracked().trim().parse::<u64>() {
            Ok(d) if d <= 30_000 => d,
            _ => {
                errs.push(("delay", "A delay from 0 to 30000 ms.".to_owned()));
                0
            }
        };
        if !errs.is_empty() {
            errors.set(errs);
            return;
        }
        errors.set(Vec::new());
        // PATCH: the bin keeps every setting this form does not show (limits, schema, secret).
        let input = BinIn {
            response: Some(BinResponse {
                status: status_v,
                headers: headers_v,
                body: (!default_body.get_untracked()).then(|| body_text.get_untracked()),
                delay_ms: delay_v,
            }),
            ..BinIn::default()
        };
        set_saving.set(true);
        let url = state.api("");
        spawn_local(async move {
            match server::send::<_, BinOut>("PATCH", &url, &input).await {
                Ok(b) => {
                    bin.set_value(b);
                    set_saved.set(true);
                }
                Err(e) => {
                    let field = if e.message.contains("status") {
                        "status"
                    } else if e.message.contains("header") {
                        "headers"
                    } else if e.message.contains("delay") {
                        "delay"
                    } else {
                        "form"
                    };
                    errors.set(vec![(field, e.message)]);
                }
            }
            set_saving.set(false);
        });
    };
    view! {
        <details class="card response-editor">
            <summary>"Custom response"</summary>
            <form on:submit=save novalidate>
                <p class="muted">"What this bin answers to every request it captures."</p>
                <div class="field small-field">
                    <label for="resp-status">"Status"</label>
                    <input id="resp-status" type="number" min="200" max="599" inputmode="numeric"
                        prop:value=status on:input=move |ev| status.set(event_target_value(&ev))
                        aria-invalid=move || field_error("status")().is_some().to_string()/>
                    <p class="error field-error">{field_error("status")}</p>
                </div>
                <div class="field small-field">
                    <label for="resp-delay">"Delay (ms)"</label>
                    <input id="resp-delay" type="number" min="0" max="30000" inputmode="numeric"
                        prop:value=delay on:input=move |ev| delay.set(event_target_value(&ev))
                        aria-invalid=move || field_error("delay")().is_some().to_string()/>
                    <p class="error field-error">{field_error("delay")}</p>
                </div>
                <div class="field">
                    <label for="resp-headers">"Headers (one \"Name: value\" per line)"</label>
                    <textarea id="resp-headers" class="mono" rows="3" spellcheck="false"
                        prop:value=headers on:input=move |ev| headers.set(event_target_value(&ev))
                        aria-invalid=move || field_error("headers")().is_some().to_string()></textarea>
                    <p class="error field-error">{field_error("headers")}</p>
                </div>
                <div class="field check">
                    <input id="resp-default-body" type="checkbox" prop:checked=default_body
                        on:change=move |ev| default_body.set(event_target_checked(&ev))/>
                    <label for="resp-default-body">"Default body (JSON naming the request id)"</label>
                </div>
                <div class="field">
                    <label for="resp-body">"Body"</label>
                    <textarea id="resp-body" class="mono" rows="5" spellcheck="false"
                        disabled=default_body
                        prop:value=body_text on:input=move |ev| body_text.set(event_target_value(&ev))></textarea>
                </div>
                <div class="row">
                    <button type="submit" class="primary" disabled=saving>
                        {move || if saving.get() { "Saving…" } else { "Save response" }}
                    </button>
                    {move || saved.get().then(|| view! { <span class="ok" role="status">"Saved."</span> })}
                    <p class="error" role="alert">{field_error("form")}</p>
                </div>
            </form>
        </details>
    }
}
