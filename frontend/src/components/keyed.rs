//! A list keyed by strings, for every such list of the app.

use leptos::prelude::*;

/// Rows keyed by string: `keys` in order, each row drawn once by `row` from its key and kept
/// while its key stays (a reload updates rows in place, and keeps what they hold open).
///
/// One component for every list keyed by a string, so the wasm carries one copy of Leptos'
/// keyed list (`For`) for them all instead of one per list (several KB each).
#[component]
pub fn KeyedRows(
    /// The rows' keys, in order; each is unique.
    #[prop(into)]
    keys: Signal<Vec<String>>,
    /// Draws the row of a key.
    row: Callback<String, AnyView>,
) -> impl IntoView {
    view! {
        <For each=move || keys.get() key=|k: &String| k.clone() let:k>
            {row.run(k)}
        </For>
    }
}
