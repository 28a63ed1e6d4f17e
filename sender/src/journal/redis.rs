//! [`RedisJournal`]: the journal in Redis, shared by every instance on the same server and
//! prefix.
//!
//! Keys (`P` is the store's prefix followed by `sender:`, `hookbin:sender:` by default):
//! - `P webhooks`: a hash, webhook id -> its JSON ([`api::WebhookOut`]);
//! - `P webhook_order`: a sorted set of webhook ids by creation sequence;
//! - `P msg:<id>`: a hash per message (webhook, event, body: the exact bytes, created, state,
//!   attempts, next_at, error);
//! - `P msgs:<webhook id>`: a sorted set of that webhook's message ids by sequence;
//! - `P att:<webhook id>`: a hash, attempt id -> its JSON; `P atts:<webhook id>`: their order;
//! - `P evicted`: a hash of counters (`<webhook id>:a`, `<webhook id>:m`, by `HINCRBY`);
//! - `P seq`: the sequence;
//! - `P changes`: the channel every change is announced on (see [`Change`]).
//!
//! Every change is one Lua script (so a change touching several keys is atomic) that also
//! publishes its notice, so the notices come in the order the changes happened. The calls run
//! on a thread of their own (its own single-threaded runtime, one `ConnectionManager`), in
//! the order they were made, each bounded by [`DEADLINE`]: with Redis down a call is an error
//! within the deadline (answered 503), never a hang. Calls still waiting their turn when their
//! deadline has passed fail at once, so a backlog built during an outage drains quickly.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::{
    Journal, JournalError, MessageRecord, MessageStateRecord, Snapshot, err, state_from, state_name,
};

/// How long one call may take, Redis down or not.
pub const DEADLINE: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const PUT_WEBHOOK: &str = r#"
local p, id, json = ARGV[1], ARGV[2], ARGV[3]
if ARGV[4] == '1' then
  -- A counters update (written without waiting) never switches a webhook back on: it may
  -- have been made from a copy older than another instance's "disable".
  local old = redis.call('HGET', p .. 'webhooks', id)
  if not old then return 0 end
  if string.find(old, '"active":false', 1, true) and string.find(json, '"active":true', 1, true) then
    return 0
  end
end
if not redis.call('ZSCORE', p .. 'webhook_order', id) then
  redis.call('ZADD', p .. 'webhook_order', redis.call('INCR', p .. 'seq'), id)
end
redis.call('HSET', p .. 'webhooks', id, json)
redis.call('PUBLISH', p .. 'changes', ARGV[5])
return 1
"#;

const DELETE_WEBHOOK: &str = r"
local p, id = ARGV[1], ARGV[2]
redis.call('HDEL', p .. 'webhooks', id)
redis.call('ZREM', p .. 'webhook_order', id)
for _, m in ipairs(redis.call('ZRANGE', p .. 'msgs:' .. id, 0, -1)) do
  redis.call('DEL', p .. 'msg:' .. m)
end
redis.call('DEL', p .. 'msgs:' .. id, p .. 'att:' .. id, p .. 'atts:' .. id)
redis.call('HDEL', p .. 'evicted', id .. ':a', id .. ':m')
redis.call('PUBLISH', p .. 'changes', ARGV[3])
return 1
";

/// ARGV: prefix, id, webhook, event, body, created, state, attempts, next_at ('' none),
/// has_error ('0'/'1'), error, notice.
const INSERT_MESSAGE: &str = r"
local p, id, wh = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'msg:' .. id
redis.call('DEL', k)
redis.call('HSET', k, 'webhook', wh, 'event', ARGV[4], 'body', ARGV[5], 'created', ARGV[6],
  'state', ARGV[7], 'attempts', ARGV[8])
if ARGV[9] ~= '' then redis.call('HSET', k, 'next_at', ARGV[9]) end
if ARGV[10] == '1' then redis.call('HSET', k, 'error', ARGV[11]) end
redis.call('ZADD', p .. 'msgs:' .. wh, redis.call('INCR', p .. 'seq'), id)
redis.call('PUBLISH', p .. 'changes', ARGV[12])
return 1
";

/// ARGV: prefix, id, state, attempts, next_at ('' none), has_error, error, notice.
const UPDATE_MESSAGE: &str = r"
local p, id = ARGV[1], ARGV[2]
local k = p .. 'msg:' .. id
if redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HSET', k, 'state', ARGV[3], 'attempts', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', k, 'next_at', ARGV[5]) else redis.call('HDEL', k, 'next_at') end
if ARGV[6] == '1' then redis.call('HSET', k, 'error', ARGV[7]) else redis.call('HDEL', k, 'error') end
redis.call('PUBLISH', p .. 'changes', ARGV[8])
return 1
";

/// ARGV: prefix, webhook, number of messages, the message ids, then the attempt ids.
const EVICT: &str = r"
local p, wh, nm = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, 3 + nm do
  redis.call('DEL', p .. 'msg:' .. ARGV[i])
  redis.call('ZREM', p .. 'msgs:' .. wh, ARGV[i])
end
for i = 4 + nm, #ARGV do
  redis.call('HDEL', p .. 'att:' .. wh, ARGV[i])
  redis.call('ZREM', p .. 'atts:' .. wh, ARGV[i])
end
redis.call('HINCRBY', p .. 'evicted', wh .. ':m', nm)
redis.call('HINCRBY', p .. 'evicted', wh .. ':a', #ARGV - 3 - nm)
return 1
";

/// ARGV: prefix, webhook, id, json, notice.
const INSERT_ATTEMPT: &str = r"
local p, wh, id = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', p .. 'att:' .. wh, id, ARGV[4])
redis.call('ZADD', p .. 'atts:' .. wh, redis.call('INCR', p .. 'seq'), id)
redis.call('PUBLISH', p .. 'changes', ARGV[5])
return 1
";

/// A change another instance made, as announced on `P changes`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Created, edited, disabled, or its counters moved.
    WebhookUpserted(api::WebhookOut),
    WebhookDeleted(String),
    /// A new message (or a test event's); its body is the exact bytes.
    MessageAdded(MessageRecord),
    MessageState {
        id: String,
        state: MessageStateRecord,
    },
    AttemptAdded(Box<api::AttemptOut>),
}

/// The wire form of a notice.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The instance that made the change (it does not apply its own).
    from: String,
    #[serde(flatten)]
    change: WireChange,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireChange {
    Webhook {
        webhook: api::WebhookOut,
    },
    WebhookDeleted {
        id: String,
    },
    Message {
        id: String,
        webhook_id: String,
        event: String,
        /// The body when it is UTF-8 (always, for JSON); otherwise it is read from Redis.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        created_at_ms: i64,
        #[serde(flatten)]
        state: WireState,
    },
    State {
        id: String,
        #[serde(flatten)]
        state: WireState,
    },
    Attempt {
        attempt: Box<api::AttemptOut>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct WireState {
    state: String,
    attempts: u32,
    next_attempt_at_ms: Option<i64>,
    error: Option<String>,
}

impl From<&MessageStateRecord> for WireState {
    fn from(s: &MessageStateRecord) -> Self {
        Self {
            state: state_name(s.state).to_owned(),
            attempts: s.attempts,
            next_attempt_at_ms: s.next_attempt_at_ms,
            error: s.error.clone(),
        }
    }
}

impl From<WireState> for MessageStateRecord {
    fn from(s: WireState) -> Self {
        Self {
            state: state_from(&s.state),
            attempts: s.attempts,
            next_attempt_at_ms: s.next_attempt_at_ms,
            error: s.error,
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One call for the journal's thread: given the connection (or why there is none: its turn
/// came after its deadline), it runs and answers its caller itself.
struct Op {
    queued: Instant,
    /// Runs with nothing pipelined beside it (several commands whose order with other calls
    /// matters: the snapshot).
    alone: bool,
    job: Box<dyn FnOnce(Result<Ctx, JournalError>) -> BoxFuture + Send>,
}

#[derive(Clone)]
struct Ctx {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    /// `<prefix>sender:`
    p: Arc<str>,
}

struct Scripts {
    put_webhook: Lua,
    delete_webhook: Lua,
    update_message: Lua,
    evict: Lua,
    insert_attempt: Lua,
}

/// A script sent whole with `EVAL` on every call (Redis caches it compiled), never
/// `EVALSHA`: a Redis that lost its script cache (a restart) would answer `NOSCRIPT` and the
/// retry would run after calls pipelined behind it, out of order.
struct Lua(&'static str);

impl Lua {
    fn prepare_invoke(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(self.0).arg(0);
        cmd
    }
}

/// Calls written to Redis at once (pipelined) at most.
const PIPELINE: usize = 256;

/// See the module documentation.
pub struct RedisJournal {
    ops: tokio::sync::mpsc::UnboundedSender<Op>,
    client: redis::Client,
    /// `<prefix>sender:`
    p: Arc<str>,
    /// Names this instance in its notices.
    instance: String,
    /// The URL without credentials, for messages.
    shown: String,
}

impl std::fmt::Debug for RedisJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJournal")
            .field("url", &self.shown)
            .field("keys", &self.p)
            .finish_non_exhaustive()
    }
}

/// `url` without a password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn opt_str(v: &Option<String>) -> (&'static str, String) {
    match v {
        Some(e) => ("1", e.clone()),
        None => ("0", String::new()),
    }
}

fn opt_ms(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

fn text(map: &HashMap<String, Vec<u8>>, field: &str) -> Option<String> {
    map.get(field)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn number<T: std::str::FromStr + Default>(map: &HashMap<String, Vec<u8>>, field: &str) -> T {
    text(map, field)
        .and_then(|t| t.parse().ok())
        .unwrap_or_default()
}

fn message_from(id: &str, mut map: HashMap<String, Vec<u8>>) -> Option<MessageRecord> {
    let webhook_id = text(&map, "webhook")?;
    Some(MessageRecord {
        id: id.to_owned(),
        webhook_id,
        event: text(&map, "event").unwrap_or_default(),
        created_at_ms: number(&map, "created"),
        state: MessageStateRecord {
            state: state_from(&text(&map, "state").unwrap_or_default()),
            attempts: number(&map, "attempts"),
            next_attempt_at_ms: text(&map, "next_at").and_then(|t| t.parse().ok()),
            error: text(&map, "error"),
        },
        body: Bytes::from(map.remove("body").unwrap_or_default()),
    })
}

impl RedisJournal {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`, without `?prefix=`); keys go under
    /// `<prefix>sender:`. Blocks until connected (at most the deadline): call it off the
    /// runtime's workers (`spawn_blocking`) or before one runs.
    pub fn open(url: &str, prefix: &str) -> Result<Self, JournalError> {
        let shown = redact(url);
        let unavailable =
            |e: &dyn std::fmt::Display| JournalError(format!("redis at {shown}: {e}"));
        let client = redis::Client::open(url).map_err(|e| unavailable(&e))?;
        let p: Arc<str> = format!("{prefix}sender:").into();
        let (ops, mut rx) = tokio::sync::mpsc::unbounded_channel::<Op>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_client = client.clone();
        let thread_p = Arc::clone(&p);
        std::thread::Builder::new()
            .name("sender-redis".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(DEADLINE))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_millis(500));
                    let conn = match tokio::time::timeout(
                        DEADLINE,
                        ConnectionManager::new_with_config(thread_client, config),
                    )
                    .await
                    {
                        Ok(Ok(conn)) => conn,
                        Ok(Err(e)) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                        Err(_) => {
                            let _ = ready_tx.send(Err("no answer within the deadline".into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let ctx = Ctx {
                        conn,
                        p: thread_p,
                        scripts: Arc::new(Scripts {
                            put_webhook: Lua(PUT_WEBHOOK),
                            delete_webhook: Lua(DELETE_WEBHOOK),
                            update_message: Lua(UPDATE_MESSAGE),
                            evict: Lua(EVICT),
                            insert_attempt: Lua(INSERT_ATTEMPT),
                        }),
                    };
                    // In order, pipelined: every call waiting (up to PIPELINE) is started in
                    // turn, which writes its command to the one connection in that order, so
                    // Redis runs them in order; then they are awaited together. One round trip
                    // for a backlog instead of one per call.
                    let mut next: Option<Op> = None;
                    loop {
                        let first = match next.take() {
                            Some(op) => op,
                            None => match rx.recv().await {
                                Some(op) => op,
                                None => break,
                            },
                        };
                        let mut batch = vec![first];
                        while !batch[0].alone && batch.len() < PIPELINE {
                            match rx.try_recv() {
                                Ok(op) if op.alone => {
                                    next = Some(op);
                                    break;
                                }
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                        let runs: Vec<BoxFuture> = batch
                            .into_iter()
                            .map(|op| {
                                let ctx = if op.queued.elapsed() > DEADLINE {
                                    Err(JournalError(
                                        "the store did not answer within the deadline".into(),
                                    ))
                                } else {
                                    Ok(ctx.clone())
                                };
                                (op.job)(ctx)
                            })
                            .collect();
                        futures_util::future::join_all(runs).await;
                    }
                });
            })
            .map_err(|e| unavailable(&e))?;
        match ready_rx.recv_timeout(DEADLINE + CONNECT_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(unavailable(&e)),
            Err(_) => return Err(unavailable(&"no answer within the deadline")),
        }
        Ok(Self {
            ops,
            client,
            p,
            instance: crate::random_id("ins_"),
            shown,
        })
    }

    /// The channel changes are announced on.
    pub fn channel(&self) -> String {
        format!("{}changes", self.p)
    }

    fn submit(
        &self,
        alone: bool,
        job: impl FnOnce(Result<Ctx, JournalError>) -> BoxFuture + Send + 'static,
    ) {
        let _ = self.ops.send(Op {
            queued: Instant::now(),
            alone,
            job: Box::new(job),
        });
    }

    /// Runs `f` on the journal's thread and waits for its answer (within the deadline).
    fn call<T, F, Fut>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JournalError>> + Send + 'static,
    {
        self.call_with(false, f)
    }

    /// [`RedisJournal::call`]; `alone`: nothing is pipelined beside it (see [`Op::alone`]).
    fn call_with<T, F, Fut>(&self, alone: bool, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JournalError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let shown = self.shown.clone();
        self.submit(alone, move |ctx| {
            Box::pin(async move {
                let r = match ctx {
                    Ok(ctx) => match tokio::time::timeout(DEADLINE, f(ctx)).await {
                        Ok(r) => r,
                        Err(_) => Err(JournalError("no answer within the deadline".into())),
                    },
                    Err(e) => Err(e),
                };
                let _ = tx.send(r.map_err(|e| JournalError(format!("redis at {shown}: {}", e.0))));
            })
        });
        // The thread answers within its deadline; the margin covers a call queued behind
        // another that is still running.
        match rx.recv_timeout(DEADLINE + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => Err(JournalError(format!(
                "redis at {}: no answer within the deadline",
                self.shown
            ))),
        }
    }

    /// Runs `f` on the journal's thread in order, without waiting; a failure is logged.
    fn later<F, Fut>(&self, what: String, f: F)
    where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), JournalError>> + Send + 'static,
    {
        self.submit(false, move |ctx| {
            Box::pin(async move {
                let r = match ctx {
                    Ok(ctx) => match tokio::time::timeout(DEADLINE, f(ctx)).await {
                        Ok(r) => r,
                        Err(_) => Err(JournalError("no answer within the deadline".into())),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    tracing::warn!("sender store: {what}: {e}");
                }
            })
        });
    }

    /// A notice whose one field besides `from` and `kind` is a value already in JSON: `head`
    /// is `"kind":"...","field"`, `json` the value.
    fn notice_with(&self, head: &str, json: &str) -> String {
        format!(
            "{{\"from\":{},{head}:{json}}}",
            serde_json::Value::from(self.instance.as_str())
        )
    }

    fn notice(&self, change: WireChange) -> Result<String, JournalError> {
        serde_json::to_string(&Notice {
            from: self.instance.clone(),
            change,
        })
        .map_err(err)
    }

    fn put(&self, webhook: &api::WebhookOut, quiet: bool) -> Result<(), JournalError> {
        let json = serde_json::to_string(webhook).map_err(err)?;
        // What `self.notice(WireChange::Webhook { .. })` writes, the webhook's JSON made once
        // (a counters write, one per delivery, comes here too).
        let notice = self.notice_with(r#""kind":"webhook","webhook""#, &json);
        let id = webhook.id.clone();
        let run = move |mut c: Ctx| async move {
            let _: i64 = c
                .scripts
                .put_webhook
                .prepare_invoke()
                .arg(&*c.p)
                .arg(&id)
                .arg(json)
                .arg(if quiet { "1" } else { "0" })
                .arg(notice)
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            Ok(())
        };
        if quiet {
            self.later(format!("saving webhook {}", webhook.id), run);
            Ok(())
        } else {
            self.call(run)
        }
    }

    /// Follows the changes other instances announce, calling `apply` for each, until the
    /// returned task is aborted. Subscribed before this returns (so a snapshot loaded after
    /// it misses nothing); a lost connection is re-subscribed, and `resync` is called then
    /// (whatever was announced meanwhile is lost to this instance).
    pub async fn follow(
        &self,
        apply: impl Fn(Change) + Send + Sync + 'static,
        resync: impl Fn() + Send + Sync + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, JournalError> {
        use futures_util::StreamExt;
        let channel = self.channel();
        let client = self.client.clone();
        let shown = self.shown.clone();
        // Every notice starts with its sender (`from` is serialized first): this instance's
        // own are recognised by that prefix and skipped unparsed (a busy instance hears
        // several of its own per delivery).
        let own = format!(
            r#"{{"from":{}"#,
            serde_json::Value::from(self.instance.clone())
        );
        let instance = self.instance.clone();
        let subscribe = move |client: redis::Client, channel: String| async move {
            let connect = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            match tokio::time::timeout(DEADLINE, connect).await {
                Ok(r) => r.map_err(err),
                Err(_) => Err(JournalError("subscribing took too long".into())),
            }
        };
        let first = subscribe(client.clone(), channel.clone())
            .await
            .map_err(|e| JournalError(format!("redis at {shown}: {}", e.0)))?;
        let fetcher = Fetcher {
            client: client.clone(),
            p: Arc::clone(&self.p),
        };
        Ok(tokio::spawn(async move {
            let mut next = Some(first);
            let mut retry = Duration::from_millis(50);
            loop {
                let ps = match next.take() {
                    Some(ps) => ps,
                    None => match subscribe(client.clone(), channel.clone()).await {
                        Ok(ps) => {
                            tracing::info!("redis at {shown}: sender changes subscribed again");
                            retry = Duration::from_millis(50);
                            resync();
                            ps
                        }
                        Err(e) => {
                            tracing::debug!("redis at {shown}: sender changes: {e}");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(Duration::from_secs(1));
                            continue;
                        }
                    },
                };
                let (mut sink, mut messages) = ps.split();
                let mut ping = tokio::time::interval(Duration::from_secs(1));
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => {
                                if msg.get_payload_bytes().starts_with(own.as_bytes()) {
                                    continue;
                                }
                                let Ok(notice) =
                                    serde_json::from_slice::<Notice>(msg.get_payload_bytes())
                                else {
                                    tracing::warn!("redis at {shown}: an unreadable sender notice");
                                    continue;
                                };
                                if notice.from == instance {
                                    continue;
                                }
                                if let Some(change) = fetcher.resolve(notice.change).await {
                                    apply(change);
                                }
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            let alive = tokio::time::timeout(
                                Duration::from_secs(2),
                                sink.ping::<redis::Value>(),
                            )
                            .await;
                            if !matches!(alive, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!("redis at {shown}: sender changes interrupted; subscribing again");
            }
        }))
    }
}

/// Reads what a notice leaves out (a body that is not UTF-8).
struct Fetcher {
    client: redis::Client,
    p: Arc<str>,
}

impl Fetcher {
    async fn resolve(&self, change: WireChange) -> Option<Change> {
        Some(match change {
            WireChange::Webhook { webhook } => Change::WebhookUpserted(webhook),
            WireChange::WebhookDeleted { id } => Change::WebhookDeleted(id),
            WireChange::State { id, state } => Change::MessageState {
                id,
                state: state.into(),
            },
            WireChange::Attempt { attempt } => Change::AttemptAdded(attempt),
            WireChange::Message {
                id,
                webhook_id,
                event,
                body: Some(body),
                created_at_ms,
                state,
            } => Change::MessageAdded(MessageRecord {
                id,
                webhook_id,
                event,
                body: Bytes::from(body),
                created_at_ms,
                state: state.into(),
            }),
            WireChange::Message { id, .. } => {
                let fetch = async {
                    let mut conn = self.client.get_multiplexed_async_connection().await?;
                    redis::cmd("HGETALL")
                        .arg(format!("{}msg:{id}", self.p))
                        .query_async::<HashMap<String, Vec<u8>>>(&mut conn)
                        .await
                };
                let map = tokio::time::timeout(DEADLINE, fetch).await.ok()?.ok()?;
                Change::MessageAdded(message_from(&id, map)?)
            }
        })
    }
}

async fn load(mut c: Ctx) -> Result<Snapshot, JournalError> {
    let p = &*c.p;
    let conn = &mut c.conn;
    let mut snap = Snapshot::default();
    let order: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{p}webhook_order"))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .map_err(err)?;
    let mut jsons: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{p}webhooks"))
        .query_async(conn)
        .await
        .map_err(err)?;
    let mut messages: Vec<(f64, MessageRecord)> = Vec::new();
    let mut attempts: Vec<(f64, api::AttemptOut)> = Vec::new();
    for id in &order {
        let Some(json) = jsons.remove(id) else {
            continue;
        };
        snap.webhooks
            .push(serde_json::from_str(&json).map_err(err)?);
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{p}msgs:{id}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await
            .map_err(err)?;
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for (m, _) in &ids {
                pipe.cmd("HGETALL").arg(format!("{p}msg:{m}"));
            }
            let maps: Vec<HashMap<String, Vec<u8>>> = pipe.query_async(conn).await.map_err(err)?;
            for ((m, seq), map) in ids.into_iter().zip(maps) {
                if let Some(record) = message_from(&m, map) {
                    messages.push((seq, record));
                }
            }
        }
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{p}atts:{id}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await
            .map_err(err)?;
        let mut by_id: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{p}att:{id}"))
            .query_async(conn)
            .await
            .map_err(err)?;
        for (a, seq) in ids {
            if let Some(json) = by_id.remove(&a) {
                attempts.push((seq, serde_json::from_str(&json).map_err(err)?));
            }
        }
    }
    messages.sort_by(|a, b| a.0.total_cmp(&b.0));
    attempts.sort_by(|a, b| a.0.total_cmp(&b.0));
    snap.messages = messages.into_iter().map(|(_, m)| m).collect();
    snap.attempts = attempts.into_iter().map(|(_, a)| a).collect();
    let evicted: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{p}evicted"))
        .query_async(conn)
        .await
        .map_err(err)?;
    for (field, n) in evicted {
        if let Some((webhook, kind)) = field.rsplit_once(':') {
            let entry = snap.evicted.entry(webhook.to_owned()).or_default();
            match kind {
                "a" => entry.0 = n.unsigned_abs(),
                _ => entry.1 = n.unsigned_abs(),
            }
        }
    }
    Ok(snap)
}

impl Journal for RedisJournal {
    fn load(&self) -> Result<Snapshot, JournalError> {
        self.call_with(true, load)
    }

    fn put_webhook(&self, webhook: &api::WebhookOut) -> Result<(), JournalError> {
        self.put(webhook, false)
    }

    fn put_webhook_later(&self, webhook: &api::WebhookOut) {
        if let Err(e) = self.put(webhook, true) {
            tracing::warn!("sender store: webhook {}: {e}", webhook.id);
        }
    }

    fn delete_webhook(&self, id: &str) -> Result<(), JournalError> {
        let notice = self.notice(WireChange::WebhookDeleted { id: id.to_owned() })?;
        let id = id.to_owned();
        self.call(move |mut c| async move {
            let _: i64 = c
                .scripts
                .delete_webhook
                .prepare_invoke()
                .arg(&*c.p)
                .arg(id)
                .arg(notice)
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn insert_message(&self, m: &MessageRecord) -> Result<(), JournalError> {
        self.insert_messages(std::slice::from_ref(m))
    }

    /// Waits for Redis: another instance may claim a message's task as soon as it is queued,
    /// and must find the message here. One pipeline (one round trip) for all of them.
    fn insert_messages(&self, messages: &[MessageRecord]) -> Result<(), JournalError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            let notice = self.notice(WireChange::Message {
                id: m.id.clone(),
                webhook_id: m.webhook_id.clone(),
                event: m.event.clone(),
                body: std::str::from_utf8(&m.body).ok().map(str::to_owned),
                created_at_ms: m.created_at_ms,
                state: (&m.state).into(),
            })?;
            let (has_error, error) = opt_str(&m.state.error);
            let mut cmd = Lua(INSERT_MESSAGE).prepare_invoke();
            cmd.arg(&*self.p)
                .arg(&m.id)
                .arg(&m.webhook_id)
                .arg(&m.event)
                .arg(&m.body[..])
                .arg(m.created_at_ms)
                .arg(state_name(m.state.state))
                .arg(m.state.attempts)
                .arg(opt_ms(m.state.next_attempt_at_ms))
                .arg(has_error)
                .arg(error)
                .arg(notice);
            pipe.add_command(cmd);
        }
        self.call(move |mut c| async move {
            let _: Vec<i64> = pipe.query_async(&mut c.conn).await.map_err(err)?;
            Ok(())
        })
    }

    fn update_message(&self, id: &str, s: &MessageStateRecord) -> Result<(), JournalError> {
        let notice = self.notice(WireChange::State {
            id: id.to_owned(),
            state: s.into(),
        })?;
        let (id, s) = (id.to_owned(), s.clone());
        self.later(format!("saving message {id}"), move |mut c| async move {
            let (has_error, error) = opt_str(&s.error);
            let _: i64 = c
                .scripts
                .update_message
                .prepare_invoke()
                .arg(&*c.p)
                .arg(&id)
                .arg(state_name(s.state))
                .arg(s.attempts)
                .arg(opt_ms(s.next_attempt_at_ms))
                .arg(has_error)
                .arg(error)
                .arg(notice)
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            Ok(())
        });
        Ok(())
    }

    fn evict(
        &self,
        webhook_id: &str,
        messages: &[Arc<str>],
        attempts: &[String],
    ) -> Result<(), JournalError> {
        if messages.is_empty() && attempts.is_empty() {
            return Ok(());
        }
        let webhook_id = webhook_id.to_owned();
        let messages: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
        let attempts = attempts.to_vec();
        self.later(
            format!("evicting from webhook {webhook_id}"),
            move |mut c| async move {
                let mut call = c.scripts.evict.prepare_invoke();
                call.arg(&*c.p).arg(&webhook_id).arg(messages.len());
                for id in messages.iter().chain(&attempts) {
                    call.arg(id);
                }
                let _: i64 = call.query_async(&mut c.conn).await.map_err(err)?;
                Ok(())
            },
        );
        Ok(())
    }

    fn insert_attempt(&self, a: &api::AttemptOut) -> Result<(), JournalError> {
        let json = serde_json::to_string(a).map_err(err)?;
        // What `self.notice(WireChange::Attempt { .. })` writes, the attempt's JSON made once:
        // it is the biggest notice, one per attempt.
        let notice = self.notice_with(r#""kind":"attempt","attempt""#, &json);
        let (id, webhook_id) = (a.id.clone(), a.webhook_id.clone());
        self.later(format!("saving attempt {id}"), move |mut c| async move {
            let _: i64 = c
                .scripts
                .insert_attempt
                .prepare_invoke()
                .arg(&*c.p)
                .arg(&webhook_id)
                .arg(&id)
                .arg(json)
                .arg(notice)
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            Ok(())
        });
        Ok(())
    }

    fn get_message(&self, id: &str) -> Result<Option<MessageRecord>, JournalError> {
        let id = id.to_owned();
        self.call(move |mut c| async move {
            let map: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
                .arg(format!("{}msg:{id}", c.p))
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            Ok(message_from(&id, map))
        })
    }

    fn get_webhook(&self, id: &str) -> Result<Option<api::WebhookOut>, JournalError> {
        let id = id.to_owned();
        self.call(move |mut c| async move {
            let json: Option<String> = redis::cmd("HGET")
                .arg(format!("{}webhooks", c.p))
                .arg(&id)
                .query_async(&mut c.conn)
                .await
                .map_err(err)?;
            json.map(|j| serde_json::from_str(&j).map_err(err))
                .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::conformance::{Fixture, attempt, message, webhook};
    use crate::queue::TestRedis;

    crate::journal::conformance::suite!(async {
        let server = TestRedis::start().await;
        let url = server.url.clone();
        let journal = tokio::task::spawn_blocking(move || RedisJournal::open(&url, "hookbin:"))
            .await
            .unwrap()
            .unwrap();
        Fixture::with_guard(journal, server)
    });

    async fn open(url: &str, prefix: &'static str) -> RedisJournal {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || RedisJournal::open(&url, prefix))
            .await
            .unwrap()
            .unwrap()
    }

    /// Runs a blocking journal call off the runtime's workers.
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_instance_hears_every_change_in_order_but_not_its_own() {
        let server = TestRedis::start().await;
        let a = Arc::new(open(&server.url, "hookbin:").await);
        let b = open(&server.url, "hookbin:").await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let heard_b = b.follow(move |c| drop(tx.send(c)), || {}).await.unwrap();
        // b's own changes are not given back to b.
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        blocking(move || b2.put_webhook(&webhook("wh_b", "b")).unwrap()).await;
        let a2 = Arc::clone(&a);
        let msg = message("msg_1", "wh_a", br#"{"z":1,"a":2,"n":1.50}"#);
        let msg2 = msg.clone();
        blocking(move || {
            a2.put_webhook(&webhook("wh_a", "a")).unwrap();
            a2.insert_message(&msg2).unwrap();
            a2.update_message(
                "msg_1",
                &MessageStateRecord {
                    state: api::MessageState::Delivered,
                    attempts: 1,
                    next_attempt_at_ms: None,
                    error: None,
                },
            )
            .unwrap();
            a2.insert_attempt(&attempt("att_1", "msg_1", "wh_a", 1))
                .unwrap();
            a2.delete_webhook("wh_a").unwrap();
        })
        .await;
        let mut got = Vec::new();
        while got.len() < 5 {
            let change = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a change within 5 s")
                .unwrap();
            got.push(change);
        }
        assert_eq!(got[0], Change::WebhookUpserted(webhook("wh_a", "a")));
        assert_eq!(got[1], Change::MessageAdded(msg));
        assert!(matches!(&got[2], Change::MessageState { id, state }
            if id == "msg_1" && state.state == api::MessageState::Delivered));
        assert_eq!(
            got[3],
            Change::AttemptAdded(Box::new(attempt("att_1", "msg_1", "wh_a", 1)))
        );
        assert_eq!(got[4], Change::WebhookDeleted("wh_a".into()));
        assert!(rx.try_recv().is_err(), "b heard its own change");
        heard_b.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_counters_update_does_not_switch_a_webhook_back_on() {
        let server = TestRedis::start().await;
        let j = Arc::new(open(&server.url, "hookbin:").await);
        let j2 = Arc::clone(&j);
        let snap = blocking(move || {
            j2.put_webhook(&webhook("wh_a", "a")).unwrap();
            let mut off = webhook("wh_a", "a");
            off.active = false;
            off.disabled_reason = Some("switched off".into());
            j2.put_webhook(&off).unwrap();
            // Another instance's delivery finished with its older copy.
            let mut stale = webhook("wh_a", "a");
            stale.event_count = 1;
            j2.put_webhook_later(&stale);
            // A counters update of a deleted webhook does not bring it back.
            j2.put_webhook_later(&webhook("wh_gone", "gone"));
            j2.load().unwrap()
        })
        .await;
        assert_eq!(snap.webhooks.len(), 1);
        assert!(!snap.webhooks[0].active);
        // The user switching it on again is a waited write: it wins.
        let j2 = Arc::clone(&j);
        let snap = blocking(move || {
            j2.put_webhook(&webhook("wh_a", "a")).unwrap();
            j2.load().unwrap()
        })
        .await;
        assert!(snap.webhooks[0].active);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_message_reads_what_another_instance_wrote() {
        let server = TestRedis::start().await;
        let a = Arc::new(open(&server.url, "hookbin:").await);
        let b = Arc::new(open(&server.url, "hookbin:").await);
        let msg = message("msg_1", "wh_a", b"\xff{}");
        let m2 = msg.clone();
        let got = blocking(move || {
            a.put_webhook(&webhook("wh_a", "a")).unwrap();
            a.insert_message(&m2).unwrap();
            (
                b.get_message("msg_1").unwrap(),
                b.get_message("msg_none").unwrap(),
                b.get_webhook("wh_a").unwrap(),
            )
        })
        .await;
        assert_eq!(got, (Some(msg), None, Some(webhook("wh_a", "a"))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_gone_every_call_fails_within_the_deadline() {
        let server = TestRedis::start().await;
        let j = Arc::new(open(&server.url, "hookbin:").await);
        drop(server);
        let started = Instant::now();
        let j2 = Arc::clone(&j);
        let (put, insert, load) = blocking(move || {
            (
                j2.put_webhook(&webhook("wh_a", "a")),
                j2.insert_message(&message("msg_1", "wh_a", b"{}")),
                j2.load(),
            )
        })
        .await;
        assert!(put.unwrap_err().0.contains("redis at"));
        assert!(insert.is_err());
        assert!(load.is_err());
        assert!(
            started.elapsed() < 3 * (DEADLINE + Duration::from_secs(1)),
            "took {:?}",
            started.elapsed()
        );
        // Nothing listens on that port any more: opening fails too, within the deadline.
        let url = j.shown.clone();
        let started = Instant::now();
        let opened = blocking(move || RedisJournal::open(&url, "hookbin:")).await;
        assert!(opened.is_err());
        assert!(started.elapsed() < DEADLINE + CONNECT_TIMEOUT + Duration::from_secs(1));
    }
}
