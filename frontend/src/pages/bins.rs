//! Bins (home): create a bin (random or named), the list of bins with their request counts and
//! last activity, delete. The list follows `/api/stream` so counts move while you watch.

use std::time::Duration;

use api::{BinIn, BinList, BinOut};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use send_wrapper::SendWrapper;

use crate::app::{now, set_title};
use crate::server::{self, ApiError, LiveStream};
use crate::units;

#[component]
pub fn BinsPage() -> impl IntoView {
    set_title(|| "Bins".to_owned());
    let bins = RwSignal::new(None::<Result<Vec<BinOut>, ApiError>>);
    let reload = move || {
        spawn_local(async move {
            let res = server::get::<BinList>("/api/bins").await.map(|l| l.bins);
            bins.set(Some(res));
        });
    };
    reload();

    // Live counts: any capture or deletion anywhere schedules one reload per second at most.
    let pending = StoredValue::new(false);
    let stream = LiveStream::open(
        "/api/stream".to_owned(),
        vec!["request", "deleted", "cleared", "resync"],
        move |_| {
            if pending.get_value() {
                return;
            }
            pending.set_value(true);
            set_timeout(
                move || {
                    pending.set_value(false);
                    reload();
                },
                Duration::from_secs(1),
            );
        },
        |_| {},
    );
    let stream = SendWrapper::new(stream);
    on_cleanup(move || drop(stream));

    view! {
        <section class="page bins-page">
            <div class="page-head">
                <h1>"Bins"</h1>
                <p class="lede">
                    "A bin is a URL that records every request sent to it. Point a webhook at it and "
                    "watch the requests arrive live."
                </p>
            </div>
            <CreateBins/>
            <h2>"Your bins"</h2>
            {move || match bins.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <p class="muted empty">"No bins yet. Create one above."</p>
                }
                .into_any(),
                Some(Ok(list)) => view! { <BinTable bins=list reload=reload/> }.into_any(),
            }}
        </section>
    }
}

/// "New bin" (random id) and "Create named bin" (a fixed URL for CI).
#[component]
fn CreateBins() -> impl IntoView {
    let navigate = use_navigate();
    let (creating, set_creating) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let (name, set_name) = signal(String::new());
    let (name_error, set_name_error) = signal(None::<String>);
    let (naming, set_naming) = signal(false);

    let new_bin = {
        let navigate = navigate.clone();
        move |_| {
            set_creating.set(true);
            set_error.set(None);
            let navigate = navigate.clone();
            spawn_local(async move {
                match server::send::<_, BinOut>("POST", "/api/bins", &BinIn::default()).await {
                    Ok(bin) => navigate(
                        &format!("/bins/{}", server::enc(&bin.id)),
                        Default::default(),
                    ),
                    Err(e) => set_error.set(Some(e.message)),
                }
                set_creating.set(false);
            });
        }
    };
    let create_named = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let wanted = name.get_untracked().trim().to_owned();
        if wanted.is_empty() {
            set_name_error.set(Some(
                "Enter a name: lower-case letters, digits, - and _.".into(),
            ));
            return;
        }
        set_naming.set(true);
        set_name_error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let input = BinIn {
                name: Some(wanted),
                ..Default::default()
            };
            match server::send::<_, BinOut>("POST", "/api/bins", &input).await {
                Ok(bin) => navigate(
                    &format!("/bins/{}", server::enc(&bin.id)),
                    Default::default(),
                ),
                Err(e) => set_name_error.set(Some(e.message)),
            }
            set_naming.set(false);
        });
    };

    view! {
        <div class="create-bins">
            <div class="card">
                <button
                    type="button"
                    class="primary big"
                    on:click=new_bin
                    disabled=creating
                    aria-busy=move || creating.get().to_string()
                >
                    {move || if creating.get() { "Creating…" } else { "New bin" }}
                </button>
                <p class="muted">"A bin with a random, unguessable URL."</p>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </div>
            <form class="card named" on:submit=create_named novalidate>
                <label for="bin-name">"Bin name"</label>
                <div class="row">
                    <input
                        id="bin-name"
                        name="bin-name"
                        placeholder="ci-payments"
                        autocomplete="off"
                        spellcheck="false"
                        prop:value=name
                        on:input=move |ev| set_name.set(event_target_value(&ev))
                        aria-invalid=move || name_error.get().is_some().to_string()
                        aria-describedby="bin-name-hint bin-name-error"
                    />
                    <button type="submit" disabled=naming>
                        {move || if naming.get() { "Creating…" } else { "Create named bin" }}
                    </button>
                </div>
                <p id="bin-name-hint" class="muted">"A fixed URL for CI: lower-case letters, digits, - and _."</p>
                <p id="bin-name-error" class="error field-error" role="alert">{move || name_error.get()}</p>
            </form>
        </div>
    }
}

#[component]
fn BinTable(bins: Vec<BinOut>, reload: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let now = now();
    let rows = bins
        .into_iter()
        .map(|bin| {
            let href = format!("/bins/{}", server::enc(&bin.id));
            let last = js_sys::Date::parse(&bin.last_activity);
            let (confirming, set_confirming) = signal(false);
            let (deleting, set_deleting) = signal(false);
            let (error, set_error) = signal(None::<String>);
            let id = bin.id.clone();
            let delete = move |_| {
                if !confirming.get_untracked() {
                    set_confirming.set(true);
                    return;
                }
                set_deleting.set(true);
                let id = id.clone();
                spawn_local(async move {
                    match server::delete(&format!("/api/bins/{}", server::enc(&id))).await {
                        Ok(()) => reload(),
                        Err(e) => {
                            set_error.set(Some(e.message));
                            set_deleting.set(false);
                        }
                    }
                });
            };
            let evicted = bin.evicted.total;
            view! {
                <tr>
                    <td class="bin-id"><a href=href>{bin.id.clone()}</a></td>
                    <td class="num">{bin.request_count}</td>
                    <td class="num">
                        {(evicted > 0).then(|| view! { <span class="badge warn" title="Requests evicted by the bin's limits">{evicted}" evicted"</span> })}
                    </td>
                    <td>{move || units::ago(last, now.get())}</td>
                    <td class="row-actions">
                        <button type="button" class="small danger" on:click=delete disabled=deleting
                            aria-label=format!("Delete bin {}", bin.id)>
                            {move || if deleting.get() { "Deleting…" } else if confirming.get() { "Confirm delete" } else { "Delete" }}
                        </button>
                        {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table class="bins">
                <thead>
                    <tr><th>"Bin"</th><th class="num">"Requests"</th><th></th><th>"Last activity"</th><th></th></tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}
