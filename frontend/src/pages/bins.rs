//! Bins (home): create a bin (random or named), the list of bins with their request counts and
//! last activity, delete. The list follows `/api/stream` so counts move while you watch.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;

use crate::app::set_title;
use crate::components::{Ago, KeyedRows};
use crate::router::use_location;
use crate::server::{self, ApiError, LiveStream};
use crate::wire::{BinIn, BinList, BinOut};

#[component]
pub fn BinsPage() -> impl IntoView {
    set_title("Bins");
    let bins = RwSignal::new(None::<Result<Vec<BinOut>, ApiError>>);
    let reload = move || {
        spawn_local(async move {
            let res = server::get::<BinList>("/api/bins").await.map(|l| l.bins);
            bins.set(Some(res));
        });
    };
    reload();
    // The table is built once and updated row by row; only a change of shape rebuilds it.
    let shape = Memo::new(move |_| {
        bins.with(|b| match b {
            None => Shape::Loading,
            Some(Err(e)) => Shape::Failed(e.message.clone()),
            Some(Ok(l)) if l.is_empty() => Shape::Empty,
            Some(Ok(_)) => Shape::List,
        })
    });

    // Live counts: any capture or deletion anywhere schedules one reload per second at most.
    let pending = StoredValue::new(false);
    let stream = LiveStream::open(
        "/api/stream".to_owned(),
        vec!["request", "deleted", "cleared", "bin_deleted", "resync"],
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
            {move || match shape.get() {
                Shape::Loading => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Shape::Failed(message) => view! { <p class="error" role="alert">{message}</p> }.into_any(),
                Shape::Empty => view! {
                    <p class="muted empty">"No bins yet. Create one above."</p>
                }
                .into_any(),
                Shape::List => view! { <BinTable bins=bins reload=reload/> }.into_any(),
            }}
        </section>
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Loading,
    Failed(String),
    Empty,
    List,
}

/// "New bin" (random id) and "Create named bin" (a fixed URL for CI).
#[component]
fn CreateBins() -> impl IntoView {
    let location = use_location();
    let (creating, set_creating) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let (name, set_name) = signal(String::new());
    let (name_error, set_name_error) = signal(None::<String>);
    let (naming, set_naming) = signal(false);

    let new_bin = {
        move |_| {
            set_creating.set(true);
            set_error.set(None);
            spawn_local(async move {
                match server::send::<_, BinOut>("POST", "/api/bins", &BinIn::default()).await {
                    Ok(bin) => location.navigate(&format!("/bins/{}", server::enc(&bin.id)), false),
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
        spawn_local(async move {
            let input = BinIn {
                name: Some(wanted),
                ..Default::default()
            };
            match server::send::<_, BinOut>("POST", "/api/bins", &input).await {
                Ok(bin) => location.navigate(&format!("/bins/{}", server::enc(&bin.id)), false),
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
fn BinTable(
    bins: RwSignal<Option<Result<Vec<BinOut>, ApiError>>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let ids = move || {
        bins.with(|b| match b {
            Some(Ok(list)) => list.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    };
    view! {
        <div class="table-wrap">
            <table class="bins">
                <thead>
                    <tr><th>"Bin"</th><th class="num">"Requests"</th><th></th><th>"Last activity"</th><th></th></tr>
                </thead>
                <tbody>
                    // Keyed by id: a reload updates counts in place and keeps a pending "Confirm delete".
                    <KeyedRows keys=Signal::derive(ids)
                        row=Callback::new(move |id| view! { <BinRow bins=bins id=id reload=reload/> }.into_any())/>
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn BinRow(
    bins: RwSignal<Option<Result<Vec<BinOut>, ApiError>>>,
    id: String,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let bin = {
        let id = id.clone();
        Memo::new(move |_| {
            bins.with(|b| match b {
                Some(Ok(list)) => list.iter().find(|b| b.id == id).cloned(),
                _ => None,
            })
        })
    };
    let href = format!("/bins/{}", server::enc(&id));
    let (confirming, set_confirming) = signal(false);
    let (deleting, set_deleting) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let delete = {
        let id = id.clone();
        move |_| {
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
                        let _ = set_error.try_set(Some(e.message));
                        let _ = set_deleting.try_set(false);
                    }
                }
            });
        }
    };
    let count = move || bin.with(|b| b.as_ref().map_or(0, |b| b.request_count));
    let evicted = move || {
        let n = bin.with(|b| b.as_ref().map_or(0, |b| b.evicted.total));
        (n > 0).then(|| {
            view! { <span class="badge warn" title="Requests evicted by the bin's limits">{n}" evicted"</span> }
        })
    };
    let last = move || {
        bin.with(|b| b.as_ref().map(|b| b.last_activity.clone()))
            .map(|at| view! { <Ago at=at/> })
    };
    view! {
        <tr>
            <td class="bin-id"><a href=href>{id.clone()}</a></td>
            <td class="num">{count}</td>
            <td class="num">{evicted}</td>
            <td>{last}</td>
            <td class="row-actions">
                <button type="button" class="small danger" on:click=delete disabled=deleting
                    aria-label=format!("Delete bin {id}")>
                    {move || if deleting.get() { "Deleting…" } else if confirming.get() { "Confirm delete" } else { "Delete" }}
                </button>
                {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
            </td>
        </tr>
    }
}
