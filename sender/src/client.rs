//! The CLI's HTTP client for a running bin-server (filled in below).
