//! A moment shown relative ("3 min ago", "in 20 s"), the exact local time on hover and focus.

use leptos::prelude::*;
use wasm_bindgen::JsValue;

use crate::app::now;
use crate::units;

/// The exact local date and time of an RFC 3339 timestamp, as the browser writes it.
pub fn exact(rfc3339: &str) -> String {
    let ms = js_sys::Date::parse(rfc3339);
    if ms.is_nan() {
        return rfc3339.to_owned();
    }
    String::from(
        js_sys::Date::new(&JsValue::from_f64(ms)).to_locale_string("default", &JsValue::UNDEFINED),
    )
}

/// `<time>` with the relative time as text and the exact one as its title; focusable, so the
/// exact time is reachable without a mouse too.
#[component]
pub fn Ago(
    /// RFC 3339.
    #[prop(into)]
    at: String,
) -> impl IntoView {
    let now = now();
    let then = js_sys::Date::parse(&at);
    let title = exact(&at);
    view! {
        <time class="ago" datetime=at title=title.clone() aria-label=title tabindex="0">
            {move || units::ago(then, now.get())}
        </time>
    }
}
