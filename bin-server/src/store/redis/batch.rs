//! Captures go to Redis in batches: one task per store takes every capture waiting (up to
//! [`MAX_BATCH`]) and stores them in one `MULTI` (one round trip), as the SQLite writer commits
//! a group in one transaction: one `HSET` per bin writes the request bytes into `d:{name}`
//! (keyed by request id), the capture script numbers and indexes them with small arguments
//! only (the bytes never pass through Lua) and publishes the batch's sequence numbers, and
//! one `PUBLISH` carries the requests themselves to every instance's feed ([`super::feed`]),
//! right after the numbers, so each bin's events stay in sequence order on every feed. Under
//! load a batch forms while the previous one is in Redis; alone, a capture goes at once (a
//! batch of one). At most [`IN_FLIGHT`] batches are in
//! Redis at a time; the queue in front of them holds [`QUEUE`] captures, and a capture that
//! finds it full waits for room (back-pressure on the HTTP request, which is bounded itself).
//!
//! Each caller hears about its own capture only: its sequence number, [`StoreError::NoSuchBin`]
//! or, when the call failed or took longer than the deadline, [`StoreError::Unavailable`]
//! (for every capture of that batch: the script is atomic, so either all of it was applied or
//! none, except when the answer was lost after Redis applied it, as with any single command).

use std::io::Write;
use std::sync::Arc;

use redis::RedisWrite;
use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{invocation, items, uint, unavailable_at};
use crate::store::StoreError;

/// Captures per batch at most.
pub(super) const MAX_BATCH: usize = 128;
/// Script calls in Redis at once: the next batch forms while one runs.
const IN_FLIGHT: usize = 2;
/// Captures waiting for a batch at most.
const QUEUE: usize = 4096;

/// One capture waiting to be sent.
pub(super) struct Pending {
    pub name: String,
    /// The request's id, its field in `d:{name}`.
    pub id: uuid::Uuid,
    /// The request encoded with sequence number zero.
    pub encoded: Vec<u8>,
    pub stored_bytes: u64,
    pub truncated: bool,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// What the batching task needs to call the script.
pub(super) struct Target {
    pub conn: ConnectionManager,
    pub script: redis::Script,
    pub prefix: String,
    pub ttl_ms: u64,
    pub max_bytes: u64,
    pub max_requests_per_bin: u32,
    /// The server, for messages.
    pub shown: String,
}

/// The sending side of the queue, kept by the store.
pub(super) fn start(target: Target) -> (mpsc::Sender<Pending>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(Arc::new(target), rx));
    (tx, task)
}

async fn run(target: Arc<Target>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for a free slot first, so that captures arriving meanwhile join this batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let target = Arc::clone(&target);
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        tokio::spawn(async move {
            send(&target, taken).await;
            drop(slot);
        });
    }
}

/// The live event that carries a batch's requests: `B`, the batch's token (8 bytes,
/// little-endian), then per request the name's length (2 bytes LE), the name, the encoded
/// request's length (4 bytes LE) and the encoded request (sequence number zero inside). The
/// capture script's `q` event before it says which sequence number each one got. Written
/// straight into the command's buffer (sized first: no copy to grow it).
fn publish_batch(channel: &str, token: u64, batch: &[Pending]) -> redis::Cmd {
    let size: usize = batch
        .iter()
        .map(|p| 6 + p.name.len() + p.encoded.len())
        .sum();
    let mut cmd = redis::Cmd::with_capacity(3, 7 + channel.len() + 9 + size);
    cmd.arg("PUBLISH").arg(channel);
    {
        let mut out = cmd.writer_for_next_arg();
        let mut put = |b: &[u8]| out.write_all(b).expect("writes into memory");
        put(b"B");
        put(&token.to_le_bytes());
        for p in batch {
            // Bin names and stored requests are bounded far below these widths.
            put(&(p.name.len() as u16).to_le_bytes());
            put(p.name.as_bytes());
            put(&(p.encoded.len() as u32).to_le_bytes());
            put(&p.encoded);
        }
    }
    cmd
}

/// One `HSET d:{name}` per bin of the batch (in the order bins first appear; a batch is mostly
/// one or a few bins) with its requests' bytes by id, each command's buffer sized first.
fn write_data(prefix: &str, batch: &[Pending]) -> Vec<redis::Cmd> {
    let mut bins: Vec<(&str, Vec<&Pending>)> = Vec::new();
    for p in batch {
        match bins.iter_mut().find(|(name, _)| *name == p.name) {
            Some((_, requests)) => requests.push(p),
            None => bins.push((&p.name, vec![p])),
        }
    }
    bins.into_iter()
        .map(|(name, requests)| {
            let bytes = 4
                + prefix.len()
                + 2
                + name.len()
                + requests.iter().map(|p| 16 + p.encoded.len()).sum::<usize>();
            let mut cmd = redis::Cmd::with_capacity(2 + 2 * requests.len(), bytes);
            cmd.arg("HSET").arg(format!("{prefix}d:{name}"));
            for p in requests {
                cmd.arg(p.id.as_bytes()).arg(&p.encoded[..]);
            }
            cmd
        })
        .collect()
}

/// Stores `batch` in one `MULTI` and answers every capture in it.
async fn send(target: &Target, batch: Vec<Pending>) {
    let token: u64 = rand::random();
    let mut inv = invocation(&target.script, &target.prefix, target.ttl_ms);
    inv.arg(target.max_bytes)
        .arg(target.max_requests_per_bin)
        .arg(batch.len())
        .arg(token);
    for p in &batch {
        inv.arg(p.name.as_bytes())
            .arg(p.id.as_bytes())
            .arg(p.stored_bytes)
            .arg(if p.truncated { &b"1"[..] } else { &b"0"[..] });
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for cmd in write_data(&target.prefix, &batch) {
        pipe.add_command(cmd).ignore();
    }
    pipe.invoke_script(&inv);
    let channel = format!("{}live", target.prefix);
    pipe.add_command(publish_batch(&channel, token, &batch))
        .ignore();
    let answer =
        transact(target, &pipe, &inv)
            .await
            .and_then(|seqs| match seqs.len() == batch.len() {
                true => Ok(seqs),
                false => Err(unavailable_at(
                    &target.shown,
                    format!(
                        "{} answers for a batch of {} captures",
                        seqs.len(),
                        batch.len()
                    ),
                )),
            });
    match answer {
        Ok(seqs) => {
            for (p, seq) in batch.into_iter().zip(&seqs) {
                let outcome = match uint(seq) {
                    0 => Err(StoreError::NoSuchBin(p.name)),
                    seq => Ok(seq),
                };
                // The caller may have gone (its request was cancelled): stored all the same.
                let _ = p.reply.send(outcome);
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs the batch's `MULTI` within the deadline; the script's answer. A Redis that does not
/// know the script (it restarted) gets it loaded and the batch again: its `HSET`s wrote
/// the same fields, which nothing indexes until the script runs.
async fn transact(
    target: &Target,
    pipe: &redis::Pipeline,
    inv: &redis::ScriptInvocation<'_>,
) -> Result<Vec<redis::Value>, StoreError> {
    let mut conn = target.conn.clone();
    let attempt = async {
        let first = pipe.query_async::<Vec<redis::Value>>(&mut conn).await;
        match first {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                inv.load_async(&mut conn).await?;
                pipe.query_async::<Vec<redis::Value>>(&mut conn).await
            }
            other => other,
        }
    };
    match tokio::time::timeout(super::DEADLINE, attempt).await {
        Ok(Ok(mut v)) if v.len() == 1 => Ok(items(v.remove(0))),
        Ok(Ok(v)) => Err(unavailable_at(
            &target.shown,
            format!("{} answers to a batch's transaction", v.len()),
        )),
        Ok(Err(e)) => Err(unavailable_at(&target.shown, e)),
        Err(_) => Err(unavailable_at(
            &target.shown,
            format!("no answer within {} s", super::DEADLINE.as_secs()),
        )),
    }
}
