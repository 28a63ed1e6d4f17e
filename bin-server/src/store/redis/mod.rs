//! The Redis [`Store`] (`--store redis://HOST:PORT[/DB][?prefix=P]`): several bin-server
//! instances share bins, settings, requests, counters, live streams and waits.
//!
//! Layout (every key starts with the prefix, `hookbin:` unless `?prefix=` says otherwise):
//! - `b:{name}`: a hash per bin: its id (a number drawn once per bin, so a re-created bin never
//!   meets the old one's leftovers), times, settings JSON, token hash, limits, the sequence
//!   counter and its own counters;
//! - `r:{id}`: a sorted set of the bin's requests, scored by sequence number, each member the
//!   request's id (16 bytes: small members keep the set's hashing and Lua's copies cheap);
//! - `d:{name}`: a hash from request id to the request as [`CapturedRequest::encode`] writes it
//!   (byte-exact) with sequence number zero (the score is the number). Written by a plain
//!   `HSET` in the capture's `MULTI` ([`batch`]), so no request-sized string passes through
//!   Lua on the way in; named by the bin's name (which the capturing instance knows) and
//!   deleted when a bin of that name is created, cleared or dropped;
//! - `i:{id}`: a hash from request id to its stored bytes (what it weighs in the budget);
//! - `bins`: a sorted set of bin names by last activity (listing, `--max-bins`, idle TTL);
//! - `ledger`: a sorted set of every stored request (`id:name:` and the request id) in global
//!   arrival order:
//!   the byte budget evicts from its head, oldest first, across bins;
//! - `acct`: a hash from bin name to `id:requests:bytes` (what the reaper subtracts from the
//!   totals even when Redis already expired the bin's own keys);
//! - `stats`: a hash of global counters; `live`: the pub/sub channel of live events;
//! - `layout`: the layout version ([`scripts::LAYOUT`], 2). An instance refuses to start on a
//!   prefix that holds another one, or data from before the key existed (layout 1, whose
//!   sorted sets held the requests themselves), naming what to do: it does not migrate.
//!
//! Every change is one Lua script ([`scripts`]); a batch of captures is one `MULTI` (one round
//! trip) of the requests' `HSET`, the capture script (numbers, indexes, trims the bin, enforces
//! the byte budget, counts, refreshes the TTL of the bin's keys) and the `PUBLISH` of the
//! requests, atomically. Idle bins are deleted by the first operation past
//! their TTL (every script reaps; the sweeper calls [`Store::expire_idle`]), and every key of a
//! bin also carries a Redis expiry a little beyond the TTL, so Redis frees them by itself if
//! no instance runs.
//!
//! Connections per instance: one multiplexed connection for commands (a
//! [`redis::aio::ConnectionManager`], reconnecting by itself) and one pub/sub connection read
//! by one task ([`feed`]) that fans events out into the instance's [`LiveHub`], however many
//! SSE clients and waiters there are. Each command has a deadline ([`DEADLINE`]); Redis down
//! is [`StoreError::Unavailable`], never a hang. When the feed reconnects, every subscriber is
//! told to resync ([`LiveEvent::Resync`]) and the settings cache starts afresh.
//!
//! Not for Redis Cluster: the scripts touch keys they compute (one standalone server or a
//! primary with replicas).

mod batch;
mod feed;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use api::EvictionCounts;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use redis::Value;
use redis::aio::ConnectionManager;

use self::scripts::Scripts;
use super::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveEvent, LiveHub,
    NewCapture, Page, PageQuery, Store, StoreError, StoreLimits, StoreStats, codec,
};

/// Longest a command may take before the caller hears [`StoreError::Unavailable`].
pub const DEADLINE: Duration = Duration::from_secs(3);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer than the TTL a bin's keys live in Redis: the instances delete an idle bin
/// when its TTL is up (exactly, with its ledger entries); Redis's own expiry is the backstop
/// for when no instance runs.
const GRACE: Duration = Duration::from_secs(60);
const DEFAULT_PREFIX: &str = "hookbin:";

/// What the store and its feed reader share.
struct Shared {
    live: LiveHub,
    /// `capture_settings` per bin, valid while the feed is up (it carries the invalidations).
    cache: DashMap<String, Arc<CaptureSettings>>,
    /// Bumped by every invalidation: a settings read that started before one is not cached.
    epoch: AtomicU64,
    /// Whether the feed reader is subscribed now. While it is not, nothing is cached.
    feed_up: AtomicBool,
}

impl Shared {
    fn invalidate(&self, name: &str) {
        self.epoch.fetch_add(1, SeqCst);
        self.cache.remove(name);
    }

    fn invalidate_all(&self) {
        self.epoch.fetch_add(1, SeqCst);
        self.cache.clear();
    }
}

/// See the module docs.
pub struct RedisStore {
    /// The URL without credentials, for messages.
    shown: String,
    prefix: String,
    limits: StoreLimits,
    ttl_ms: u64,
    conn: ConnectionManager,
    scripts: Scripts,
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    /// Captures on their way to the batching task ([`batch`]).
    captures: tokio::sync::mpsc::Sender<batch::Pending>,
    batcher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.reader.abort();
        self.batcher.abort();
    }
}

/// `url` without a password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Splits `?prefix=` off a store URL: `(the URL for the client, the prefix)`.
pub fn split_prefix(url: &str) -> Result<(String, String), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_PREFIX.to_owned()));
    };
    let mut prefix = DEFAULT_PREFIX.to_owned();
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "prefix" {
            if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_whitespace()) {
                return Err(format!(
                    "prefix={v:?} is not valid: use 1 to 64 characters without spaces"
                ));
            }
            prefix = v.into_owned();
        } else {
            rest.push(format!("{k}={v}"));
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, prefix))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A script's reply, read leniently (numbers arrive as integers or as digits).
fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
    }
}

fn text(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => b"",
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => std::str::from_utf8(text(other))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

fn uint(v: &Value) -> u64 {
    int(v).max(0) as u64
}

fn unavailable_at(shown: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis at {shown}: {e}"))
}

/// A call of `script` with the arguments every script starts with (see `common.lua`).
fn invocation<'a>(
    script: &'a redis::Script,
    prefix: &str,
    ttl_ms: u64,
) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    inv.arg(prefix)
        .arg(now_ms())
        .arg(ttl_ms)
        .arg(GRACE.as_millis() as u64);
    inv
}

/// Runs a prepared script call within the deadline; Redis down or late is `Unavailable`.
async fn invoke(
    conn: &ConnectionManager,
    inv: &redis::ScriptInvocation<'_>,
    shown: &str,
) -> Result<Vec<Value>, StoreError> {
    let mut conn = conn.clone();
    match tokio::time::timeout(DEADLINE, inv.invoke_async::<Value>(&mut conn)).await {
        Ok(Ok(v)) => Ok(items(v)),
        Ok(Err(e)) => Err(unavailable_at(shown, e)),
        Err(_) => Err(unavailable_at(
            shown,
            format!("no answer within {} s", DEADLINE.as_secs()),
        )),
    }
}

/// Refuses a prefix that holds another layout than this build's ([`scripts::LAYOUT`]); an
/// empty one is claimed for it.
async fn check_layout(
    conn: &ConnectionManager,
    prefix: &str,
    shown: &str,
) -> Result<(), StoreError> {
    let script = redis::Script::new(scripts::CLAIM_LAYOUT);
    let mut inv = script.prepare_invoke();
    inv.key(format!("{prefix}layout"))
        .key(format!("{prefix}stats"))
        .key(format!("{prefix}bins"))
        .arg(scripts::LAYOUT);
    let found = invoke(conn, &inv, shown).await?;
    match found.first().map(int) {
        Some(v) if v == i64::from(scripts::LAYOUT) => Ok(()),
        Some(v) => Err(unavailable_at(
            shown,
            format!(
                "the keys under prefix {prefix:?} are in storage layout {v}, this bin-server \
                 reads layout {}; it does not migrate them: delete them (redis-cli --scan \
                 --pattern '{prefix}*' | xargs redis-cli del) or use another ?prefix=",
                scripts::LAYOUT
            ),
        )),
        None => Err(unavailable_at(shown, "no answer about the storage layout")),
    }
}

impl RedisStore {
    /// Connects to the server `url` names (`redis://HOST:PORT[/DB][?prefix=P]`) and subscribes
    /// this instance's live feed. Fails when the server cannot be reached now.
    pub async fn open(url: &str, limits: StoreLimits) -> Result<Self, StoreError> {
        let shown = redact(url);
        let (client_url, prefix) =
            split_prefix(url).map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))?;
        let unavailable =
            |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("{shown}: {e}"));
        let client = redis::Client::open(client_url.as_str()).map_err(|e| unavailable(&e))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(DEADLINE))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            DEADLINE + CONNECT_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| unavailable(&"no answer within the deadline"))?
        .map_err(|e| unavailable(&e))?;
        check_layout(&conn, &prefix, &shown).await?;
        let shared = Arc::new(Shared {
            live: LiveHub::default(),
            cache: DashMap::new(),
            epoch: AtomicU64::new(0),
            feed_up: AtomicBool::new(false),
        });
        let channel = format!("{prefix}live");
        // Subscribed before the store is handed out: no event of ours is missed.
        let first = feed::subscribe(&client, &channel)
            .await
            .map_err(|e| unavailable(&e))?;
        shared.feed_up.store(true, SeqCst);
        let reader = tokio::spawn(feed::run(
            client,
            channel,
            Arc::clone(&shared),
            first,
            shown.clone(),
        ));
        let ttl_ms = limits.bin_ttl.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX / 4).max(1)
        });
        let scripts = Scripts::new();
        let (captures, batcher) = batch::start(batch::Target {
            conn: conn.clone(),
            script: scripts.capture.clone(),
            prefix: prefix.clone(),
            ttl_ms,
            max_bytes: limits.max_bytes,
            max_requests_per_bin: limits.max_requests_per_bin,
            shown: shown.clone(),
        });
        let store = Self {
            shown,
            prefix,
            limits,
            ttl_ms,
            conn,
            scripts,
            shared,
            reader,
            captures,
            batcher,
        };
        store.health_ping().await?;
        Ok(store)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        unavailable_at(&self.shown, e)
    }

    /// Runs a script with the common arguments and then `args`, within the deadline.
    async fn run(&self, script: &redis::Script, args: &[&[u8]]) -> Result<Vec<Value>, StoreError> {
        let mut inv = invocation(script, &self.prefix, self.ttl_ms);
        for a in args {
            inv.arg(*a);
        }
        invoke(&self.conn, &inv, &self.shown).await
    }

    async fn health_ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(DEADLINE, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(_) => Err(self.unavailable(format!("no answer within {} s", DEADLINE.as_secs()))),
        }
    }

    fn capped(&self, settings: &BinSettings) -> (u32, u64) {
        let max_requests = settings
            .max_requests
            .unwrap_or(self.limits.max_requests_per_bin)
            .min(self.limits.max_requests_per_bin);
        let max_body = settings
            .max_body_bytes
            .unwrap_or(self.limits.max_body_bytes)
            .min(self.limits.max_body_bytes);
        (max_requests, max_body)
    }

    /// A bin's snapshot from the fields `snap()` returns.
    fn snapshot(&self, name: BinName, v: &Value) -> Result<BinSnapshot, StoreError> {
        let f = match v {
            Value::Array(f) if f.len() >= 13 => f,
            _ => return Err(self.unavailable(format!("bin {name:?} is damaged in redis"))),
        };
        let settings_json = std::str::from_utf8(text(&f[3])).unwrap_or("");
        let mut settings =
            codec::settings_from_json(settings_json).map_err(|e| self.unavailable(e))?;
        let tok = text(&f[4]);
        if !tok.is_empty() {
            settings.token_hash = Some(
                std::str::from_utf8(tok)
                    .ok()
                    .and_then(codec::unhex32)
                    .ok_or_else(|| {
                        self.unavailable(format!("bin {name:?}: a damaged token hash"))
                    })?,
            );
        }
        let (bl, bb) = (uint(&f[10]), uint(&f[11]));
        Ok(BinSnapshot {
            name,
            created_at: time(int(&f[1])),
            last_activity: time(int(&f[2])),
            request_count: uint(&f[8]),
            total_captured: uint(&f[7]),
            bytes_stored: uint(&f[9]),
            evicted: EvictionCounts {
                by_bin_limit: bl,
                by_byte_budget: bb,
                total: bl + bb,
            },
            settings,
            max_requests: u32::try_from(uint(&f[5])).unwrap_or(u32::MAX),
            max_body_bytes: uint(&f[6]),
        })
    }

    /// A stored request; its sequence number is its score.
    fn decode(&self, v: &Value, seq: u64) -> Result<Arc<CapturedRequest>, StoreError> {
        let mut request = CapturedRequest::decode(text(v))
            .ok_or_else(|| self.unavailable("a stored request is damaged (it does not decode)"))?;
        request.seq = seq;
        Ok(Arc::new(request))
    }

    fn status<'a>(&self, reply: &'a [Value], name: &str) -> Result<&'a [u8], StoreError> {
        let s = reply.first().map(text).unwrap_or(b"");
        match s {
            b"nobin" => Err(StoreError::NoSuchBin(name.to_owned())),
            b"" => Err(self.unavailable("an empty answer")),
            s => Ok(s),
        }
    }

    /// `create` or `put`.
    async fn write_bin(
        &self,
        name: BinName,
        settings: BinSettings,
        mode: &str,
    ) -> Result<(BinSnapshot, bool), StoreError> {
        let (max_requests, max_body) = self.capped(&settings);
        let token = settings.token_hash.map(|h| codec::hex(&h));
        let json = codec::settings_to_json(&BinSettings {
            token_hash: None,
            ..settings
        });
        let reply = self
            .run(
                &self.scripts.create,
                &[
                    name.as_str().as_bytes(),
                    json.as_bytes(),
                    token.as_deref().unwrap_or("").as_bytes(),
                    max_requests.to_string().as_bytes(),
                    max_body.to_string().as_bytes(),
                    self.limits.max_bins.to_string().as_bytes(),
                    mode.as_bytes(),
                ],
            )
            .await?;
        let created = match self.status(&reply, name.as_str())? {
            b"created" => true,
            b"updated" => false,
            b"exists" => return Err(StoreError::BinExists(name.to_string())),
            b"full" => return Err(StoreError::TooManyBins(self.limits.max_bins)),
            other => {
                return Err(self.unavailable(format!(
                    "unexpected answer {:?}",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        // This instance applies its own change at once (others hear of it on the feed).
        self.shared.invalidate(name.as_str());
        let snap = self.snapshot(name, reply.get(1).unwrap_or(&Value::Nil))?;
        Ok((snap, created))
    }

    /// Runs the read script; `(bin fields, requests)`.
    async fn read(
        &self,
        name: &str,
        args: &[&[u8]],
    ) -> Result<(Vec<Value>, Vec<Arc<CapturedRequest>>), StoreError> {
        let mut all = vec![name.as_bytes()];
        all.extend_from_slice(args);
        let mut reply = self.run(&self.scripts.read, &all).await?;
        self.status(&reply, name)?;
        if reply.len() < 5 {
            return Err(self.unavailable("a short answer"));
        }
        let members = reply.split_off(5);
        let requests = members
            .chunks(2)
            .map(|pair| match pair {
                [member, seq] => self.decode(member, uint(seq)),
                _ => Err(self.unavailable("a member without its score")),
            })
            .collect::<Result<_, _>>()?;
        Ok((reply, requests))
    }

    async fn one(&self, name: &str, id: &str) -> Result<Option<Arc<CapturedRequest>>, StoreError> {
        let (mode, key) = if let Ok(seq) = id.parse::<u64>() {
            ("seq", seq.to_string().into_bytes())
        } else if let Ok(uuid) = uuid::Uuid::parse_str(id) {
            ("uuid", uuid.as_bytes().to_vec())
        } else {
            // Still tells a missing bin from a missing request.
            self.get_bin(name).await?;
            return Ok(None);
        };
        let (_, requests) = self.read(name, &[mode.as_bytes(), &key]).await?;
        Ok(requests.into_iter().next())
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    fn live(&self) -> &LiveHub {
        &self.shared.live
    }

    async fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError> {
        let name = name.unwrap_or_else(BinName::random);
        Ok(self.write_bin(name, settings, "create").await?.0)
    }

    async fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError> {
        self.write_bin(name, settings, "put").await
    }

    async fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError> {
        let reply = self.run(&self.scripts.get, &[name.as_bytes()]).await?;
        self.status(&reply, name)?;
        let bin = BinName::parse(name)?;
        self.snapshot(bin, reply.get(1).unwrap_or(&Value::Nil))
    }

    async fn list_bins(&self) -> Result<Vec<BinSnapshot>, StoreError> {
        let reply = self.run(&self.scripts.list, &[]).await?;
        let mut out = Vec::with_capacity(reply.len() / 2);
        for pair in reply.chunks(2) {
            let [name, fields] = pair else { break };
            let name = BinName::parse(&String::from_utf8_lossy(text(name)))?;
            out.push(self.snapshot(name, fields)?);
        }
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    async fn delete_bin(&self, name: &str) -> Result<(), StoreError> {
        let reply = self
            .run(&self.scripts.delete_bin, &[name.as_bytes()])
            .await?;
        self.status(&reply, name)?;
        self.shared.invalidate(name);
        Ok(())
    }

    async fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError> {
        let cached = self.shared.feed_up.load(SeqCst);
        if cached && let Some(cs) = self.shared.cache.get(name) {
            return Ok(Arc::clone(cs.value()));
        }
        let epoch = self.shared.epoch.load(SeqCst);
        let snap = self.get_bin(name).await?;
        let cs = Arc::new(CaptureSettings::new(&snap.settings, snap.max_body_bytes));
        if cached {
            // Under the map's lock: an invalidation either came before (the epoch moved, so
            // this read may be stale and is not kept) or removes what is inserted here.
            match self.shared.cache.entry(name.to_owned()) {
                dashmap::Entry::Occupied(e) => return Ok(Arc::clone(e.get())),
                dashmap::Entry::Vacant(e) => {
                    if self.shared.epoch.load(SeqCst) == epoch && self.shared.feed_up.load(SeqCst) {
                        e.insert(Arc::clone(&cs));
                    }
                }
            }
        }
        Ok(cs)
    }

    async fn capture(
        &self,
        name: &str,
        new: NewCapture,
    ) -> Result<Arc<CapturedRequest>, StoreError> {
        let truncated = new.truncated;
        // Numbered by the script: the encoded bytes carry 0 until it writes the real number.
        let mut request = new.finish(0, Utc::now());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = batch::Pending {
            name: name.to_owned(),
            id: request.id,
            encoded: request.encode(),
            stored_bytes: request.stored_bytes(),
            truncated,
            reply,
        };
        if self.captures.send(pending).await.is_err() {
            return Err(self.unavailable("the capture queue is closed"));
        }
        request.seq = answer
            .await
            .map_err(|_| self.unavailable("the capture was dropped unanswered"))??;
        Ok(Arc::new(request))
    }

    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
        let after = query
            .after
            .map_or_else(|| "-inf".to_owned(), |a| format!("({a}"));
        let before = query
            .before
            .map_or_else(|| "+inf".to_owned(), |b| format!("({b}"));
        let f = &query.filter;
        let filtered = f.method.is_some() || f.path.is_some() || f.text.is_some();
        let limit = if filtered {
            "-1".to_owned()
        } else {
            query.limit.to_string()
        };
        let (head, members) = self
            .read(
                name,
                &[
                    b"page",
                    after.as_bytes(),
                    before.as_bytes(),
                    limit.as_bytes(),
                ],
            )
            .await?;
        let (bl, bb) = (uint(&head[2]), uint(&head[3]));
        let mut page = Vec::new();
        let matched = if filtered {
            let mut n = 0u64;
            for r in members {
                if !f.matches(&r) {
                    continue;
                }
                n += 1;
                if page.len() < query.limit {
                    page.push(r);
                }
            }
            n
        } else {
            page = members;
            uint(&head[4])
        };
        let next_before = if matched > page.len() as u64 {
            page.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(Page {
            requests: page,
            total: uint(&head[1]),
            matched,
            next_before,
            evicted: EvictionCounts {
                by_bin_limit: bl,
                by_byte_budget: bb,
                total: bl + bb,
            },
        })
    }

    async fn read_after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
        let (_, requests) = self
            .read(
                name,
                &[
                    b"after",
                    after.to_string().as_bytes(),
                    limit.to_string().as_bytes(),
                ],
            )
            .await?;
        Ok(requests)
    }

    async fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError> {
        self.one(name, id)
            .await?
            .ok_or_else(|| StoreError::NoSuchRequest(id.to_owned()))
    }

    async fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let (mode, key) = if let Ok(seq) = id.parse::<u64>() {
            ("seq", seq.to_string().into_bytes())
        } else if let Ok(uuid) = uuid::Uuid::parse_str(id) {
            ("uuid", uuid.as_bytes().to_vec())
        } else {
            self.get_bin(name).await?;
            return Err(StoreError::NoSuchRequest(id.to_owned()));
        };
        let reply = self
            .run(
                &self.scripts.delete_request,
                &[name.as_bytes(), mode.as_bytes(), &key],
            )
            .await?;
        match self.status(&reply, name)? {
            b"noreq" => Err(StoreError::NoSuchRequest(id.to_owned())),
            _ => Ok(()),
        }
    }

    async fn clear_requests(&self, name: &str) -> Result<u64, StoreError> {
        let reply = self.run(&self.scripts.clear, &[name.as_bytes()]).await?;
        self.status(&reply, name)?;
        Ok(reply.get(1).map_or(0, uint))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let r = self.run(&self.scripts.stats, &[]).await?;
        let at = |i: usize| r.get(i).map_or(0, uint);
        Ok(StoreStats {
            bins: at(0),
            requests_stored: at(1),
            bytes_stored: at(2),
            captures_total: at(3),
            evicted_by_bin_limit: at(4),
            evicted_by_byte_budget: at(5),
            truncated_total: at(6),
        })
    }

    /// Deletes bins past their TTL now (every other operation also reaps, a few at a time);
    /// returns how many.
    async fn expire_idle(&self, _now: DateTime<Utc>) -> Result<usize, StoreError> {
        if self.ttl_ms == 0 {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let n = self
                .run(&self.scripts.reap, &[])
                .await?
                .first()
                .map_or(0, uint) as usize;
            total += n;
            if n < 64 {
                return Ok(total);
            }
        }
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.health_ping().await?;
        if !self.shared.feed_up.load(SeqCst) {
            return Err(self.unavailable("the live feed is reconnecting"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_their_prefix() {
        assert_eq!(
            redact("redis://user:secret@127.0.0.1:6380/2"),
            "redis://***@127.0.0.1:6380/2"
        );
        assert_eq!(redact("redis://127.0.0.1:6380"), "redis://127.0.0.1:6380");
        assert_eq!(
            split_prefix("redis://h:1/2?prefix=team-a:").unwrap(),
            ("redis://h:1/2".to_owned(), "team-a:".to_owned())
        );
        assert_eq!(
            split_prefix("redis://h:1").unwrap(),
            ("redis://h:1".to_owned(), "hookbin:".to_owned())
        );
        assert_eq!(
            split_prefix("redis://h:1?protocol=resp2&prefix=x").unwrap(),
            ("redis://h:1?protocol=resp2".to_owned(), "x".to_owned())
        );
        assert!(split_prefix("redis://h:1?prefix=").is_err());
    }
}
