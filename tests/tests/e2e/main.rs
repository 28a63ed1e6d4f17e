//! Hookbin's end-to-end tests: one binary, a module per part of the product. Every server runs
//! in-process on 127.0.0.1:0; every wait is bounded by a timeout.

mod auth;
mod ci;
mod fanout;
mod limits;
mod origin;
mod outbound;
mod resume;
mod search_fanout;
mod sender;
mod sender_redis;
mod sender_restart;
mod server;
mod support;
mod tap_framing;
