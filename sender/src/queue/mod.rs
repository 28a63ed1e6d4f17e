//! The delivery queue: which message is due for which webhook, and when.
//!
//! [`DeliveryQueue`] is the seam between the engine and where its schedule lives:
//! [`MemoryQueue`] (this process, lost on restart), [`SqliteQueue`] (a file: every answer
//! is committed before it returns, so a retry scheduled before a crash is still due after it)
//! and [`RedisQueue`] (shared by several instances; every call one atomic Lua script).
//!
//! # The contract (checked on every backend by the same conformance tests)
//! - [`send`](DeliveryQueue::send) queues a task due at a time (a delay is a due time in the
//!   future). A task id (the message id) is queued at most once: sending it again replaces it.
//! - [`claim`](DeliveryQueue::claim) takes up to `max` tasks due at `now`, earliest due first
//!   (ties: the order they were sent), skipping the webhooks named (those at their concurrency
//!   bound), and leases them until `now + lease`. A leased task is not claimed again while its
//!   lease runs; an expired lease makes it due again (its holder is presumed dead), and the
//!   old holder's [`ack`](DeliveryQueue::ack) or [`retry`](DeliveryQueue::retry) then answers
//!   [`QueueError::LeaseLost`] so two holders never both finish it.
//! - [`send_many`](DeliveryQueue::send_many) is `send` for several tasks, in their order
//!   (an emit's fan-out: one commit or one script instead of one per webhook).
//! - [`ack`](DeliveryQueue::ack) removes a finished task; [`retry`](DeliveryQueue::retry) puts
//!   it back due at a new time with its failure count (a nack).
//! - [`remove_webhook`](DeliveryQueue::remove_webhook) drops every task of a webhook (deleted or
//!   disabled) and returns their ids: its pending retries end.
//! - [`due_now`](DeliveryQueue::due_now) makes a waiting task (queued, not leased) due at `now`
//!   ("Retry now"), keeping its failures and its place among tasks due at the same time; a task
//!   that is leased (being sent) or not queued is left alone and answers false.
//! - Times are milliseconds since the Unix epoch given by the caller, so the engine's clock
//!   (paused in tests) is the only clock.

mod memory;
mod redis;
mod sqlite;
pub(crate) mod writer;

#[cfg(test)]
pub(crate) mod conformance;

use std::collections::HashSet;
use std::time::Duration;

pub use memory::MemoryQueue;
pub use redis::RedisQueue;
#[cfg(test)]
pub(crate) use redis::TestRedis;
pub use sqlite::{SqliteQueue, open_connection};

/// One message to deliver to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The message id (`msg_...`): one task per message at a time.
    pub id: String,
    pub webhook_id: String,
    /// Failed attempts of this run so far (the retry schedule's position).
    pub failed: u32,
    /// What started this run: `scheduled` (an emit) or `resend`.
    pub trigger: api::AttemptTrigger,
}

/// A claimed task and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub task: Task,
    /// When the task was due: with a later start, the attempt log shows how late it went.
    pub due_ms: i64,
    /// Proves the claim: ack and retry must present it.
    pub token: String,
    pub lease_until_ms: i64,
}

/// Why a queue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The lease expired and the task was claimed again (or removed): this holder must drop it.
    #[error("the lease on task `{0}` was lost")]
    LeaseLost(String),
    /// The backend failed (I/O, a broken connection).
    #[error("delivery queue unavailable: {0}")]
    Unavailable(String),
}

/// Where scheduled deliveries live. See the module documentation for the contract.
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Queues `task` due at `due_ms` (replacing a queued task of the same id).
    async fn send(&self, task: Task, due_ms: i64) -> Result<(), QueueError>;

    /// [`send`](DeliveryQueue::send) for several tasks in one call (an emit's messages), in the
    /// order given: one commit, one script. The default sends them one by one.
    async fn send_many(&self, tasks: Vec<(Task, i64)>) -> Result<(), QueueError> {
        for (task, due_ms) in tasks {
            self.send(task, due_ms).await?;
        }
        Ok(())
    }

    /// Leases up to `max` due tasks, earliest first, skipping the webhooks in `skip`.
    async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        max: usize,
        skip: &HashSet<String>,
    ) -> Result<Vec<Leased>, QueueError>;

    /// The task is finished: removes it.
    async fn ack(&self, leased: &Leased) -> Result<(), QueueError>;

    /// The task is due again at `due_ms`, `failed` attempts into its run.
    async fn retry(&self, leased: &Leased, due_ms: i64, failed: u32) -> Result<(), QueueError>;

    /// Makes task `id` due at `now_ms` when it is waiting for a later time; true when it is now
    /// claimable (it was waiting, or its lease had expired), false when it is leased or not
    /// queued.
    async fn due_now(&self, id: &str, now_ms: i64) -> Result<bool, QueueError>;

    /// Drops every task of `webhook_id`, leased or not; returns their ids.
    async fn remove_webhook(&self, webhook_id: &str) -> Result<Vec<String>, QueueError>;

    /// The earliest time a task becomes claimable (a due time, or a lease's end).
    async fn next_due(&self) -> Result<Option<i64>, QueueError>;

    /// Every queued task with its due time (leased ones too), earliest first: for the shutdown
    /// report and for rebuilding the engine's view after a restart.
    async fn tasks(&self) -> Result<Vec<(Task, i64)>, QueueError>;
}

/// A lease token: unique across processes (a random prefix drawn once per process) and cheap
/// (a counter after it): one is made per claimed task.
pub(crate) fn new_token() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::random_id("lse_"));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}.{n:x}")
}

pub(crate) fn trigger_name(t: api::AttemptTrigger) -> &'static str {
    match t {
        api::AttemptTrigger::Scheduled => "scheduled",
        api::AttemptTrigger::Resend => "resend",
        api::AttemptTrigger::Test => "test",
    }
}

pub(crate) fn trigger_from(name: &str) -> api::AttemptTrigger {
    match name {
        "resend" => api::AttemptTrigger::Resend,
        "test" => api::AttemptTrigger::Test,
        _ => api::AttemptTrigger::Scheduled,
    }
}

pub(crate) fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
