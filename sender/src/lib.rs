//! # Hookbin sender
//!
//! The sending side of Hookbin: an event catalog, a registry of webhooks, Standard Webhooks
//! signatures and a delivery engine with retries, all behind one handle, [`Hooks`], that
//! bin-server keeps in its state and its `/api/events`, `/api/webhooks` and `/api/deliveries`
//! routes call.
//!
//! # Layout
//! - [`catalog`]: which events exist, with example payloads and JSON Schemas (built in, or
//!   loaded from a user's file).
//! - [`registry`]: the webhooks (URL, events, secret, counters, disabled reason), validated.
//! - [`signing`]: Standard Webhooks `sign` and `verify` (bin-server uses `verify` on captures).
//! - [`delivery`]: the engine: per-webhook queues, bounded concurrency, retries with backoff,
//!   410 and auto-disable, bounded attempt logs, resend, graceful shutdown.
//! - [`outbound`]: where the server may send (`--outbound-policy`, this server's own bins and
//!   API), enforced on the address connected to; bin-server's replay uses it too.
//! - [`client`]: the CLI's HTTP client for a running bin-server.
//! - [`config`]: [`HooksConfig`] and the server flags that set it ([`HooksArgs`]).
//! - this file: [`Hooks`], which wires the four together for the routes.

pub mod catalog;
pub mod client;
pub mod config;
pub mod delivery;
pub mod journal;
pub mod outbound;
pub mod queue;
pub mod registry;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;

pub use catalog::{Catalog, CatalogError};
pub use config::{HooksArgs, HooksConfig};
pub use delivery::{Delivery, DeliveryConfig, DeliveryError, ShutdownReport};
pub use outbound::{Outbound, OutboundConfig, OutboundPolicy};
pub use registry::{Registry, RegistryError, Webhook};
pub use signing::{Secret, VerifyError, verify};

/// Locks a std Mutex, going on after a panic elsewhere: every critical section of the crate
/// assigns whole values and holds no lock across an `.await` or a write, so a poisoned lock
/// holds consistent data.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// RFC 3339 in UTC with milliseconds, as every timestamp of the API.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `prefix` + 24 random letters and digits (about 143 bits): unguessable, URL-safe ids.
pub(crate) fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend(
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from),
    );
    id
}

/// A fresh message id (`msg_...`), the `webhook-id` header of a new message.
pub fn new_message_id() -> String {
    random_id("msg_")
}

/// Every way a [`Hooks`] call can be refused; [`HooksError::status`] and [`HooksError::code`]
/// give the HTTP answer, so route handlers stay one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HooksError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("no event `{0}` in the catalog")]
    UnknownEvent(String),
    #[error("webhook `{webhook}` is not subscribed to `{event}`")]
    NotSubscribed { webhook: String, event: String },
    #[error("the payload is {0} bytes; the limit is {1}")]
    PayloadTooLarge(usize, usize),
}

impl HooksError {
    /// The HTTP status of the error body.
    pub fn status(&self) -> u16 {
        match self {
            HooksError::Registry(RegistryError::Invalid { .. }) => 422,
            HooksError::Registry(RegistryError::InvalidFields(_)) => 422,
            HooksError::Registry(RegistryError::NotFound(_)) => 404,
            HooksError::Registry(RegistryError::NameTaken(_)) => 409,
            HooksError::Registry(RegistryError::Full(_)) => 409,
            HooksError::Registry(RegistryError::Store(_)) => 503,
            HooksError::Delivery(DeliveryError::MessageNotFound(_)) => 404,
            HooksError::Delivery(DeliveryError::WebhookNotFound(_)) => 404,
            HooksError::Delivery(DeliveryError::InProgress(_)) => 409,
            HooksError::Delivery(DeliveryError::WebhookDisabled(_)) => 409,
            HooksError::Delivery(DeliveryError::QueueFull(..)) => 429,
            HooksError::Delivery(DeliveryError::ShuttingDown) => 503,
            HooksError::Delivery(DeliveryError::QueueUnavailable(_)) => 503,
            HooksError::Delivery(DeliveryError::NotWaiting(_)) => 409,
            HooksError::UnknownEvent(_) => 404,
            HooksError::NotSubscribed { .. } => 422,
            HooksError::PayloadTooLarge(..) => 413,
        }
    }

    /// The stable machine-readable `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            HooksError::Registry(RegistryError::Invalid { .. }) => "invalid_webhook",
            HooksError::Registry(RegistryError::InvalidFields(_)) => "invalid_webhook",
            HooksError::Registry(RegistryError::NotFound(_)) => "webhook_not_found",
            HooksError::Registry(RegistryError::NameTaken(_)) => "webhook_name_taken",
            HooksError::Registry(RegistryError::Full(_)) => "webhook_limit",
            HooksError::Registry(RegistryError::Store(_)) => "store_unavailable",
            HooksError::Delivery(DeliveryError::MessageNotFound(_)) => "delivery_not_found",
            HooksError::Delivery(DeliveryError::WebhookNotFound(_)) => "webhook_not_found",
            HooksError::Delivery(DeliveryError::InProgress(_)) => "delivery_in_progress",
            HooksError::Delivery(DeliveryError::WebhookDisabled(_)) => "webhook_disabled",
            HooksError::Delivery(DeliveryError::QueueFull(..)) => "queue_full",
            HooksError::Delivery(DeliveryError::ShuttingDown) => "shutting_down",
            HooksError::Delivery(DeliveryError::QueueUnavailable(_)) => "store_unavailable",
            HooksError::Delivery(DeliveryError::NotWaiting(_)) => "delivery_not_waiting",
            HooksError::UnknownEvent(_) => "event_not_found",
            HooksError::NotSubscribed { .. } => "not_subscribed",
            HooksError::PayloadTooLarge(..) => "payload_too_large",
        }
    }
}

/// Why [`Hooks::open_sqlite`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("sender store {0}")]
    Store(String),
}

/// Catalog + registry + delivery engine: the handle bin-server holds. Clones share it.
#[derive(Clone)]
pub struct Hooks {
    catalog: Arc<Catalog>,
    registry: Registry,
    delivery: Delivery,
    outbound: Outbound,
    max_payload_bytes: usize,
}

impl Hooks {
    /// Loads the catalog (the user's when `catalog_path` is set) and starts an empty registry.
    /// Needs no runtime; the first emit must run inside a tokio runtime.
    pub fn new(config: HooksConfig) -> Result<Self, CatalogError> {
        let catalog = Self::load_catalog(&config)?;
        Ok(Self::with_catalog(catalog, config))
    }

    pub fn with_catalog(catalog: Arc<Catalog>, config: HooksConfig) -> Self {
        let queue = Arc::new(queue::MemoryQueue::new());
        Self::assemble(catalog, config, queue, None)
    }

    /// Webhooks, messages, attempt logs and the delivery queue in the SQLite file `path`
    /// (created if missing, locked while open), loaded back as they were: retries that fell due
    /// while the server was down go out once [`Hooks::start`] runs.
    pub async fn open_sqlite(
        config: HooksConfig,
        path: &std::path::Path,
    ) -> Result<Self, OpenError> {
        let catalog = Self::load_catalog(&config)?;
        let store =
            |e: &dyn std::fmt::Display| OpenError::Store(format!("{}: {e}", path.display()));
        let path_owned = path.to_owned();
        let (journal, snapshot) = tokio::task::spawn_blocking(move || {
            let journal = journal::SqliteJournal::open(&path_owned)?;
            let snapshot = journal::Journal::load(&journal)?;
            Ok::<_, journal::JournalError>((journal, snapshot))
        })
        .await
        .map_err(|e| store(&e))?
        .map_err(|e| store(&e))?;
        let queue =
            Arc::new(queue::SqliteQueue::with_writer(journal.writer()).map_err(|e| store(&e))?);
        Self::restored(catalog, config, queue, Arc::new(journal), snapshot)
            .await
            .map_err(|e| store(&e))
    }

    /// Webhooks, messages, attempt logs and the delivery queue in Redis at `url`
    /// (`redis://HOST:PORT[/DB]`, keys under `<prefix>sender:`), shared by every instance on
    /// the same server and prefix: each keeps its working copy in memory, loaded here, and
    /// follows the changes the others announce. Every Redis call has a deadline: with Redis
    /// down, creating a webhook or emitting answers 503 `store_unavailable`, never hangs.
    pub async fn open_redis(
        config: HooksConfig,
        url: &str,
        prefix: &str,
    ) -> Result<Self, OpenError> {
        let catalog = Self::load_catalog(&config)?;
        let store = |e: &dyn std::fmt::Display| OpenError::Store(format!("{e}"));
        let (u, p) = (url.to_owned(), prefix.to_owned());
        let journal = tokio::task::spawn_blocking(move || journal::RedisJournal::open(&u, &p))
            .await
            .map_err(|e| store(&e))?
            .map_err(|e| store(&e))?;
        let journal = Arc::new(journal);
        let queue = Arc::new(
            queue::RedisQueue::connect(url, &format!("{prefix}sender:"))
                .await
                .map_err(|e| store(&e))?,
        );
        // Subscribed before the snapshot is read, so a change made meanwhile is not missed
        // (one already in the snapshot is applied again, which does nothing). `None` asks for
        // the webhooks to be read again (the feed was interrupted).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<journal::Change>>();
        let resync_tx = tx.clone();
        let _follower = journal
            .follow(
                move |c| {
                    let _ = tx.send(Some(c));
                },
                move || {
                    let _ = resync_tx.send(None);
                },
            )
            .await
            .map_err(|e| store(&e))?;
        let loader = Arc::clone(&journal);
        let snapshot = tokio::task::spawn_blocking(move || journal::Journal::load(&*loader))
            .await
            .map_err(|e| store(&e))?
            .map_err(|e| store(&e))?;
        let hooks = Self::restored(catalog, config, queue, journal.clone(), snapshot)
            .await
            .map_err(|e| store(&e))?;
        let applier = hooks.clone();
        tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                match change {
                    Some(change) => applier.delivery.apply_remote(change),
                    None => applier.resync(&journal).await,
                }
            }
        });
        Ok(hooks)
    }

    /// After an interruption of the change feed: the webhooks as the store has them now.
    async fn resync(&self, journal: &Arc<journal::RedisJournal>) {
        let j = Arc::clone(journal);
        match tokio::task::spawn_blocking(move || journal::Journal::load(&*j)).await {
            Ok(Ok(snapshot)) => {
                let kept: std::collections::HashSet<String> =
                    snapshot.webhooks.iter().map(|w| w.id.clone()).collect();
                for w in self.registry.list() {
                    if !kept.contains(&w.id) {
                        self.delivery
                            .apply_remote(journal::Change::WebhookDeleted(w.id));
                    }
                }
                for out in snapshot.webhooks {
                    self.registry.apply_remote(out);
                }
                for m in snapshot.messages {
                    let (id, state) = (m.id.clone(), m.state.clone());
                    self.delivery.apply_remote(journal::Change::MessageAdded(m));
                    self.delivery
                        .apply_remote(journal::Change::MessageState { id, state });
                }
            }
            Ok(Err(e)) => tracing::warn!("sender store: reading it again: {e}"),
            Err(e) => tracing::warn!("sender store: reading it again: {e}"),
        }
    }

    /// The user's catalog when `catalog_path` is set, else the built-in one.
    fn load_catalog(config: &HooksConfig) -> Result<Arc<Catalog>, CatalogError> {
        Ok(Arc::new(match &config.catalog_path {
            Some(path) => Catalog::from_file(path)?,
            None => Catalog::builtin(),
        }))
    }

    /// A sender over a store's journal and queue, with the registry and the delivery logs
    /// restored from the snapshot the journal gave.
    async fn restored(
        catalog: Arc<Catalog>,
        config: HooksConfig,
        queue: Arc<dyn queue::DeliveryQueue>,
        journal: Arc<dyn journal::Journal>,
        mut snapshot: journal::Snapshot,
    ) -> Result<Self, String> {
        let webhooks = std::mem::take(&mut snapshot.webhooks);
        let hooks = Self::assemble(catalog, config, queue, Some(journal));
        let restored = webhooks
            .into_iter()
            .map(Webhook::from_out)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        hooks.registry.restore(restored);
        hooks
            .delivery
            .restore(snapshot)
            .await
            .map_err(|e| e.to_string())?;
        Ok(hooks)
    }

    fn assemble(
        catalog: Arc<Catalog>,
        config: HooksConfig,
        queue: Arc<dyn queue::DeliveryQueue>,
        journal: Option<Arc<dyn journal::Journal>>,
    ) -> Self {
        let registry =
            Registry::with_journal(catalog.clone(), config.max_webhooks, journal.clone());
        let outbound = Outbound::new(config.outbound);
        let delivery =
            Delivery::with_store(config.delivery, registry.clone(), &outbound, queue, journal);
        Self {
            catalog,
            registry,
            delivery,
            outbound,
            max_payload_bytes: config.max_payload_bytes,
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The outbound policy of deliveries and test events; the server tells it where it is
    /// bound ([`Outbound::set_own_server`]) and builds its replay client from it.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Where a well-formed URL points: a refusal is a 422 on the `url` field naming the
    /// address and the policy.
    fn check_policy(&self, url: &str) -> Result<(), RegistryError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| RegistryError::Invalid {
            field: "url",
            problem: format!("not a URL: {e}"),
        })?;
        self.outbound
            .check_url(&parsed)
            .map_err(|refused| RegistryError::Invalid {
                field: "url",
                problem: refused.to_string(),
            })
    }

    /// `GET /api/events`.
    pub fn events(&self) -> api::EventList {
        self.catalog.to_out()
    }

    /// `POST /api/webhooks`.
    pub fn create_webhook(&self, input: api::WebhookIn) -> Result<api::WebhookOut, HooksError> {
        Ok(self
            .registry
            .create_with(input, |url| self.check_policy(url))?
            .to_out())
    }

    /// `GET /api/webhooks`.
    pub fn list_webhooks(&self) -> api::WebhookList {
        api::WebhookList {
            webhooks: self.registry.list().iter().map(Webhook::to_out).collect(),
        }
    }

    /// `GET /api/webhooks/{id}`: by id, or by name (for the CLI).
    pub fn get_webhook(&self, id_or_name: &str) -> Result<api::WebhookOut, HooksError> {
        Ok(self.find(id_or_name)?.to_out())
    }

    fn find(&self, id_or_name: &str) -> Result<Webhook, HooksError> {
        self.registry
            .find(id_or_name)
            .ok_or_else(|| RegistryError::NotFound(id_or_name.to_owned()).into())
    }

    /// `PATCH /api/webhooks/{id}`. Switching a webhook off ends its queued messages before
    /// this returns.
    pub async fn update_webhook(
        &self,
        id_or_name: &str,
        patch: api::WebhookPatch,
    ) -> Result<api::WebhookOut, HooksError> {
        let id = self.find(id_or_name)?.id;
        let updated = self
            .registry
            .update_with(&id, patch, |url| self.check_policy(url))?;
        self.delivery.webhook_changed(&id).await;
        Ok(updated.to_out())
    }

    /// `POST /api/webhooks/{id}/secret/rotate`: a new signing secret (`input.secret`, else
    /// generated); the current one keeps signing beside it for `input.grace` (default
    /// [`registry::DEFAULT_ROTATION_GRACE`], at most [`registry::MAX_ROTATION_GRACE`]). Every
    /// invalid field is reported at once (422 `invalid_webhook`, fields `grace`, `secret`).
    pub fn rotate_secret(
        &self,
        id_or_name: &str,
        input: api::RotateSecretIn,
    ) -> Result<api::WebhookOut, HooksError> {
        let id = self.find(id_or_name)?.id;
        Ok(self
            .registry
            .rotate_secret(&id, input.secret.as_deref(), input.grace.as_deref())?
            .to_out())
    }

    /// `DELETE /api/webhooks/{id}`: its unfinished messages end failed.
    pub async fn delete_webhook(&self, id_or_name: &str) -> Result<api::WebhookOut, HooksError> {
        let id = self.find(id_or_name)?.id;
        let removed = self.registry.remove(&id)?;
        self.delivery.webhook_removed(&id).await;
        Ok(removed.to_out())
    }

    /// `POST /api/webhooks/{id}/test`: sends the test example of `event` (default: the
    /// webhook's first event; without `wu_version`, as the plugin's "Send Test Event") now and
    /// returns what really happened.
    pub async fn test_webhook(
        &self,
        id_or_name: &str,
        event: Option<&str>,
    ) -> Result<api::TestOutcome, HooksError> {
        let webhook = self.find(id_or_name)?;
        let slug = match event {
            Some(slug) if !webhook.subscribes_to(slug) => {
                return Err(HooksError::NotSubscribed {
                    webhook: webhook.id,
                    event: slug.to_owned(),
                });
            }
            Some(slug) => slug.to_owned(),
            None => webhook.events[0].clone(),
        };
        let event = self
            .catalog
            .get(&slug)
            .ok_or_else(|| HooksError::UnknownEvent(slug.clone()))?;
        let body = delivery::message_body(
            webhook.envelope,
            &slug,
            &event.test_example_json,
            Utc::now(),
        );
        Ok(self.delivery.test(&webhook, &slug, body).await?)
    }

    /// `POST /api/events/{slug}/emit`: one message per active webhook subscribed to the event.
    ///
    /// A given payload is sent as is, byte for byte, not checked against the event's schema:
    /// sending payloads a receiver does not expect is part of testing it.
    pub async fn emit(
        &self,
        slug: &str,
        payload: Option<Box<serde_json::value::RawValue>>,
    ) -> Result<api::EmitOut, HooksError> {
        let event = self
            .catalog
            .get(slug)
            .ok_or_else(|| HooksError::UnknownEvent(slug.to_owned()))?;
        let payload = payload.unwrap_or_else(|| event.example_json.clone());
        let now = Utc::now();
        // One body per envelope kind, shared by every webhook that uses it.
        let flat = delivery::message_body(api::Envelope::Flat, slug, &payload, now);
        if flat.len() > self.max_payload_bytes {
            return Err(HooksError::PayloadTooLarge(
                flat.len(),
                self.max_payload_bytes,
            ));
        }
        let mut standard = None;
        let mut out = api::EmitOut {
            event: slug.to_owned(),
            message_ids: Vec::new(),
            messages: Vec::new(),
        };
        let targets: Vec<_> = self
            .registry
            .subscriber_ids(slug)
            .into_iter()
            .map(|webhook| {
                let body = match webhook.envelope {
                    api::Envelope::Flat => flat.clone(),
                    api::Envelope::Standard => standard
                        .get_or_insert_with(|| {
                            delivery::message_body(api::Envelope::Standard, slug, &payload, now)
                        })
                        .clone(),
                };
                (webhook.id, body)
            })
            .collect();
        let webhook_ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
        // One journal write and one queue call for every subscriber (see enqueue_many).
        let ids = self.delivery.enqueue_many(slug, targets).await?;
        for (id, webhook_id) in ids.into_iter().zip(webhook_ids) {
            out.message_ids.push(id.clone());
            out.messages.push(api::MessageRef {
                message_id: id,
                webhook_id,
            });
        }
        Ok(out)
    }

    /// `GET /api/webhooks/{id}/deliveries`: attempts and messages, newest first.
    pub fn deliveries(
        &self,
        id_or_name: &str,
        limit: usize,
    ) -> Result<api::DeliveryLog, HooksError> {
        let webhook = self.find(id_or_name)?;
        Ok(self.delivery.log(&webhook.id, limit))
    }

    /// `POST /api/deliveries/{id}/resend` (`id` is a message id).
    pub async fn resend(&self, message_id: &str) -> Result<api::MessageRef, HooksError> {
        Ok(self.delivery.resend(message_id).await?)
    }

    /// `POST /api/webhooks/{id}/messages/{msg}/retry`: the message's next attempt, now (see
    /// [`Delivery::retry_now`]). A message of another webhook is not found.
    pub async fn retry_now(
        &self,
        id_or_name: &str,
        message_id: &str,
    ) -> Result<api::MessageRef, HooksError> {
        let webhook = self.find(id_or_name)?;
        match self.delivery.message(message_id) {
            Some(m) if m.webhook_id == webhook.id => {}
            _ => return Err(DeliveryError::MessageNotFound(message_id.to_owned()).into()),
        }
        Ok(self.delivery.retry_now(message_id).await?)
    }

    /// Starts the delivery engine (see [`Delivery::start`]); the server calls it when it
    /// starts serving, so retries kept in a persistent store go out after a restart.
    pub fn start(&self) {
        self.delivery.start();
    }

    /// Stops deliveries; see [`Delivery::shutdown`].
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.delivery.shutdown(grace).await
    }
}

#[cfg(test)]
mod shared_redis_tests {
    use super::*;

    async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let poll = async {
            loop {
                if let Some(v) = f() {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_on_one_redis_see_each_others_webhooks_messages_and_switches() {
        let server = queue::TestRedis::start().await;
        let mut config = HooksConfig::default();
        // A long first retry: the message stays scheduled while the test looks at it.
        config.delivery.retry_schedule = vec![std::time::Duration::from_secs(3600)];
        let a = Hooks::open_redis(config.clone(), &server.url, "t:")
            .await
            .unwrap();
        let b = Hooks::open_redis(config.clone(), &server.url, "t:")
            .await
            .unwrap();
        let wh = a
            .create_webhook(api::WebhookIn {
                name: "shared".into(),
                // Nothing listens there: the attempt fails and a retry is scheduled.
                url: "http://127.0.0.1:9/hook".into(),
                event: Some("payment_received".into()),
                ..Default::default()
            })
            .unwrap();
        until("b to know the webhook", || {
            b.get_webhook(&wh.id).ok().filter(|w| w.secret == wh.secret)
        })
        .await;
        let raw =
            serde_json::value::RawValue::from_string(r#"{"z":1,"a":2,"n":1.50}"#.into()).unwrap();
        let msg = a
            .emit("payment_received", Some(raw))
            .await
            .unwrap()
            .message_ids[0]
            .clone();
        until("b to see the first attempt and the scheduled retry", || {
            let log = b.deliveries(&wh.id, 10).ok()?;
            let m = log.messages.iter().find(|m| m.id == msg)?;
            (m.state == api::MessageState::Scheduled && log.attempts.len() == 1).then_some(())
        })
        .await;
        // Switched off on a: b's copy is off, and the retry ends failed everywhere.
        a.update_webhook(
            &wh.id,
            api::WebhookPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        until("b to see the webhook off and the message failed", || {
            let w = b.get_webhook(&wh.id).ok()?;
            let m = b.delivery().message(&msg)?;
            (!w.active && m.state == api::MessageState::Failed).then_some(())
        })
        .await;
        assert!(b.delivery.shared_queue_tasks().await.is_empty());
        // A third instance started now loads it all from Redis, the exact bytes included.
        let c = Hooks::open_redis(config, &server.url, "t:").await.unwrap();
        assert!(!c.get_webhook(&wh.id).unwrap().active);
        assert_eq!(c.deliveries(&wh.id, 10).unwrap().attempts.len(), 1);
        assert_eq!(
            c.delivery().message_body(&msg).unwrap(),
            a.delivery().message_body(&msg).unwrap()
        );
        // Deleted on b: gone from a.
        b.delete_webhook(&wh.id).await.unwrap();
        until("a to forget the webhook", || {
            a.get_webhook(&wh.id).is_err().then_some(())
        })
        .await;
        assert!(a.delivery().message(&msg).is_none());
    }
}
