//! One webhook's card: its facts, the signing secret (Show, Copy, Rotate secret), Send Test Event with its dialog and outcome, edit, enable/disable, delete.

use super::*;

#[component]
pub(super) fn WebhookCard(data: Data, id: String) -> impl IntoView {
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
    // The chosen event's example payload, re-indented.
    let example_of = move |slug: &str| {
        data.events.with(|e| match e {
            Some(Ok(list)) => list
                .iter()
                .find(|e| e.slug == slug)
                .map(|e| body::pretty_json_text(e.example.text())),
            _ => None,
        })
    };
    // Edited: the text is not the catalog's example any more (whitespace aside).
    let edited = move || {
        let slug = chosen.get();
        payload.with(|text| match example_of(&slug) {
            Some(example) => {
                body::json_error(text).is_some() || body::pretty_json_text(text) != example
            }
            None => true,
        })
    };
    let pick = move |slug: String| {
        payload.set(example_of(&slug).unwrap_or_default());
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
        payload
            .with(|p| body::json_error(p))
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
                    <button type="button" class="small rotate-secret" on:click=move |_| confirm_rotate.update(|c| *c = !*c)
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
pub(super) const DEFAULT_GRACE: &str = "24h";

/// What the rotation's confirm offers (at most the server's 7 days).
pub(super) static GRACE_CHOICES: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("0", "no time (it stops now)"),
];

/// The webhook's signing secret: hidden until asked for, copyable either way. The receiver
/// verifies the `webhook-signature` header with it (Standard Webhooks).
#[component]
pub(super) fn SecretView(secret: String) -> impl IntoView {
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
pub(super) enum Sent {
    Tested(TestOutcome),
    Emitted(EmitOut),
}

/// The true outcome of a test send: delivered only on a 2xx, with the status, the duration and
/// the answer; otherwise the error.
#[component]
pub(super) fn OutcomeView(
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
