//! The one writer: a thread of its own owning the read-write connection and the authoritative
//! in-memory state (bins and counters), fed by a bounded channel of operations.
//!
//! Group commit: the writer takes every operation waiting in the channel (up to [`MAX_BATCH`]),
//! applies them in one transaction, commits (one log sync for the whole batch), and only then
//! publishes the new bin views, sends the live events and answers each operation. A caller
//! therefore never hears `Ok` for anything that is not committed. When a statement or the
//! commit fails, the transaction is rolled back, the state is reloaded from the file and every
//! operation of the batch is answered [`StoreError::Unavailable`]: nothing is half-stored.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::schema::{self, BinRow, Counters, micros, unavailable};
use super::{Shared, snapshot};
use crate::store::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveEvent, NewCapture,
    StoreError, StoreLimits, StoreStats, codec,
};

/// Operations per transaction at most: large enough that a burst from 100 connections commits
/// in one or two syncs, small enough that one transaction (and the wait of its first caller)
/// stays short.
pub(super) const MAX_BATCH: usize = 512;

/// A capture's row (the statement every batch of captures runs).
const INSERT_REQUEST: &str =
    "INSERT INTO requests (bin, seq, id, bytes, data) VALUES (?1, ?2, ?3, ?4, ?5)";

/// What a caller asks the writer.
pub(super) enum Op {
    Create(Option<BinName>, BinSettings),
    Put(BinName, BinSettings),
    DeleteBin(String),
    Capture(String, NewCapture),
    DeleteRequest(String, String),
    Clear(String),
    Expire(DateTime<Utc>),
}

/// What the writer answers (the variant the operation implies).
#[derive(Debug)]
pub(super) enum Outcome {
    Bin(BinSnapshot),
    Put(BinSnapshot, bool),
    Done,
    Captured(Arc<CapturedRequest>),
    Count(u64),
}

pub(super) type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

pub(super) struct Writer {
    path: PathBuf,
    conn: Connection,
    limits: StoreLimits,
    bins: HashMap<BinName, BinRow>,
    /// Bin ids to names, for the byte budget (which finds the oldest request by its bin id).
    by_id: HashMap<i64, BinName>,
    counters: Counters,
    shared: Arc<Shared>,
    /// Bins changed by the current batch: their rows are written and their views published
    /// once per batch, however many captures they took.
    dirty: HashSet<BinName>,
    events: Vec<(BinName, LiveEvent)>,
}

impl Writer {
    /// Loads the state, brings the file within the limits (they may have been lowered since
    /// the last run) and publishes the views. The caller then runs [`Self::run`] on a thread.
    pub(super) fn start(
        path: PathBuf,
        conn: Connection,
        limits: StoreLimits,
        shared: Arc<Shared>,
    ) -> Result<Self, StoreError> {
        let (bins, counters) = schema::load(&conn, &limits).map_err(|e| unavailable(&path, e))?;
        let by_id = bins.values().map(|b| (b.id, b.name.clone())).collect();
        let mut w = Self {
            path,
            conn,
            limits,
            bins,
            by_id,
            counters,
            shared,
            dirty: HashSet::new(),
            events: Vec::new(),
        };
        let names: Vec<BinName> = w.bins.keys().cloned().collect();
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable(&w.path, e))?;
        let reconciled = (|| -> rusqlite::Result<()> {
            for name in &names {
                let bin = &w.bins[name];
                let over = bin
                    .request_count
                    .saturating_sub(u64::from(bin.max_requests));
                if over > 0 {
                    evict_from_bin(&tx, &mut w.bins, &mut w.counters, name, over)?;
                    w.dirty.insert(name.clone());
                }
            }
            enforce_budget(
                &tx,
                &w.limits,
                &mut w.bins,
                &w.by_id,
                &mut w.counters,
                &mut w.dirty,
            )?;
            flush(&tx, &w.bins, &w.counters, &w.dirty)?;
            tx.commit()
        })();
        reconciled.map_err(|e| unavailable(&w.path, e))?;
        w.dirty.clear();
        w.publish_all();
        Ok(w)
    }

    /// Serves operations until every sender is gone (the store was dropped).
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<(Op, Reply)>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<(Op, Reply)>) {
        let mut answers: Vec<(Reply, Result<Outcome, StoreError>)> =
            Vec::with_capacity(batch.len());
        // Taken one by one so that what a failure leaves unapplied is still here to answer.
        let mut pending = batch.drain(..);
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Prepared once per batch: looking it up in the statement cache and handing it back
            // cost ~1,300 instructions per capture (callgrind).
            let mut insert = tx.prepare_cached(INSERT_REQUEST)?;
            for (op, reply) in pending.by_ref() {
                let outcome = apply(
                    &tx,
                    &mut insert,
                    &self.limits,
                    &mut self.bins,
                    &mut self.by_id,
                    &mut self.counters,
                    &mut self.dirty,
                    &mut self.events,
                    op,
                )?;
                answers.push((reply, outcome));
            }
            drop(insert);
            settle(
                &tx,
                &self.limits,
                &mut self.bins,
                &self.by_id,
                &mut self.counters,
                &mut self.dirty,
            )?;
            flush(&tx, &self.bins, &self.counters, &self.dirty)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                drop(pending);
                self.publish_dirty();
                for (bin, event) in self.events.drain(..) {
                    self.shared.live.publish(bin.as_str(), || event);
                }
                for (reply, outcome) in answers {
                    // The caller may have gone (its request was cancelled): what it asked for
                    // is committed all the same.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let error = format!("{}: {e}", self.path.display());
                tracing::error!("sqlite store: a transaction failed and was rolled back: {error}");
                // Operations of the batch not yet applied are answered the same way.
                for (_, reply) in pending {
                    let _ = reply.send(Err(StoreError::Unavailable(error.clone())));
                }
                for (reply, _) in answers {
                    let _ = reply.send(Err(StoreError::Unavailable(error.clone())));
                }
                self.events.clear();
                self.dirty.clear();
                self.reload();
            }
        }
    }

    /// After a failed transaction: what the file holds is the truth again.
    fn reload(&mut self) {
        match schema::load(&self.conn, &self.limits) {
            Ok((bins, counters)) => {
                self.by_id = bins.values().map(|b| (b.id, b.name.clone())).collect();
                self.bins = bins;
                self.counters = counters;
                self.shared.views.clear();
                self.publish_all();
            }
            // The next batch fails too and tries again; until then the views keep what was
            // last committed.
            Err(e) => tracing::error!("sqlite store: cannot reload {}: {e}", self.path.display()),
        }
    }

    fn publish_dirty(&mut self) {
        for name in self.dirty.drain() {
            match self.bins.get(&name) {
                Some(bin) => {
                    self.shared.views.insert(name, bin.clone());
                }
                None => {
                    self.shared.views.remove(&name);
                }
            }
        }
        self.publish_stats();
    }

    fn publish_all(&mut self) {
        for (name, bin) in &self.bins {
            self.shared.views.insert(name.clone(), bin.clone());
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        let c = &self.counters;
        let stats = StoreStats {
            bins: self.bins.len() as u64,
            requests_stored: c.requests_stored,
            bytes_stored: c.bytes_stored,
            captures_total: c.captures_total,
            evicted_by_bin_limit: c.evicted_by_bin_limit,
            evicted_by_byte_budget: c.evicted_by_byte_budget,
            truncated_total: c.truncated_total,
        };
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }
}

/// Takes requests out of a bin's and the server's totals.
fn forget(bin: &mut BinRow, counters: &mut Counters, requests: u64, bytes: u64) {
    bin.request_count -= requests;
    bin.bytes -= bytes;
    counters.requests_stored -= requests;
    counters.bytes_stored -= bytes;
}

/// Applies one operation inside the batch's transaction. `Err` is a failure of the file (the
/// batch is rolled back); refusals (no such bin, too many bins) are `Ok(Err(..))` and write
/// nothing.
#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &Connection,
    insert: &mut rusqlite::Statement<'_>,
    limits: &StoreLimits,
    bins: &mut HashMap<BinName, BinRow>,
    by_id: &mut HashMap<i64, BinName>,
    counters: &mut Counters,
    dirty: &mut HashSet<BinName>,
    events: &mut Vec<(BinName, LiveEvent)>,
    op: Op,
) -> rusqlite::Result<Result<Outcome, StoreError>> {
    if !matches!(op, Op::Capture(..)) {
        // Every other operation sees the store as if each capture had been trimmed at once.
        settle(tx, limits, bins, by_id, counters, dirty)?;
    }
    match op {
        Op::Create(name, settings) => {
            let name = name.unwrap_or_else(BinName::random);
            Ok(insert_bin(tx, limits, bins, by_id, dirty, name, settings)?
                .map(|b| Outcome::Bin(snapshot(b))))
        }
        Op::Put(name, settings) => {
            if !bins.contains_key(&name) {
                return Ok(insert_bin(tx, limits, bins, by_id, dirty, name, settings)?
                    .map(|b| Outcome::Put(snapshot(b), true)));
            }
            let (max_requests, max_body) = schema::capped(limits, &settings);
            let bin = bins.get_mut(&name).expect("checked above");
            // Who may reach a bin is fixed when it is created.
            let settings = BinSettings {
                token_hash: bin.settings.token_hash,
                ..settings
            };
            tx.prepare_cached("UPDATE bins SET settings = ?1 WHERE id = ?2")?
                .execute(params![codec::settings_to_json(&settings), bin.id])?;
            bin.capture = Arc::new(CaptureSettings::new(&settings, max_body));
            bin.settings = Arc::new(settings);
            bin.max_requests = max_requests;
            bin.last_activity = schema::now();
            // A lowered limit applies now, oldest first, counted like any eviction.
            let over = bin.request_count.saturating_sub(u64::from(max_requests));
            if over > 0 {
                evict_from_bin(tx, bins, counters, &name, over)?;
            }
            dirty.insert(name.clone());
            Ok(Ok(Outcome::Put(snapshot(&bins[&name]), false)))
        }
        Op::DeleteBin(name) => {
            let Some(bin) = bins.remove(name.as_str()) else {
                return Ok(Err(StoreError::NoSuchBin(name)));
            };
            delete_bin_rows(tx, bin.id)?;
            counters.requests_stored -= bin.request_count;
            counters.bytes_stored -= bin.bytes;
            by_id.remove(&bin.id);
            dirty.insert(bin.name.clone());
            events.push((
                bin.name.clone(),
                LiveEvent::BinDeleted {
                    bin: bin.name.clone(),
                },
            ));
            Ok(Ok(Outcome::Done))
        }
        Op::Capture(name, new) => {
            let Some(bin) = bins.get_mut(name.as_str()) else {
                return Ok(Err(StoreError::NoSuchBin(name)));
            };
            let truncated = new.truncated;
            let now = schema::now();
            let request = Arc::new(new.finish(bin.next_seq, now));
            insert.execute(params![
                bin.id,
                request.seq as i64,
                request.id.as_bytes(),
                request.stored_bytes() as i64,
                request.encode(),
            ])?;
            bin.next_seq += 1;
            bin.last_activity = now;
            bin.request_count += 1;
            bin.bytes += request.stored_bytes();
            counters.requests_stored += 1;
            counters.bytes_stored += request.stored_bytes();
            counters.captures_total += 1;
            if truncated {
                counters.truncated_total += 1;
            }
            // The bin's cap and the byte budget are applied by `settle`, once for every
            // capture of the batch to this bin (before the next other operation, or the
            // commit), so nothing outside the transaction sees the difference.
            let bin_name = bin.name.clone();
            dirty.insert(bin_name.clone());
            events.push((
                bin_name.clone(),
                LiveEvent::Captured {
                    bin: bin_name,
                    request: Arc::clone(&request),
                    rendered: Arc::default(),
                },
            ));
            Ok(Ok(Outcome::Captured(request)))
        }
        Op::DeleteRequest(name, id) => {
            let Some(bin) = bins.get_mut(name.as_str()) else {
                return Ok(Err(StoreError::NoSuchBin(name)));
            };
            let found = match id.parse::<u64>() {
                Ok(seq) => tx
                    .prepare_cached(
                        "SELECT gseq, bytes, id FROM requests WHERE bin = ?1 AND seq = ?2",
                    )?
                    .query_row(params![bin.id, seq as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })
                    .map(Some)
                    .or_else(none_if_no_rows)?,
                Err(_) => match uuid::Uuid::parse_str(&id) {
                    Ok(uuid) => tx
                        .prepare_cached(
                            "SELECT gseq, bytes, id FROM requests WHERE bin = ?1 AND id = ?2",
                        )?
                        .query_row(params![bin.id, uuid.as_bytes()], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, Vec<u8>>(2)?,
                            ))
                        })
                        .map(Some)
                        .or_else(none_if_no_rows)?,
                    Err(_) => None,
                },
            };
            let Some((gseq, bytes, uuid)) = found else {
                return Ok(Err(StoreError::NoSuchRequest(id)));
            };
            tx.prepare_cached("DELETE FROM requests WHERE gseq = ?1")?
                .execute([gseq])?;
            forget(bin, counters, 1, bytes as u64);
            dirty.insert(bin.name.clone());
            events.push((
                bin.name.clone(),
                LiveEvent::Deleted {
                    bin: bin.name.clone(),
                    id: uuid::Uuid::from_slice(&uuid).unwrap_or_default(),
                },
            ));
            Ok(Ok(Outcome::Done))
        }
        Op::Clear(name) => {
            let Some(bin) = bins.get_mut(name.as_str()) else {
                return Ok(Err(StoreError::NoSuchBin(name)));
            };
            tx.prepare_cached("DELETE FROM requests WHERE bin = ?1")?
                .execute([bin.id])?;
            let removed = bin.request_count;
            let bytes = bin.bytes;
            forget(bin, counters, removed, bytes);
            dirty.insert(bin.name.clone());
            events.push((
                bin.name.clone(),
                LiveEvent::Cleared {
                    bin: bin.name.clone(),
                },
            ));
            Ok(Ok(Outcome::Count(removed)))
        }
        Op::Expire(now) => {
            let Some(ttl) = limits.bin_ttl else {
                return Ok(Ok(Outcome::Count(0)));
            };
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            let idle: Vec<BinName> = bins
                .values()
                .filter(|b| now - b.last_activity > ttl)
                .map(|b| b.name.clone())
                .collect();
            for name in &idle {
                let bin = bins.remove(name).expect("listed above");
                delete_bin_rows(tx, bin.id)?;
                counters.requests_stored -= bin.request_count;
                counters.bytes_stored -= bin.bytes;
                by_id.remove(&bin.id);
                dirty.insert(name.clone());
                events.push((name.clone(), LiveEvent::BinDeleted { bin: name.clone() }));
            }
            Ok(Ok(Outcome::Count(idle.len() as u64)))
        }
    }
}

fn none_if_no_rows<T>(e: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    }
}

/// Inserts a new bin unless the name is taken or the server is full.
fn insert_bin<'a>(
    tx: &Connection,
    limits: &StoreLimits,
    bins: &'a mut HashMap<BinName, BinRow>,
    by_id: &mut HashMap<i64, BinName>,
    dirty: &mut HashSet<BinName>,
    name: BinName,
    settings: BinSettings,
) -> rusqlite::Result<Result<&'a BinRow, StoreError>> {
    if bins.contains_key(&name) {
        return Ok(Err(StoreError::BinExists(name.to_string())));
    }
    if bins.len() >= limits.max_bins {
        return Ok(Err(StoreError::TooManyBins(limits.max_bins)));
    }
    let (max_requests, max_body) = schema::capped(limits, &settings);
    let now = schema::now();
    tx.prepare_cached(
        "INSERT INTO bins (name, created_at, last_activity, settings, next_seq, request_count, \
         bytes, evicted_by_bin_limit, evicted_by_byte_budget) VALUES (?1, ?2, ?2, ?3, 1, 0, 0, 0, 0)",
    )?
    .execute(params![
        name.as_str(),
        micros(now),
        codec::settings_to_json(&settings)
    ])?;
    let id = tx.last_insert_rowid();
    by_id.insert(id, name.clone());
    dirty.insert(name.clone());
    let bin = BinRow {
        id,
        name: name.clone(),
        created_at: now,
        last_activity: now,
        capture: Arc::new(CaptureSettings::new(&settings, max_body)),
        settings: Arc::new(settings),
        max_requests,
        next_seq: 1,
        request_count: 0,
        bytes: 0,
        evicted_by_bin_limit: 0,
        evicted_by_byte_budget: 0,
    };
    Ok(Ok(bins.entry(name).or_insert(bin)))
}

fn delete_bin_rows(tx: &Connection, id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM requests WHERE bin = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM bins WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Brings every bin changed so far within its cap, then the store within the byte budget.
/// Captures leave this to here: a batch of captures to one bin evicts with one statement.
fn settle(
    tx: &Connection,
    limits: &StoreLimits,
    bins: &mut HashMap<BinName, BinRow>,
    by_id: &HashMap<i64, BinName>,
    counters: &mut Counters,
    dirty: &mut HashSet<BinName>,
) -> rusqlite::Result<()> {
    let over: Vec<(BinName, u64)> = dirty
        .iter()
        .filter_map(|name| {
            let bin = bins.get(name)?;
            let over = bin
                .request_count
                .saturating_sub(u64::from(bin.max_requests));
            (over > 0).then(|| (name.clone(), over))
        })
        .collect();
    for (name, n) in over {
        evict_from_bin(tx, bins, counters, &name, n)?;
    }
    enforce_budget(tx, limits, bins, by_id, counters, dirty)
}

/// Evicts the `n` oldest requests of a bin, counted as bin-limit evictions.
fn evict_from_bin(
    tx: &Connection,
    bins: &mut HashMap<BinName, BinRow>,
    counters: &mut Counters,
    name: &BinName,
    n: u64,
) -> rusqlite::Result<()> {
    let bin = bins.get_mut(name).expect("the caller holds this bin");
    // The n oldest: their sizes, and the last one's number, up to which one range delete
    // takes them all.
    let (count, bytes, last) = tx
        .prepare_cached(
            "SELECT count(*), coalesce(sum(bytes), 0), max(seq) FROM \
             (SELECT seq, bytes FROM requests WHERE bin = ?1 ORDER BY seq LIMIT ?2)",
        )?
        .query_row(params![bin.id, n as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
    let Some(last) = last else {
        return Ok(());
    };
    tx.prepare_cached("DELETE FROM requests WHERE bin = ?1 AND seq <= ?2")?
        .execute(params![bin.id, last])?;
    let count = count as u64;
    forget(bin, counters, count, bytes as u64);
    bin.evicted_by_bin_limit += count;
    counters.evicted_by_bin_limit += count;
    Ok(())
}

/// Evicts the oldest requests across bins (lowest `gseq`: arrival order) until the byte
/// budget holds again. Exact: the budget is checked after every capture, inside its
/// transaction.
fn enforce_budget(
    tx: &Connection,
    limits: &StoreLimits,
    bins: &mut HashMap<BinName, BinRow>,
    by_id: &HashMap<i64, BinName>,
    counters: &mut Counters,
    dirty: &mut HashSet<BinName>,
) -> rusqlite::Result<()> {
    while counters.bytes_stored > limits.max_bytes {
        let oldest = tx
            .prepare_cached("SELECT gseq, bin, bytes FROM requests ORDER BY gseq LIMIT 1")?
            .query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map(Some)
            .or_else(none_if_no_rows)?;
        let Some((gseq, bin_id, bytes)) = oldest else {
            break;
        };
        tx.prepare_cached("DELETE FROM requests WHERE gseq = ?1")?
            .execute([gseq])?;
        // Every row belongs to a bin the writer holds (a bin's rows go with it).
        if let Some(bin) = by_id.get(&bin_id).and_then(|n| bins.get_mut(n)) {
            forget(bin, counters, 1, bytes as u64);
            bin.evicted_by_byte_budget += 1;
            counters.evicted_by_byte_budget += 1;
            dirty.insert(bin.name.clone());
        }
    }
    Ok(())
}

/// Writes the rows of the bins a batch changed and the counters.
fn flush(
    tx: &Connection,
    bins: &HashMap<BinName, BinRow>,
    counters: &Counters,
    dirty: &HashSet<BinName>,
) -> rusqlite::Result<()> {
    let mut update = tx.prepare_cached(
        "UPDATE bins SET last_activity = ?1, next_seq = ?2, request_count = ?3, bytes = ?4, \
         evicted_by_bin_limit = ?5, evicted_by_byte_budget = ?6 WHERE id = ?7",
    )?;
    for name in dirty {
        // A bin deleted in this batch has no row any more.
        if let Some(b) = bins.get(name) {
            update.execute(params![
                micros(b.last_activity),
                b.next_seq as i64,
                b.request_count as i64,
                b.bytes as i64,
                b.evicted_by_bin_limit as i64,
                b.evicted_by_byte_budget as i64,
                b.id,
            ])?;
        }
    }
    tx.prepare_cached(
        "UPDATE counters SET captures_total = ?1, evicted_by_bin_limit = ?2, \
         evicted_by_byte_budget = ?3, truncated_total = ?4 WHERE id = 1",
    )?
    .execute(params![
        counters.captures_total as i64,
        counters.evicted_by_bin_limit as i64,
        counters.evicted_by_byte_budget as i64,
        counters.truncated_total as i64,
    ])?;
    Ok(())
}
