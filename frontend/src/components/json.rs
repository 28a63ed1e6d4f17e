//! Pretty JSON with syntax colouring, rendered as text spans (never HTML).

use leptos::prelude::*;

use crate::body::{JsonToken, pretty_json};

/// Tokens coloured at most; the rest of a huge document is shown as plain text, which the
/// browser renders far faster than one span per token.
const MAX_COLOURED_TOKENS: usize = 20_000;

/// `text` (valid JSON) re-indented and coloured.
#[component]
pub fn JsonView(text: String) -> impl IntoView {
    let tokens = pretty_json(&text);
    let (coloured, rest) = tokens.split_at(tokens.len().min(MAX_COLOURED_TOKENS));
    let rest: String = rest.iter().map(|(_, s)| s.as_str()).collect();
    let spans = coloured
        .iter()
        .map(|(kind, s)| match kind {
            JsonToken::Space => s.clone().into_any(),
            _ => view! { <span class=kind.class()>{s.clone()}</span> }.into_any(),
        })
        .collect_view();
    view! { <pre class="code json">{spans}{rest}</pre> }
}
