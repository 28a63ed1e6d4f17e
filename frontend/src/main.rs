//! # Hookbin's web UI
//!
//! A Leptos client-side app, compiled to wasm32 by bin-server's `build.rs` and embedded in its
//! binary. Captured content is hostile: everything a request carries is rendered as text nodes,
//! never as HTML.
//!
//! Layout:
//! - [`app`]: the shell (header, theme, routes) and the context every page shares.
//! - [`router`]: the routes over the browser's history (`pushState`, `popstate`, link clicks).
//! - [`server`]: the HTTP API through `fetch` and `EventSource`, over the `api` crate's wire types
//!   ([`wire`]: the few the UI reads its own way, free JSON kept as text).
//! - [`pages`]: Bins, Bin (one bin's live requests), Webhooks.
//! - [`components`]: pieces the pages share (copy button, JSON view, dialog).
//! - [`body`], [`curl`], [`units`]: pure functions (body views, copy as cURL, sizes and times),
//!   unit-tested on the host with `cargo test -p frontend`.

mod app;
mod body;
mod components;
mod curl;
mod pages;
mod router;
mod server;
mod units;
mod wire;

fn main() {
    leptos::mount::mount_to_body(app::App);
}
