//! Pieces the pages share.

mod copy;
mod json;

pub use copy::{CopyButton, copy_text};
pub use json::JsonView;
