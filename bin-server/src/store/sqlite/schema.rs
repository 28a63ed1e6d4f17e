//! The file: opening it (ours, or new), its schema and versions, and loading what the writer
//! keeps in memory (bins and counters; never the requests).
//!
//! Tables:
//! - `bins`: one row per bin, its settings as JSON ([`codec`]) and its counters, rewritten in
//!   the transaction that changes them;
//! - `requests`: one row per stored request; the rowid `gseq` is the global arrival order the
//!   byte budget evicts by (oldest first), `(bin, seq)` is unique and the order of a bin;
//!   `data` is [`CapturedRequest::encode`];
//! - `counters`: one row of server-wide counters that outlive deleted bins.
//!
//! [`CapturedRequest::encode`]: crate::store::CapturedRequest::encode

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::store::{BinName, BinSettings, CaptureSettings, StoreError, StoreLimits, codec};

/// Marks a file as Hookbin's (`PRAGMA application_id`, "Hkbn"): a foreign database is refused
/// rather than written into.
const APPLICATION_ID: i32 = 0x486b_626e;
/// The schema this code reads and writes (`PRAGMA user_version`). A file of a newer version is
/// refused; older versions would be migrated here.
pub(super) const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE bins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_activity INTEGER NOT NULL,
    settings TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    request_count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    evicted_by_bin_limit INTEGER NOT NULL,
    evicted_by_byte_budget INTEGER NOT NULL
);
CREATE TABLE requests (
    gseq INTEGER PRIMARY KEY,
    bin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX requests_by_bin ON requests (bin, seq);
CREATE TABLE counters (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    captures_total INTEGER NOT NULL,
    evicted_by_bin_limit INTEGER NOT NULL,
    evicted_by_byte_budget INTEGER NOT NULL,
    truncated_total INTEGER NOT NULL
);
INSERT INTO counters VALUES (1, 0, 0, 0, 0);
";

/// How long a connection waits for a lock another connection of this process holds (a
/// checkpoint, the writer) before it reports the store unavailable.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A bin as the writer keeps it (and as readers of snapshots see it, after each commit).
#[derive(Debug, Clone)]
pub(super) struct BinRow {
    pub id: i64,
    pub name: BinName,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    pub settings: Arc<BinSettings>,
    /// The same `Arc` until the settings change (compiled checks are cached in it).
    pub capture: Arc<CaptureSettings>,
    pub max_requests: u32,
    pub next_seq: u64,
    pub request_count: u64,
    pub bytes: u64,
    pub evicted_by_bin_limit: u64,
    pub evicted_by_byte_budget: u64,
}

/// Server-wide counters: the first four kept in the file, the totals of what is stored summed
/// from the bins at load and then kept in step with them (the byte budget checks the total
/// after every capture: summing 10,000 bins each time would cost more than the write).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub captures_total: u64,
    pub evicted_by_bin_limit: u64,
    pub evicted_by_byte_budget: u64,
    pub truncated_total: u64,
    pub requests_stored: u64,
    pub bytes_stored: u64,
}

/// The store's path in errors.
pub(super) fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// A timestamp as stored: microseconds since the epoch (what the file keeps is what a restart
/// gives back, so times are cut to microseconds before they are used).
pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

/// Now, cut to what the file keeps.
pub(super) fn now() -> DateTime<Utc> {
    from_micros(micros(Utc::now()))
}

/// The limits in force for these settings (capped by the server's).
pub(super) fn capped(limits: &StoreLimits, settings: &BinSettings) -> (u32, u64) {
    let max_requests = settings
        .max_requests
        .unwrap_or(limits.max_requests_per_bin)
        .min(limits.max_requests_per_bin);
    let max_body = settings
        .max_body_bytes
        .unwrap_or(limits.max_body_bytes)
        .min(limits.max_body_bytes);
    (max_requests, max_body)
}

/// Turns on the query planner stability guarantee: a cached statement keeps its plan. Without
/// it, SQLite (built with STAT4, as `rusqlite`'s bundled build is) re-prepares a statement each
/// time a new value is bound to a parameter that might change the plan (`bin = ?1`, `LIMIT ?`),
/// and parsing and planning the eviction query again cost more than all the rest of a capture.
fn plan_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

/// Opens the writer's connection: creates the file and the schema when new, checks that an
/// existing file is ours and of a version we read, and sets the journal and sync modes.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let err = |e: rusqlite::Error| unavailable(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    plan_once(&conn).map_err(err)?;
    // The first read of the header: a file that is not SQLite fails here ("file is not a
    // database").
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(err)?;
    let fresh = app == 0 && version == 0 && objects == 0;
    if !fresh && app != APPLICATION_ID {
        return Err(unavailable(
            path,
            "the file is an SQLite database of another application, not a Hookbin store",
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(unavailable(
            path,
            format!(
                "the store has schema version {version}, this bin-server reads up to \
                 {SCHEMA_VERSION}: use a newer bin-server"
            ),
        ));
    }
    // WAL: readers run beside the one writer, and a commit is one append to the log.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unavailable(
            path,
            format!("cannot use WAL mode (the journal mode stays {mode:?})"),
        ));
    }
    // NORMAL: a commit is appended to the log (in the kernel's cache when the writer answers)
    // and the log is synced at each checkpoint, so a capture answered 200 survives a `kill -9`
    // or a crash of the process; a power cut or kernel crash may lose the commits since the
    // last checkpoint, never the file's consistency. FULL also syncs the log on every commit:
    // the writer then waits for the disk once per batch (an fsync took 4 ms at the median on
    // the development machine), and at 64 connections that wait, not the CPU, bounded the
    // captures per second (see the README's Storage and Performance parts).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    if fresh {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(err)?;
    }
    Ok(conn)
}

/// A read-only connection for the readers beside the writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let err = |e: rusqlite::Error| unavailable(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    plan_once(&conn).map_err(err)?;
    Ok(conn)
}

/// Everything the writer keeps in memory, read from the file.
pub(super) fn load(
    conn: &Connection,
    limits: &StoreLimits,
) -> rusqlite::Result<(HashMap<BinName, BinRow>, Counters)> {
    let mut bins = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, name, created_at, last_activity, settings, next_seq, request_count, bytes, \
         evicted_by_bin_limit, evicted_by_byte_budget FROM bins",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(1)?;
        let bad = |what: String| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("bin {name:?}: {what}").into(),
            )
        };
        let bin_name = BinName::parse(&name).map_err(|e| bad(e.to_string()))?;
        let settings_text: String = r.get(4)?;
        let settings = codec::settings_from_json(&settings_text).map_err(bad)?;
        let (max_requests, max_body) = capped(limits, &settings);
        let u = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
        bins.insert(
            bin_name.clone(),
            BinRow {
                id: r.get(0)?,
                name: bin_name,
                created_at: from_micros(r.get(2)?),
                last_activity: from_micros(r.get(3)?),
                capture: Arc::new(CaptureSettings::new(&settings, max_body)),
                settings: Arc::new(settings),
                max_requests,
                next_seq: u(5)?,
                request_count: u(6)?,
                bytes: u(7)?,
                evicted_by_bin_limit: u(8)?,
                evicted_by_byte_budget: u(9)?,
            },
        );
    }
    let counters = conn.query_row(
        "SELECT captures_total, evicted_by_bin_limit, evicted_by_byte_budget, truncated_total \
         FROM counters WHERE id = 1",
        [],
        |r| {
            let u = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
            Ok(Counters {
                captures_total: u(0)?,
                evicted_by_bin_limit: u(1)?,
                evicted_by_byte_budget: u(2)?,
                truncated_total: u(3)?,
                requests_stored: bins.values().map(|b| b.request_count).sum(),
                bytes_stored: bins.values().map(|b| b.bytes).sum(),
            })
        },
    )?;
    Ok((bins, counters))
}
