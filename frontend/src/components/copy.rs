//! Copying text to the clipboard, with a fallback where the async clipboard API is missing
//! (pages served over plain HTTP from another host are not a secure context).

use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Puts `text` on the clipboard; true when it worked.
pub async fn copy_text(text: String) -> bool {
    let clipboard = window().navigator().clipboard();
    if !clipboard.is_undefined() && JsFuture::from(clipboard.write_text(&text)).await.is_ok() {
        return true;
    }
    copy_with_textarea(&text)
}

fn copy_with_textarea(text: &str) -> bool {
    let doc = document();
    let Ok(el) = doc.create_element("textarea") else {
        return false;
    };
    let Ok(area) = el.dyn_into::<web_sys::HtmlTextAreaElement>() else {
        return false;
    };
    area.set_value(text);
    let _ = area.set_attribute("readonly", "");
    let _ = area.set_attribute("class", "offscreen");
    let Some(body) = doc.body() else { return false };
    if body.append_child(&area).is_err() {
        return false;
    }
    area.select();
    let ok = doc
        .dyn_ref::<web_sys::HtmlDocument>()
        .and_then(|d| d.exec_command("copy").ok())
        .unwrap_or(false);
    area.remove();
    ok
}

/// A button that copies `text()` and says so for a moment.
#[component]
pub fn CopyButton(
    /// What to copy, read at click time.
    #[prop(into)]
    text: Signal<String>,
    /// The button's label.
    #[prop(default = "Copy")]
    label: &'static str,
    /// Accessible name, when the label alone is ambiguous on the page.
    #[prop(optional)]
    aria_label: Option<&'static str>,
) -> impl IntoView {
    let (state, set_state) = signal(None::<bool>);
    let click = move |_| {
        let value = text.get_untracked();
        leptos::task::spawn_local(async move {
            let ok = copy_text(value).await;
            set_state.set(Some(ok));
            set_timeout(move || set_state.set(None), Duration::from_millis(1500));
        });
    };
    view! {
        <button type="button" class="small" on:click=click aria-label=aria_label>
            {move || match state.get() {
                None => label,
                Some(true) => "Copied",
                Some(false) => "Copy failed",
            }}
        </button>
    }
}
