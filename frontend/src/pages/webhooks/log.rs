//! A webhook's Delivery log: messages (Retry now, Resend) and attempts, each with the request sent and the answer.

use super::*;

/// A webhook's attempts and messages, newest first, with Resend; reloaded live whenever the
/// server reports a change.
///
/// The rows are keyed (attempts by id, messages by id and what they show), so a reload adds the
/// new rows and leaves the others as they are: an open Details stays open while attempts arrive.
#[component]
pub(super) fn DeliveryLogView(data: Data, webhook_id: String) -> impl IntoView {
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
                            <KeyedRows keys=Signal::derive(move || messages.with(|ms| ms.iter().map(message_key).collect()))
                                row=Callback::new(move |key: String| {
                                    let m = messages.with_untracked(|ms| ms.iter().find(|m| message_key(m) == key).cloned());
                                    m.map(|m| view! { <MessageRow data=data m=m resend=resend/> }).into_any()
                                })/>
                        </tbody>
                    </table>
                </div>
                <h5>"Attempts"</h5>
                <div class="table-wrap">
                    <table class="log" aria-label="Attempts">
                        <thead><tr><th>"Started"</th><th>"Event"</th><th class="num">"#"</th><th>"Trigger"</th><th>"Status"</th><th class="num">"Duration"</th><th>"Error / response"</th><th>"Next retry"</th><th></th></tr></thead>
                        <tbody>
                            // Keyed by id: an attempt never changes once logged.
                            <KeyedRows keys=Signal::derive(move || attempts.with(|all| all.iter().map(|a| a.id.clone()).collect()))
                                row=Callback::new(move |id: String| {
                                    let a = attempts.with_untracked(|all| all.iter().find(|a| a.id == id).cloned());
                                    a.map(|a| view! { <AttemptRow data=data a=a open=open fresh=fresh/> }).into_any()
                                })/>
                        </tbody>
                    </table>
                </div>
            </div>
        </section>
    }
}

/// A message row's key: its id and everything the row shows that can change.
pub(super) fn message_key(m: &MessageOut) -> String {
    format!(
        "{}|{:?}|{}|{}|{}",
        m.id,
        m.state,
        m.attempts,
        m.next_attempt_at.as_deref().unwrap_or(""),
        m.error.as_deref().unwrap_or("")
    )
}

/// Marks a Retry now in [`Resend::in_flight`] (before the message id), apart from a resend.
const RETRYING: &str = "retry:";

/// Which message is being resent (or retried), and what the last resend said.
#[derive(Clone, Copy)]
pub(super) struct Resend {
    pub(super) in_flight: RwSignal<Option<String>>,
    pub(super) note: RwSignal<Option<String>>,
}

pub(super) fn state_label(s: MessageState) -> (&'static str, &'static str) {
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
pub(super) fn MessageRow(data: Data, m: MessageOut, resend: Resend) -> impl IntoView {
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
            resend.in_flight.set(Some(format!("{RETRYING}{id}")));
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
        move || {
            resend.in_flight.with(|f| {
                f.as_deref()
                    .is_some_and(|f| f.strip_prefix(RETRYING).unwrap_or(f) == id)
            })
        }
    };
    let retrying = {
        let key = format!("{RETRYING}{id}");
        move || {
            resend
                .in_flight
                .with(|f| f.as_deref() == Some(key.as_str()))
        }
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
                        disabled={let busy = busy.clone(); move || busy()}>
                        {let retrying = retrying.clone(); move || if retrying() { "Retrying…" } else { "Retry now" }}
                    </button>
                })}
                <button type="button" class="small" on:click=click title=why
                    disabled={let busy = busy.clone(); move || !finished || busy()}>
                    {let busy = busy.clone(); move || if busy() && !retrying() { "Resending…" } else { "Resend" }}
                </button>
            </span></td>
        </tr>
    }
}

/// An attempt sent this long after it was due is marked late (after a restart, or a queue
/// that was too busy).
pub(super) const LATE_AFTER_MS: f64 = 5_000.0;

/// One attempt, and its Details (the request that went out and the answer) when opened.
#[component]
pub(super) fn AttemptRow(
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
pub(super) fn lateness(a: &AttemptOut) -> Option<(String, String)> {
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
pub(super) fn AttemptDetails(a: AttemptOut, id: String, label: String) -> impl IntoView {
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
pub(super) const LOGGED_BODY_BYTES: u64 = 64 * 1024;

/// A logged body: pretty JSON when it is whole JSON, else the text as is.
#[component]
pub(super) fn LoggedBody(
    body: Option<String>,
    note: Option<String>,
    label: &'static str,
) -> impl IntoView {
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
