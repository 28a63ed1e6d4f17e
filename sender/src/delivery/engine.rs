//! The engine: tasks that move each message through its webhook's queue, attempts, the
//! [`decide`](super::decide) step and the logs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::DeliveryConfig;
use super::attempt::{Verdict, checked_client, send_checked, send_checked_url};
use super::decision::{Attempted, Decision, RetryPolicy, decide};
use super::log::{AttemptTimes, EndpointLog, Logged, Message, Sent, millis};
use crate::journal::{Change, Journal};
use crate::lock;
use crate::outbound::{Outbound, OutboundClient};
use crate::queue::{DeliveryQueue, Leased, MemoryQueue, QueueError, Task};
use crate::registry::{PreviousSecret, Registry, SigningSecrets, Webhook};
use crate::signing::Secret;
use rand::Rng;

/// Why the engine refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("no message `{0}`")]
    MessageNotFound(String),
    #[error("no webhook `{0}`")]
    WebhookNotFound(String),
    #[error("message `{0}` is still pending or scheduled; wait for it to finish")]
    InProgress(String),
    #[error("webhook `{0}` is disabled; re-enable it before resending")]
    WebhookDisabled(String),
    #[error("{0} messages are already pending for webhook `{1}`; try again later")]
    QueueFull(usize, String),
    #[error("the sender is shutting down")]
    ShuttingDown,
    #[error("the delivery queue is unavailable: {0}")]
    QueueUnavailable(String),
    #[error("message `{0}` is not waiting for a retry (it is being sent now, or has finished)")]
    NotWaiting(String),
}

/// A message that had not finished at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub message_id: String,
    pub webhook_id: String,
    pub event: String,
    pub state: api::MessageState,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What [`Delivery::shutdown`] left behind: never hidden.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    /// Messages waiting for a retry or for their turn (not lost: listed here).
    pub unfinished: Vec<Unfinished>,
    /// True when in-flight attempts were still running at the end of the grace period.
    pub timed_out: bool,
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unfinished.is_empty() {
            return write!(f, "no messages pending");
        }
        writeln!(f, "{} messages not finished:", self.unfinished.len())?;
        for u in &self.unfinished {
            write!(
                f,
                "  {} ({} -> {}): {:?}, {} attempts",
                u.message_id, u.event, u.webhook_id, u.state, u.attempts
            )?;
            if let Some(at) = u.next_attempt_at {
                write!(f, ", next attempt was due {}", crate::rfc3339(at))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// How long a claimed task stays leased beyond the request timeout: an instance that dies
/// mid-attempt has its task claimed again this long after the attempt could have ended.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Tasks claimed at once (at most the free engine slots).
const CLAIM_BATCH: usize = 64;
/// While attempts are in flight, the dispatcher claims only once this many engine slots are
/// free (or fewer when the engine is smaller): one claim per slot freed would cost a queue
/// round trip, and a scan past busy webhooks, per delivery.
const CLAIM_MIN: usize = 16;
/// ... but never waits longer than this for them: a due message goes out at most this late
/// because of batching.
const CLAIM_WAIT: Duration = Duration::from_millis(20);
/// The dispatcher looks at the queue at least this often even when nothing woke it (work
/// another instance or a restart put there).
const POLL: Duration = Duration::from_secs(1);

/// The engine's clock: the wall clock when the engine started, moved on by tokio's monotonic
/// clock (so due times stored in a queue are wall-clock times that survive restarts, and the
/// paused clock of tests drives retries).
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall0_ms: i64,
    mono0: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall0_ms: Utc::now().timestamp_millis(),
            mono0: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.mono0.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall0_ms.saturating_add(elapsed)
    }

    fn instant_at(&self, ms: i64) -> Instant {
        let after = u64::try_from(ms.saturating_sub(self.wall0_ms)).unwrap_or(0);
        self.mono0 + Duration::from_millis(after)
    }
}

/// Handle to the engine; clones share it.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
}

struct Shared {
    config: DeliveryConfig,
    /// Under the outbound policy (see [`crate::outbound`]).
    client: OutboundClient,
    registry: Registry,
    /// What is due when: the engine's only schedule (see [`crate::queue`]).
    queue: Arc<dyn DeliveryQueue>,
    /// Where messages and attempts are written through (none: memory only).
    journal: Option<Arc<dyn Journal>>,
    clock: Clock,
    /// Bounds concurrent requests across all webhooks (sockets, memory).
    global: Arc<Semaphore>,
    /// Requests in flight per webhook (bounded by `max_in_flight_per_webhook`).
    in_flight: Mutex<HashMap<String, usize>>,
    /// Wakes the dispatcher: something was queued, a slot came free.
    wake: Notify,
    started: AtomicBool,
    // std Mutex: short map lookups, never held across `.await`.
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Message id -> webhook id, for resend. Entries leave with their message (eviction,
    /// webhook deletion), so it is bounded like the logs.
    message_index: Mutex<HashMap<Arc<str>, String>>,
    /// Cancelled by shutdown: the dispatcher stops claiming at once.
    shutdown: CancellationToken,
    /// Tracks the dispatcher and every attempt so shutdown can wait for in-flight attempts.
    tasks: TaskTracker,
}

/// One webhook's logs.
struct Endpoint {
    webhook_id: String,
    // std Mutex: every use is a short update with no `.await` inside.
    log: Mutex<EndpointLog>,
    /// What its attempts need from the webhook, derived once per version of its URL and secrets
    /// (see [`Delivery::target`]).
    target: Mutex<Option<Arc<Target>>>,
}

/// What an attempt needs from its webhook: the URL, parsed once (not once per request), and
/// the secrets that sign.
struct Target {
    /// As saved (the attempt log shows it).
    url: Arc<str>,
    /// None when it does not parse (it cannot: saved URLs were parsed when saved).
    parsed: Option<reqwest::Url>,
    secret: Secret,
    previous: Option<PreviousSecret>,
}

impl Target {
    fn of(w: &Webhook) -> Self {
        Self {
            url: w.url.as_str().into(),
            parsed: reqwest::Url::parse(&w.url).ok(),
            secret: w.secret.clone(),
            previous: w.previous_secret.clone(),
        }
    }

    /// Still what `w` says (compared, not tracked: every way a webhook changes is covered).
    fn matches(&self, w: &Webhook) -> bool {
        *self.url == *w.url && self.secret == w.secret && self.previous == w.previous_secret
    }
}

/// Gives a webhook's slot back (and wakes the dispatcher) however the attempt ends.
struct SlotGuard {
    shared: Arc<Shared>,
    webhook_id: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.shared.in_flight);
        if let Some(n) = in_flight.get_mut(&self.webhook_id) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.webhook_id);
            }
        }
        drop(in_flight);
        self.shared.wake.notify_one();
    }
}

impl Delivery {
    /// An engine over a fresh in-memory queue.
    pub fn new(config: DeliveryConfig, registry: Registry, outbound: &Outbound) -> Self {
        Self::with_queue(config, registry, outbound, Arc::new(MemoryQueue::new()))
    }

    /// An engine over `queue`. Nothing runs until [`Delivery::start`] (or the first message).
    pub fn with_queue(
        config: DeliveryConfig,
        registry: Registry,
        outbound: &Outbound,
        queue: Arc<dyn DeliveryQueue>,
    ) -> Self {
        Self::with_store(config, registry, outbound, queue, None)
    }

    /// An engine over `queue` writing its logs through to `journal`.
    pub fn with_store(
        config: DeliveryConfig,
        registry: Registry,
        outbound: &Outbound,
        queue: Arc<dyn DeliveryQueue>,
        journal: Option<Arc<dyn Journal>>,
    ) -> Self {
        let client = checked_client(outbound, config.connect_timeout, &config.user_agent);
        Self {
            shared: Arc::new(Shared {
                global: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
                client,
                registry,
                queue,
                journal,
                clock: Clock::new(),
                in_flight: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                started: AtomicBool::new(false),
                endpoints: Mutex::new(HashMap::new()),
                message_index: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.shared.config
    }

    pub fn client(&self) -> &OutboundClient {
        &self.shared.client
    }

    /// Starts the dispatcher (once; later calls do nothing). Must run inside a tokio runtime.
    /// Work already in a persistent queue (retries due while the server was down) goes out
    /// from here on, late but not dropped.
    pub fn start(&self) {
        if self.shared.shutdown.is_cancelled() || self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.shared
            .tasks
            .spawn(async move { this.dispatch().await });
    }

    /// Puts back the logs a journal kept (at start, before [`Delivery::start`]). A message the
    /// journal holds as pending or scheduled but the queue lacks (the process died between the
    /// two writes) is queued again, due now, with a fresh schedule: late, never dropped.
    pub async fn restore(&self, snapshot: crate::journal::Snapshot) -> Result<(), DeliveryError> {
        let unavailable = |e: QueueError| DeliveryError::QueueUnavailable(e.to_string());
        let queued: HashSet<String> = self
            .shared
            .queue
            .tasks()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|(t, _)| t.id)
            .collect();
        let mut requeue = Vec::new();
        for record in snapshot.messages {
            let webhook_id = record.webhook_id.clone();
            let endpoint = self.endpoint(&webhook_id);
            let message = Message::from_record(record);
            let id = message.id.clone();
            {
                let mut log = lock(&endpoint.log);
                if !message.finished() {
                    log.pending += 1;
                    if !queued.contains(&*id) {
                        requeue.push(Task {
                            id: id.to_string(),
                            webhook_id: webhook_id.clone(),
                            failed: 0,
                            trigger: api::AttemptTrigger::Scheduled,
                        });
                    }
                }
                log.insert(message, usize::MAX);
            }
            self.index_add(&id, &webhook_id, Vec::new());
        }
        for attempt in snapshot.attempts {
            let endpoint = self.endpoint(&attempt.webhook_id);
            lock(&endpoint.log).push_attempt(Logged::Stored(Box::new(attempt)), usize::MAX);
        }
        for (webhook_id, (attempts, messages)) in snapshot.evicted {
            let endpoint = self.endpoint(&webhook_id);
            let mut log = lock(&endpoint.log);
            log.evicted_attempts = attempts;
            log.evicted_messages = messages;
        }
        let now = self.shared.clock.now_ms();
        for task in requeue {
            self.shared
                .queue
                .send(task, now)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Applies a change another instance made (a shared store, see
    /// [`crate::journal::RedisJournal::follow`]) to this instance's registry and logs, without
    /// writing it back. Applying a change already known does nothing.
    pub fn apply_remote(&self, change: Change) {
        let max_messages = self.shared.config.max_messages_per_webhook;
        let max_attempts = self.shared.config.max_attempts_per_webhook;
        match change {
            Change::WebhookUpserted(out) => self.shared.registry.apply_remote(out),
            Change::WebhookDeleted(id) => {
                self.shared.registry.forget(&id);
                self.forget_logs(&id);
            }
            Change::MessageAdded(record) => {
                let webhook_id = record.webhook_id.clone();
                let endpoint = self.endpoint(&webhook_id);
                let message = Message::from_record(record);
                let id = message.id.clone();
                let evicted = {
                    let mut log = lock(&endpoint.log);
                    if log.message_mut(&id).is_some() {
                        return;
                    }
                    if !message.finished() {
                        log.pending += 1;
                    }
                    // The instance that made it keeps the shared store's bounds.
                    log.insert(message, max_messages)
                };
                self.index_add(&id, &webhook_id, evicted);
            }
            Change::MessageState { id, state } => {
                let Some(webhook_id) = lock(&self.shared.message_index).get(id.as_str()).cloned()
                else {
                    return;
                };
                let Some(endpoint) = self.existing_endpoint(&webhook_id) else {
                    return;
                };
                let mut log = lock(&endpoint.log);
                let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
                let Some(m) = log.message_mut(&id) else {
                    return;
                };
                let was_finished = m.finished();
                m.state = state.state;
                m.attempts = state.attempts;
                m.next_attempt_at = state.next_attempt_at_ms.map(at);
                m.error = state.error;
                let now_finished = m.finished();
                match (was_finished, now_finished) {
                    (false, true) => log.pending = log.pending.saturating_sub(1),
                    (true, false) => log.pending += 1,
                    _ => {}
                }
            }
            Change::AttemptAdded(attempt) => {
                let endpoint = self.endpoint(&attempt.webhook_id);
                let mut log = lock(&endpoint.log);
                if !log.attempts.iter().any(|a| a.id() == attempt.id) {
                    log.push_attempt(Logged::Stored(attempt), max_attempts);
                }
            }
        }
        self.shared.registry.touch();
    }

    /// A claimed task this instance has not heard of yet (another instance queued it just
    /// now, its notice is still on the way): its webhook and message are read from the journal.
    fn adopt(&self, task: &Task) {
        let Some(j) = &self.shared.journal else {
            return;
        };
        if self.shared.registry.get(&task.webhook_id).is_none() {
            match j.get_webhook(&task.webhook_id) {
                Ok(Some(out)) => self.shared.registry.apply_remote(out),
                Ok(None) => return,
                Err(e) => tracing::warn!("reading webhook {}: {e}", task.webhook_id),
            }
        }
        let known = self
            .existing_endpoint(&task.webhook_id)
            .is_some_and(|e| lock(&e.log).message_mut(&task.id).is_some());
        if !known {
            match j.get_message(&task.id) {
                Ok(Some(record)) => self.apply_remote(Change::MessageAdded(record)),
                Ok(None) => {}
                Err(e) => tracing::warn!("reading message {}: {e}", task.id),
            }
        }
    }

    /// The queue's tasks (for tests).
    #[cfg(test)]
    pub(crate) async fn shared_queue_tasks(&self) -> Vec<(Task, i64)> {
        self.shared.queue.tasks().await.unwrap()
    }

    /// A message's exact bytes as this instance holds them (for tests).
    #[cfg(test)]
    pub(crate) fn message_body(&self, message_id: &str) -> Option<Bytes> {
        let webhook_id = lock(&self.shared.message_index).get(message_id)?.clone();
        let endpoint = self.existing_endpoint(&webhook_id)?;
        let mut log = lock(&endpoint.log);
        log.message_mut(message_id).map(|m| m.body.clone())
    }

    /// Drops a webhook's logs from this instance (not from the journal).
    fn forget_logs(&self, webhook_id: &str) {
        let endpoint = lock(&self.shared.endpoints).remove(webhook_id);
        if let Some(endpoint) = endpoint {
            let ids: Vec<Arc<str>> = lock(&endpoint.log).by_id.keys().cloned().collect();
            let mut index = lock(&self.shared.message_index);
            for id in ids {
                index.remove(&id);
            }
        }
    }

    fn journal_state(&self, m: &Message) {
        if let Some(j) = &self.shared.journal
            && let Err(e) = j.update_message(&m.id, &m.state_record())
        {
            tracing::warn!("saving message {}: {e}", m.id);
        }
    }

    /// Writes an attempt through (in the API's form: spelled out only when there is a journal).
    fn journal_attempt(&self, webhook_id: &str, a: &Sent) {
        if let Some(j) = &self.shared.journal
            && let Err(e) = j.insert_attempt(&a.to_out(webhook_id))
        {
            tracing::warn!("saving attempt {} of {}: {e}", a.id, a.message_id);
        }
    }

    fn journal_evict(&self, webhook_id: &str, messages: &[Arc<str>], attempts: &[String]) {
        if let Some(j) = &self.shared.journal
            && let Err(e) = j.evict(webhook_id, messages, attempts)
        {
            tracing::warn!("dropping evicted log entries of webhook {webhook_id}: {e}");
        }
    }

    fn endpoint(&self, webhook_id: &str) -> Arc<Endpoint> {
        let mut endpoints = lock(&self.shared.endpoints);
        endpoints
            .entry(webhook_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    webhook_id: webhook_id.to_owned(),
                    log: Mutex::new(EndpointLog::default()),
                    target: Mutex::new(None),
                })
            })
            .clone()
    }

    fn existing_endpoint(&self, webhook_id: &str) -> Option<Arc<Endpoint>> {
        lock(&self.shared.endpoints).get(webhook_id).cloned()
    }

    fn index_add(&self, id: &Arc<str>, webhook_id: &str, evicted: Vec<Arc<str>>) {
        let mut index = lock(&self.shared.message_index);
        for gone in evicted {
            index.remove(&gone);
        }
        index.insert(id.clone(), webhook_id.to_owned());
    }

    /// Queues one event for several webhooks (an emit's fan-out) and returns the message ids,
    /// in the order given, once the queue holds their tasks (committed, with a persistent
    /// queue). The messages go to the journal in one write and their tasks to the queue in one
    /// call ([`DeliveryQueue::send_many`]): one commit (SQLite) or one script (Redis) for the
    /// lot instead of one per webhook. At a webhook's pending bound its message is logged as
    /// failed ("queue full") instead; it can be resent.
    pub async fn enqueue_many(
        &self,
        event: &str,
        targets: Vec<(String, Bytes)>,
    ) -> Result<Vec<String>, DeliveryError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(DeliveryError::ShuttingDown);
        }
        let config = &self.shared.config;
        // Each message is decided first, its pending slot taken under the log's lock (so two
        // emits at once cannot both pass the bound).
        let mut planned = Vec::with_capacity(targets.len());
        for (webhook_id, body) in targets {
            let endpoint = self.endpoint(&webhook_id);
            let mut message = Message {
                id: crate::random_id("msg_").into(),
                event: event.into(),
                body,
                created_at: Utc::now(),
                state: api::MessageState::Pending,
                attempts: 0,
                next_attempt_at: None,
                error: None,
            };
            let full = {
                let mut log = lock(&endpoint.log);
                let full = log.pending >= config.max_pending_per_webhook;
                if !full {
                    log.pending += 1;
                }
                full
            };
            if full {
                message.state = api::MessageState::Failed;
                message.error = Some(format!(
                    "queue full: {} messages were already pending for this webhook",
                    config.max_pending_per_webhook
                ));
            }
            planned.push((webhook_id, endpoint, message, full));
        }
        // In the journal before anything answers (and before the queue holds their tasks).
        if let Some(j) = &self.shared.journal {
            let records: Vec<_> = planned
                .iter()
                .map(|(webhook_id, _, message, _)| message.record(webhook_id))
                .collect();
            if let Err(e) = j.insert_messages(&records) {
                for (_, endpoint, _, full) in &planned {
                    if !full {
                        let mut log = lock(&endpoint.log);
                        log.pending = log.pending.saturating_sub(1);
                    }
                }
                return Err(DeliveryError::QueueUnavailable(e.to_string()));
            }
        }
        let mut ids = Vec::with_capacity(planned.len());
        let mut tasks = Vec::new();
        let mut queued = Vec::new();
        for (webhook_id, endpoint, message, full) in planned {
            let id = message.id.clone();
            let evicted = lock(&endpoint.log).insert(message, config.max_messages_per_webhook);
            self.journal_evict(&webhook_id, &evicted, &[]);
            self.index_add(&id, &webhook_id, evicted);
            if full {
                self.shared
                    .registry
                    .note_failed_attempt(&webhook_id, "queue full");
            } else {
                tasks.push(Task {
                    id: id.to_string(),
                    webhook_id: webhook_id.clone(),
                    failed: 0,
                    trigger: api::AttemptTrigger::Scheduled,
                });
                queued.push((endpoint, id.clone()));
            }
            ids.push(id.to_string());
        }
        self.shared.registry.touch();
        self.queue_now(tasks, &queued).await?;
        Ok(ids)
    }

    /// Puts tasks in the queue, due now, and wakes the dispatcher. A queue that cannot take
    /// them ends their messages failed (visible, resendable) and answers the error.
    async fn queue_now(
        &self,
        tasks: Vec<Task>,
        messages: &[(Arc<Endpoint>, Arc<str>)],
    ) -> Result<(), DeliveryError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let now = self.shared.clock.now_ms();
        let tasks = tasks.into_iter().map(|t| (t, now)).collect();
        match self.shared.queue.send_many(tasks).await {
            Ok(()) => {
                self.start();
                self.shared.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                for (endpoint, id) in messages {
                    let _ = self.finish(endpoint, id, Some(format!("not queued: {e}")));
                }
                Err(DeliveryError::QueueUnavailable(e.to_string()))
            }
        }
    }

    /// The webhook a message belongs to, for an operation on the message; refused while
    /// shutting down.
    fn webhook_of(&self, message_id: &str) -> Result<String, DeliveryError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(DeliveryError::ShuttingDown);
        }
        lock(&self.shared.message_index)
            .get(message_id)
            .cloned()
            .ok_or_else(|| DeliveryError::MessageNotFound(message_id.to_owned()))
    }

    /// Sends a message again (after it was delivered or failed), with a fresh retry schedule.
    /// The message keeps its id so receivers can recognise a duplicate.
    pub async fn resend(&self, message_id: &str) -> Result<api::MessageRef, DeliveryError> {
        let webhook_id = self.webhook_of(message_id)?;
        let webhook = self
            .shared
            .registry
            .get(&webhook_id)
            .ok_or_else(|| DeliveryError::WebhookNotFound(webhook_id.clone()))?;
        if !webhook.active {
            return Err(DeliveryError::WebhookDisabled(webhook_id));
        }
        let endpoint = self
            .existing_endpoint(&webhook_id)
            .ok_or_else(|| DeliveryError::MessageNotFound(message_id.to_owned()))?;
        let id = {
            let mut log = lock(&endpoint.log);
            let pending = log.pending;
            let max = self.shared.config.max_pending_per_webhook;
            let message = log
                .message_mut(message_id)
                .ok_or_else(|| DeliveryError::MessageNotFound(message_id.to_owned()))?;
            if !message.finished() {
                return Err(DeliveryError::InProgress(message_id.to_owned()));
            }
            if pending >= max {
                return Err(DeliveryError::QueueFull(max, webhook_id));
            }
            message.state = api::MessageState::Pending;
            message.error = None;
            message.next_attempt_at = None;
            self.journal_state(message);
            let id = message.id.clone();
            log.pending += 1;
            id
        };
        self.shared.registry.touch();
        let task = Task {
            id: id.to_string(),
            webhook_id: webhook_id.clone(),
            failed: 0,
            trigger: api::AttemptTrigger::Resend,
        };
        self.queue_now(vec![task], &[(endpoint, id.clone())])
            .await?;
        Ok(api::MessageRef {
            message_id: id.to_string(),
            webhook_id,
        })
    }

    /// "Retry now": a message waiting for its next attempt (scheduled after a failure) is due
    /// at once. The attempt is the next of its run: the retry schedule goes on from there.
    /// Refused ([`DeliveryError::NotWaiting`]) when it is being sent or has finished.
    pub async fn retry_now(&self, message_id: &str) -> Result<api::MessageRef, DeliveryError> {
        let webhook_id = self.webhook_of(message_id)?;
        let endpoint = self
            .existing_endpoint(&webhook_id)
            .ok_or_else(|| DeliveryError::MessageNotFound(message_id.to_owned()))?;
        let waiting = lock(&endpoint.log)
            .message_mut(message_id)
            .ok_or_else(|| DeliveryError::MessageNotFound(message_id.to_owned()))?
            .state
            == api::MessageState::Scheduled;
        let now = self.shared.clock.now_ms();
        // The queue decides: a task claimed meanwhile (being sent) is not hurried.
        if !waiting
            || !self
                .shared
                .queue
                .due_now(message_id, now)
                .await
                .map_err(|e| DeliveryError::QueueUnavailable(e.to_string()))?
        {
            return Err(DeliveryError::NotWaiting(message_id.to_owned()));
        }
        if let Some(m) = lock(&endpoint.log).message_mut(message_id)
            && m.state == api::MessageState::Scheduled
        {
            m.next_attempt_at = DateTime::from_timestamp_millis(now);
            self.journal_state(m);
        }
        self.shared.registry.touch();
        self.start();
        self.shared.wake.notify_one();
        Ok(api::MessageRef {
            message_id: message_id.to_owned(),
            webhook_id,
        })
    }

    /// Sends one message now, outside the queues, with no retry, and returns the true outcome.
    /// The attempt is logged (trigger `test`); delivered, it counts in "Events sent" (as its
    /// resends do), but a failed test does not count towards disabling the webhook.
    ///
    /// The attempt runs in its own task: a caller that goes away (a browser dialog closed,
    /// `curl -m 2`) does not stop it, and it is logged with its outcome all the same.
    pub async fn test(
        &self,
        webhook: &Webhook,
        event: &str,
        body: Bytes,
    ) -> Result<api::TestOutcome, DeliveryError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(DeliveryError::ShuttingDown);
        }
        let this = self.clone();
        let webhook = webhook.clone();
        let event = event.to_owned();
        self.shared
            .tasks
            .spawn(async move { this.run_test(&webhook, &event, body).await })
            .await
            .map_err(|e| DeliveryError::QueueUnavailable(format!("the test attempt failed: {e}")))
    }

    async fn run_test(&self, webhook: &Webhook, event: &str, body: Bytes) -> api::TestOutcome {
        let config = &self.shared.config;
        let endpoint = self.endpoint(&webhook.id);
        let id: Arc<str> = crate::random_id("msg_").into();
        let result = send_checked(
            &self.shared.client,
            config.request_timeout,
            &webhook.url,
            &webhook.signing_secrets(Utc::now()),
            &id,
            body.clone(),
        )
        .await;
        let delivered = result.verdict == Verdict::Delivered;
        if delivered {
            self.shared.registry.note_test_delivered(&webhook.id);
        }
        let outcome = api::TestOutcome {
            delivered,
            status: result.status,
            duration_ms: millis(result.duration),
            response_body: result.response_text(),
            error: result.error.clone(),
            message_id: id.to_string(),
            event: event.to_owned(),
            webhook_id: Some(webhook.id.clone()),
            request_headers: result.request_headers.to_api(),
        };
        let started_at = result.started_at;
        let event: Arc<str> = event.into();
        let attempt = Sent::new(
            &id,
            &event,
            &webhook.url.as_str().into(),
            1,
            api::AttemptTrigger::Test,
            result,
            AttemptTimes::default(),
        );
        self.journal_attempt(&webhook.id, &attempt);
        let (evicted, evicted_attempts) = {
            let mut log = lock(&endpoint.log);
            let evicted_attempts = log.push_attempt(
                Logged::Sent(Box::new(attempt)),
                config.max_attempts_per_webhook,
            );
            let message = Message {
                id: id.clone(),
                event,
                body,
                created_at: started_at,
                state: if delivered {
                    api::MessageState::Delivered
                } else {
                    api::MessageState::Failed
                },
                attempts: 1,
                next_attempt_at: None,
                error: if delivered {
                    None
                } else {
                    outcome.error.clone()
                },
            };
            if let Some(j) = &self.shared.journal
                && let Err(e) = j.insert_message(&message.record(&webhook.id))
            {
                tracing::warn!("saving test message {id}: {e}");
            }
            (
                log.insert(message, config.max_messages_per_webhook),
                evicted_attempts,
            )
        };
        self.journal_evict(&webhook.id, &evicted, &evicted_attempts);
        self.index_add(&id, &webhook.id, evicted);
        self.shared.registry.touch();
        outcome
    }

    /// A webhook was disabled, re-enabled or edited: when it is now off, its queued messages
    /// (waiting for their turn or for a retry) end failed at once, not hours later.
    pub async fn webhook_changed(&self, webhook_id: &str) {
        match self.shared.registry.get(webhook_id) {
            Some(w) if w.active => {}
            Some(w) => {
                let reason = w.disabled_reason.unwrap_or_else(|| "switched off".into());
                self.end_webhook(webhook_id, &reason).await;
            }
            None => {
                self.end_webhook(webhook_id, "the webhook was deleted")
                    .await
            }
        }
    }

    /// A webhook was deleted: its queued messages leave the queue, its logs are dropped.
    pub async fn webhook_removed(&self, webhook_id: &str) {
        if let Err(e) = self.shared.queue.remove_webhook(webhook_id).await {
            tracing::warn!("removing the queued messages of webhook {webhook_id}: {e}");
        }
        self.forget_logs(webhook_id);
    }

    /// Takes a webhook's messages out of the queue and ends them failed with `reason`.
    async fn end_webhook(&self, webhook_id: &str, reason: &str) {
        let ids = match self.shared.queue.remove_webhook(webhook_id).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("removing the queued messages of webhook {webhook_id}: {e}");
                return;
            }
        };
        if let Some(endpoint) = self.existing_endpoint(webhook_id) {
            for id in ids {
                let _ = self.finish(&endpoint, &id, Some(format!("webhook disabled: {reason}")));
            }
        }
        self.shared.registry.touch();
    }

    /// The webhook's log, newest first (`limit` attempts and messages at most).
    pub fn log(&self, webhook_id: &str, limit: usize) -> api::DeliveryLog {
        let mut out = api::DeliveryLog {
            webhook_id: webhook_id.to_owned(),
            attempts: Vec::new(),
            messages: Vec::new(),
            evicted_attempts: 0,
            evicted_messages: 0,
        };
        if let Some(endpoint) = self.existing_endpoint(webhook_id) {
            let log = lock(&endpoint.log);
            out.attempts = log
                .attempts
                .iter()
                .rev()
                .take(limit)
                .map(|a| a.to_out(webhook_id))
                .collect();
            out.messages = log
                .messages
                .values()
                .rev()
                .take(limit)
                .map(|m| m.to_out(webhook_id))
                .collect();
            out.evicted_attempts = log.evicted_attempts;
            out.evicted_messages = log.evicted_messages;
        }
        out
    }

    /// One message, wherever it is.
    pub fn message(&self, message_id: &str) -> Option<api::MessageOut> {
        let webhook_id = lock(&self.shared.message_index).get(message_id)?.clone();
        let endpoint = self.existing_endpoint(&webhook_id)?;
        let mut log = lock(&endpoint.log);
        log.message_mut(message_id).map(|m| m.to_out(&webhook_id))
    }

    /// Stops taking messages, lets in-flight attempts finish for up to `grace`, and reports the
    /// messages left pending or scheduled.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        let timed_out = tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err();
        let endpoints: Vec<Arc<Endpoint>> =
            lock(&self.shared.endpoints).values().cloned().collect();
        let mut unfinished = Vec::new();
        for endpoint in endpoints {
            let log = lock(&endpoint.log);
            for m in log.messages.values().filter(|m| !m.finished()) {
                unfinished.push(Unfinished {
                    message_id: m.id.to_string(),
                    webhook_id: endpoint.webhook_id.clone(),
                    event: m.event.to_string(),
                    state: m.state,
                    attempts: m.attempts,
                    next_attempt_at: m.next_attempt_at,
                });
            }
        }
        ShutdownReport {
            unfinished,
            timed_out,
        }
    }

    /// Ends a message: updates its state, the pending count and the webhook's counters.
    /// Returns the reason when this disabled the webhook (too many failed messages in a row):
    /// the caller then ends the webhook's queue.
    #[must_use]
    fn finish(&self, endpoint: &Endpoint, id: &str, error: Option<String>) -> Option<String> {
        let delivered = error.is_none();
        {
            let mut log = lock(&endpoint.log);
            let message = log.message_mut(id)?;
            if message.finished() {
                return None;
            }
            message.state = if delivered {
                api::MessageState::Delivered
            } else {
                api::MessageState::Failed
            };
            message.next_attempt_at = None;
            message.error = error;
            self.journal_state(message);
            log.pending = log.pending.saturating_sub(1);
        }
        let registry = &self.shared.registry;
        if delivered {
            registry.note_delivered(&endpoint.webhook_id);
            None
        } else {
            registry.note_failed_message(
                &endpoint.webhook_id,
                self.shared.config.disable_after_failures,
            )
        }
    }

    /// Webhooks at their bound of requests in flight: the dispatcher skips their tasks.
    fn saturated(&self) -> HashSet<String> {
        let max = self.shared.config.max_in_flight_per_webhook.max(1);
        lock(&self.shared.in_flight)
            .iter()
            .filter(|(_, n)| **n >= max)
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// The stateless worker loop: claims due tasks while there are free slots, starts an
    /// attempt for each, and otherwise sleeps until the next due time, a wake-up or [`POLL`].
    async fn dispatch(self) {
        let shared = &self.shared;
        let lease = shared.config.request_timeout + LEASE_MARGIN;
        let mut last_claim = Instant::now();
        loop {
            if shared.shutdown.is_cancelled() {
                return;
            }
            let now = shared.clock.now_ms();
            let mut next = None;
            let free = shared.global.available_permits();
            let max = shared.config.max_in_flight.max(1);
            let busy = free < max;
            let batch_ready =
                !busy || free >= CLAIM_MIN.min(max) || last_claim.elapsed() >= CLAIM_WAIT;
            if free > 0 && !batch_ready {
                // Wait for more slots, a little at most.
                next = Some(now.saturating_add(i64::try_from(CLAIM_WAIT.as_millis()).unwrap_or(0)));
            } else if free > 0 {
                last_claim = Instant::now();
                let skip = self.saturated();
                match shared
                    .queue
                    .claim(now, lease, free.min(CLAIM_BATCH), &skip)
                    .await
                {
                    Ok(claimed) if !claimed.is_empty() => {
                        for leased in claimed {
                            self.start_attempt(leased).await;
                        }
                        continue;
                    }
                    Ok(_) => match shared.queue.next_due().await {
                        Ok(due) => next = due,
                        Err(e) => tracing::warn!("delivery queue: {e}"),
                    },
                    Err(e) => tracing::warn!("delivery queue: {e}"),
                }
            }
            // Due now but skipped (its webhook is busy): a freed slot wakes us.
            let poll = Instant::now() + POLL;
            let deadline = match next {
                Some(at) if at > now => shared.clock.instant_at(at).min(poll),
                _ => poll,
            };
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Takes the webhook's slot and an engine slot for a claimed task and runs its attempt; a
    /// task whose webhook is at its bound goes back to the queue unchanged (due as it was).
    async fn start_attempt(&self, leased: Leased) {
        let shared = &self.shared;
        let max = shared.config.max_in_flight_per_webhook.max(1);
        let permit = {
            let mut in_flight = lock(&shared.in_flight);
            let n = in_flight.entry(leased.task.webhook_id.clone()).or_default();
            if *n >= max {
                None
            } else {
                let permit = shared.global.clone().try_acquire_owned().ok();
                if permit.is_some() {
                    *n += 1;
                }
                permit
            }
        };
        let Some(permit) = permit else {
            if let Err(e) = shared
                .queue
                .retry(&leased, leased.due_ms, leased.task.failed)
                .await
            {
                tracing::warn!("delivery queue: giving back {}: {e}", leased.task.id);
            }
            return;
        };
        let guard = SlotGuard {
            shared: Arc::clone(shared),
            webhook_id: leased.task.webhook_id.clone(),
        };
        let this = self.clone();
        shared.tasks.spawn(async move {
            this.attempt(leased, permit, guard).await;
        });
    }

    /// One attempt of a claimed task, then the step [`decide`] picks, carried out on the
    /// queue (ack or retry), the logs and the registry.
    async fn attempt(&self, leased: Leased, permit: OwnedSemaphorePermit, guard: SlotGuard) {
        let shared = &self.shared;
        let config = &shared.config;
        let id = leased.task.id.as_str();
        let queue = &shared.queue;
        let ack = || async {
            if let Err(e) = queue.ack(&leased).await {
                tracing::warn!("delivery queue: finishing {id}: {e}");
            }
        };
        // Another instance's message whose notice has not come yet: read it from the store.
        self.adopt(&leased.task);
        let Some(endpoint) = self.existing_endpoint(&leased.task.webhook_id) else {
            // The webhook and its logs are gone.
            ack().await;
            return;
        };
        let target = match self.target(&endpoint) {
            Ok(target) => target,
            Err(error) => {
                ack().await;
                let _ = self.finish(&endpoint, id, Some(error));
                return;
            }
        };
        let taken = {
            let mut log = lock(&endpoint.log);
            log.message_mut(id).map(|message| {
                message.attempts += 1;
                message.state = api::MessageState::Pending;
                message.next_attempt_at = None;
                (
                    message.id.clone(),
                    message.event.clone(),
                    message.body.clone(),
                    message.attempts,
                )
            })
        };
        let Some((message_id, event, body, number)) = taken else {
            // Evicted while pending cannot happen (only finished messages are evicted).
            ack().await;
            return;
        };
        let secrets = SigningSecrets::at(&target.secret, target.previous.as_ref(), Utc::now());
        let timeout = config.request_timeout;
        let result = match &target.parsed {
            Some(url) => send_checked_url(&shared.client, timeout, url, &secrets, id, body).await,
            // Refused with the parse error, as it would be every time.
            None => send_checked(&shared.client, timeout, &target.url, &secrets, id, body).await,
        };
        // Slots are held for the request only, never while a retry waits.
        drop(permit);
        drop(guard);

        let decision = decide(
            Attempted {
                verdict: result.verdict,
                error: result.error.as_deref(),
                retry_after: result.retry_after,
            },
            leased.task.failed,
            RetryPolicy {
                schedule: &config.retry_schedule,
                max_retry_after: config.max_retry_after,
            },
            rand::thread_rng().gen_range(0.0..=1.0),
        );
        let now = shared.clock.now_ms();
        let next_ms = match &decision {
            Decision::Retry { delay } => {
                Some(now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)))
            }
            _ => None,
        };
        // In the engine's clock, the one due times are kept in.
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let next_at = next_ms.map(at);
        let times = AttemptTimes {
            scheduled_at: (leased.task.failed > 0).then(|| at(leased.due_ms)),
            next_at,
        };
        let webhook_id = endpoint.webhook_id.as_str();
        let verdict = result.verdict;
        let error = result.error.clone();
        let attempt = Sent::new(
            &message_id,
            &event,
            &target.url,
            number,
            leased.task.trigger,
            result,
            times,
        );
        self.journal_attempt(webhook_id, &attempt);
        if matches!(decision, Decision::Retry { .. }) {
            // Queued (and so, on SQLite or Redis, stored) before the log says "scheduled": a
            // crash after anyone saw that finds the retry due, not held by a dead lease.
            let due = next_ms.unwrap_or(now);
            if let Err(e) = queue
                .retry(&leased, due, leased.task.failed.saturating_add(1))
                .await
            {
                tracing::warn!("delivery queue: scheduling the retry of {id}: {e}");
            }
        }
        let evicted = {
            let mut log = lock(&endpoint.log);
            let evicted = log.push_attempt(
                Logged::Sent(Box::new(attempt)),
                config.max_attempts_per_webhook,
            );
            if let (Some(at), Some(m)) = (next_at, log.message_mut(id)) {
                m.state = api::MessageState::Scheduled;
                m.next_attempt_at = Some(at);
                m.error = error.clone();
                self.journal_state(m);
            }
            evicted
        };
        self.journal_evict(webhook_id, &[], &evicted);
        let registry = &shared.registry;
        if verdict != Verdict::Delivered {
            registry.note_failed_attempt(webhook_id, error.as_deref().unwrap_or("failed"));
        }
        let disabled = match decision {
            Decision::Deliver => {
                ack().await;
                self.finish(&endpoint, id, None)
            }
            Decision::Disable { error, reason } => {
                registry.disable(webhook_id, &reason);
                ack().await;
                let _ = self.finish(&endpoint, id, Some(error));
                Some(reason)
            }
            Decision::Retry { .. } => {
                registry.touch();
                // Disabled or deleted while this attempt ran: the retry just queued ends too.
                registry
                    .with(webhook_id, |w| {
                        (!w.active).then(|| {
                            w.disabled_reason
                                .clone()
                                .unwrap_or_else(|| "switched off".into())
                        })
                    })
                    .unwrap_or_else(|| Some("the webhook was deleted".into()))
            }
            Decision::Fail { error } => {
                ack().await;
                self.finish(&endpoint, id, Some(error))
            }
        };
        if let Some(reason) = disabled {
            self.end_webhook(webhook_id, &reason).await;
        }
    }

    /// What an attempt needs from its webhook, or why it must not be sent (the webhook was
    /// disabled or deleted). Read under the registry's lock, without copying the webhook; the
    /// endpoint's copy is reused while the webhook's URL and secrets are unchanged.
    fn target(&self, endpoint: &Endpoint) -> Result<Arc<Target>, String> {
        let mut cached = lock(&endpoint.target);
        self.shared
            .registry
            .with(&endpoint.webhook_id, |w| {
                if !w.active {
                    return Err(format!(
                        "webhook disabled: {}",
                        w.disabled_reason.as_deref().unwrap_or("switched off")
                    ));
                }
                match &*cached {
                    Some(t) if t.matches(w) => Ok(Arc::clone(t)),
                    _ => {
                        let t = Arc::new(Target::of(w));
                        *cached = Some(Arc::clone(&t));
                        Ok(t)
                    }
                }
            })
            .unwrap_or_else(|| Err("the webhook was deleted".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::LOGGED_BODY_BYTES;
    use crate::signing::unix_now;
    use crate::{Hooks, HooksConfig};
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use std::collections::VecDeque;

    const SECOND: Duration = Duration::from_secs(1);

    // -- A receiver whose answers are scripted -------------------------------------------------

    #[derive(Clone, Debug)]
    enum Reply {
        Status(u16),
        RetryAfter(u16, &'static str),
        Redirect,
        /// Waits, then answers 200.
        Slow(Duration),
        /// 200 with a body of this many bytes and a header of its own.
        Big(usize),
    }

    struct Hit {
        at: Instant,
        headers: Vec<(String, String)>,
        body: Bytes,
    }

    #[derive(Default)]
    struct Script {
        replies: VecDeque<Reply>,
        then: Option<Reply>,
        hits: Vec<Hit>,
        /// Requests being answered now, and the most at once so far.
        open: usize,
        most_open: usize,
    }

    #[derive(Clone, Default)]
    struct Receiver(Arc<Mutex<Script>>);

    impl Receiver {
        fn script(&self, replies: &[Reply], then: Reply) {
            let mut s = self.0.lock().unwrap();
            s.replies = replies.iter().cloned().collect();
            s.then = Some(then);
        }
        fn hits(&self) -> usize {
            self.0.lock().unwrap().hits.len()
        }
        fn gaps(&self) -> Vec<Duration> {
            let s = self.0.lock().unwrap();
            s.hits.windows(2).map(|w| w[1].at - w[0].at).collect()
        }
    }

    async fn answer(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
        let reply = {
            let mut s = r.0.lock().unwrap();
            s.hits.push(Hit {
                at: Instant::now(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body,
            });
            s.open += 1;
            s.most_open = s.most_open.max(s.open);
            s.replies
                .pop_front()
                .or_else(|| s.then.clone())
                .unwrap_or(Reply::Status(200))
        };
        let response = reply_with(reply).await;
        r.0.lock().unwrap().open -= 1;
        response
    }

    async fn reply_with(reply: Reply) -> Response {
        let status = |s| StatusCode::from_u16(s).unwrap();
        match reply {
            Reply::Status(s) => (status(s), format!("answer {s}")).into_response(),
            Reply::RetryAfter(s, after) => {
                (status(s), [("retry-after", after)], "later").into_response()
            }
            Reply::Redirect => {
                (StatusCode::FOUND, [("location", "/elsewhere")], "").into_response()
            }
            Reply::Slow(d) => {
                tokio::time::sleep(d).await;
                "slow ok".into_response()
            }
            Reply::Big(n) => ([("x-receiver", "big")], "b".repeat(n)).into_response(),
        }
    }

    async fn receiver() -> (String, Receiver) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(answer))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, r)
    }

    fn hooks(configure: impl FnOnce(&mut DeliveryConfig)) -> Hooks {
        let mut config = HooksConfig::default();
        configure(&mut config.delivery);
        Hooks::with_catalog(Arc::new(crate::Catalog::builtin()), config)
    }

    fn add(hooks: &Hooks, name: &str, url: &str) -> api::WebhookOut {
        hooks
            .create_webhook(api::WebhookIn {
                name: name.into(),
                url: url.into(),
                event: Some("payment_received".into()),
                ..Default::default()
            })
            .unwrap()
    }

    async fn emit_one(hooks: &Hooks) -> String {
        let out = hooks.emit("payment_received", None).await.unwrap();
        assert_eq!(out.message_ids.len(), 1);
        out.message_ids[0].clone()
    }

    /// Waits until the message reaches `state`: up to two hours of the test's clock (virtual in
    /// the paused tests, long enough for their schedules) and never more than
    /// [`WAIT_REAL_TIME`] of real time, so a regression fails instead of hanging.
    async fn wait_for(hooks: &Hooks, id: &str, state: api::MessageState) -> api::MessageOut {
        let started = std::time::Instant::now();
        let poll = async {
            loop {
                if let Some(m) = hooks.delivery().message(id)
                    && m.state == state
                {
                    return m;
                }
                assert!(
                    started.elapsed() < WAIT_REAL_TIME,
                    "{id} did not become {state:?} within {WAIT_REAL_TIME:?} of real time (now {:?})",
                    hooks.delivery().message(id).map(|m| m.state)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2 * 3600), poll)
            .await
            .unwrap_or_else(|_| panic!("{id} never became {state:?}"))
    }

    /// The most real time [`wait_for`] waits.
    const WAIT_REAL_TIME: Duration = Duration::from_secs(5);

    // -- The engine ----------------------------------------------------------------------------

    #[tokio::test]
    async fn delivers_signed_messages_and_logs_the_attempt() {
        let (url, rx) = receiver().await;
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "billing", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;

        let hit = rx.0.lock().unwrap().hits.pop().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
        assert_eq!(body["wu_version"], crate::catalog::WU_VERSION);
        crate::verify(&wh.secret, hit.headers.clone(), &hit.body, unix_now(), 300).unwrap();
        let header = |n: &str| {
            hit.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("webhook-id").as_deref(), Some(id.as_str()));
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        // A different secret does not verify it.
        let other = crate::Secret::generate();
        assert!(crate::verify(other.as_str(), hit.headers, &hit.body, unix_now(), 300).is_err());

        let log = hooks.deliveries(&wh.id, 10).unwrap();
        let a = &log.attempts[0];
        assert_eq!((a.attempt, a.status, a.delivered), (1, Some(200), true));
        assert_eq!(a.response_body.as_deref(), Some("answer 200"));
        assert_eq!(a.request_body_size, hit.body.len() as u64);
        assert!(
            a.request_headers
                .iter()
                .any(|h| h.name == "webhook-signature")
        );
        assert_eq!((a.error.as_ref(), a.next_attempt_at.as_ref()), (None, None));
        assert_eq!(hooks.get_webhook(&wh.id).unwrap().event_count, 1);
    }

    /// The engine keeps each webhook's parsed URL and secrets between attempts: an edit or a
    /// rotation must reach the very next attempt.
    #[tokio::test]
    async fn an_edited_url_and_a_rotated_secret_reach_the_next_attempt() {
        let (first_url, first) = receiver().await;
        let (second_url, second) = receiver().await;
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "moving", &first_url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;
        assert_eq!((first.hits(), second.hits()), (1, 0));

        hooks
            .update_webhook(
                &wh.id,
                api::WebhookPatch {
                    url: Some(second_url.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let rotated = hooks
            .rotate_secret(&wh.id, api::RotateSecretIn::default())
            .unwrap();
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;
        assert_eq!((first.hits(), second.hits()), (1, 1));
        let hit = second.0.lock().unwrap().hits.pop().unwrap();
        // Signed with the new secret and, during the grace period, the one it replaced.
        crate::verify(
            &rotated.secret,
            hit.headers.clone(),
            &hit.body,
            unix_now(),
            300,
        )
        .unwrap();
        crate::verify(&wh.secret, hit.headers.clone(), &hit.body, unix_now(), 300).unwrap();
        let signature = hit
            .headers
            .iter()
            .find(|(k, _)| k == "webhook-signature")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        let log = hooks.deliveries(&wh.id, 10).unwrap();
        assert_eq!(log.attempts[0].url, second_url);
        assert_eq!(log.attempts[1].url, first_url);
    }

    #[tokio::test]
    async fn the_log_keeps_what_went_out_and_what_came_back_bounded() {
        let (url, rx) = receiver().await;
        rx.script(&[Reply::Big(LOGGED_BODY_BYTES + 10)], Reply::Big(10));
        let hooks = hooks(|c| c.max_in_flight_per_webhook = 1);
        let wh = add(&hooks, "big", &url);
        let big_payload = format!(r#"{{"pad":"{}"}}"#, "p".repeat(LOGGED_BODY_BYTES));
        let out = hooks
            .emit(
                "payment_received",
                Some(serde_json::value::RawValue::from_string(big_payload.clone()).unwrap()),
            )
            .await
            .unwrap();
        wait_for(&hooks, &out.message_ids[0], api::MessageState::Delivered).await;
        let small = emit_one(&hooks).await;
        wait_for(&hooks, &small, api::MessageState::Delivered).await;
        let log = hooks.deliveries(&wh.id, 10).unwrap();
        let (small, big) = (&log.attempts[0], &log.attempts[1]);
        // What went out: the signed headers and the body, cut at 64 KiB with a flag.
        assert_eq!(
            big.request_body.as_deref(),
            Some(&big_payload[..LOGGED_BODY_BYTES])
        );
        assert!(big.request_body_truncated);
        assert_eq!(big.request_body_size, big_payload.len() as u64);
        let sent = rx.0.lock().unwrap().hits[1].body.clone();
        assert_eq!(
            small.request_body.as_deref().map(str::as_bytes),
            Some(&sent[..])
        );
        assert!(!small.request_body_truncated);
        // What came back: status, headers, body cut the same way.
        assert_eq!(
            big.response_body.as_deref().map(str::len),
            Some(LOGGED_BODY_BYTES)
        );
        assert!(big.response_body_truncated);
        assert_eq!(small.response_body.as_deref(), Some("bbbbbbbbbb"));
        assert!(!small.response_body_truncated);
        assert!(
            small
                .response_headers
                .iter()
                .any(|h| h.name == "x-receiver" && h.value == "big"),
            "{:?}",
            small.response_headers
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_webhook_bound_holds_and_order_is_kept() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Slow(SECOND));
        let hooks = hooks(|c| c.max_in_flight_per_webhook = 2);
        add(&hooks, "slow", &url);
        let mut ids = Vec::new();
        for _ in 0..7 {
            ids.push(emit_one(&hooks).await);
        }
        for id in &ids {
            wait_for(&hooks, id, api::MessageState::Delivered).await;
        }
        let s = rx.0.lock().unwrap();
        assert_eq!(s.most_open, 2, "never more than the bound in flight");
        // FIFO per webhook: started in the order emitted (two at a time may reach the receiver
        // in either order).
        let sent: Vec<String> = s
            .hits
            .iter()
            .map(|h| {
                h.headers
                    .iter()
                    .find(|(k, _)| k == "webhook-id")
                    .unwrap()
                    .1
                    .clone()
            })
            .collect();
        assert_eq!(sent.len(), ids.len());
        for (i, id) in sent.iter().enumerate() {
            let emitted = ids.iter().position(|x| x == id).unwrap();
            assert!(emitted.abs_diff(i) <= 1, "{sent:?} vs {ids:?}");
        }
    }

    /// The engine-wide bound (`max_in_flight`) holds across webhooks, each of which alone
    /// could send more at once.
    #[tokio::test(start_paused = true)]
    async fn the_global_bound_holds_across_webhooks() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Slow(SECOND));
        let hooks = hooks(|c| {
            c.max_in_flight = 3;
            c.max_in_flight_per_webhook = 4;
        });
        for name in ["one", "two", "three", "four"] {
            add(&hooks, name, &url);
        }
        let mut ids = Vec::new();
        for _ in 0..3 {
            let out = hooks.emit("payment_received", None).await.unwrap();
            assert_eq!(out.message_ids.len(), 4);
            ids.extend(out.message_ids);
        }
        for id in &ids {
            wait_for(&hooks, id, api::MessageState::Delivered).await;
        }
        let s = rx.0.lock().unwrap();
        assert_eq!(s.hits.len(), 12);
        assert_eq!(s.most_open, 3, "never more than the global bound in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_on_the_schedule_with_jitter() {
        let (url, rx) = receiver().await;
        rx.script(
            &[Reply::Status(500), Reply::Status(503)],
            Reply::Status(200),
        );
        let hooks = hooks(|c| c.retry_schedule = vec![SECOND, 10 * SECOND]);
        let wh = add(&hooks, "flaky", &url);
        let id = emit_one(&hooks).await;
        let m = wait_for(&hooks, &id, api::MessageState::Delivered).await;
        assert_eq!(m.attempts, 3);

        let gaps = rx.gaps();
        assert!(
            gaps[0] >= SECOND && gaps[0] <= Duration::from_millis(1250),
            "{gaps:?}"
        );
        assert!(
            gaps[1] >= 10 * SECOND && gaps[1] <= Duration::from_millis(12_050),
            "{gaps:?}"
        );

        let log = hooks.deliveries(&wh.id, 10).unwrap();
        let statuses: Vec<_> = log.attempts.iter().map(|a| (a.attempt, a.status)).collect();
        assert_eq!(statuses, [(3, Some(200)), (2, Some(503)), (1, Some(500))]);
        assert!(log.attempts[2].next_attempt_at.is_some());
        assert_eq!(
            log.attempts[1].error.as_deref(),
            Some("HTTP 503 Service Unavailable")
        );
        let w = hooks.get_webhook(&wh.id).unwrap();
        assert_eq!((w.event_count, w.consecutive_failures), (1, 0));
        assert_eq!(
            w.last_failure.unwrap().reason,
            "HTTP 503 Service Unavailable"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let (url, rx) = receiver().await;
        rx.script(&[Reply::RetryAfter(429, "30")], Reply::Status(200));
        let hooks = hooks(|c| c.retry_schedule = vec![SECOND]);
        add(&hooks, "busy", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;
        let gap = rx.gaps()[0];
        assert!(gap >= 30 * SECOND && gap < 31 * SECOND, "{gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_schedule_and_auto_disables() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Status(500));
        let hooks = hooks(|c| {
            c.retry_schedule = vec![SECOND, SECOND];
            c.disable_after_failures = 2;
        });
        let wh = add(&hooks, "down", &url);
        let first = emit_one(&hooks).await;
        let m = wait_for(&hooks, &first, api::MessageState::Failed).await;
        assert_eq!(m.attempts, 3);
        assert_eq!(
            m.error.as_deref(),
            Some("gave up after 3 failed attempts: HTTP 500 Internal Server Error")
        );
        assert!(hooks.get_webhook(&wh.id).unwrap().active);

        let second = emit_one(&hooks).await;
        wait_for(&hooks, &second, api::MessageState::Failed).await;
        let w = hooks.get_webhook(&wh.id).unwrap();
        assert!(!w.active);
        assert_eq!(
            w.disabled_reason.as_deref(),
            Some(
                "disabled after 2 failed messages in a row (last error: HTTP 500 Internal Server Error)"
            )
        );
        // A disabled webhook gets no new messages, and cannot be resent to until re-enabled.
        assert!(
            hooks
                .emit("payment_received", None)
                .await
                .unwrap()
                .message_ids
                .is_empty()
        );
        assert_eq!(
            hooks.resend(&first).await.unwrap_err().code(),
            "webhook_disabled"
        );
        assert_eq!(rx.hits(), 6);

        rx.script(&[], Reply::Status(200));
        hooks
            .update_webhook(
                &wh.id,
                api::WebhookPatch {
                    active: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        hooks.resend(&first).await.unwrap();
        let m = wait_for(&hooks, &first, api::MessageState::Delivered).await;
        assert_eq!(m.attempts, 4);
        let log = hooks.deliveries(&wh.id, 1).unwrap();
        assert_eq!(log.attempts[0].trigger, api::AttemptTrigger::Resend);
    }

    #[tokio::test(start_paused = true)]
    async fn gone_disables_the_webhook_and_ends_its_queue() {
        let (url, rx) = receiver().await;
        rx.script(&[Reply::Status(410)], Reply::Status(200));
        // One request at a time, so the second message waits behind the 410.
        let hooks = hooks(|c| c.max_in_flight_per_webhook = 1);
        let wh = add(&hooks, "gone", &url);
        let first = emit_one(&hooks).await;
        let second = emit_one(&hooks).await;
        let m = wait_for(&hooks, &first, api::MessageState::Failed).await;
        assert_eq!((m.attempts, m.error.as_deref()), (1, Some("HTTP 410 Gone")));
        let m = wait_for(&hooks, &second, api::MessageState::Failed).await;
        assert_eq!(m.attempts, 0);
        assert_eq!(
            m.error.as_deref(),
            Some("webhook disabled: the endpoint answered 410 Gone")
        );
        let w = hooks.get_webhook(&wh.id).unwrap();
        assert_eq!(
            w.disabled_reason.as_deref(),
            Some("the endpoint answered 410 Gone")
        );
        assert_eq!(rx.hits(), 1);
    }

    #[tokio::test]
    async fn redirects_and_4xx_fail_without_retry() {
        let (url, rx) = receiver().await;
        rx.script(&[Reply::Redirect, Reply::Status(422)], Reply::Status(200));
        let hooks = hooks(|c| c.max_in_flight_per_webhook = 1);
        let wh = add(&hooks, "moved", &url);
        let first = emit_one(&hooks).await;
        let m = wait_for(&hooks, &first, api::MessageState::Failed).await;
        assert_eq!(
            (m.attempts, m.error.as_deref()),
            (1, Some("HTTP 302 Found: redirects are not followed"))
        );
        let second = emit_one(&hooks).await;
        let m = wait_for(&hooks, &second, api::MessageState::Failed).await;
        assert_eq!(m.error.as_deref(), Some("HTTP 422 Unprocessable Entity"));
        assert_eq!(rx.hits(), 2);
        assert_eq!(hooks.get_webhook(&wh.id).unwrap().consecutive_failures, 2);
    }

    #[tokio::test]
    async fn a_policy_refusal_fails_the_message_at_once_and_is_logged() {
        let (url, rx) = receiver().await;
        let port = reqwest::Url::parse(&url).unwrap().port().unwrap();
        let config = HooksConfig {
            outbound: crate::OutboundConfig {
                policy: crate::OutboundPolicy::PublicOnly,
                // A name that passes when saved and resolves to loopback when connecting.
                hosts: [("rebind.test".to_owned(), vec!["127.0.0.1".parse().unwrap()])].into(),
            },
            ..HooksConfig::default()
        };
        let hooks = Hooks::with_catalog(Arc::new(crate::Catalog::builtin()), config);
        let wh = add(
            &hooks,
            "rebinding",
            &format!("http://rebind.test:{port}/hook"),
        );
        let id = emit_one(&hooks).await;
        let m = wait_for(&hooks, &id, api::MessageState::Failed).await;
        let refusal = "refused by --outbound-policy public-only: rebind.test resolved to \
                       127.0.0.1 (a loopback address)";
        // One attempt, no retry scheduled: the policy would refuse it again.
        assert_eq!((m.attempts, m.error.as_deref()), (1, Some(refusal)));
        let log = hooks.deliveries(&wh.id, 10).unwrap();
        assert_eq!(log.attempts.len(), 1);
        assert_eq!(log.attempts[0].error.as_deref(), Some(refusal));
        assert!(log.attempts[0].next_attempt_at.is_none());
        assert_eq!(rx.hits(), 0);
        // A literal is refused before anything is sent, and when the webhook is saved.
        let e = hooks
            .create_webhook(api::WebhookIn {
                name: "metadata".into(),
                url: "http://169.254.169.254/latest/meta-data/".into(),
                event: Some("payment_received".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(
            e.to_string(),
            "url: refused by --outbound-policy public-only: 169.254.169.254 is a link-local \
             address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pending_bound_fails_new_messages_visibly() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Slow(10 * SECOND));
        let hooks = hooks(|c| {
            c.max_pending_per_webhook = 2;
            c.max_in_flight_per_webhook = 1;
        });
        let wh = add(&hooks, "slow", &url);
        let a = emit_one(&hooks).await;
        let b = emit_one(&hooks).await;
        let c = emit_one(&hooks).await;
        let m = hooks.delivery().message(&c).unwrap();
        assert_eq!(m.state, api::MessageState::Failed);
        assert_eq!(
            m.error.as_deref(),
            Some("queue full: 2 messages were already pending for this webhook")
        );
        assert_eq!(hooks.resend(&c).await.unwrap_err().code(), "queue_full");
        wait_for(&hooks, &a, api::MessageState::Delivered).await;
        wait_for(&hooks, &b, api::MessageState::Delivered).await;
        hooks.resend(&c).await.unwrap();
        wait_for(&hooks, &c, api::MessageState::Delivered).await;
        assert_eq!(hooks.deliveries(&wh.id, 10).unwrap().attempts.len(), 3);
    }

    #[tokio::test]
    async fn logs_are_bounded_and_evictions_counted() {
        let (url, _rx) = receiver().await;
        let hooks = hooks(|c| {
            c.max_attempts_per_webhook = 3;
            c.max_messages_per_webhook = 2;
        });
        let wh = add(&hooks, "chatty", &url);
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = emit_one(&hooks).await;
            wait_for(&hooks, &id, api::MessageState::Delivered).await;
            ids.push(id);
        }
        let log = hooks.deliveries(&wh.id, 100).unwrap();
        assert_eq!((log.attempts.len(), log.evicted_attempts), (3, 2));
        assert_eq!((log.messages.len(), log.evicted_messages), (2, 3));
        assert_eq!(log.messages[0].id, ids[4]);
        assert_eq!(
            hooks.resend(&ids[0]).await.unwrap_err().code(),
            "delivery_not_found"
        );
        assert!(hooks.resend(&ids[4]).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_scheduled_retries() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Status(503));
        let hooks = hooks(|c| c.retry_schedule = vec![Duration::from_secs(3600)]);
        add(&hooks, "down", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Scheduled).await;
        let start = Instant::now();
        let report = hooks.shutdown(5 * SECOND).await;
        assert!(start.elapsed() < SECOND, "shutdown waited for the retry");
        assert!(!report.timed_out);
        assert_eq!(report.unfinished.len(), 1);
        let u = &report.unfinished[0];
        assert_eq!(
            (u.message_id.as_str(), u.state, u.attempts),
            (id.as_str(), api::MessageState::Scheduled, 1)
        );
        assert!(u.next_attempt_at.is_some());
        assert!(report.to_string().contains(&id));
        assert_eq!(
            hooks
                .emit("payment_received", None)
                .await
                .unwrap_err()
                .code(),
            "shutting_down"
        );
    }

    /// An attempt that outlasts the grace period: shutdown returns when the grace is over, says
    /// the drain timed out and lists the message still in flight.
    #[tokio::test(start_paused = true)]
    async fn shutdown_with_a_timed_out_drain_reports_the_message_in_flight() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Slow(30 * SECOND));
        let hooks = hooks(|c| c.request_timeout = 60 * SECOND);
        add(&hooks, "slow", &url);
        let id = emit_one(&hooks).await;
        // The attempt is at the receiver (and will not be answered for 30 s).
        tokio::time::timeout(5 * SECOND, async {
            while rx.hits() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the attempt reached the receiver");
        let start = Instant::now();
        let report = hooks.shutdown(2 * SECOND).await;
        let took = start.elapsed();
        assert!(report.timed_out, "{report}");
        assert!(
            took >= 2 * SECOND && took < 3 * SECOND,
            "shutdown took {took:?} for a 2 s grace"
        );
        let u = report
            .unfinished
            .iter()
            .find(|u| u.message_id == id)
            .unwrap_or_else(|| panic!("{id} not reported: {report}"));
        assert!(
            !matches!(
                u.state,
                api::MessageState::Delivered | api::MessageState::Failed
            ),
            "{u:?}"
        );
        assert_eq!(rx.hits(), 1);
    }

    /// Deleting a webhook takes its scheduled retry out of the queue: nothing is due any more,
    /// the message is forgotten, and the retry's time passes without a request.
    #[tokio::test(start_paused = true)]
    async fn deleting_a_webhook_ends_its_scheduled_retries() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Status(500));
        let hooks = hooks(|c| c.retry_schedule = vec![Duration::from_secs(3600)]);
        let wh = add(&hooks, "down", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Scheduled).await;
        assert_eq!(hooks.delivery().shared_queue_tasks().await.len(), 1);

        hooks.delete_webhook(&wh.id).await.unwrap();
        assert!(hooks.delivery().shared_queue_tasks().await.is_empty());
        assert!(hooks.delivery().message(&id).is_none());
        // Past the retry's time (virtual; jitter included) nothing went out.
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
        assert_eq!(rx.hits(), 1);
        assert!(hooks.delivery().shared_queue_tasks().await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn disabling_ends_sleeping_retries_at_once() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Status(500));
        let hooks = hooks(|c| c.retry_schedule = vec![Duration::from_secs(3600)]);
        let wh = add(&hooks, "down", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Scheduled).await;
        let start = Instant::now();
        hooks
            .update_webhook(
                &wh.id,
                api::WebhookPatch {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let m = wait_for(&hooks, &id, api::MessageState::Failed).await;
        assert!(start.elapsed() < SECOND);
        assert_eq!(m.error.as_deref(), Some("webhook disabled: switched off"));
        assert_eq!(rx.hits(), 1);
    }

    #[tokio::test]
    async fn a_test_event_whose_caller_goes_away_is_still_sent_and_logged() {
        let (url, rx) = receiver().await;
        rx.script(&[], Reply::Slow(Duration::from_millis(300)));
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "slow", &url);
        // The caller (a browser dialog closed, `curl -m`) gives up before the answer.
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), hooks.test_webhook(&wh.id, None)).await;
        assert!(gave_up.is_err());
        let logged = async {
            loop {
                let log = hooks.deliveries(&wh.id, 10).unwrap();
                if let Some(a) = log.attempts.first() {
                    return (a.clone(), log.messages[0].clone());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (attempt, message) = tokio::time::timeout(5 * SECOND, logged)
            .await
            .expect("the test event was logged");
        assert_eq!(attempt.trigger, api::AttemptTrigger::Test);
        assert_eq!((attempt.status, attempt.delivered), (Some(200), true));
        assert_eq!(message.state, api::MessageState::Delivered);
        assert_eq!(rx.hits(), 1);
    }

    #[tokio::test]
    async fn test_sends_report_the_true_outcome() {
        let (url, rx) = receiver().await;
        rx.script(&[Reply::Status(503)], Reply::Status(200));
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "target", &url);
        let bad = hooks.test_webhook(&wh.id, None).await.unwrap();
        assert!(!bad.delivered);
        assert_eq!(bad.status, Some(503));
        assert_eq!(bad.error.as_deref(), Some("HTTP 503 Service Unavailable"));
        assert_eq!(bad.response_body.as_deref(), Some("answer 503"));
        let good = hooks
            .test_webhook("target", Some("payment_received"))
            .await
            .unwrap();
        assert!(good.delivered && good.error.is_none());
        assert_eq!(good.status, Some(200));
        // No retry of the failed test. "Events sent" counts the delivered test (every delivered
        // message counts, whatever started it); a failed test does not count towards disabling.
        assert_eq!(rx.hits(), 2);
        let w = hooks.get_webhook(&wh.id).unwrap();
        assert_eq!((w.event_count, w.consecutive_failures), (1, 0));
        let log = hooks.deliveries(&wh.id, 10).unwrap();
        assert!(
            log.attempts
                .iter()
                .all(|a| a.trigger == api::AttemptTrigger::Test)
        );
        assert_eq!(
            hooks
                .test_webhook(&wh.id, Some("site_published"))
                .await
                .unwrap_err()
                .code(),
            "not_subscribed"
        );

        // A resend of the test message counts the same way.
        hooks.resend(&good.message_id).await.unwrap();
        wait_for(&hooks, &good.message_id, api::MessageState::Delivered).await;
        assert_eq!(hooks.get_webhook(&wh.id).unwrap().event_count, 2);

        // Nobody listening: a failure with the transport error, never a success.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let dead = add(&hooks, "nobody", &dead_url);
        let out = hooks.test_webhook(&dead.id, None).await.unwrap();
        assert!(!out.delivered);
        assert_eq!(out.status, None);
        let error = out.error.unwrap();
        assert!(error.starts_with("connection failed"), "{error}");
    }

    #[tokio::test]
    async fn emit_sends_the_payload_bytes_as_given() {
        let (url, rx) = receiver().await;
        let hooks = hooks(|_| {});
        add(&hooks, "exact", &url);
        let given = r#"{"z":1,"a":2,"n":1.50, "s":"\u00e9"}"#;
        let out = hooks
            .emit(
                "payment_received",
                Some(serde_json::value::RawValue::from_string(given.into()).unwrap()),
            )
            .await
            .unwrap();
        wait_for(&hooks, &out.message_ids[0], api::MessageState::Delivered).await;
        let hit = rx.0.lock().unwrap().hits.pop().unwrap();
        assert_eq!(std::str::from_utf8(&hit.body).unwrap(), given);
    }

    #[tokio::test]
    async fn builtin_examples_go_out_in_the_plugin_key_order() {
        let (url, rx) = receiver().await;
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "order", &url);
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;
        let hit = rx.0.lock().unwrap().hits.pop().unwrap();
        let body = std::str::from_utf8(&hit.body).unwrap();
        // Payment, then membership, then customer fields, as Ultimate Multisite builds them,
        // and the version it adds to a real event last.
        assert!(body.starts_with(r#"{"payment_id":"#), "{body}");
        let at = |key: &str| body.find(&format!("\"{key}\":")).unwrap();
        assert!(at("payment_manage_url") < at("membership_id"), "{body}");
        assert!(at("membership_manage_url") < at("customer_id"), "{body}");
        assert!(at("customer_manage_url") < at("wu_version"), "{body}");
        assert!(
            body.ends_with(&format!(
                r#""wu_version":"{}"}}"#,
                crate::catalog::WU_VERSION
            )),
            "{body}"
        );

        // A test send is the same payload without the version, as "Send Test Event" sends it.
        assert!(hooks.test_webhook(&wh.id, None).await.unwrap().delivered);
        let hit = rx.0.lock().unwrap().hits.pop().unwrap();
        let test = std::str::from_utf8(&hit.body).unwrap();
        assert!(!test.contains("wu_version"), "{test}");
        let real_without_version = body
            .strip_suffix(&format!(
                r#","wu_version":"{}"}}"#,
                crate::catalog::WU_VERSION
            ))
            .unwrap();
        assert_eq!(format!("{real_without_version}}}"), test);
    }

    #[tokio::test]
    async fn standard_envelope_wraps_the_payload() {
        let (url, rx) = receiver().await;
        let hooks = hooks(|_| {});
        let wh = add(&hooks, "std", &url);
        hooks
            .update_webhook(
                &wh.id,
                api::WebhookPatch {
                    envelope: Some(api::Envelope::Standard),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = emit_one(&hooks).await;
        wait_for(&hooks, &id, api::MessageState::Delivered).await;
        let hit = rx.0.lock().unwrap().hits.pop().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
        assert_eq!(v["type"], "payment_received");
        assert_eq!(v["data"]["wu_version"], crate::catalog::WU_VERSION);
    }
}
