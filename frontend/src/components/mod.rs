//! Pieces the pages share.

mod copy;
mod json;
mod time;

pub use copy::{CopyButton, copy_text};
pub use json::JsonView;
pub use time::{Ago, exact};
