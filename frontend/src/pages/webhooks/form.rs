//! The Add New Webhook form (also the edit form): Name, URL (or Use a new bin), Event, the payload preview, and the server's field errors next to their fields.

use super::*;

/// Where a server error belongs in the form: the API names the field first (`url: ...`).
pub(super) fn error_field(e: &ApiError) -> &'static str {
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
pub(super) fn server_errors(e: &ApiError) -> Vec<(&'static str, String)> {
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
pub(super) fn focus_id(id: &str) {
    if let Some(el) = document().get_element_by_id(id) {
        el.scroll_into_view_with_bool(false);
        if let Ok(el) = el.dyn_into::<web_sys::HtmlElement>() {
            let _ = el.focus();
        }
    }
}

/// Add New Webhook, or edit an existing one.
#[component]
pub(super) fn WebhookForm(
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
                        let text = ev.example.text().to_owned();
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
