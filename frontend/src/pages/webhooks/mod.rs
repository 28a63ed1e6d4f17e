//! Webhooks: the seed's page (Ultimate Multisite's "Webhooks (v2)"), with its labels.
//!
//! The list of webhooks (Name, URL, Event, active, events sent, last failure), each with
//! **Send Test Event** (a dialog with the true outcome: status, duration and response, or the
//! error), edit, enable/disable, delete and its delivery log with Resend; the **Add New Webhook**
//! form (Name, URL, Event, a preview of the event's payload, and "Use a new bin" to fill the URL);
//! at the bottom, every event of the catalog with its description and example payload.
//!
//! # Layout
//! This file holds the page and its shared [`Data`]; `form` the Add New Webhook (and edit)
//! form, `card` one webhook's card with its Send Test Event dialog and secret, `log` the
//! Delivery log, `catalog` the event catalog. Each submodule uses this one's imports
//! (`use super::*`), and the page's parts reach each other through it.

use std::collections::HashSet;

use api::{
    AttemptOut, DeliveryLog, EmitIn, EmitOut, MessageOut, MessageRef, MessageState, RotateSecretIn,
    TestOutcome, WebhookIn, WebhookList, WebhookOut, WebhookPatch,
};
use leptos::html::Dialog;
use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;

use crate::app::set_title;
use crate::components::{Ago, CopyButton, JsonView, KeyValueTable, KeyedRows, exact};
use crate::server::{self, ApiError, LiveStream, enc};
use crate::wire::{BinIn, BinList, BinOut, EventList, EventOut};
use crate::{body, units};

mod card;
mod catalog;
mod form;
mod log;

use card::*;
use catalog::*;
use form::*;
use log::*;

/// The page's shared data: the catalog and the webhooks.
#[derive(Clone, Copy)]
struct Data {
    events: RwSignal<Option<Result<Vec<EventOut>, ApiError>>>,
    webhooks: RwSignal<Option<Result<Vec<WebhookOut>, ApiError>>>,
    /// Bumped when the server says a webhook or a delivery log changed: open logs reload.
    changes: RwSignal<u64>,
    /// The webhook just saved: its card is scrolled to and highlighted.
    highlight: RwSignal<Option<String>>,
    /// Where this server's bins live (`{origin}/b/`, and the prefix of the bins' own URLs when
    /// the server has a public URL of its own): a webhook URL under one is a bin of this server.
    bin_prefixes: RwSignal<Vec<String>>,
}

impl Data {
    /// The bin of this server a URL points to, if it does.
    fn bin_of(self, url: &str) -> Option<String> {
        self.bin_prefixes.with(|prefixes| {
            prefixes.iter().find_map(|p| {
                let rest = url.strip_prefix(p.as_str())?;
                let name = rest.split(['/', '?', '#']).next().unwrap_or("");
                (!name.is_empty()).then(|| {
                    js_sys::decode_uri_component(name)
                        .ok()
                        .and_then(|n| n.as_string())
                        .unwrap_or_else(|| name.to_owned())
                })
            })
        })
    }

    fn reload_webhooks(self) {
        spawn_local(async move {
            let res = server::get::<WebhookList>("/api/webhooks")
                .await
                .map(|l| l.webhooks);
            self.webhooks.set(Some(res));
        });
    }

    fn ids(self) -> Vec<String> {
        self.webhooks.with(|w| match w {
            Some(Ok(list)) => list.iter().map(|w| w.id.clone()).collect(),
            _ => Vec::new(),
        })
    }

    fn webhook(self, id: &str) -> Option<WebhookOut> {
        self.webhooks.with(|w| match w {
            Some(Ok(list)) => list.iter().find(|w| w.id == id).cloned(),
            _ => None,
        })
    }

    /// The event's name from the catalog (its slug until the catalog has loaded).
    fn event_name(self, slug: &str) -> String {
        self.events.with(|e| match e {
            Some(Ok(list)) => list
                .iter()
                .find(|e| e.slug == slug)
                .map_or_else(|| slug.to_owned(), |e| e.name.clone()),
            _ => slug.to_owned(),
        })
    }
}

#[component]
pub fn WebhooksPage() -> impl IntoView {
    set_title("Webhooks");
    let data = Data {
        events: RwSignal::new(None),
        webhooks: RwSignal::new(None),
        changes: RwSignal::new(0),
        highlight: RwSignal::new(None),
        bin_prefixes: RwSignal::new(
            window()
                .location()
                .origin()
                .map(|o| vec![format!("{o}/b/")])
                .unwrap_or_default(),
        ),
    };
    spawn_local(async move {
        if let Ok(list) = server::get::<BinList>("/api/bins").await {
            let mut prefixes = data.bin_prefixes.get_untracked();
            for bin in list.bins {
                if let Some(p) = bin.url.strip_suffix(&bin.id)
                    && !prefixes.iter().any(|q| q == p)
                {
                    prefixes.push(p.to_owned());
                }
            }
            data.bin_prefixes.set(prefixes);
        }
    });
    spawn_local(async move {
        let res = server::get::<EventList>("/api/events")
            .await
            .map(|l| l.events);
        data.events.set(Some(res));
    });
    data.reload_webhooks();
    // Live: the server says when a webhook or a delivery log changed (at most 4 times a second);
    // the list and the open logs reload, so retries and failures show up as they happen.
    let stream = LiveStream::open(
        "/api/deliveries/stream".to_owned(),
        vec!["changed"],
        move |_| {
            data.reload_webhooks();
            data.changes.update(|n| *n = n.wrapping_add(1));
        },
        |_| {},
    );
    let stream = SendWrapper::new(stream);
    on_cleanup(move || drop(stream));
    let (adding, set_adding) = signal(false);

    view! {
        <section class="page webhooks-page">
            <div class="page-head">
                <h1>"Webhooks"</h1>
                <p class="lede">
                    "A webhook sends an event to a URL as it happens. Add one, then use "
                    <strong>"Send Test Event"</strong>
                    " to see exactly what your endpoint receives and answers."
                </p>
                <button type="button" class="primary" on:click=move |_| set_adding.update(|a| *a = !*a)
                    aria-expanded=move || adding.get().to_string()>
                    "Add New Webhook"
                </button>
            </div>
            {move || adding.get().then(|| view! {
                <WebhookForm data=data editing=None on_done=move || set_adding.set(false)/>
            })}
            <h2>"Your webhooks"</h2>
            {move || data.webhooks.with(|w| match w {
                None => Some(view! { <p class="muted">"Loading…"</p> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.message.clone()}</p> }.into_any()),
                Some(Ok(list)) if list.is_empty() => Some(view! {
                    <p class="muted empty">"No webhooks yet. Click Add New Webhook to create one."</p>
                }
                .into_any()),
                Some(Ok(_)) => None,
            })}
            // Keyed by id: a reload updates each card in place and keeps its dialog, form and log.
            <div class="webhooks">
                <KeyedRows keys=Signal::derive(move || data.ids())
                    row=Callback::new(move |id| view! { <WebhookCard data=data id=id/> }.into_any())/>
            </div>
            <EventCatalog data=data/>
        </section>
    }
}
