//! The selected request: overview, headers, query, the body in its views, Copy as cURL, Replay to URL.

use super::*;

#[component]
pub(super) fn EmptyDetail(state: BinState) -> impl IntoView {
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
pub(super) fn RequestDetail(state: BinState, id: String) -> impl IntoView {
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
pub(super) fn RequestView(
    state: BinState,
    r: CapturedRequestOut,
    api_url: String,
) -> impl IntoView {
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
pub(super) fn ReplayForm(api_url: String) -> impl IntoView {
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
pub(super) fn BodyView(
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
pub(super) fn MultipartView(parts: Vec<body::Part>) -> impl IntoView {
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
