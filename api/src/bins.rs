//! Bins, their configured responses and limits, and the requests captured in them.

use serde::{Deserialize, Serialize};

/// One HTTP header as received (original case, arrival order, duplicates kept as separate entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// What a bin answers to every captured request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BinResponse {
    /// HTTP status, 200..=599.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers, in order.
    #[serde(default, deserialize_with = "crate::object::each")]
    pub headers: Vec<Header>,
    /// Response body (text). `None`: the default JSON body naming the request id. Without a
    /// `Content-Type` header, a body that parses as JSON is sent as `application/json`, any other
    /// as `text/plain; charset=utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Delay before answering, in milliseconds (at most 30,000).
    #[serde(default)]
    pub delay_ms: u64,
}

fn default_status() -> u16 {
    200
}

impl Default for BinResponse {
    fn default() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: None,
            delay_ms: 0,
        }
    }
}

/// Per-bin limits; each is capped by the server's own limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BinLimitsIn {
    /// Requests kept in this bin (oldest evicted first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Largest body stored; larger bodies are answered 413 and stored truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
}

/// The limits in force for a bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BinLimits {
    pub max_requests: u32,
    pub max_body_bytes: u64,
}

/// Body of `POST /api/bins` and `PUT /api/bins/{name}`. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BinIn {
    /// A fixed name (`[a-z0-9][a-z0-9-_]{0,63}`); `POST` without it gets a random UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::object::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub response: Option<BinResponse>,
    #[serde(
        default,
        deserialize_with = "crate::object::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub limits: Option<BinLimitsIn>,
    /// A JSON Schema (draft 2020-12) every captured JSON body is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// The secret signatures are checked with (see `signature_scheme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `standard` (Standard Webhooks), `github` or `stripe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
}

/// How many requests a bin has lost to its limits (never hidden).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvictionCounts {
    /// Evicted because the bin held `max_requests` already.
    pub by_bin_limit: u64,
    /// Evicted because the server's global byte budget was reached.
    pub by_byte_budget: u64,
    /// The sum of both.
    pub total: u64,
}

/// A bin as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BinOut {
    /// The bin's id: a UUID or the chosen name.
    pub id: String,
    /// The capture URL: send requests here.
    pub url: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC: the last capture (or creation / update).
    pub last_activity: String,
    /// Requests stored now.
    pub request_count: u64,
    /// Requests captured since creation (stored or evicted).
    pub total_captured: u64,
    /// Bytes of bodies stored now.
    pub bytes_stored: u64,
    pub evicted: EvictionCounts,
    pub response: BinResponse,
    pub limits: BinLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// `standard`, `github` or `stripe` when a secret is set (the secret itself is never returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
    /// The bin's own token, in the answer that created the bin only (when the server runs with
    /// `--auth-token`): send it as `Authorization: Bearer TOKEN` to reach this bin's routes. It is
    /// stored as a hash and never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /api/bins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BinList {
    pub bins: Vec<BinOut>,
}

/// How the `body` field of a [`CapturedRequestOut`] is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body is valid UTF-8 and given as is.
    Utf8,
    /// The body is not UTF-8 and given as standard base64.
    Base64,
}

/// The outcome of checking a captured body against the bin's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Validation {
    pub valid: bool,
    #[serde(default)]
    pub errors: Vec<ValidationError>,
}

/// One schema violation: a JSON pointer into the body and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

/// The outcome of checking a captured request's signature with the bin's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignatureCheck {
    /// `valid`, `invalid` or `missing`.
    pub status: String,
    /// Why, when not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a captured request passed every check its bin ran (a bin without checks: yes); what
/// `wait?valid=true` and `bin-server wait` ask for.
pub fn checks_passed(validation: Option<&Validation>, signature: Option<&SignatureCheck>) -> bool {
    validation.is_none_or(|v| v.valid) && signature.is_none_or(|s| s.status == "valid")
}

/// One captured request, byte-exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapturedRequestOut {
    /// Unique id (UUID).
    pub id: String,
    /// The bin it was captured in.
    pub bin: String,
    /// Sequence number within the bin, from 1, never reused.
    pub seq: u64,
    /// RFC 3339, UTC, microseconds.
    pub received_at: String,
    pub method: String,
    /// The path below the bin (`/` for the bin itself), as sent (not decoded).
    pub path: String,
    /// The raw query string without `?`, as sent; `None` when the URL had no `?`.
    pub query: Option<String>,
    /// Headers in arrival order, duplicates kept, original case (HTTP/1.1), when
    /// `headers_exact`; otherwise as the server parsed them (lower-case names, repeats grouped).
    pub headers: Vec<Header>,
    /// True when `headers` are the request's header lines exactly as they came off the wire;
    /// false for HTTP/2 and when the server fell back to its parsed header map. Absent (from
    /// servers older than this field) means true.
    #[serde(default = "exact_by_default")]
    pub headers_exact: bool,
    /// The `Content-Type` header, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The stored body (see `body_encoding`); omitted in summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub body_encoding: BodyEncoding,
    /// Bytes stored (the whole body unless `truncated`).
    pub body_size: u64,
    /// True when the body was larger than the bin's limit and was cut at it.
    pub truncated: bool,
    /// The client's address as `ip:port`.
    pub remote_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureCheck>,
}

impl CapturedRequestOut {
    /// The exact stored body bytes (base64 decoded when `body_encoding` says so); empty for a
    /// summary without a body.
    pub fn body_bytes(&self) -> Vec<u8> {
        use base64::Engine;
        let body = self.body.as_deref().unwrap_or("");
        match self.body_encoding {
            BodyEncoding::Utf8 => body.as_bytes().to_vec(),
            BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap_or_default(),
        }
    }
}

fn exact_by_default() -> bool {
    true
}

/// `GET /api/bins/{bin}/requests`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestPage {
    pub requests: Vec<CapturedRequestOut>,
    /// Requests stored in the bin now (before filters).
    pub total: u64,
    /// Requests that matched the filters and the cursors (this page and the older ones).
    pub matched: u64,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_before: Option<u64>,
    pub evicted: EvictionCounts,
}

/// `data` of the SSE `resync` event: the subscriber missed events; reload the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResyncEvent {
    /// How many live events this subscriber fell behind by (0 when unknown).
    pub missed: u64,
    /// Why, when it is not falling behind: `last_event_id_ahead` (the client's `Last-Event-ID`
    /// is past anything the bin ever held: the bin was re-created, or a memory store restarted),
    /// `live_feed_restarted` (the server's live feed from a shared Redis reconnected: events
    /// may have been missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `data` of the SSE `deleted` / `cleared` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedEvent {
    pub bin: String,
    /// The deleted request's id; absent when the whole bin was cleared or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The default body of a capture response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureAck {
    pub ok: bool,
    pub bin: String,
    pub request_id: String,
    pub seq: u64,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`, or `unavailable` (answered 503) when the store cannot be reached.
    pub status: String,
    pub version: String,
    /// The backend `--store` chose: `memory`, `sqlite` or `redis`.
    #[serde(default)]
    pub store: String,
    /// Why the store is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_servers_without_headers_exact_read_as_exact() {
        let old = serde_json::json!({
            "id": "r", "bin": "b", "seq": 1, "received_at": "2026-01-01T00:00:00.000000Z",
            "method": "GET", "path": "/", "query": null,
            "headers": [{"name": "X-A", "value": "1"}],
            "body_encoding": "utf8", "body_size": 0, "truncated": false,
            "remote_addr": "127.0.0.1:1"
        });
        let r: CapturedRequestOut = serde_json::from_value(old.clone()).unwrap();
        assert!(r.headers_exact);
        let mut new = old;
        new["headers_exact"] = false.into();
        let r: CapturedRequestOut = serde_json::from_value(new).unwrap();
        assert!(!r.headers_exact);
        assert_eq!(serde_json::to_value(&r).unwrap()["headers_exact"], false);
    }
}
