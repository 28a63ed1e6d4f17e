//! The per-webhook logs: messages (kept for resend) and attempts, each bounded, oldest finished
//! dropped first and counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::attempt::{AttemptResult, Verdict};
use crate::registry::Webhook;

#[derive(Default)]
pub(super) struct EndpointLog {
    /// Messages by creation sequence (oldest first), for listing and eviction.
    pub(super) messages: BTreeMap<u64, Message>,
    pub(super) by_id: HashMap<Arc<str>, u64>,
    pub(super) next_seq: u64,
    /// Messages not finished (pending or scheduled).
    pub(super) pending: usize,
    /// Oldest first.
    pub(super) attempts: VecDeque<api::AttemptOut>,
    pub(super) evicted_attempts: u64,
    pub(super) evicted_messages: u64,
}

pub(super) struct Message {
    pub(super) id: Arc<str>,
    pub(super) event: Arc<str>,
    pub(super) body: Bytes,
    pub(super) created_at: DateTime<Utc>,
    pub(super) state: api::MessageState,
    pub(super) attempts: u32,
    pub(super) next_attempt_at: Option<DateTime<Utc>>,
    pub(super) error: Option<String>,
}

impl Message {
    pub(super) fn to_out(&self, webhook_id: &str) -> api::MessageOut {
        api::MessageOut {
            id: self.id.to_string(),
            webhook_id: webhook_id.to_owned(),
            event: self.event.to_string(),
            state: self.state,
            attempts: self.attempts,
            created_at: crate::rfc3339(self.created_at),
            next_attempt_at: self.next_attempt_at.map(crate::rfc3339),
            error: self.error.clone(),
            body_size: self.body.len() as u64,
        }
    }

    /// The journal's copy of the changing part.
    pub(super) fn state_record(&self) -> crate::journal::MessageStateRecord {
        crate::journal::MessageStateRecord {
            state: self.state,
            attempts: self.attempts,
            next_attempt_at_ms: self.next_attempt_at.map(|t| t.timestamp_millis()),
            error: self.error.clone(),
        }
    }

    /// The journal's copy of the whole message.
    pub(super) fn record(&self, webhook_id: &str) -> crate::journal::MessageRecord {
        crate::journal::MessageRecord {
            id: self.id.to_string(),
            webhook_id: webhook_id.to_owned(),
            event: self.event.to_string(),
            body: self.body.clone(),
            created_at_ms: self.created_at.timestamp_millis(),
            state: self.state_record(),
        }
    }

    /// A message as the journal gave it back.
    pub(super) fn from_record(r: crate::journal::MessageRecord) -> Self {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        Self {
            id: r.id.into(),
            event: r.event.into(),
            body: r.body,
            created_at: at(r.created_at_ms),
            state: r.state.state,
            attempts: r.state.attempts,
            next_attempt_at: r.state.next_attempt_at_ms.map(at),
            error: r.state.error,
        }
    }

    pub(super) fn finished(&self) -> bool {
        matches!(
            self.state,
            api::MessageState::Delivered | api::MessageState::Failed
        )
    }
}

impl EndpointLog {
    pub(super) fn message_mut(&mut self, id: &str) -> Option<&mut Message> {
        let seq = *self.by_id.get(id)?;
        self.messages.get_mut(&seq)
    }

    /// Adds a message; returns the ids of finished messages evicted to stay in bound.
    pub(super) fn insert(&mut self, message: Message, max: usize) -> Vec<Arc<str>> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(message.id.clone(), seq);
        self.messages.insert(seq, message);
        let mut evicted = Vec::new();
        while self.messages.len() > max {
            let Some(oldest_finished) = self
                .messages
                .iter()
                .find(|(_, m)| m.finished())
                .map(|(&s, _)| s)
            else {
                // Only unfinished messages left; they are bounded by max_pending_per_webhook.
                break;
            };
            if let Some(m) = self.messages.remove(&oldest_finished) {
                self.by_id.remove(&m.id);
                self.evicted_messages += 1;
                evicted.push(m.id);
            }
        }
        evicted
    }

    /// Adds an attempt; returns the ids of the oldest attempts evicted to stay in bound.
    pub(super) fn push_attempt(&mut self, attempt: api::AttemptOut, max: usize) -> Vec<String> {
        self.attempts.push_back(attempt);
        let mut evicted = Vec::new();
        while self.attempts.len() > max {
            if let Some(a) = self.attempts.pop_front() {
                evicted.push(a.id);
            }
            self.evicted_attempts += 1;
        }
        evicted
    }
}

pub(super) fn attempt_out(
    message_id: &str,
    webhook: &Webhook,
    event: &str,
    number: u32,
    trigger: api::AttemptTrigger,
    result: &AttemptResult,
    times: AttemptTimes,
) -> api::AttemptOut {
    api::AttemptOut {
        id: crate::random_id("atm_"),
        message_id: message_id.to_owned(),
        webhook_id: webhook.id.clone(),
        event: event.to_owned(),
        attempt: number,
        trigger,
        started_at: crate::rfc3339(result.started_at),
        scheduled_at: times.scheduled_at.map(crate::rfc3339),
        url: webhook.url.clone(),
        request_headers: result.request_headers.clone(),
        request_body_size: result.request_body_size,
        request_body: Some({
            let kept = &result.request_body[..result
                .request_body
                .len()
                .min(super::attempt::LOGGED_BODY_BYTES)];
            // Valid UTF-8 (JSON, nearly always) is checked by the fast path; the lossy
            // conversion walks it byte by byte.
            match std::str::from_utf8(kept) {
                Ok(text) => text.to_owned(),
                Err(_) => String::from_utf8_lossy(kept).into_owned(),
            }
        }),
        request_body_truncated: result.request_body.len() > super::attempt::LOGGED_BODY_BYTES,
        delivered: result.verdict == Verdict::Delivered,
        status: result.status,
        duration_ms: millis(result.duration),
        response_headers: result.response_headers.clone(),
        response_body: result.response_body.clone(),
        response_body_truncated: result.response_truncated,
        error: result.error.clone(),
        next_attempt_at: times.next_at.map(crate::rfc3339),
    }
}

/// When an attempt was due, and when the next one is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AttemptTimes {
    pub(super) scheduled_at: Option<DateTime<Utc>>,
    pub(super) next_at: Option<DateTime<Utc>>,
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
