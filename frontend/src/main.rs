//! Hookbin's web UI. Filled in by the frontend issue.
fn main() {}
