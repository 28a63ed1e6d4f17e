//! The bin's settings under the list: custom response, checks (schema, signature), export, clear, delete.

use super::*;

/// The bin's settings: its custom response, clear, delete.
#[component]
pub(super) fn BinSettings(state: BinState) -> impl IntoView {
    let location = use_location();
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
        spawn_local(async move {
            match server::delete(&url).await {
                Ok(()) => location.navigate("/", false),
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
pub(super) fn ChecksPanel(state: BinState, bin: BinOut) -> impl IntoView {
    let schema = RwSignal::new(
        bin.schema
            .as_ref()
            .map(|s| body::pretty_json_text(s.text()))
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
            match serde_json::value::RawValue::from_string(text) {
                Ok(v) => Some(Json(v)),
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
pub(super) fn parse_header_lines(text: &str) -> Result<Vec<Header>, String> {
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
pub(super) fn ResponseEditor(state: BinState, bin: BinOut) -> impl IntoView {
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
