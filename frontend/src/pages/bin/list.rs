//! The request list: filters, the summary line and the windowed rows with their badges.

use super::*;

#[component]
pub(super) fn Filters(state: BinState, search_ref: NodeRef<Input>) -> impl IntoView {
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
pub(super) fn ListSummary(state: BinState) -> impl IntoView {
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
pub(super) fn RequestList(state: BinState) -> impl IntoView {
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
pub(super) fn RequestRow(r: Row, state: BinState) -> impl IntoView {
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
pub(super) fn Badges(r: Row) -> impl IntoView {
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
