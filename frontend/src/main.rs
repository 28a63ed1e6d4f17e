//! Hookbin's web UI: a Leptos client-side app, compiled to wasm32 and embedded in bin-server.
use leptos::prelude::*;

fn main() {
    leptos::mount::mount_to_body(|| view! { <h1>"Hookbin"</h1> });
}
