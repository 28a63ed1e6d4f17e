//! The per-webhook logs: messages (kept for resend) and attempts, each bounded, oldest finished
//! dropped first and counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::attempt::{AttemptResult, Verdict, lossy};

#[derive(Default)]
pub(super) struct EndpointLog {
    /// Messages by creation sequence (oldest first), for listing and eviction.
    pub(super) messages: BTreeMap<u64, Message>,
    pub(super) by_id: HashMap<Arc<str>, u64>,
    pub(super) next_seq: u64,
    /// Messages not finished (pending or scheduled).
    pub(super) pending: usize,
    /// Oldest first.
    pub(super) attempts: VecDeque<Logged>,
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
    pub(super) fn push_attempt(&mut self, attempt: Logged, max: usize) -> Vec<String> {
        self.attempts.push_back(attempt);
        let mut evicted = Vec::new();
        while self.attempts.len() > max {
            if let Some(a) = self.attempts.pop_front() {
                evicted.push(a.into_id());
            }
            self.evicted_attempts += 1;
        }
        evicted
    }
}

/// One attempt in a webhook's log.
pub(super) enum Logged {
    /// Made by this instance: kept as the attempt found it, spelled out for the API when read
    /// (most attempts are never read).
    Sent(Box<Sent>),
    /// Loaded from the journal or heard from another instance: already in the API's form.
    Stored(Box<api::AttemptOut>),
}

/// An attempt this instance made.
pub(super) struct Sent {
    pub(super) id: String,
    pub(super) message_id: Arc<str>,
    pub(super) event: Arc<str>,
    /// The webhook's URL as saved.
    pub(super) url: Arc<str>,
    pub(super) number: u32,
    pub(super) trigger: api::AttemptTrigger,
    pub(super) times: AttemptTimes,
    pub(super) result: AttemptResult,
}

impl Logged {
    pub(super) fn id(&self) -> &str {
        match self {
            Logged::Sent(a) => &a.id,
            Logged::Stored(a) => &a.id,
        }
    }

    fn into_id(self) -> String {
        match self {
            Logged::Sent(a) => a.id,
            Logged::Stored(a) => a.id,
        }
    }

    pub(super) fn to_out(&self, webhook_id: &str) -> api::AttemptOut {
        match self {
            Logged::Sent(a) => a.to_out(webhook_id),
            Logged::Stored(a) => (**a).clone(),
        }
    }
}

impl Sent {
    pub(super) fn new(
        message_id: &Arc<str>,
        event: &Arc<str>,
        url: &Arc<str>,
        number: u32,
        trigger: api::AttemptTrigger,
        result: AttemptResult,
        times: AttemptTimes,
    ) -> Self {
        Self {
            id: crate::random_id("atm_"),
            message_id: message_id.clone(),
            event: event.clone(),
            url: url.clone(),
            number,
            trigger,
            times,
            result,
        }
    }

    /// The API's form (and the journal's).
    pub(super) fn to_out(&self, webhook_id: &str) -> api::AttemptOut {
        let result = &self.result;
        api::AttemptOut {
            id: self.id.clone(),
            message_id: self.message_id.to_string(),
            webhook_id: webhook_id.to_owned(),
            event: self.event.to_string(),
            attempt: self.number,
            trigger: self.trigger,
            started_at: crate::rfc3339(result.started_at),
            scheduled_at: self.times.scheduled_at.map(crate::rfc3339),
            url: self.url.to_string(),
            request_headers: result.request_headers.to_api(),
            request_body_size: result.request_body_size,
            request_body: Some(lossy(&result.request_body)),
            request_body_truncated: result.request_body_truncated(),
            delivered: result.verdict == Verdict::Delivered,
            status: result.status,
            duration_ms: millis(result.duration),
            response_headers: result.response_headers.to_api(),
            response_body: result.response_text(),
            response_body_truncated: result.response_truncated,
            error: result.error.clone(),
            next_attempt_at: self.times.next_at.map(crate::rfc3339),
        }
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
