//! # Hookbin sender
//!
//! The sending side (catalog, registry, signing, delivery). Filled in by the sender issue.
