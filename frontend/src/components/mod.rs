//! Pieces the pages share.

mod copy;
mod json;
mod keyed;
mod kv;
mod time;

pub use copy::{CopyButton, copy_text};
pub use json::JsonView;
pub use keyed::KeyedRows;
pub use kv::KeyValueTable;
pub use time::{Ago, exact};
