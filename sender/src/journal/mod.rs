//! The journal: where webhooks, messages and attempt logs are kept beyond this process.
//!
//! The registry and the delivery logs work on their in-memory maps (the working set, always
//! bounded); a [`Journal`] gets every change written through, in order, and gives everything
//! back when the sender starts. With `--store memory` there is no journal: the maps are the
//! store. [`SqliteJournal`] writes into the sender's SQLite file through the file's one writer
//! thread (group commit, `synchronous=FULL`: a call that waits is answered after its group is
//! committed), the same writer as its [`SqliteQueue`], so a message is in the journal before its
//! task is in the queue. [`RedisJournal`] keeps the same in a Redis shared by several instances.
//!
//! [`SqliteQueue`]: crate::queue::SqliteQueue

mod redis;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

pub use self::redis::{Change, DEADLINE as REDIS_DEADLINE, RedisJournal};
pub use self::sqlite::SqliteJournal;

/// One message as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// The exact bytes sent.
    pub body: Bytes,
    pub created_at_ms: i64,
    pub state: MessageStateRecord,
}

/// A message's changing part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStateRecord {
    pub state: api::MessageState,
    pub attempts: u32,
    pub next_attempt_at_ms: Option<i64>,
    pub error: Option<String>,
}

/// Everything a journal holds, as loaded at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Oldest first.
    pub webhooks: Vec<api::WebhookOut>,
    /// Oldest first.
    pub messages: Vec<MessageRecord>,
    /// Oldest first.
    pub attempts: Vec<api::AttemptOut>,
    /// Per webhook: (attempts, messages) evicted from its log so far.
    pub evicted: HashMap<String, (u64, u64)>,
}

/// Why the journal could not write or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sender store unavailable: {0}")]
pub struct JournalError(pub String);

pub(crate) fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError(e.to_string())
}

pub(crate) fn state_name(s: api::MessageState) -> &'static str {
    match s {
        api::MessageState::Pending => "pending",
        api::MessageState::Scheduled => "scheduled",
        api::MessageState::Delivered => "delivered",
        api::MessageState::Failed => "failed",
    }
}

pub(crate) fn state_from(s: &str) -> api::MessageState {
    match s {
        "scheduled" => api::MessageState::Scheduled,
        "delivered" => api::MessageState::Delivered,
        "failed" => api::MessageState::Failed,
        _ => api::MessageState::Pending,
    }
}

/// Write-through persistence of the registry and the delivery logs.
pub trait Journal: Send + Sync + 'static {
    fn load(&self) -> Result<Snapshot, JournalError>;
    /// Creates or replaces a webhook (its settings and counters), committed when it returns.
    fn put_webhook(&self, webhook: &api::WebhookOut) -> Result<(), JournalError>;
    /// [`Journal::put_webhook`] for counters: written in order, without waiting (a failure
    /// is logged).
    fn put_webhook_later(&self, webhook: &api::WebhookOut) {
        if let Err(e) = self.put_webhook(webhook) {
            tracing::warn!("sender store: webhook {}: {e}", webhook.id);
        }
    }
    /// Deletes a webhook with its messages, attempts and eviction counts.
    fn delete_webhook(&self, id: &str) -> Result<(), JournalError>;
    fn insert_message(&self, message: &MessageRecord) -> Result<(), JournalError>;
    /// [`Journal::insert_message`] for several messages (an emit's fan-out), in order, as one
    /// write: one job of the SQLite writer, one pipelined round trip to Redis.
    fn insert_messages(&self, messages: &[MessageRecord]) -> Result<(), JournalError> {
        messages.iter().try_for_each(|m| self.insert_message(m))
    }
    fn update_message(&self, id: &str, state: &MessageStateRecord) -> Result<(), JournalError>;
    /// Messages and attempts dropped from a webhook's log by its bounds (counted).
    fn evict(
        &self,
        webhook_id: &str,
        messages: &[Arc<str>],
        attempts: &[String],
    ) -> Result<(), JournalError>;
    fn insert_attempt(&self, attempt: &api::AttemptOut) -> Result<(), JournalError>;
    /// One message as the journal holds it now: for a task another instance queued (a shared
    /// store), whose message this instance has not heard of yet. `None` when not kept.
    fn get_message(&self, _id: &str) -> Result<Option<MessageRecord>, JournalError> {
        Ok(None)
    }
    /// One webhook as the journal holds it now (see [`Journal::get_message`]).
    fn get_webhook(&self, _id: &str) -> Result<Option<api::WebhookOut>, JournalError> {
        Ok(None)
    }
}

/// The file the sender keeps beside a `--store sqlite:PATH` file: `PATH` with its extension
/// replaced by `sender.db` (`hookbin.db` -> `hookbin.sender.db`). bin-server's store locks its
/// own file exclusively, so the sender has its own file (and lock) next to it.
pub fn sibling_path(store_path: &Path) -> PathBuf {
    store_path.with_extension("sender.db")
}
