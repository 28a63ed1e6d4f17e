//! The sending side on the wire: catalog events, webhooks, deliveries (messages and their
//! attempts) and the outcome of a test send.
//!
//! Words used throughout:
//! - an **event** is a kind of thing that happens (`payment_received`), with an example payload;
//! - a **webhook** is a URL subscribed to one or more events;
//! - a **message** is one event sent to one webhook. Its id (`msg_...`) is the `webhook-id`
//!   header, the same on every retry and resend, so receivers can drop duplicates;
//! - an **attempt** is one HTTP request carrying a message.

use serde::{Deserialize, Serialize};

use crate::Header;

/// One event of the catalog (`GET /api/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventOut {
    /// Stable identifier, e.g. `payment_received`.
    pub slug: String,
    /// Human name, e.g. `Payment Received`.
    pub name: String,
    /// When the event fires.
    pub description: String,
    /// A realistic payload, sent by "Send Test Event" as is and by emit without a payload; a
    /// built-in event's emit adds `wu_version`, as the plugin adds it to real events only.
    pub example: serde_json::Value,
    /// A JSON Schema of the payload, when the catalog has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// `GET /api/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventList {
    pub events: Vec<EventOut>,
}

/// How a message body wraps the event payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// The payload object alone, as Ultimate Multisite sends it.
    #[default]
    Flat,
    /// Standard Webhooks' recommended shape: `{"type": slug, "timestamp": RFC 3339, "data": payload}`.
    Standard,
}

impl Envelope {
    pub fn as_str(self) -> &'static str {
        match self {
            Envelope::Flat => "flat",
            Envelope::Standard => "standard",
        }
    }
}

/// Body of `POST /api/webhooks`.
///
/// Give `event` (one slug) or `events` (several), or both (they are merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// 2 to 100 characters, no control characters; unique on the server.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 2, max_length = 100, example = "billing")
    )]
    pub name: String,
    /// `http://` or `https://`, with a host, without user name or password.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2048,
            pattern = "^https?://",
            example = "https://example.com/webhooks"
        )
    )]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// `whsec_` + base64 of 24 to 64 bytes; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Default `flat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
}

/// Body of `PATCH /api/webhooks/{id}`: only the fields given change.
///
/// Setting `active` to true re-enables a disabled webhook and clears its disabled reason and its
/// count of consecutive failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// 2 to 100 characters, no control characters; unique on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 2, max_length = 100))]
    pub name: Option<String>,
    /// `http://` or `https://`, with a host, without user name or password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048, pattern = "^https?://"))]
    pub url: Option<String>,
    /// Replaces the subscribed events with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Replaces the subscribed events with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
}

/// When and why a webhook last failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureOut {
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
}

/// A webhook as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookOut {
    /// `wh_...`
    pub id: String,
    pub name: String,
    pub url: String,
    /// Subscribed event slugs.
    pub events: Vec<String>,
    /// The signing secret. Hookbin is a self-hosted testing tool: the secret is shown so that
    /// receivers under test can be configured with it.
    pub secret: String,
    /// False when switched off by a user or disabled by the sender (see `disabled_reason`).
    pub active: bool,
    pub envelope: Envelope,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Messages delivered (2xx) to this webhook.
    pub event_count: u64,
    /// Messages that ended failed in a row; reset by a delivery or by re-enabling.
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureOut>,
    /// Why the sender disabled the webhook (410 Gone, too many failed messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The secret before the last rotation, while its grace period runs: until
    /// `previous_secret_expires_at` every delivery is signed with both (`webhook-signature:
    /// v1,<new> v1,<previous>`), so receivers can switch without dropping a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// When `previous_secret` stops being used (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

/// Body of `POST /api/webhooks/{id}/secret/rotate` (optional: `{}` or no body rotates with the
/// default grace period).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateSecretIn {
    /// How long the current secret keeps signing beside the new one: a duration such as `30m`,
    /// `24h`, `7d` (a bare number is seconds; `0` ends it at once). Default `24h`, at most `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "24h"))]
    pub grace: Option<String>,
    /// The new secret (`whsec_` + base64 of 24 to 64 bytes); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<WebhookOut>,
}

/// The true outcome of one attempt (`POST /api/webhooks/{id}/test`, `sender send`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestOutcome {
    /// True only for a 2xx answer.
    pub delivered: bool,
    /// The answer's status; absent when none came (connection error, timeout).
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The first 4 KiB of the answer's body (lossy UTF-8).
    pub response_body: Option<String>,
    /// What went wrong: the transport error, or why the status is a failure.
    pub error: Option<String>,
    /// The `webhook-id` that was sent.
    pub message_id: String,
    pub event: String,
    /// The webhook, when sent to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The request headers sent (`content-type`, `webhook-id`, `webhook-timestamp`, `webhook-signature`, ...).
    #[serde(default)]
    pub request_headers: Vec<Header>,
}

/// Body of `POST /api/events/{slug}/emit`; without `payload` the event's example is sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EmitIn {
    /// Sent byte for byte as given (key order, number spelling, escapes and inner whitespace
    /// kept): the raw JSON text, not a re-serialised value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<serde_json::value::RawValue>>,
}

/// One message created by an emit or a resend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageRef {
    pub message_id: String,
    pub webhook_id: String,
}

/// `202` answer of `POST /api/events/{slug}/emit`: one message per active subscribed webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmitOut {
    pub event: String,
    pub message_ids: Vec<String>,
    pub messages: Vec<MessageRef>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Waiting for its webhook's turn, or being sent now.
    Pending,
    /// Failed at least once; the next attempt is at `next_attempt_at`.
    Scheduled,
    /// A 2xx answer was received.
    Delivered,
    /// Gave up (out of retries, not retryable, webhook disabled, queue full); can be resent.
    Failed,
}

/// One message of a webhook's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageOut {
    /// `msg_...`, the `webhook-id` header.
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub state: MessageState,
    /// Attempts made so far.
    pub attempts: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub body_size: u64,
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AttemptTrigger {
    /// The first try or a scheduled retry.
    Scheduled,
    /// A user asked to resend the message.
    Resend,
    /// Send Test Event.
    Test,
}

/// One attempt of the log (`GET /api/webhooks/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptOut {
    /// `atm_...`
    pub id: String,
    pub message_id: String,
    pub webhook_id: String,
    pub event: String,
    /// 1 for the first try of a message; counts on across resends.
    pub attempt: u32,
    pub trigger: AttemptTrigger,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// When the attempt was due (RFC 3339, UTC): a retry's scheduled time. A `started_at` well
    /// after it means the attempt went late (the server was down or busy); it is never dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    pub url: String,
    pub request_headers: Vec<Header>,
    pub request_body_size: u64,
    /// The body sent (lossy UTF-8), its first 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// True when `request_body` is cut (the body was longer than 64 KiB).
    #[serde(default)]
    pub request_body_truncated: bool,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The answer's headers, in order (empty when there was no answer).
    #[serde(default)]
    pub response_headers: Vec<Header>,
    /// The first 64 KiB of the answer's body (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// True when `response_body` is cut (the answer went on past 64 KiB).
    #[serde(default)]
    pub response_body_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the message will be tried again after this attempt; absent when it will not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

/// `GET /api/webhooks/{id}/deliveries`: the webhook's attempts and messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryLog {
    pub webhook_id: String,
    pub attempts: Vec<AttemptOut>,
    pub messages: Vec<MessageOut>,
    /// Attempts dropped from the log by its bound (oldest first); never silently hidden.
    pub evicted_attempts: u64,
    /// Finished messages dropped from the log by its bound (oldest first); they can no longer be resent.
    pub evicted_messages: u64,
}
