//! The webhook registry: who is subscribed to what, with which secret, and how each webhook is
//! doing (counters, last failure, disabled reason).
//!
//! Input is parsed into a [`Webhook`] or refused with an error naming the field and why. The
//! registry is bounded by [`Registry::new`]'s `max_webhooks`: at the bound, creating another
//! webhook is refused with [`RegistryError::Full`] (nothing is evicted: a webhook is user
//! configuration, not a cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::journal::Journal;
use crate::signing::Secret;

/// Names shorter than this are refused (as in Ultimate Multisite).
const MIN_NAME_CHARS: usize = 2;
/// Names longer than this are refused: they are shown in tables and logs.
const MAX_NAME_CHARS: usize = 100;
/// URLs longer than this are refused; no real endpoint needs more and it bounds memory.
const MAX_URL_BYTES: usize = 2048;
/// How long a rotated-out secret keeps signing when the rotation names no grace period: a
/// day, as Svix and Stripe give, long enough for a receiver's next deploy.
pub const DEFAULT_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest grace period a rotation may ask for: a week. A secret that must be replaced
/// (it leaked) should not keep signing for months.
pub const MAX_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Why a registry operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("no webhook `{0}`")]
    NotFound(String),
    #[error("a webhook named `{0}` exists already")]
    NameTaken(String),
    #[error("the registry holds {0} webhooks, its limit; delete one first")]
    Full(usize),
    /// Several fields are invalid: every one of them, in the order of the input.
    #[error("{}", .0.iter().map(|(f, p)| format!("{f}: {p}")).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<(&'static str, String)>),
    /// The journal (the `--store` file) could not save the change; nothing changed.
    #[error("{0}")]
    Store(String),
}

impl RegistryError {
    /// The invalid fields and their problems (empty for other errors).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            RegistryError::Invalid { field, problem } => vec![(*field, problem.clone())],
            RegistryError::InvalidFields(all) => all.clone(),
            _ => Vec::new(),
        }
    }
}

/// Runs every check of an input, keeping each failure, so one answer names them all.
#[derive(Default)]
pub(crate) struct Checks(Vec<(&'static str, String)>);

impl Checks {
    /// The value, or `None` with its problems noted.
    pub(crate) fn check<T>(&mut self, r: Result<T, RegistryError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.fields());
                None
            }
        }
    }

    /// Ok when every check passed; else one error naming each problem.
    pub(crate) fn finish(mut self) -> Result<(), RegistryError> {
        match self.0.len() {
            0 => Ok(()),
            1 => {
                let (field, problem) = self.0.remove(0);
                Err(RegistryError::Invalid { field, problem })
            }
            _ => Err(RegistryError::InvalidFields(self.0)),
        }
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// When and why a webhook last failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The secret a rotation replaced, still signing beside the new one until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub secret: Secret,
    pub until: DateTime<Utc>,
}

/// The secrets a message sent at some time is signed with: the current one first, then the
/// previous one while its grace period runs (Standard Webhooks: a receiver accepts when any
/// `v1,` entry matches). A slice of one or two, without an allocation (one per attempt).
#[derive(Debug, Clone, Copy)]
pub struct SigningSecrets<'a> {
    secrets: [&'a Secret; 2],
    len: usize,
}

impl<'a> SigningSecrets<'a> {
    pub fn at(
        current: &'a Secret,
        previous: Option<&'a PreviousSecret>,
        now: DateTime<Utc>,
    ) -> Self {
        match previous.filter(|p| now < p.until) {
            Some(p) => Self {
                secrets: [current, &p.secret],
                len: 2,
            },
            None => Self {
                secrets: [current, current],
                len: 1,
            },
        }
    }
}

impl<'a> std::ops::Deref for SigningSecrets<'a> {
    type Target = [&'a Secret];

    fn deref(&self) -> &[&'a Secret] {
        &self.secrets[..self.len]
    }
}

/// One webhook, as configured and as it is doing.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: Secret,
    /// After a rotation ([`Registry::rotate_secret`]): the old secret and when it stops.
    pub previous_secret: Option<PreviousSecret>,
    pub active: bool,
    pub envelope: api::Envelope,
    pub created_at: DateTime<Utc>,
    /// Messages delivered.
    pub event_count: u64,
    /// Messages failed in a row.
    pub consecutive_failures: u32,
    pub last_failure: Option<Failure>,
    pub disabled_reason: Option<String>,
}

impl Webhook {
    /// A webhook as the journal gave it back (see [`Webhook::to_out`]).
    pub fn from_out(out: api::WebhookOut) -> Result<Self, String> {
        let time = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("webhook {}: bad time {t:?}: {e}", out.id))
        };
        let previous_secret = match (&out.previous_secret, &out.previous_secret_expires_at) {
            (Some(secret), Some(until)) => Some(PreviousSecret {
                secret: Secret::parse(secret)
                    .map_err(|e| format!("webhook {}: bad previous secret: {e}", out.id))?,
                until: time(until)?,
            }),
            _ => None,
        };
        Ok(Self {
            secret: Secret::parse(&out.secret)
                .map_err(|e| format!("webhook {}: bad secret: {e}", out.id))?,
            previous_secret,
            created_at: time(&out.created_at)?,
            last_failure: match &out.last_failure {
                Some(f) => Some(Failure {
                    at: time(&f.at)?,
                    reason: f.reason.clone(),
                }),
                None => None,
            },
            id: out.id,
            name: out.name,
            url: out.url,
            events: out.events,
            active: out.active,
            envelope: out.envelope,
            event_count: out.event_count,
            consecutive_failures: out.consecutive_failures,
            disabled_reason: out.disabled_reason,
        })
    }

    pub fn subscribes_to(&self, slug: &str) -> bool {
        self.events.iter().any(|e| e == slug)
    }

    /// The previous secret while its grace period runs at `now`.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&PreviousSecret> {
        self.previous_secret.as_ref().filter(|p| now < p.until)
    }

    /// The secrets a message sent at `now` is signed with (see [`SigningSecrets`]).
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> SigningSecrets<'_> {
        SigningSecrets::at(&self.secret, self.previous_secret.as_ref(), now)
    }

    pub fn to_out(&self) -> api::WebhookOut {
        let previous = self.previous_secret_at(Utc::now());
        api::WebhookOut {
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            secret: self.secret.as_str().to_owned(),
            active: self.active,
            envelope: self.envelope,
            created_at: crate::rfc3339(self.created_at),
            event_count: self.event_count,
            consecutive_failures: self.consecutive_failures,
            last_failure: self.last_failure.as_ref().map(|f| api::FailureOut {
                at: crate::rfc3339(f.at),
                reason: f.reason.clone(),
            }),
            disabled_reason: self.disabled_reason.clone(),
            previous_secret: previous.map(|p| p.secret.as_str().to_owned()),
            previous_secret_expires_at: previous.map(|p| crate::rfc3339(p.until)),
        }
    }
}

/// A webhook an event goes to: see [`Registry::subscriber_ids`].
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: String,
    pub envelope: api::Envelope,
}

/// Thread-safe handle to the registry; clones share it.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    catalog: Arc<Catalog>,
    max_webhooks: usize,
    // A std Mutex: every operation is a short map update with no `.await` inside, so an async
    // lock would only add cost (the tokio docs recommend this for such data).
    state: Mutex<State>,
    /// Where changes are written through (none: memory only).
    journal: Option<Arc<dyn Journal>>,
    /// Bumped on every change to a webhook or its delivery log, for live views. A watch
    /// channel keeps only the latest value: a slow watcher costs nothing and misses nothing but
    /// intermediate counts.
    changes: tokio::sync::watch::Sender<u64>,
}

/// The active webhooks subscribed to `slug`, oldest first (ties by id).
fn subscribed<'a>(state: &'a State, slug: &str) -> Vec<&'a Webhook> {
    let mut subs: Vec<&Webhook> = state
        .webhooks
        .values()
        .filter(|w| w.active && w.subscribes_to(slug))
        .collect();
    subs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    subs
}

#[derive(Default)]
struct State {
    webhooks: HashMap<String, Webhook>,
}

impl Registry {
    pub fn new(catalog: Arc<Catalog>, max_webhooks: usize) -> Self {
        Self::with_journal(catalog, max_webhooks, None)
    }

    /// A registry whose changes are written through to `journal`.
    pub fn with_journal(
        catalog: Arc<Catalog>,
        max_webhooks: usize,
        journal: Option<Arc<dyn Journal>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                catalog,
                max_webhooks,
                journal,
                state: Mutex::new(State::default()),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a webhook half-updated (each update
        // assigns whole fields), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts webhooks loaded from the journal back (at start, before anything else runs). The
    /// bound does not drop any: a lowered `--max-webhooks` only refuses new ones.
    pub fn restore(&self, webhooks: Vec<Webhook>) {
        let mut state = self.state();
        for w in webhooks {
            state.webhooks.insert(w.id.clone(), w);
        }
    }

    /// A webhook as another instance saved it (a shared store): replaces this copy and is not
    /// written back.
    pub fn apply_remote(&self, out: api::WebhookOut) {
        match Webhook::from_out(out) {
            Ok(w) => {
                self.state().webhooks.insert(w.id.clone(), w);
                self.touch();
            }
            Err(e) => tracing::warn!("sender store: a webhook from another instance: {e}"),
        }
    }

    /// A webhook another instance deleted (a shared store): forgotten here, not written back.
    pub fn forget(&self, id: &str) {
        self.state().webhooks.remove(id);
        self.touch();
    }

    /// Writes a webhook through to the journal (called with the state lock held, so the
    /// journal sees changes in the order they happened).
    fn save(&self, w: &Webhook) -> Result<(), RegistryError> {
        match &self.shared.journal {
            Some(j) => j
                .put_webhook(&w.to_out())
                .map_err(|e| RegistryError::Store(e.to_string())),
            None => Ok(()),
        }
    }

    /// [`Registry::save`] for counters: written in order without waiting for the disk; a
    /// failure is logged (the count is still right here).
    fn save_quietly(&self, w: &Webhook) {
        if let Some(j) = &self.shared.journal {
            j.put_webhook_later(&w.to_out());
        }
    }

    /// Tells watchers that a webhook or its delivery log changed.
    pub fn touch(&self) {
        // Nobody watching (no UI open, a benchmark): one atomic load, no lock.
        if self.shared.changes.receiver_count() > 0 {
            self.shared.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Watches for changes (see [`Registry::touch`]).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    pub fn max_webhooks(&self) -> usize {
        self.shared.max_webhooks
    }

    /// Validates and adds a webhook.
    pub fn create(&self, input: api::WebhookIn) -> Result<Webhook, RegistryError> {
        self.create_with(input, |_| Ok(()))
    }

    /// [`Registry::create`] with one more check of a well-formed URL (the outbound policy);
    /// every problem of the input is reported at once.
    pub fn create_with(
        &self,
        input: api::WebhookIn,
        check_url: impl FnOnce(&str) -> Result<(), RegistryError>,
    ) -> Result<Webhook, RegistryError> {
        let mut checks = Checks::default();
        let name = checks.check(parse_name(&input.name));
        let url = checks.check(parse_url(&input.url).and_then(|u| check_url(&u).map(|()| u)));
        let events = checks.check(self.parse_events(input.event, input.events));
        let secret = checks.check(match input.secret {
            Some(s) => Secret::parse(&s).map_err(|e| invalid("secret", e.to_string())),
            None => Ok(Secret::generate()),
        });
        checks.finish()?;
        let (Some(name), Some(url), Some(events), Some(secret)) = (name, url, events, secret)
        else {
            unreachable!("every check passed");
        };
        let webhook = Webhook {
            id: crate::random_id("wh_"),
            name,
            url,
            events,
            secret,
            previous_secret: None,
            active: input.active.unwrap_or(true),
            envelope: input.envelope.unwrap_or_default(),
            created_at: Utc::now(),
            event_count: 0,
            consecutive_failures: 0,
            last_failure: None,
            disabled_reason: None,
        };
        let mut state = self.state();
        if state.webhooks.len() >= self.shared.max_webhooks {
            return Err(RegistryError::Full(self.shared.max_webhooks));
        }
        if state.webhooks.values().any(|w| w.name == webhook.name) {
            return Err(RegistryError::NameTaken(webhook.name));
        }
        self.save(&webhook)?;
        state.webhooks.insert(webhook.id.clone(), webhook.clone());
        drop(state);
        self.touch();
        Ok(webhook)
    }

    /// All webhooks, oldest first.
    pub fn list(&self) -> Vec<Webhook> {
        let mut all: Vec<Webhook> = self.state().webhooks.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn get(&self, id: &str) -> Option<Webhook> {
        self.state().webhooks.get(id).cloned()
    }

    /// `f` of the webhook, read in place under the registry's lock (no copy: the delivery
    /// engine's per-attempt look). `f` must be short and must not call the registry.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&Webhook) -> R) -> Option<R> {
        self.state().webhooks.get(id).map(f)
    }

    /// By id, else by name.
    pub fn find(&self, id_or_name: &str) -> Option<Webhook> {
        let state = self.state();
        state
            .webhooks
            .get(id_or_name)
            .or_else(|| state.webhooks.values().find(|w| w.name == id_or_name))
            .cloned()
    }

    /// Active webhooks subscribed to `slug`, oldest first.
    pub fn subscribers(&self, slug: &str) -> Vec<Webhook> {
        subscribed(&self.state(), slug)
            .into_iter()
            .cloned()
            .collect()
    }

    /// [`Registry::subscribers`], only what an emit needs of each (no copy of the webhooks).
    pub fn subscriber_ids(&self, slug: &str) -> Vec<Subscriber> {
        subscribed(&self.state(), slug)
            .into_iter()
            .map(|w| Subscriber {
                id: w.id.clone(),
                envelope: w.envelope,
            })
            .collect()
    }

    /// Applies the fields given; validation happens before anything changes.
    pub fn update(&self, id: &str, patch: api::WebhookPatch) -> Result<Webhook, RegistryError> {
        self.update_with(id, patch, |_| Ok(()))
    }

    /// [`Registry::update`] with one more check of a well-formed URL (see
    /// [`Registry::create_with`]); every problem of the patch is reported at once.
    pub fn update_with(
        &self,
        id: &str,
        patch: api::WebhookPatch,
        check_url: impl FnOnce(&str) -> Result<(), RegistryError>,
    ) -> Result<Webhook, RegistryError> {
        let mut checks = Checks::default();
        let name = checks
            .check(patch.name.as_deref().map(parse_name).transpose())
            .flatten();
        let url = checks
            .check(
                patch
                    .url
                    .as_deref()
                    .map(|u| parse_url(u).and_then(|u| check_url(&u).map(|()| u)))
                    .transpose(),
            )
            .flatten();
        let events = if patch.event.is_some() || patch.events.is_some() {
            checks.check(self.parse_events(patch.event, patch.events))
        } else {
            None
        };
        let secret = checks
            .check(
                patch
                    .secret
                    .as_deref()
                    .map(|s| Secret::parse(s).map_err(|e| invalid("secret", e.to_string())))
                    .transpose(),
            )
            .flatten();
        checks.finish()?;
        let mut state = self.state();
        if let Some(name) = &name
            && state
                .webhooks
                .values()
                .any(|w| &w.name == name && w.id != id)
        {
            return Err(RegistryError::NameTaken(name.clone()));
        }
        let mut webhook = state
            .webhooks
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        if let Some(name) = name {
            webhook.name = name;
        }
        if let Some(url) = url {
            webhook.url = url;
        }
        if let Some(events) = events {
            webhook.events = events;
        }
        if let Some(secret) = secret {
            // A secret set by hand replaces the old one at once: no grace period (that is what
            // a rotation is for).
            webhook.secret = secret;
            webhook.previous_secret = None;
        }
        if let Some(envelope) = patch.envelope {
            webhook.envelope = envelope;
        }
        match patch.active {
            Some(true) => {
                webhook.active = true;
                webhook.disabled_reason = None;
                webhook.consecutive_failures = 0;
            }
            Some(false) => webhook.active = false,
            None => {}
        }
        self.save(&webhook)?;
        state.webhooks.insert(webhook.id.clone(), webhook.clone());
        drop(state);
        self.touch();
        Ok(webhook)
    }

    /// Replaces the signing secret with `new` (generated when `None`); the current one keeps
    /// signing beside it for `grace` (a duration as [`api::units::parse_duration`] reads it;
    /// default [`DEFAULT_ROTATION_GRACE`], at most [`MAX_ROTATION_GRACE`]; `0`: none). Only
    /// the secret just replaced is kept: rotating again ends an older one's grace period at
    /// once. Every invalid field (`grace`, `secret`) is reported at once.
    pub fn rotate_secret(
        &self,
        id: &str,
        new: Option<&str>,
        grace: Option<&str>,
    ) -> Result<Webhook, RegistryError> {
        let mut checks = Checks::default();
        let grace = checks.check(match grace {
            None => Ok(DEFAULT_ROTATION_GRACE),
            Some(text) => api::units::parse_duration(text)
                .map_err(|e| invalid("grace", e))
                .and_then(|g| {
                    if g > MAX_ROTATION_GRACE {
                        Err(invalid("grace", "must be at most 7d (a week)"))
                    } else {
                        Ok(g)
                    }
                }),
        });
        let secret = checks.check(match new {
            Some(s) => Secret::parse(s).map_err(|e| invalid("secret", e.to_string())),
            None => Ok(Secret::generate()),
        });
        checks.finish()?;
        let (Some(grace), Some(secret)) = (grace, secret) else {
            unreachable!("every check passed");
        };
        let mut state = self.state();
        let mut webhook = state
            .webhooks
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        let old = std::mem::replace(&mut webhook.secret, secret);
        // `grace` is at most a week, so the conversion cannot fail.
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
        webhook.previous_secret = (grace > chrono::Duration::zero()).then(|| PreviousSecret {
            secret: old,
            // To the millisecond, as the API and the journal write it: the copy restored after
            // a restart stops at the same instant as this one.
            until: chrono::SubsecRound::trunc_subsecs(Utc::now() + grace, 3),
        });
        self.save(&webhook)?;
        state.webhooks.insert(webhook.id.clone(), webhook.clone());
        drop(state);
        self.touch();
        Ok(webhook)
    }

    /// Removes a webhook; the journal drops it with its messages and attempts.
    pub fn remove(&self, id: &str) -> Result<Webhook, RegistryError> {
        let mut state = self.state();
        if !state.webhooks.contains_key(id) {
            return Err(RegistryError::NotFound(id.to_owned()));
        }
        if let Some(j) = &self.shared.journal {
            j.delete_webhook(id)
                .map_err(|e| RegistryError::Store(e.to_string()))?;
        }
        let removed = state.webhooks.remove(id);
        drop(state);
        self.touch();
        removed.ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// A message was delivered: count it and end any run of failures.
    pub fn note_delivered(&self, id: &str) {
        if let Some(w) = self.state().webhooks.get_mut(id) {
            w.event_count += 1;
            w.consecutive_failures = 0;
            self.save_quietly(w);
        }
        self.touch();
    }

    /// A Send Test Event was delivered: it counts in "Events sent" like any delivered message,
    /// but leaves the run of failures alone (a test neither disables nor heals a webhook).
    pub fn note_test_delivered(&self, id: &str) {
        if let Some(w) = self.state().webhooks.get_mut(id) {
            w.event_count += 1;
            self.save_quietly(w);
        }
        self.touch();
    }

    /// An attempt failed (the message may still be retried).
    pub fn note_failed_attempt(&self, id: &str, reason: &str) {
        if let Some(w) = self.state().webhooks.get_mut(id) {
            w.last_failure = Some(Failure {
                at: Utc::now(),
                reason: reason.to_owned(),
            });
            self.save_quietly(w);
        }
        self.touch();
    }

    /// A message ended failed. After `disable_after` such messages in a row (0: never) the
    /// webhook is disabled; returns the reason when this call disabled it.
    pub fn note_failed_message(&self, id: &str, disable_after: u32) -> Option<String> {
        let disabled = self.count_failed_message(id, disable_after);
        self.touch();
        disabled
    }

    fn count_failed_message(&self, id: &str, disable_after: u32) -> Option<String> {
        let mut state = self.state();
        let w = state.webhooks.get_mut(id)?;
        w.consecutive_failures += 1;
        let disabled = self.disable_after(w, disable_after);
        self.save_quietly(w);
        disabled
    }

    fn disable_after(&self, w: &mut Webhook, disable_after: u32) -> Option<String> {
        if disable_after > 0 && w.consecutive_failures >= disable_after && w.active {
            let last = w
                .last_failure
                .as_ref()
                .map(|f| f.reason.as_str())
                .unwrap_or("unknown");
            let reason = format!(
                "disabled after {} failed messages in a row (last error: {last})",
                w.consecutive_failures
            );
            w.active = false;
            w.disabled_reason = Some(reason.clone());
            return Some(reason);
        }
        None
    }

    /// Switches a webhook off with a reason shown to the user (e.g. it answered 410 Gone).
    pub fn disable(&self, id: &str, reason: &str) {
        if let Some(w) = self.state().webhooks.get_mut(id) {
            w.active = false;
            w.disabled_reason = Some(reason.to_owned());
            self.save_quietly(w);
        }
        self.touch();
    }

    fn parse_events(
        &self,
        event: Option<String>,
        events: Option<Vec<String>>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut all: Vec<String> = Vec::new();
        let field = if events.is_some() { "events" } else { "event" };
        for slug in event.into_iter().chain(events.into_iter().flatten()) {
            let slug = slug.trim().to_owned();
            if !self.shared.catalog.contains(&slug) {
                return Err(invalid(
                    field,
                    format!("unknown event `{slug}` (GET /api/events lists the catalog)"),
                ));
            }
            if !all.contains(&slug) {
                all.push(slug);
            }
        }
        if all.is_empty() {
            return Err(invalid("event", "give at least one event"));
        }
        Ok(all)
    }
}

fn parse_name(name: &str) -> Result<String, RegistryError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars < MIN_NAME_CHARS {
        return Err(invalid("name", "must be at least 2 characters"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(invalid("name", "must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// A webhook URL as stored: trimmed, http(s), with a host, without credentials or control
/// characters.
pub(crate) fn parse_url(url: &str) -> Result<String, RegistryError> {
    // The URL parser would silently drop CR, LF and tabs, so what is stored and shown would not
    // be what is sent; and a CR/LF is never part of a URL someone meant.
    if url.chars().any(char::is_control) {
        return Err(invalid(
            "url",
            "must not contain control characters (CR, LF, tab, ...)",
        ));
    }
    let url = url.trim();
    if url.len() > MAX_URL_BYTES {
        return Err(invalid("url", "must be at most 2048 bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("url", "must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Credentials in URLs leak into logs and the UI; use the secret instead.
        return Err(invalid("url", "must not carry a user name or password"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> Registry {
        Registry::new(Arc::new(Catalog::builtin()), max)
    }

    fn input(name: &str, url: &str, event: &str) -> api::WebhookIn {
        api::WebhookIn {
            name: name.into(),
            url: url.into(),
            event: Some(event.into()),
            ..Default::default()
        }
    }

    fn field_of(e: RegistryError) -> &'static str {
        match e {
            RegistryError::Invalid { field, .. } => field,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn creates_with_generated_secret_and_defaults() {
        let r = registry(10);
        let w = r
            .create(input(
                "Billing",
                "https://example.com/hook",
                "payment_received",
            ))
            .unwrap();
        assert!(w.id.starts_with("wh_"));
        assert!(w.active);
        assert_eq!(w.envelope, api::Envelope::Flat);
        assert_eq!(w.events, ["payment_received"]);
        assert!(Secret::parse(w.secret.as_str()).is_ok());
        assert_eq!(r.get(&w.id).unwrap().name, "Billing");
        assert_eq!(r.find("Billing").unwrap().id, w.id);
        let out = w.to_out();
        assert!(out.created_at.ends_with('Z'));
    }

    #[test]
    fn validation_names_the_field() {
        let r = registry(10);
        let ok = || input("Billing", "https://example.com/h", "payment_received");
        assert_eq!(
            field_of(
                r.create(api::WebhookIn {
                    name: "B".into(),
                    ..ok()
                })
                .unwrap_err()
            ),
            "name"
        );
        for bad in [
            "ftp://x.example/",
            "not a url",
            "https://user:pw@x.example/",
            "http://",
            "http://a.example/x\r\nX-Injected: 1",
            "http://a.example/\nx",
            "http://a.example/\tx",
            "http://a.example/\u{0}",
            "http://a.example/x\r\n",
        ] {
            let e = r
                .create(api::WebhookIn {
                    url: bad.into(),
                    ..ok()
                })
                .unwrap_err();
            assert_eq!(field_of(e), "url", "{bad}");
        }
        let e = r
            .create(api::WebhookIn {
                event: Some("nope".into()),
                ..ok()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "event: unknown event `nope` (GET /api/events lists the catalog)"
        );
        let e = r
            .create(api::WebhookIn {
                event: None,
                events: Some(vec!["payment_created".into(), "nope".into()]),
                ..ok()
            })
            .unwrap_err();
        assert_eq!(field_of(e), "events");
        let e = r
            .create(api::WebhookIn {
                event: None,
                ..ok()
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "event: give at least one event");
        let e = r
            .create(api::WebhookIn {
                secret: Some("whsec_".into()),
                ..ok()
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "secret: is empty after `whsec_`");
        // Nothing was added by the refused calls.
        assert!(r.list().is_empty());
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let r = registry(10);
        let e = r
            .create(api::WebhookIn {
                name: "B".into(),
                url: "ftp://x.example/".into(),
                event: Some("nope".into()),
                secret: Some("whsec_".into()),
                ..Default::default()
            })
            .unwrap_err();
        let fields: Vec<&str> = e.fields().iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["name", "url", "event", "secret"], "{e}");
        assert_eq!(
            e.to_string(),
            "name: must be at least 2 characters; url: must start with http:// or https://; \
             event: unknown event `nope` (GET /api/events lists the catalog); \
             secret: is empty after `whsec_`"
        );
        let w = r
            .create(input("ok", "http://a.example/", "payment_received"))
            .unwrap();
        let e = r
            .update(
                &w.id,
                api::WebhookPatch {
                    name: Some("".into()),
                    url: Some("http://".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.fields().len(), 2, "{e}");
        assert!(r.list().len() == 1 && r.get(&w.id).unwrap().name == "ok");
    }

    #[test]
    fn event_and_events_merge_without_duplicates() {
        let r = registry(10);
        let w = r
            .create(api::WebhookIn {
                events: Some(vec!["payment_created".into(), "payment_received".into()]),
                ..input("All", "http://127.0.0.1:9/x", "payment_received")
            })
            .unwrap();
        assert_eq!(w.events, ["payment_received", "payment_created"]);
        assert_eq!(r.subscribers("payment_created").len(), 1);
        assert!(r.subscribers("site_published").is_empty());
    }

    #[test]
    fn bounded_and_names_unique() {
        let r = registry(2);
        r.create(input("one", "http://a.example/", "payment_received"))
            .unwrap();
        assert_eq!(
            r.create(input("one", "http://b.example/", "payment_received"))
                .unwrap_err(),
            RegistryError::NameTaken("one".into())
        );
        let two = r
            .create(input("two", "http://b.example/", "payment_received"))
            .unwrap();
        assert_eq!(
            r.create(input("three", "http://c.example/", "payment_received"))
                .unwrap_err(),
            RegistryError::Full(2)
        );
        r.remove(&two.id).unwrap();
        r.create(input("three", "http://c.example/", "payment_received"))
            .unwrap();
        assert_eq!(
            r.remove("wh_nope").unwrap_err(),
            RegistryError::NotFound("wh_nope".into())
        );
    }

    #[test]
    fn update_validates_first_and_reenabling_clears_the_reason() {
        let r = registry(10);
        let w = r
            .create(input("one", "http://a.example/", "payment_received"))
            .unwrap();
        let e = r
            .update(
                &w.id,
                api::WebhookPatch {
                    name: Some("renamed".into()),
                    url: Some("gopher://x".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(field_of(e), "url");
        assert_eq!(r.get(&w.id).unwrap().name, "one");

        r.note_failed_attempt(&w.id, "HTTP 500");
        assert_eq!(r.note_failed_message(&w.id, 2), None);
        let reason = r.note_failed_message(&w.id, 2).unwrap();
        assert!(
            reason.contains("2 failed messages in a row (last error: HTTP 500)"),
            "{reason}"
        );
        let now = r.get(&w.id).unwrap();
        assert!(!now.active && now.disabled_reason.is_some());
        assert!(r.subscribers("payment_received").is_empty());

        let back = r
            .update(
                &w.id,
                api::WebhookPatch {
                    active: Some(true),
                    envelope: Some(api::Envelope::Standard),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(back.active && back.disabled_reason.is_none());
        assert_eq!(
            (back.consecutive_failures, back.envelope),
            (0, api::Envelope::Standard)
        );
        assert_eq!(back.last_failure.unwrap().reason, "HTTP 500");
    }

    /// Signs one message with the webhook's secrets at `now`, as a delivery does, and says
    /// which of `secrets` verify it.
    fn verifying(w: &Webhook, now: DateTime<Utc>, secrets: &[&str]) -> Vec<bool> {
        let body = br#"{"payment_total":10}"#;
        let signed = crate::signing::SignedHeaders::new(
            &w.signing_secrets(now),
            "msg_1",
            now.timestamp(),
            body,
        );
        secrets
            .iter()
            .map(|s| crate::verify(s, signed.pairs(), body, now.timestamp(), 300).is_ok())
            .collect()
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
        let r = registry(10);
        let w = r
            .create(input("one", "http://a.example/", "payment_received"))
            .unwrap();
        let old = w.secret.as_str().to_owned();
        let before = Utc::now();
        let rotated = r.rotate_secret(&w.id, None, Some("2h")).unwrap();
        let new = rotated.secret.as_str().to_owned();
        assert_ne!(new, old);
        let prev = rotated.previous_secret.clone().unwrap();
        assert_eq!(prev.secret.as_str(), old);
        let hours = (prev.until - before).num_minutes();
        assert!((119..=121).contains(&hours), "{hours} minutes");
        // During the grace period: two `v1,` entries, the new secret first; each verifies.
        let now = Utc::now();
        let signed = crate::signing::SignedHeaders::new(
            &rotated.signing_secrets(now),
            "msg_1",
            now.timestamp(),
            b"{}",
        );
        assert_eq!(
            signed.signature.split(' ').count(),
            2,
            "{}",
            signed.signature
        );
        assert_eq!(
            signed.signature.split(' ').next().unwrap(),
            rotated.secret.sign("msg_1", now.timestamp(), b"{}")
        );
        assert_eq!(verifying(&rotated, now, &[&new, &old]), [true, true]);
        let out = rotated.to_out();
        assert_eq!(out.previous_secret.as_deref(), Some(old.as_str()));
        assert_eq!(
            out.previous_secret_expires_at,
            Some(crate::rfc3339(prev.until))
        );
        // After it: the new secret alone, and the API shows no previous one.
        let later = prev.until + chrono::Duration::seconds(1);
        assert_eq!(rotated.signing_secrets(later).len(), 1);
        assert_eq!(verifying(&rotated, later, &[&new, &old]), [true, false]);
        // Kept as the registry's copy, and back from the journal's JSON as it was.
        let back = Webhook::from_out(out).unwrap();
        assert_eq!(back.previous_secret, Some(prev));
        assert_eq!(
            r.get(&w.id).unwrap().previous_secret,
            rotated.previous_secret
        );
    }

    #[test]
    fn rotation_grace_is_bounded_and_zero_ends_the_old_secret_at_once() {
        let r = registry(10);
        let w = r
            .create(input("one", "http://a.example/", "payment_received"))
            .unwrap();
        let default = r.rotate_secret(&w.id, None, None).unwrap();
        let until = default.previous_secret.unwrap().until;
        assert!((until - Utc::now()).num_hours() == 23, "default: a day");
        let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let now = r.rotate_secret(&w.id, Some(given), Some("0")).unwrap();
        assert_eq!(now.secret.as_str(), given);
        assert!(now.previous_secret.is_none());
        assert_eq!(now.signing_secrets(Utc::now()).len(), 1);
        assert!(r.rotate_secret(&w.id, None, Some("7d")).is_ok());
        // Bad input changes nothing and names every field.
        let before = r.get(&w.id).unwrap().secret;
        let e = r
            .rotate_secret(&w.id, Some("whsec_"), Some("8d"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "grace: must be at most 7d (a week); secret: is empty after `whsec_`"
        );
        let e = r.rotate_secret(&w.id, None, Some("soon")).unwrap_err();
        assert_eq!(field_of(e), "grace");
        assert_eq!(r.get(&w.id).unwrap().secret, before);
        assert_eq!(
            r.rotate_secret("wh_nope", None, None).unwrap_err(),
            RegistryError::NotFound("wh_nope".into())
        );
        // A secret set by hand replaces the old one with no grace.
        let patched = r
            .update(
                &w.id,
                api::WebhookPatch {
                    secret: Some(given.into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(patched.previous_secret.is_none());
    }

    #[test]
    fn a_delivery_ends_a_run_of_failures() {
        let r = registry(10);
        let w = r
            .create(input("one", "http://a.example/", "payment_received"))
            .unwrap();
        r.note_failed_message(&w.id, 3);
        r.note_failed_message(&w.id, 3);
        r.note_delivered(&w.id);
        assert_eq!(r.note_failed_message(&w.id, 3), None);
        let now = r.get(&w.id).unwrap();
        assert_eq!(
            (now.event_count, now.consecutive_failures, now.active),
            (1, 1, true)
        );
    }
}
