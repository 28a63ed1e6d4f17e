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
//!
//! # Layout
//! This file holds the page and its frame (the header, a missing bin); `state` the
//! [`BinState`] every part shares and the live queue, `list` the filters and the windowed list,
//! `detail` the selected request, `settings` the bin's settings below. Each submodule uses this
//! one's imports (`use super::*`), and the page's parts reach each other through it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use api::{
    BinResponse, CapturedRequestOut, DeletedEvent, Header, ReplayIn, ReplayOut, RequestPage,
};
use leptos::html::{Div, Input};
use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;

use crate::app::{now, set_title};
use crate::body::{self, View};
use crate::components::{Ago, CopyButton, JsonView, KeyValueTable, copy_text, exact};
use crate::router::{request_seq, use_location};
use crate::server::{self, ApiError, Connection, LiveStream, StreamEvent, enc};
use crate::wire::{BinIn, BinOut, Json};
use crate::{curl, units};

mod detail;
mod list;
mod settings;
mod state;

use detail::*;
use list::*;
use settings::*;
use state::*;

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
pub fn BinPage(
    /// The bin's id, from the path (`/bins/{bin}`); another bin is another page.
    bin: String,
) -> impl IntoView {
    // The selected request is in the URL (`/bins/{bin}/requests/{seq}`), so it can be shared.
    // State, stream and listeners start fresh when a missing bin has just been created.
    let remount = RwSignal::new(0u32);
    provide_context(Remount(remount));
    move || {
        remount.track();
        view! { <BinView id=bin.clone()/> }
    }
}

#[component]
fn BinView(id: String) -> impl IntoView {
    set_title(&format!("Bin {id}"));
    let location = use_location();
    let base = format!("/bins/{}", enc(&id));
    let navigate = Callback::new(move |seq: Option<u64>| {
        let path = match seq {
            Some(seq) => format!("{base}/requests/{seq}"),
            None => base.clone(),
        };
        if location.path_untracked() != path {
            location.navigate(&path, true);
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
    let url_seq = Memo::new(move |_| request_seq(&location.path()));
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
        .query_untracked("message")
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
