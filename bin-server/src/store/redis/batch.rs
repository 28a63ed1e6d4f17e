//! Captures go to Redis in batches: one task per store takes every capture waiting (up to
//! [`MAX_BATCH`]) and stores them with one call of the capture script, as the SQLite writer
//! commits a group in one transaction. Under load a batch forms while the previous one is in
//! Redis; alone, a capture goes at once (a batch of one). At most [`IN_FLIGHT`] batches are in
//! Redis at a time; the queue in front of them holds [`QUEUE`] captures, and a capture that
//! finds it full waits for room (back-pressure on the HTTP request, which is bounded itself).
//!
//! Each caller hears about its own capture only: its sequence number, [`StoreError::NoSuchBin`]
//! or, when the call failed or took longer than the deadline, [`StoreError::Unavailable`]
//! (for every capture of that batch: the script is atomic, so either all of it was applied or
//! none, except when the answer was lost after Redis applied it, as with any single command).

use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{invocation, invoke, uint, unavailable_at};
use crate::store::StoreError;

/// Captures per script call at most (four arguments each).
pub(super) const MAX_BATCH: usize = 128;
/// Script calls in Redis at once: the next batch forms while one runs.
const IN_FLIGHT: usize = 2;
/// Captures waiting for a batch at most.
const QUEUE: usize = 4096;

/// One capture waiting to be sent.
pub(super) struct Pending {
    pub name: String,
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

/// Calls the script once for `batch` and answers every capture in it.
async fn send(target: &Target, batch: Vec<Pending>) {
    let mut inv = invocation(&target.script, &target.prefix, target.ttl_ms);
    inv.arg(target.max_bytes)
        .arg(target.max_requests_per_bin)
        .arg(batch.len());
    for p in &batch {
        inv.arg(p.name.as_bytes())
            .arg(&p.encoded[..])
            .arg(p.stored_bytes)
            .arg(if p.truncated { &b"1"[..] } else { &b"0"[..] });
    }
    let answer = invoke(&target.conn, &inv, &target.shown)
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
