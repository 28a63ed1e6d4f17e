//! # Hookbin wire types
//!
//! Everything that crosses HTTP between bin-server, the frontend, the sender and the CLIs is
//! defined here once, so nobody redefines it. The crate depends on serde alone and builds for
//! `wasm32-unknown-unknown`.
//!
//! Layout:
//! - [`error`]: the JSON error body every route uses.
//! - [`bins`]: bins, their configured responses and limits, captured requests, live events.

pub mod bins;
pub mod error;

pub use bins::*;
pub use error::*;
