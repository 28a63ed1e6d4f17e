//! The shell: header with navigation and the theme toggle, the routes, and the clock that
//! relative times ("3 s ago") follow.

use std::time::Duration;

use leptos::prelude::*;

use crate::pages::{BinPage, BinsPage, WebhooksPage};
use crate::router::{Route, provide_router, use_location};

/// Milliseconds since the epoch, updated every few seconds: relative times re-render from it.
#[derive(Clone, Copy)]
pub struct Now(pub ReadSignal<f64>);

/// The current time for relative times.
pub fn now() -> ReadSignal<f64> {
    use_context::<Now>()
        .map(|n| n.0)
        .unwrap_or_else(|| signal(js_sys::Date::now()).0)
}

#[component]
pub fn App() -> impl IntoView {
    let (now, set_now) = signal(js_sys::Date::now());
    set_interval(
        move || set_now.set(js_sys::Date::now()),
        Duration::from_secs(5),
    );
    provide_context(Now(now));
    let location = provide_router();
    // Only a change of route builds another page: the bin page stays while the selected request
    // (in its path) changes.
    let route = Memo::new(move |_| Route::of(&location.path()));

    view! {
        <Header/>
        <main id="main">
            {move || match route.get() {
                Route::Bins => view! { <BinsPage/> }.into_any(),
                Route::Bin(bin) => view! { <BinPage bin=bin/> }.into_any(),
                Route::Webhooks => view! { <WebhooksPage/> }.into_any(),
                Route::NotFound => view! { <NotFound/> }.into_any(),
            }}
        </main>
    }
}

#[component]
fn Header() -> impl IntoView {
    let location = use_location();
    let current = move |section: &'static str| {
        let path = location.path();
        let on = match section {
            "bins" => path == "/" || path.starts_with("/bins/"),
            _ => path.starts_with("/webhooks"),
        };
        on.then_some("page")
    };
    view! {
        <header class="top">
            <a class="brand" href="/">"Hookbin"</a>
            <nav aria-label="Main">
                <a href="/" aria-current=move || current("bins")>"Bins"</a>
                <a href="/webhooks" aria-current=move || current("webhooks")>"Webhooks"</a>
            </nav>
            <ThemeToggle/>
        </header>
    }
}

const THEME_KEY: &str = "hookbin-theme";

/// Light or dark: follows the system until the user picks one, which is remembered.
#[component]
fn ThemeToggle() -> impl IntoView {
    let root = document().document_element();
    let system_dark = window()
        .match_media("(prefers-color-scheme: dark)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches());
    let chosen = root
        .as_ref()
        .and_then(|r| r.get_attribute("data-theme"))
        .filter(|t| t == "light" || t == "dark");
    let (dark, set_dark) = signal(chosen.map_or(system_dark, |t| t == "dark"));
    let toggle = move |_| {
        let next = !dark.get_untracked();
        set_dark.set(next);
        let theme = if next { "dark" } else { "light" };
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-theme", theme);
        }
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = storage.set_item(THEME_KEY, theme);
        }
    };
    view! {
        <button
            type="button"
            class="theme-toggle"
            on:click=toggle
            aria-pressed=move || if dark.get() { "true" } else { "false" }
            title="Switch between light and dark"
        >
            {move || if dark.get() { "Light theme" } else { "Dark theme" }}
        </button>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    set_title("Page not found");
    let path = use_location().path_untracked();
    view! {
        <section class="page not-found">
            <h1>"Page not found"</h1>
            <p>"Nothing lives at " <code class="break">{path}</code> "."</p>
            <p><a href="/">"Back to your bins"</a> " · " <a href="/webhooks">"Webhooks"</a></p>
        </section>
    }
}

/// Sets the document's title as a page is shown (each page's title is fixed: not an effect,
/// which would cost a copy of Leptos' effect machinery per page).
pub fn set_title(title: &str) {
    document().set_title(&format!("{title} · Hookbin"));
}
