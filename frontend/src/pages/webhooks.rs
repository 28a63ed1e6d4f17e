//! Webhooks: the seed's page (Ultimate Multisite's "Webhooks (v2)"), with its labels.
//!
//! The list of webhooks (Name, URL, Event, active, events sent, last failure), each with
//! **Send Test Event** (a dialog with the true outcome: status, duration and response, or the
//! error), edit, enable/disable, delete and its delivery log with Resend; the **Add New Webhook**
//! form (Name, URL, Event, a preview of the event's payload, and "Use a new bin" to fill the URL);
//! at the bottom, every event of the catalog with its description and example payload.

use std::collections::HashSet;

use api::{
    AttemptOut, BinIn, BinList, BinOut, DeliveryLog, EmitIn, EmitOut, EventList, EventOut,
    MessageOut, MessageRef, MessageState, RotateSecretIn, TestOutcome, WebhookIn, WebhookList,
    WebhookOut, WebhookPatch,
};
use leptos::html::Dialog;
use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;

use crate::app::set_title;
use crate::components::{Ago, CopyButton, JsonView, KeyValueTable, exact};
use crate::server::{self, ApiError, LiveStream, enc};
use crate::units;

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
    set_title(|| "Webhooks".to_owned());
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
                <For each=move || data.ids() key=|id| id.clone() let:id>
                    <WebhookCard data=data id=id/>
                </For>
            </div>
            <EventCatalog data=data/>
        </section>
    }
}

/// Where a server error belongs in the form: the API names the field first (`url: ...`).
fn error_field(e: &ApiError) -> &'static str {
    let field = e.message.split_once(':').map_or("", |(f, _)| f.trim());
    match field {
        "name" => return "name",
        "url" => return "url",
        "event" | "events" => return "event",
        _ => {}
    }
    let text = format!("{} {}", e.code, e.message).to_ascii_lowercase();
    if text.contains("url") {
        "url"
    } else if text.contains("name") {
        "name"
    } else if text.contains("event") {
        "event"
    } else {
        "form"
    }
}

/// Every problem the server named, each on the form field it belongs to (several problems of
/// one field joined); without a per-field list, the message on its likeliest field.
fn server_errors(e: &ApiError) -> Vec<(&'static str, String)> {
    if e.fields.is_empty() {
        return vec![(error_field(e), e.message.clone())];
    }
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for api::FieldError { field, message } in &e.fields {
        let (slot, label) = match field.as_str() {
            "name" => ("name", "Name"),
            "url" => ("url", "URL"),
            "event" | "events" => ("event", "Event"),
            "secret" => ("form", "Secret"),
            "envelope" => ("form", "Envelope"),
            _ => ("form", field.as_str()),
        };
        let mut text = format!("{label}: {message}");
        if !text.ends_with('.') {
            text.push('.');
        }
        match out.iter_mut().find(|(f, _)| *f == slot) {
            Some((_, existing)) => {
                existing.push(' ');
                existing.push_str(&text);
            }
            None => out.push((slot, text)),
        }
    }
    out
}

/// Scrolls to and focuses the element with this id.
fn focus_id(id: &str) {
    if let Some(el) = document().get_element_by_id(id) {
        el.scroll_into_view_with_bool(false);
        if let Ok(el) = el.dyn_into::<web_sys::HtmlElement>() {
            let _ = el.focus();
        }
    }
}

/// Add New Webhook, or edit an existing one.
#[component]
fn WebhookForm(
    data: Data,
    /// The webhook being edited; `None` adds a new one.
    editing: Option<WebhookOut>,
    /// Called after a save, or on Cancel.
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let edit_id = editing.as_ref().map(|w| w.id.clone());
    let prefix = edit_id
        .as_deref()
        .map_or_else(|| "wh".to_owned(), |id| format!("wh-{id}"));
    let name = RwSignal::new(editing.as_ref().map(|w| w.name.clone()).unwrap_or_default());
    let url = RwSignal::new(editing.as_ref().map(|w| w.url.clone()).unwrap_or_default());
    // Every event the webhook listens to (a multi-select).
    let events = RwSignal::new(
        editing
            .as_ref()
            .map(|w| w.events.clone())
            .unwrap_or_default(),
    );
    // A new webhook starts on the catalog's first event.
    Effect::new(move |_| {
        if events.with_untracked(Vec::is_empty)
            && let Some(Ok(list)) = data.events.get()
            && let Some(first) = list.first()
        {
            events.set(vec![first.slug.clone()]);
        }
    });
    let errors = RwSignal::new(Vec::<(&'static str, String)>::new());
    let error_of = move |field: &'static str| {
        move || errors.with(|e| e.iter().find(|(f, _)| *f == field).map(|(_, m)| m.clone()))
    };
    let (saving, set_saving) = signal(false);
    let (making_bin, set_making_bin) = signal(false);
    let (new_bin, set_new_bin) = signal(None::<BinOut>);
    // A bin made by "Use a new bin" lives only if the webhook is saved with its URL: a Cancel
    // (or leaving the form any other way) deletes it, so no empty bin is left behind.
    let kept_bin = StoredValue::new(None::<String>);
    let drop_bin = move |bin: Option<BinOut>| {
        if let Some(bin) = bin
            && kept_bin.get_value().as_deref() != Some(bin.id.as_str())
        {
            spawn_local(async move {
                let _ = server::delete(&format!("/api/bins/{}", enc(&bin.id))).await;
            });
        }
    };
    on_cleanup(move || drop_bin(new_bin.try_get_untracked().flatten()));

    let use_new_bin = move |_| {
        set_making_bin.set(true);
        spawn_local(async move {
            match server::send::<_, BinOut>("POST", "/api/bins", &BinIn::default()).await {
                Ok(bin) => {
                    if new_bin.try_get_untracked().is_none() {
                        // The form is gone already: nobody will use this bin.
                        drop_bin(Some(bin));
                        return;
                    }
                    url.set(bin.url.clone());
                    errors.update(|e| e.retain(|(f, _)| *f != "url"));
                    // The previous new bin (clicked twice) is not needed either.
                    drop_bin(new_bin.get_untracked());
                    set_new_bin.set(Some(bin));
                }
                Err(e) => errors.update(|errs| errs.push(("url", e.message))),
            }
            let _ = set_making_bin.try_set(false);
        });
    };

    let id_name = format!("{prefix}-name");
    let id_url = format!("{prefix}-url");
    let id_event = format!("{prefix}-event");
    let field_ids = StoredValue::new([
        ("name", id_name.clone()),
        ("url", id_url.clone()),
        ("event", id_event.clone()),
    ]);
    // Shows the errors next to their fields, and takes the user to the first one.
    let show_errors = move |errs: Vec<(&'static str, String)>| {
        errors.set(errs);
        let first = field_ids.with_value(|ids| {
            ids.iter()
                .find(|(f, _)| errors.with_untracked(|e| e.iter().any(|(ef, _)| ef == f)))
                .map(|(_, id)| id.clone())
        });
        if let Some(id) = first {
            // After the error texts are in the DOM.
            request_animation_frame(move || focus_id(&id));
        }
    };

    let is_edit = edit_id.is_some();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked().trim().to_owned();
        let u = url.get_untracked().trim().to_owned();
        let e = events.get_untracked();
        let mut errs = Vec::new();
        if n.chars().count() < 2 {
            errs.push(("name", "Name must be at least 2 characters.".to_owned()));
        }
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
            errs.push(("url", "URL must start with http:// or https://.".to_owned()));
        }
        if e.is_empty() {
            errs.push(("event", "Choose at least one event to send.".to_owned()));
        }
        if !errs.is_empty() {
            show_errors(errs);
            return;
        }
        errors.set(Vec::new());
        set_saving.set(true);
        let edit_id = edit_id.clone();
        spawn_local(async move {
            let res = match &edit_id {
                None => {
                    let input = WebhookIn {
                        name: n,
                        url: u.clone(),
                        events: Some(e),
                        ..Default::default()
                    };
                    server::send::<_, WebhookOut>("POST", "/api/webhooks", &input).await
                }
                Some(id) => {
                    let patch = WebhookPatch {
                        name: Some(n),
                        url: Some(u.clone()),
                        events: Some(e),
                        ..Default::default()
                    };
                    let path = format!("/api/webhooks/{}", enc(id));
                    server::send::<_, WebhookOut>("PATCH", &path, &patch).await
                }
            };
            let _ = set_saving.try_set(false);
            match res {
                Ok(w) => {
                    if let Some(bin) = new_bin.try_get_untracked().flatten()
                        && bin.url == u
                    {
                        kept_bin.set_value(Some(bin.id));
                    }
                    data.highlight.set(Some(w.id.clone()));
                    data.reload_webhooks();
                    on_done();
                }
                Err(e) => show_errors(server_errors(&e)),
            }
        });
    };

    let preview = move || {
        let chosen = events.get();
        data.events.with(|e| match e {
            Some(Ok(list)) => Some(
                list.iter()
                    .filter(|e| chosen.contains(&e.slug))
                    .enumerate()
                    .map(|(i, ev)| {
                        let text = serde_json::to_string(&ev.example).unwrap_or_default();
                        view! {
                            <details class="event-preview" open=i == 0>
                                <summary>{ev.name.clone()}</summary>
                                <p class="muted"><Described text=ev.description.clone()/></p>
                                <JsonView text=text/>
                            </details>
                        }
                    })
                    .collect_view(),
            ),
            _ => None,
        })
    };
    let options = move || {
        data.events.with(|e| match e {
            Some(Ok(list)) => list
                .iter()
                .map(|ev| {
                    let slug = ev.slug.clone();
                    let selected = {
                        let slug = slug.clone();
                        move || events.with(|e| e.contains(&slug))
                    };
                    view! { <option value=slug prop:selected=selected>{ev.name.clone()}</option> }
                })
                .collect_view()
                .into_any(),
            Some(Err(err)) => view! { <option value="">{format!("Catalog unavailable: {}", err.message)}</option> }.into_any(),
            None => view! { <option value="">"Loading events…"</option> }.into_any(),
        })
    };
    let on_events = move |ev: leptos::ev::Event| {
        let Some(select) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
        else {
            return;
        };
        let chosen = select.selected_options();
        let picked = (0..chosen.length())
            .filter_map(|i| chosen.item(i))
            .filter_map(|o| o.get_attribute("value"))
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>();
        events.set(picked);
        errors.update(|e| e.retain(|(f, _)| *f != "event"));
    };
    let rows = move || {
        data.events
            .with(|e| match e {
                Some(Ok(list)) => list.len(),
                _ => 1,
            })
            .clamp(2, 8)
            .to_string()
    };

    view! {
        <form class="card webhook-form" on:submit=submit novalidate
            aria-label=if is_edit { "Edit webhook" } else { "Add New Webhook" }>
            <h2>{if is_edit { "Edit webhook" } else { "Add New Webhook" }}</h2>
            <div class="field">
                <label for=id_name.clone()>"Name"</label>
                <input id=id_name.clone() autocomplete="off" placeholder="Payments to CRM"
                    prop:value=name on:input=move |ev| name.set(event_target_value(&ev))
                    aria-invalid=move || error_of("name")().is_some().to_string()
                    aria-describedby=format!("{id_name}-error")/>
                <p id=format!("{id_name}-error") class="error field-error">{error_of("name")}</p>
            </div>
            <div class="field">
                <label for=id_url.clone()>"URL"</label>
                <div class="row">
                    <input id=id_url.clone() type="url" class="mono" autocomplete="off"
                        placeholder="https://example.com/webhooks" spellcheck="false"
                        prop:value=url on:input=move |ev| url.set(event_target_value(&ev))
                        aria-invalid=move || error_of("url")().is_some().to_string()
                        aria-describedby=format!("{id_url}-error {id_url}-hint")/>
                    <button type="button" on:click=use_new_bin disabled=making_bin>
                        {move || if making_bin.get() { "Creating bin…" } else { "Use a new bin" }}
                    </button>
                </div>
                <p id=format!("{id_url}-hint") class="muted">
                    {move || match new_bin.get() {
                        Some(bin) => view! {
                            "A new bin receives this webhook (kept only if you save): "
                            <a class="break" href=format!("/bins/{}", enc(&bin.id))>"open bin " {bin.id.clone()}</a>
                        }.into_any(),
                        None => view! { "The endpoint that receives the events. No endpoint yet? Use a new bin." }.into_any(),
                    }}
                </p>
                <p id=format!("{id_url}-error") class="error field-error">{error_of("url")}</p>
            </div>
            <div class="field">
                <label for=id_event.clone()>"Event"</label>
                <select id=id_event.clone() multiple size=rows on:change=on_events
                    aria-invalid=move || error_of("event")().is_some().to_string()
                    aria-describedby=format!("{id_event}-error {id_event}-hint")>
                    {options}
                </select>
                <p id=format!("{id_event}-hint") class="muted small">
                    {move || {
                        let n = events.with(Vec::len);
                        format!("{} selected. Ctrl-click (⌘-click) to pick several.", units::count(n as u64, "event", "events"))
                    }}
                </p>
                <p id=format!("{id_event}-error") class="error field-error">{error_of("event")}</p>
            </div>
            <div class="field">
                <span class="label">"Payload preview"</span>
                <div class="preview">{preview}</div>
            </div>
            <div class="row">
                <button type="submit" class="primary" disabled=saving aria-busy=move || saving.get().to_string()>
                    {move || match (saving.get(), is_edit) {
                        (true, _) => "Saving…",
                        (false, false) => "Add New Webhook",
                        (false, true) => "Save changes",
                    }}
                </button>
                <button type="button" on:click=move |_| on_done()>"Cancel"</button>
                <p class="error" role="alert">{error_of("form")}</p>
            </div>
        </form>
    }
}

/// An event's description, its `backticked` words shown as code.
#[component]
fn Described(text: String) -> impl IntoView {
    crate::units::backticks(&text)
        .into_iter()
        .map(|(code, part)| {
            if code {
                view! { <code>{part}</code> }.into_any()
            } else {
                part.into_any()
            }
        })
        .collect_view()
}

#[component]
fn WebhookCard(data: Data, id: String) -> impl IntoView {
    let webhook = {
        let id = id.clone();
        Memo::new(move |_| data.webhook(&id))
    };
    let (editing, set_editing) = signal(false);
    let (log_open, set_log_open) = signal(false);
    let (busy, set_busy) = signal(None::<&'static str>);
    let (confirm_delete, set_confirm_delete) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let dialog = NodeRef::<Dialog>::new();
    let (outcome, set_outcome) = signal(None::<Result<Sent, ApiError>>);
    let api_path = format!("/api/webhooks/{}", enc(&id));
    // Composing: the event to send and its payload, before sending (a webhook with several
    // events, or "Edit payload").
    let composing = RwSignal::new(false);
    let chosen = RwSignal::new(String::new());
    let payload = RwSignal::new(String::new());
    let example_of = move |slug: &str| {
        data.events.with(|e| match e {
            Some(Ok(list)) => list
                .iter()
                .find(|e| e.slug == slug)
                .map(|e| e.example.clone()),
            _ => None,
        })
    };
    // Edited: the text is not the catalog's example any more (as JSON, whitespace aside).
    let edited = move || {
        let slug = chosen.get();
        let text = payload.get();
        match (
            example_of(&slug),
            serde_json::from_str::<serde_json::Value>(&text),
        ) {
            (Some(example), Ok(v)) => v != example,
            _ => true,
        }
    };
    let pick = move |slug: String| {
        let text = example_of(&slug)
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_default();
        payload.set(text);
        chosen.set(slug);
    };
    let open_dialog = move || {
        if let Some(d) = dialog.get_untracked()
            && !d.open()
        {
            let _ = d.show_modal();
        }
    };
    let compose = move || {
        let first = webhook.with_untracked(|w| {
            w.as_ref()
                .and_then(|w| w.events.first().cloned())
                .unwrap_or_default()
        });
        if chosen.get_untracked().is_empty()
            || !webhook.with_untracked(|w| {
                w.as_ref()
                    .is_some_and(|w| w.events.contains(&chosen.get_untracked()))
            })
        {
            pick(first);
        }
        set_outcome.set(None);
        composing.set(true);
        open_dialog();
    };
    // Sends the chosen event: its catalog example through the test route (the true outcome,
    // at once), or an edited payload through emit (to every active webhook subscribed to it).
    let send_test = {
        let url = format!("{api_path}/test");
        move || {
            let slug = chosen.get_untracked();
            let url = if slug.is_empty() {
                url.clone()
            } else {
                format!("{url}?event={}", enc(&slug))
            };
            let custom = composing.get_untracked() && edited();
            let body = payload.get_untracked();
            composing.set(false);
            set_outcome.set(None);
            open_dialog();
            spawn_local(async move {
                let res = if custom {
                    // Sent as typed: key order, number spelling and escapes kept.
                    match serde_json::value::RawValue::from_string(body) {
                        Ok(v) => server::send::<_, EmitOut>(
                            "POST",
                            &format!("/api/events/{}/emit", enc(&slug)),
                            &EmitIn { payload: Some(v) },
                        )
                        .await
                        .map(Sent::Emitted),
                        Err(e) => Err(ApiError {
                            status: None,
                            code: "invalid_json".to_owned(),
                            message: format!("The payload is not JSON: {e}"),
                            fields: Vec::new(),
                        }),
                    }
                } else {
                    server::post_empty::<TestOutcome>(&url)
                        .await
                        .map(Sent::Tested)
                };
                let _ = set_outcome.try_set(Some(res));
                data.reload_webhooks();
            });
        }
    };
    let send_test_click = {
        let send_test = send_test.clone();
        move |_| {
            let several =
                webhook.with_untracked(|w| w.as_ref().is_some_and(|w| w.events.len() > 1));
            if several {
                compose();
            } else {
                chosen.set(String::new());
                send_test();
            }
        }
    };
    let payload_error = move || {
        serde_json::from_str::<serde_json::Value>(&payload.get())
            .err()
            .map(|e| format!("Not JSON: {e}"))
    };
    let bin_link = move || webhook.with(|w| w.as_ref().and_then(|w| data.bin_of(&w.url)));
    let toggle_active = {
        let url = api_path.clone();
        move |_| {
            let active = !webhook.with_untracked(|w| w.as_ref().is_some_and(|w| w.active));
            set_busy.set(Some(if active {
                "Enabling…"
            } else {
                "Disabling…"
            }));
            let url = url.clone();
            spawn_local(async move {
                let patch = WebhookPatch {
                    active: Some(active),
                    ..Default::default()
                };
                match server::send::<_, WebhookOut>("PATCH", &url, &patch).await {
                    Ok(_) => data.reload_webhooks(),
                    Err(e) => {
                        let _ = set_error.try_set(Some(e.message));
                    }
                }
                let _ = set_busy.try_set(None);
            });
        }
    };
    let delete = {
        let url = api_path.clone();
        move |_| {
            if !confirm_delete.get_untracked() {
                set_confirm_delete.set(true);
                return;
            }
            set_busy.set(Some("Deleting…"));
            let url = url.clone();
            spawn_local(async move {
                match server::delete(&url).await {
                    Ok(()) => data.reload_webhooks(),
                    Err(e) => {
                        let _ = set_error.try_set(Some(e.message));
                        let _ = set_busy.try_set(None);
                    }
                }
            });
        }
    };
    let close_dialog = move |_| {
        if let Some(d) = dialog.get_untracked() {
            d.close();
        }
    };
    // Rotate secret: asked first (with the grace period), then the card shows the new secret
    // and when the previous one stops signing.
    let confirm_rotate = RwSignal::new(false);
    let grace = RwSignal::new(DEFAULT_GRACE.to_owned());
    let rotated = RwSignal::new(false);
    let rotate = {
        let url = format!("{api_path}/secret/rotate");
        move |_| {
            set_busy.set(Some("Rotating…"));
            let url = url.clone();
            let input = RotateSecretIn {
                grace: Some(grace.get_untracked()),
                secret: None,
            };
            spawn_local(async move {
                match server::send::<_, WebhookOut>("POST", &url, &input).await {
                    Ok(_) => {
                        let _ = confirm_rotate.try_set(false);
                        let _ = rotated.try_set(true);
                        let _ = set_error.try_set(None);
                        data.reload_webhooks();
                    }
                    Err(e) => {
                        let _ = set_error.try_set(Some(e.message));
                    }
                }
                let _ = set_busy.try_set(None);
            });
        }
    };

    // Just saved: scroll to it and highlight it for a moment.
    let card_ref = NodeRef::<leptos::html::Article>::new();
    let highlighted = {
        let id = id.clone();
        Memo::new(move |_| data.highlight.with(|h| h.as_deref() == Some(id.as_str())))
    };
    Effect::new(move |_| {
        if highlighted.get()
            && let Some(el) = card_ref.get()
        {
            request_animation_frame(move || {
                el.scroll_into_view_with_bool(true);
                let _ = el.focus();
            });
            set_timeout(
                move || {
                    if data.highlight.get_untracked().is_some() {
                        data.highlight.set(None);
                    }
                },
                std::time::Duration::from_secs(4),
            );
        }
    });

    let heading_id = format!("wh-title-{id}");
    let dialog_title = format!("dlg-title-{id}");
    let labelled_by = heading_id.clone();
    let dialog_labelled_by = dialog_title.clone();
    let field = move |f: fn(&WebhookOut) -> String| {
        move || webhook.with(|w| w.as_ref().map(f).unwrap_or_default())
    };
    let events = move |w: &WebhookOut| {
        w.events
            .iter()
            .map(|slug| data.event_name(slug))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sent_event = move || {
        let slug = chosen.get();
        if slug.is_empty() {
            webhook.with(|w| {
                w.as_ref()
                    .and_then(|w| w.events.first())
                    .map(|s| data.event_name(s))
                    .unwrap_or_default()
            })
        } else {
            data.event_name(&slug)
        }
    };
    let event_options = move || {
        webhook.with(|w| {
            w.as_ref()
                .map(|w| {
                    w.events
                        .iter()
                        .map(|slug| {
                            let selected = {
                                let slug = slug.clone();
                                move || chosen.with(|c| *c == slug)
                            };
                            view! { <option value=slug.clone() prop:selected=selected>{data.event_name(slug)}</option> }
                        })
                        .collect_view()
                })
        })
    };
    let others = move || {
        let slug = chosen.get();
        let me = webhook.with(|w| w.as_ref().map(|w| w.id.clone()));
        data.webhooks.with(|w| match w {
            Some(Ok(list)) => list
                .iter()
                .filter(|w| w.active && w.events.contains(&slug) && Some(&w.id) != me.as_ref())
                .map(|w| w.name.clone())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    };
    let dialog_id = format!("dlg-{id}");
    let event_field = format!("{dialog_id}-event");
    let payload_field = format!("{dialog_id}-payload");
    let active = move || webhook.with(|w| w.as_ref().is_some_and(|w| w.active));
    let facts = move || {
        webhook.get().map(|w| {
            let last_failure = w.last_failure.clone().map(|f| {
                view! {
                    <span class="error-text">{f.reason}</span>
                    " (" <Ago at=f.at/> ")"
                }
                .into_any()
            });
            view! {
                <dt>"URL"</dt><dd class="mono break">{w.url.clone()}</dd>
                <dt>"Event"</dt><dd>{events(&w)}</dd>
                <dt>"Events sent"</dt><dd>{w.event_count}</dd>
                <dt>"Signing secret"</dt>
                <dd>
                    <SecretView secret=w.secret.clone()/>
                    <button type="button" class="small" on:click=move |_| confirm_rotate.update(|c| *c = !*c)
                        aria-expanded=move || confirm_rotate.get().to_string()>"Rotate secret"</button>
                    {w.previous_secret_expires_at.clone().map(|until| view! {
                        <p class="small muted previous-secret">
                            "The previous secret also signs every delivery; it expires " <Ago at=until/> "."
                        </p>
                    })}
                </dd>
                <dt>"Last failure"</dt>
                <dd>{last_failure.unwrap_or_else(|| view! { <span class="muted">"Never"</span> }.into_any())}</dd>
                {w.disabled_reason.clone().map(|why| view! {
                    <dt>"Disabled"</dt><dd class="error-text">{why}</dd>
                })}
            }
        })
    };
    let log_id = id.clone();
    let id_for_emit = id.clone();
    // "Send again" repeats what was sent: the same event, the same (edited) payload.
    let send_test_again = {
        let send_test = send_test.clone();
        move || {
            if matches!(outcome.get_untracked(), Some(Ok(Sent::Emitted(_)))) {
                composing.set(true);
            }
            send_test();
        }
    };

    view! {
        <article class="card webhook" class:highlight=highlighted aria-labelledby=labelled_by
            node_ref=card_ref tabindex="-1" data-highlighted=move || highlighted.get().to_string()>
            <div class="webhook-head">
                <h3 id=heading_id>{field(|w| w.name.clone())}</h3>
                {move || if active() {
                    view! { <span class="badge ok">"Active"</span> }.into_any()
                } else {
                    view! { <span class="badge off">"Inactive"</span> }.into_any()
                }}
            </div>
            <dl class="webhook-facts">{facts}</dl>
            {move || confirm_rotate.get().then(|| view! {
                <div class="confirm" role="group" aria-label="Rotate the signing secret">
                    <p>"A new secret will sign every delivery. The current one keeps signing beside it for "
                        <select aria-label="Grace period" on:change=move |ev| grace.set(event_target_value(&ev))>
                            {GRACE_CHOICES.iter().map(|&(value, label)| view! {
                                <option value=value prop:selected=move || grace.with(|g| g == value)>{label}</option>
                            }).collect_view()}
                        </select>
                        ", so receivers can switch without missing a message."</p>
                    <div class="row">
                        <button type="button" class="primary" on:click=rotate.clone()
                            disabled=move || busy.get().is_some()>"Rotate"</button>
                        <button type="button" on:click=move |_| confirm_rotate.set(false)>"Cancel"</button>
                    </div>
                </div>
            })}
            {move || (rotated.get() && !confirm_rotate.get()).then(|| view! {
                <p class="small" role="status">"Secret rotated: give the new secret to the receiver."</p>
            })}
            {move || bin_link().map(|bin| view! {
                <p class="small"><a href=format!("/bins/{}", enc(&bin))>"View in bin"</a>
                    <span class="muted">" (this URL is a bin of this server)"</span></p>
            })}
            <div class="actions">
                <button type="button" class="primary" on:click=send_test_click>"Send Test Event"</button>
                <button type="button" on:click=move |_| set_editing.update(|e| *e = !*e)
                    aria-expanded=move || editing.get().to_string()>"Edit"</button>
                <button type="button" on:click=toggle_active disabled=move || busy.get().is_some()>
                    {move || busy.get().unwrap_or(if active() { "Disable" } else { "Enable" })}
                </button>
                <button type="button" on:click=move |_| set_log_open.update(|o| *o = !*o)
                    aria-expanded=move || log_open.get().to_string()>"Delivery log"</button>
                <button type="button" class="danger" on:click=delete disabled=move || busy.get().is_some()>
                    {move || if confirm_delete.get() { "Confirm delete" } else { "Delete" }}
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || editing.get().then(|| view! {
                <WebhookForm data=data editing=webhook.get_untracked() on_done=move || set_editing.set(false)/>
            })}
            {move || log_open.get().then(|| view! { <DeliveryLogView data=data webhook_id=log_id.clone()/> })}
        </article>
        <dialog node_ref=dialog class="outcome" aria-labelledby=dialog_labelled_by>
            <h2 id=dialog_title>"Send Test Event"</h2>
            <p class="muted">
                {sent_event} " → " <span class="mono break">{field(|w| w.url.clone())}</span>
            </p>
            {move || if composing.get() {
                let send_test = send_test.clone();
                view! {
                    <form class="compose" aria-label="Event to send" on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        if payload_error().is_none() {
                            send_test();
                        }
                    }>
                        <div class="field">
                            <label for=event_field.clone()>"Event"</label>
                            <select id=event_field.clone() on:change=move |ev| pick(event_target_value(&ev))>
                                {event_options}
                            </select>
                        </div>
                        <div class="field">
                            <label for=payload_field.clone()>"Payload"</label>
                            <textarea id=payload_field.clone() class="mono payload" rows="10" spellcheck="false"
                                prop:value=payload on:input=move |ev| payload.set(event_target_value(&ev))
                                aria-invalid=move || payload_error().is_some().to_string()></textarea>
                            <p class="error field-error">{payload_error}</p>
                            <p class="muted small">
                                {move || if edited() {
                                    let others = others();
                                    if others.is_empty() {
                                        "Edited: sent with emit (as a real event, through the queue); the outcome shows in the delivery log.".to_owned()
                                    } else {
                                        format!("Edited: sent with emit, as a real event, so it also goes to {} (every active webhook subscribed to it); the outcome shows in the delivery log.", others.join(", "))
                                    }
                                } else {
                                    "The event's example payload, sent as a test: you see the outcome at once. Edit it to send your own.".to_owned()
                                }}
                            </p>
                        </div>
                        <div class="row">
                            <button type="submit" class="primary" disabled=move || payload_error().is_some()>
                                {move || if edited() { "Send edited payload" } else { "Send test event" }}
                            </button>
                        </div>
                    </form>
                }.into_any()
            } else {
                match outcome.get() {
                    None => view! { <p class="sending" role="status">"Sending…"</p> }.into_any(),
                    Some(Err(e)) => view! {
                        <div class="result bad" role="alert">
                            <p class="verdict">"Could not send the test event"</p>
                            <p>{e.message}</p>
                        </div>
                    }.into_any(),
                    Some(Ok(Sent::Tested(o))) => {
                        let link = bin_link().map(|b| format!("/bins/{}?message={}", enc(&b), enc(&o.message_id)));
                        view! { <OutcomeView o=o bin_link=link/> }.into_any()
                    }
                    Some(Ok(Sent::Emitted(out))) => {
                        let mine = out.messages.iter().find(|m| m.webhook_id == id_for_emit).map(|m| m.message_id.clone());
                        let link = bin_link().zip(mine.clone()).map(|(b, m)| format!("/bins/{}?message={}", enc(&b), enc(&m)));
                        view! {
                            <div class="result ok" role="status">
                                <p class="verdict">{format!("Queued: {} for this event.", units::count(out.messages.len() as u64, "message", "messages"))}</p>
                                {mine.map(|m| view! { <p class="muted small">"This webhook's message " <span class="mono">{m}</span>": follow it in the delivery log."</p> })}
                                {link.map(|l| view! { <p><a href=l>"View in bin"</a></p> })}
                            </div>
                        }.into_any()
                    }
                }
            }}
            <div class="row">
                <button type="button" on:click=move |_| compose()
                    disabled=move || composing.get() || outcome.get().is_none()>"Edit payload"</button>
                <button type="button" on:click=move |_| send_test_again()
                    disabled=move || composing.get() || outcome.get().is_none()>"Send again"</button>
                <button type="button" class="primary" on:click=close_dialog>"Close"</button>
            </div>
        </dialog>
    }
}

/// The grace period a rotation offers first: the server's default, a day.
const DEFAULT_GRACE: &str = "24h";

/// What the rotation's confirm offers (at most the server's 7 days).
static GRACE_CHOICES: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("0", "no time (it stops now)"),
];

/// The webhook's signing secret: hidden until asked for, copyable either way. The receiver
/// verifies the `webhook-signature` header with it (Standard Webhooks).
#[component]
fn SecretView(secret: String) -> impl IntoView {
    let (shown, set_shown) = signal(false);
    let masked = {
        let prefix = secret.split_once('_').map_or("", |(p, _)| p);
        if prefix.is_empty() {
            "••••••••••••".to_owned()
        } else {
            format!("{prefix}_••••••••••••")
        }
    };
    let text = {
        let secret = secret.clone();
        move || {
            if shown.get() {
                secret.clone()
            } else {
                masked.clone()
            }
        }
    };
    let copy = Signal::derive(move || secret.clone());
    view! {
        <span class="secret">
            <span class="mono break secret-value" aria-label="Signing secret">{text}</span>
            <button type="button" class="small" on:click=move |_| set_shown.update(|s| *s = !*s)
                aria-pressed=move || shown.get().to_string()>
                {move || if shown.get() { "Hide" } else { "Show" }}
            </button>
            <CopyButton text=copy label="Copy" aria_label="Copy the signing secret"/>
        </span>
    }
}

/// What a send from the dialog gave: a test's outcome, or the messages an emit queued.
#[derive(Clone)]
enum Sent {
    Tested(TestOutcome),
    Emitted(EmitOut),
}

/// The true outcome of a test send: delivered only on a 2xx, with the status, the duration and
/// the answer; otherwise the error.
#[component]
fn OutcomeView(
    o: TestOutcome,
    /// The bin that received it, with the request selected, when the URL is a bin of this server.
    bin_link: Option<String>,
) -> impl IntoView {
    let status = o.status.map(|s| format!("HTTP {s}"));
    let summary = match (&status, o.delivered) {
        (Some(s), _) => format!("{s} in {}", units::millis(o.duration_ms)),
        (None, _) => format!("No answer after {}", units::millis(o.duration_ms)),
    };
    let response = o.response_body.clone().filter(|b| !b.is_empty());
    let class = if o.delivered {
        "result ok"
    } else {
        "result bad"
    };
    view! {
        <div class=class role="status">
            <p class="verdict">
                {if o.delivered { "Success: the test event was delivered." } else { "Failed: the test event was not delivered." }}
            </p>
            <p class="status-line">{summary}</p>
            {o.error.map(|e| view! { <p class="error-text"><strong>"Error: "</strong>{e}</p> })}
            {response.map(|r| view! {
                <p class="label">"Response"</p>
                <pre class="code mono response">{r}</pre>
            })}
            <p class="muted small">"Message id " <span class="mono message-id">{o.message_id}</span></p>
            {bin_link.map(|l| view! { <p><a href=l>"View in bin"</a></p> })}
        </div>
    }
}

/// A webhook's attempts and messages, newest first, with Resend; reloaded live whenever the
/// server reports a change.
///
/// The rows are keyed (attempts by id, messages by id and what they show), so a reload adds the
/// new rows and leaves the others as they are: an open Details stays open while attempts arrive.
#[component]
fn DeliveryLogView(data: Data, webhook_id: String) -> impl IntoView {
    // The last log loaded; a failed reload keeps it and says why beside it.
    let log = RwSignal::new(None::<DeliveryLog>);
    let load_error = RwSignal::new(None::<String>);
    // Attempts that arrived after the log was first shown (highlighted as new).
    let fresh = RwSignal::new(HashSet::<String>::new());
    // Attempts whose Details are open: kept here, so even a re-rendered row opens as it was.
    let open = RwSignal::new(HashSet::<String>::new());
    // Resend state lives here, not in the rows.
    let resend = Resend {
        in_flight: RwSignal::new(None),
        note: RwSignal::new(None),
    };
    let url = format!("/api/webhooks/{}/deliveries", enc(&webhook_id));
    let load = move || {
        let url = url.clone();
        spawn_local(async move {
            match server::get::<DeliveryLog>(&url).await {
                Ok(l) => {
                    let Some(known) = log.try_with_untracked(|old| {
                        old.as_ref().map(|o| {
                            o.attempts
                                .iter()
                                .map(|a| a.id.clone())
                                .collect::<HashSet<_>>()
                        })
                    }) else {
                        return; // the log was closed meanwhile
                    };
                    if let Some(known) = known {
                        let new: Vec<String> = l
                            .attempts
                            .iter()
                            .filter(|a| !known.contains(&a.id))
                            .map(|a| a.id.clone())
                            .collect();
                        if !new.is_empty() {
                            fresh.update(|f| f.extend(new));
                        }
                    }
                    load_error.set(None);
                    log.set(Some(l));
                }
                Err(e) => {
                    let _ = load_error.try_set(Some(e.message));
                }
            }
        });
    };
    let reload = StoredValue::new_local(load);
    // Runs once now, then on every change the server reports.
    Effect::new(move |_| {
        data.changes.track();
        reload.with_value(|r| r());
    });
    let attempts = Memo::new(move |_| {
        log.with(|l| l.as_ref().map(|l| l.attempts.clone()).unwrap_or_default())
    });
    let messages = Memo::new(move |_| {
        log.with(|l| l.as_ref().map(|l| l.messages.clone()).unwrap_or_default())
    });
    let status = move || {
        log.with(|l| match l {
            None if load_error.with(Option::is_none) => {
                Some(view! { <p class="muted">"Loading…"</p> }.into_any())
            }
            Some(l) if l.messages.is_empty() && l.attempts.is_empty() => {
                Some(view! { <p class="muted">"Nothing sent yet."</p> }.into_any())
            }
            Some(l) if l.evicted_attempts + l.evicted_messages > 0 => Some(
                view! {
                    <p class="muted">
                        {format!(
                            "Older entries dropped from the log: {}, {}.",
                            units::count(l.evicted_attempts, "attempt", "attempts"),
                            units::count(l.evicted_messages, "message", "messages"),
                        )}
                    </p>
                }
                .into_any(),
            ),
            _ => None,
        })
    };
    let has_rows = move || {
        log.with(|l| {
            l.as_ref()
                .is_some_and(|l| !l.attempts.is_empty() || !l.messages.is_empty())
        })
    };
    view! {
        <section class="delivery-log" aria-label="Delivery log">
            <h4>"Delivery log"</h4>
            {move || resend.note.get().map(|n| view! { <p class="muted" role="status">{n}</p> })}
            {move || load_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {status}
            <div class="log-tables" hidden=move || !has_rows()>
                <h5>"Messages"</h5>
                <div class="table-wrap">
                    <table class="log" aria-label="Messages">
                        <thead><tr><th>"Created"</th><th>"Event"</th><th>"State"</th><th class="num">"Attempts"</th><th>"Next retry"</th><th>"Error"</th><th></th></tr></thead>
                        <tbody>
                            // Keyed by what the row shows: a message whose state changed is drawn anew.
                            <For each=move || messages.get() key=message_key let:m>
                                <MessageRow data=data m=m resend=resend/>
                            </For>
                        </tbody>
                    </table>
                </div>
                <h5>"Attempts"</h5>
                <div class="table-wrap">
                    <table class="log" aria-label="Attempts">
                        <thead><tr><th>"Started"</th><th>"Event"</th><th class="num">"#"</th><th>"Trigger"</th><th>"Status"</th><th class="num">"Duration"</th><th>"Error / response"</th><th>"Next retry"</th><th></th></tr></thead>
                        <tbody>
                            // Keyed by id: an attempt never changes once logged.
                            <For each=move || attempts.get() key=|a| a.id.clone() let:a>
                                <AttemptRow data=data a=a open=open fresh=fresh/>
                            </For>
                        </tbody>
                    </table>
                </div>
            </div>
        </section>
    }
}

/// A message row's key: its id and everything the row shows that can change.
fn message_key(m: &MessageOut) -> String {
    format!(
        "{}|{:?}|{}|{}|{}",
        m.id,
        m.state,
        m.attempts,
        m.next_attempt_at.as_deref().unwrap_or(""),
        m.error.as_deref().unwrap_or("")
    )
}

/// Which message is being resent, and what the last resend said.
#[derive(Clone, Copy)]
struct Resend {
    in_flight: RwSignal<Option<String>>,
    note: RwSignal<Option<String>>,
}

fn state_label(s: MessageState) -> (&'static str, &'static str) {
    match s {
        MessageState::Pending => ("pending", "badge"),
        MessageState::Scheduled => ("retrying", "badge warn"),
        MessageState::Delivered => ("delivered", "badge ok"),
        MessageState::Failed => ("failed", "badge bad"),
    }
}

/// One message, with Resend. The server resends a finished message (delivered or failed); one
/// still being tried or waiting for its retry shows the button disabled, and says why. One
/// waiting for its next attempt also has **Retry now** (that attempt, at once).
#[component]
fn MessageRow(data: Data, m: MessageOut, resend: Resend) -> impl IntoView {
    let id = m.id.clone();
    let retry_now = {
        let url = format!(
            "/api/webhooks/{}/messages/{}/retry",
            enc(&m.webhook_id),
            enc(&id)
        );
        let id = id.clone();
        move |_| {
            let url = url.clone();
            resend.in_flight.set(Some(id.clone()));
            spawn_local(async move {
                let note = match server::post_empty::<MessageRef>(&url).await {
                    Ok(r) => format!(
                        "Retrying {} now: the attempt shows below as it is made.",
                        r.message_id
                    ),
                    Err(e) => e.message,
                };
                let _ = resend.note.try_set(Some(note));
                let _ = resend.in_flight.try_set(None);
                data.reload_webhooks();
            });
        }
    };
    let waiting = m.state == MessageState::Scheduled;
    let busy = {
        let id = id.clone();
        move || resend.in_flight.with(|f| f.as_deref() == Some(id.as_str()))
    };
    let click = move |_| {
        let id = id.clone();
        resend.in_flight.set(Some(id.clone()));
        let url = format!("/api/deliveries/{}/resend", enc(&id));
        spawn_local(async move {
            let note = match server::post_empty::<MessageRef>(&url).await {
                Ok(r) => format!(
                    "Queued as {}: the new attempt shows below as it is made.",
                    r.message_id
                ),
                Err(e) => e.message,
            };
            let _ = resend.note.try_set(Some(note));
            let _ = resend.in_flight.try_set(None);
            // The log reloads when the server reports the change (the message is pending
            // again, then its attempt is logged).
            data.reload_webhooks();
        });
    };
    let (label, class) = state_label(m.state);
    let finished = matches!(m.state, MessageState::Failed | MessageState::Delivered);
    let why = (!finished)
        .then_some("Still being delivered: it can be resent once it is delivered or has failed.");
    view! {
        <tr>
            <td><Ago at=m.created_at.clone()/></td>
            <td>{data.event_name(&m.event)}</td>
            <td><span class=class>{label}</span></td>
            <td class="num">{m.attempts}</td>
            <td>{m.next_attempt_at.clone().map(|at| view! { <Ago at=at/> })}</td>
            <td class="error-text">{m.error.clone().unwrap_or_default()}</td>
            <td><span class="row">
                {waiting.then(|| view! {
                    <button type="button" class="small primary" on:click=retry_now
                        title="Make the next attempt now instead of waiting for it"
                        disabled={let busy = busy.clone(); move || busy()}>"Retry now"</button>
                })}
                <button type="button" class="small" on:click=click title=why
                    disabled={let busy = busy.clone(); move || !finished || busy()}>
                    {let busy = busy.clone(); move || if busy() { "Resending…" } else { "Resend" }}
                </button>
            </span></td>
        </tr>
    }
}

/// An attempt sent this long after it was due is marked late (after a restart, or a queue
/// that was too busy).
const LATE_AFTER_MS: f64 = 5_000.0;

/// One attempt, and its Details (the request that went out and the answer) when opened.
#[component]
fn AttemptRow(
    data: Data,
    a: AttemptOut,
    /// Attempts whose Details are open.
    open: RwSignal<HashSet<String>>,
    /// Attempts that arrived while the log was open.
    fresh: RwSignal<HashSet<String>>,
) -> impl IntoView {
    let status = match (a.status, a.delivered) {
        (Some(s), true) => view! { <span class="badge ok">{s}</span> }.into_any(),
        (Some(s), false) => view! { <span class="badge bad">{s}</span> }.into_any(),
        (None, _) => view! { <span class="badge bad">"no answer"</span> }.into_any(),
    };
    let detail = a
        .error
        .clone()
        .or_else(|| {
            a.response_body
                .as_deref()
                .map(|b| b.chars().take(120).collect())
        })
        .unwrap_or_default();
    let trigger = match a.trigger {
        api::AttemptTrigger::Scheduled => "scheduled",
        api::AttemptTrigger::Resend => "resend",
        api::AttemptTrigger::Test => "test",
    };
    let late = lateness(&a);
    let id = a.id.clone();
    let is_open = {
        let id = id.clone();
        move || open.with(|o| o.contains(&id))
    };
    let is_fresh = {
        let id = id.clone();
        move || fresh.with(|f| f.contains(&id))
    };
    let toggle = {
        let id = id.clone();
        move |_| {
            open.update(|o| {
                if !o.remove(&id) {
                    o.insert(id.clone());
                }
            });
        }
    };
    let details_id = format!("attempt-{id}");
    let label = format!("Attempt {} details", a.attempt);
    let shown = {
        let is_open = is_open.clone();
        let a = a.clone();
        move || {
            is_open().then(|| {
                view! {
                    <tr class="attempt-detail-row">
                        <td colspan="9" class="attempt-detail-cell">
                            <AttemptDetails a=a.clone() id=details_id.clone() label=label.clone()/>
                        </td>
                    </tr>
                }
            })
        }
    };
    let controls = format!("attempt-{id}");
    view! {
        <tr class="attempt" class:new=is_fresh data-attempt=id.clone()>
            <td>
                <Ago at=a.started_at.clone()/>
                {late.clone().map(|(badge, why)| view! {
                    " " <span class="badge warn late" title=why.clone() aria-label=why tabindex="0">{badge}</span>
                })}
            </td>
            <td>{data.event_name(&a.event)}</td>
            <td class="num">{a.attempt}</td>
            <td>{trigger}</td>
            <td>{status}</td>
            <td class="num">{units::millis(a.duration_ms)}</td>
            <td class="mono break small">{detail}</td>
            <td>{a.next_attempt_at.clone().map(|at| view! { <Ago at=at/> })}</td>
            <td>
                <button type="button" class="small" on:click=toggle aria-controls=controls
                    aria-expanded={let is_open = is_open.clone(); move || is_open().to_string()}>
                    "Details"
                </button>
            </td>
        </tr>
        {shown}
    }
}

/// "late by 2 min", with the exact due and sent times, when an attempt went out well after it
/// was due (a retry's scheduled time; first tries and resends have none).
fn lateness(a: &AttemptOut) -> Option<(String, String)> {
    let due = a.scheduled_at.as_deref()?;
    let late = units::late(
        js_sys::Date::parse(due),
        js_sys::Date::parse(&a.started_at),
        LATE_AFTER_MS,
    )?;
    Some((
        late.clone(),
        format!(
            "Due {}, sent {} ({late}: the server was down or busy)",
            exact(due),
            exact(&a.started_at)
        ),
    ))
}

/// What went out and what came back, as text: captured content is never rendered as HTML.
#[component]
fn AttemptDetails(a: AttemptOut, id: String, label: String) -> impl IntoView {
    let late = lateness(&a);
    let request_headers = a
        .request_headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect::<Vec<_>>();
    let response_headers = a
        .response_headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect::<Vec<_>>();
    let request_note = a.request_body_truncated.then(|| {
        format!(
            "Truncated: the body sent was {}; the log keeps its first {}.",
            units::size(a.request_body_size),
            units::size(LOGGED_BODY_BYTES)
        )
    });
    let response_note = a.response_body_truncated.then(|| {
        format!(
            "Truncated: the answer's body was longer than {}; the log keeps its first {}.",
            units::size(LOGGED_BODY_BYTES),
            units::size(LOGGED_BODY_BYTES)
        )
    });
    let answer = match a.status {
        Some(s) => format!("HTTP {s} in {}", units::millis(a.duration_ms)),
        None => format!("No answer after {}", units::millis(a.duration_ms)),
    };
    let answered = a.status.is_some();
    view! {
        <div class="attempt-details" id=id role="region" aria-label=label>
            <div class="attempt-side">
                <h6>"Request"</h6>
                <dl class="overview">
                    <dt>"URL"</dt>
                    <dd class="mono break">"POST " {a.url.clone()}</dd>
                    {a.scheduled_at.clone().map(|due| view! {
                        <dt>"Due"</dt>
                        <dd><Ago at=due.clone()/> " · " <span class="muted">{exact(&due)}</span></dd>
                    })}
                    <dt>"Sent"</dt>
                    <dd>
                        <Ago at=a.started_at.clone()/> " · " <span class="muted">{exact(&a.started_at)}</span>
                        {late.map(|(badge, why)| view! { " " <span class="badge warn late" title=why>{badge}</span> })}
                    </dd>
                    <dt>"Body size"</dt>
                    <dd>{units::size(a.request_body_size)}</dd>
                </dl>
                <p class="label">"Headers"</p>
                <KeyValueTable rows=request_headers label="Request headers"/>
                <p class="label">"Body"</p>
                <LoggedBody body=a.request_body.clone() note=request_note label="Request body"/>
            </div>
            <div class="attempt-side">
                <h6>"Response"</h6>
                <p class="status-line">{answer}</p>
                {a.error.clone().map(|e| view! { <p class="error-text"><strong>"Error: "</strong>{e}</p> })}
                {answered.then(|| view! {
                    <p class="label">"Headers"</p>
                    <KeyValueTable rows=response_headers label="Response headers"/>
                    <p class="label">"Body"</p>
                    <LoggedBody body=a.response_body.clone() note=response_note label="Response body"/>
                })}
            </div>
        </div>
    }
}

/// How much of each body an attempt keeps (the API's bound).
const LOGGED_BODY_BYTES: u64 = 64 * 1024;

/// A logged body: pretty JSON when it is whole JSON, else the text as is.
#[component]
fn LoggedBody(body: Option<String>, note: Option<String>, label: &'static str) -> impl IntoView {
    let body = body.unwrap_or_default();
    let note = note.map(|n| view! { <p class="banner warn truncated" role="note">{n}</p> });
    if body.is_empty() {
        return view! { {note}<p class="muted">"Empty body."</p> }.into_any();
    }
    let json = serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok();
    view! {
        {note}
        <div class="logged-body" role="group" aria-label=label>
            {if json {
                view! { <JsonView text=body/> }.into_any()
            } else {
                view! { <pre class="code mono raw">{body}</pre> }.into_any()
            }}
        </div>
    }
    .into_any()
}

/// Every event of the catalog with its description and example payload, as the seed's page
/// lists them at the bottom.
#[component]
fn EventCatalog(data: Data) -> impl IntoView {
    view! {
        <section class="catalog" aria-labelledby="catalog-title">
            <h2 id="catalog-title">"Events"</h2>
            <p class="muted">"Every event a webhook can subscribe to, with the payload it sends."</p>
            {move || match data.events.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) => list
                    .into_iter()
                    .map(|ev| {
                        let text = serde_json::to_string(&ev.example).unwrap_or_default();
                        let anchor = format!("event-{}", ev.slug);
                        view! {
                            <article class="event card" id=anchor>
                                <h3>{ev.name}" "<code class="slug">{ev.slug}</code></h3>
                                <p><Described text=ev.description/></p>
                                <details>
                                    <summary>"Example payload"</summary>
                                    <JsonView text=text/>
                                </details>
                            </article>
                        }
                    })
                    .collect_view()
                    .into_any(),
            }}
        </section>
    }
}
