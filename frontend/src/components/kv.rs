//! A two-column table of names and values (headers, query parameters, form fields), as text.

use leptos::prelude::*;

/// `rows` in order, names in the first column; "None." when there are none. Values wrap
/// anywhere, so a long header value never widens the page.
#[component]
pub fn KeyValueTable(rows: Vec<(String, String)>, label: &'static str) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="muted">"None."</p> }.into_any();
    }
    view! {
        <div class="table-wrap">
            <table class="kv" aria-label=label>
                <tbody>
                    {rows.into_iter().map(|(k, v)| view! {
                        <tr><th scope="row" class="mono">{k}</th><td class="mono break">{v}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
