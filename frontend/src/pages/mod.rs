//! The three pages: Bins (home), Bin (one bin's requests, live), Webhooks (the sending side).

mod bin;
mod bins;
mod webhooks;

pub use bin::BinPage;
pub use bins::BinsPage;
pub use webhooks::WebhooksPage;
