//! # Hookbin wire types
//!
//! Everything that crosses HTTP between bin-server, the frontend, the sender and the CLIs is
//! defined here once, so nobody redefines it. The crate depends on serde alone and builds for
//! `wasm32-unknown-unknown`.
//!
//! Layout:
//! - [`error`]: the JSON error body every route uses, and [`error_chain`] for clients.
//! - [`bins`]: bins, their configured responses and limits, captured requests, live events.
//! - [`ci`]: the CI toolkit: the `wait` query, replaying a captured request.
//! - [`object`]: [`Object`], structs read from JSON objects only (request bodies).
//! - [`units`]: sizes and durations as flags and queries spell them.
//! - [`webhooks`]: the sending side: catalog events, webhooks, messages, attempts, test outcomes.

pub mod bins;
pub mod ci;
pub mod error;
pub mod object;
pub mod units;
pub mod webhooks;

pub use bins::*;
pub use ci::*;
pub use error::*;
pub use object::Object;
pub use webhooks::*;
