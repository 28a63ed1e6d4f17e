//! The SQLite [`Store`] (`--store sqlite:PATH`): one file on this machine that keeps bins,
//! settings, requests and counters across restarts and `kill -9`.
//!
//! - Writes go to one writer thread ([`writer`]) that owns the read-write connection and
//!   commits whatever operations are waiting as one transaction (group commit); a caller hears
//!   `Ok` only after its operation is committed (WAL, `synchronous = NORMAL`: in the log, so a
//!   killed process loses nothing answered; see [`schema::open_writer`]).
//! - Reads of requests run on a few read-only connections on blocking threads; WAL lets them
//!   read beside the writer.
//! - Bins (settings, counters) are also kept in memory: this process owns the file (an
//!   exclusive lock on it refuses a second bin-server), so snapshots and `capture_settings`
//!   come from views the writer publishes after each commit, and a capture costs one write.
//!
//! The file's layout is in [`schema`].

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use rusqlite::{Connection, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use self::schema::{BinRow, unavailable};
use self::writer::{Op, Outcome};
use super::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveHub, NewCapture, Page,
    PageQuery, Store, StoreError, StoreLimits, StoreStats,
};
use api::EvictionCounts;

/// Operations waiting for the writer at most. A full queue makes callers wait (backpressure
/// on the capture path, not an unbounded heap); two full batches keep the writer busy while
/// the next callers queue.
const WRITE_QUEUE: usize = 2 * writer::MAX_BATCH;

/// Read-only connections at most (each one read at a time, on a blocking thread). Reads are
/// short index walks except text search, which the routes bound separately; a few are enough
/// on the small machines Hookbin runs on, and each costs a page cache.
const READERS: usize = 4;

/// What the writer publishes after each commit and every reader of bins reads.
struct Shared {
    /// Every bin as last committed.
    views: DashMap<BinName, BinRow>,
    stats: Mutex<StoreStats>,
    live: LiveHub,
}

/// See the module docs.
pub struct SqliteStore {
    path: PathBuf,
    limits: StoreLimits,
    shared: Arc<Shared>,
    /// `None` only while dropping (closing it stops the writer).
    writes: Option<mpsc::Sender<(Op, writer::Reply)>>,
    writer: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    /// The file itself, locked exclusively while this store lives: one bin-server per file
    /// (two writers' in-memory views would disagree with each other).
    _lock: std::fs::File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("bins", &self.shared.views.len())
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Every operation was answered (callers await their replies), so the writer's queue is
        // empty: it stops at once. Waiting for it means the file is closed and unlocked when
        // the drop returns, so the same process may open it again right away.
        drop(self.writes.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store in the file `path` (its directory must exist). Blocks on
    /// file I/O: call it off the async runtime's workers (as [`super::open`] does).
    pub fn open(path: impl AsRef<Path>, limits: StoreLimits) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| unavailable(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(unavailable(
                    &path,
                    "the file is in use by another bin-server (one process per store file)",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(unavailable(&path, format!("cannot lock the file: {e}")));
            }
        }
        let conn = schema::open_writer(&path)?;
        let shared = Arc::new(Shared {
            views: DashMap::new(),
            stats: Mutex::new(StoreStats::default()),
            live: LiveHub::default(),
        });
        let w = writer::Writer::start(path.clone(), conn, limits.clone(), Arc::clone(&shared))?;
        let readers = Arc::new(Readers {
            path: path.clone(),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(READERS),
        });
        // One reader now: a file readers cannot open fails here, not on the first page view.
        let first = schema::open_reader(&path)?;
        readers.put_back(first);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| unavailable(&path, format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            path,
            limits,
            shared,
            writes: Some(tx),
            writer: Some(writer),
            readers,
            _lock: lock,
        })
    }

    /// Hands an operation to the writer and waits for its answer (after its commit).
    async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        let stopped = || unavailable(&self.path, "the writer thread stopped");
        let (reply, answer) = oneshot::channel();
        self.writes
            .as_ref()
            .ok_or_else(stopped)?
            .send((op, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn view(&self, name: &str) -> Result<BinRow, StoreError> {
        self.shared
            .views
            .get(name)
            .map(|b| b.value().clone())
            .ok_or_else(|| StoreError::NoSuchBin(name.to_owned()))
    }
}

/// A bin's snapshot from its row.
fn snapshot(b: &BinRow) -> BinSnapshot {
    BinSnapshot {
        name: b.name.clone(),
        created_at: b.created_at,
        last_activity: b.last_activity,
        request_count: b.request_count,
        total_captured: b.next_seq - 1,
        bytes_stored: b.bytes,
        evicted: EvictionCounts {
            by_bin_limit: b.evicted_by_bin_limit,
            by_byte_budget: b.evicted_by_byte_budget,
            total: b.evicted_by_bin_limit + b.evicted_by_byte_budget,
        },
        settings: (*b.settings).clone(),
        max_requests: b.max_requests,
        max_body_bytes: b.capture.max_body_bytes,
    }
}

fn unexpected(outcome: Outcome) -> StoreError {
    StoreError::Unavailable(format!("the sqlite writer answered {outcome:?}"))
}

/// The read-only connections (see [`READERS`]).
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: a read waits here (asynchronously) rather than opening more.
    slots: Semaphore,
}

impl Readers {
    fn put_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    /// Runs `f` in one read transaction (a consistent view of the last commit) on a blocking
    /// thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let this = Arc::clone(self);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let idle = this.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match idle {
                Some(c) => c,
                // Opened lazily, up to READERS (a connection lost to a panic is replaced).
                None => schema::open_reader(&this.path)?,
            };
            let out = conn
                .transaction()
                .map_err(|e| unavailable(&this.path, e))
                .and_then(|tx| f(&tx));
            this.put_back(conn);
            out
        })
        .await
        .map_err(|e| unavailable(&path, format!("a read failed: {e}")))?
    }
}

/// A bin's id and what a page reports about it, read in the page's transaction.
struct BinHead {
    id: i64,
    request_count: u64,
    evicted: EvictionCounts,
}

fn bin_head(tx: &Connection, path: &Path, name: &str) -> Result<BinHead, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT id, request_count, evicted_by_bin_limit, evicted_by_byte_budget \
             FROM bins WHERE name = ?1",
        )
        .and_then(|mut s| {
            s.query_row([name], |r| {
                let u =
                    |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
                let (bl, bb) = (u(2)?, u(3)?);
                Ok(BinHead {
                    id: r.get(0)?,
                    request_count: u(1)?,
                    evicted: EvictionCounts {
                        by_bin_limit: bl,
                        by_byte_budget: bb,
                        total: bl + bb,
                    },
                })
            })
        });
    match row {
        Ok(head) => Ok(head),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(StoreError::NoSuchBin(name.to_owned())),
        Err(e) => Err(unavailable(path, e)),
    }
}

/// A stored request from its row. A row that does not decode is reported, never trusted.
fn decode(path: &Path, data: &[u8]) -> Result<Arc<CapturedRequest>, StoreError> {
    CapturedRequest::decode(data)
        .map(Arc::new)
        .ok_or_else(|| unavailable(path, "a stored request is damaged (it does not decode)"))
}

/// Reads `sql`'s rows (one `data` column) and decodes them.
fn decoded(
    tx: &Connection,
    path: &Path,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
    let err = |e: rusqlite::Error| unavailable(path, e);
    let mut stmt = tx.prepare_cached(sql).map_err(err)?;
    let mut rows = stmt.query(params).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let data = row
            .get_ref(0)
            .map_err(err)?
            .as_blob()
            .map_err(|e| unavailable(path, e))?;
        out.push(decode(path, data)?);
    }
    Ok(out)
}

/// A `u64` bound as SQLite's integer (sequence numbers stay far below `i64::MAX`).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
        match self.write(Op::Create(name, settings)).await? {
            Outcome::Bin(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError> {
        match self.write(Op::Put(name, settings)).await? {
            Outcome::Put(b, created) => Ok((b, created)),
            other => Err(unexpected(other)),
        }
    }

    async fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError> {
        Ok(snapshot(&self.view(name)?))
    }

    async fn list_bins(&self) -> Result<Vec<BinSnapshot>, StoreError> {
        let mut out: Vec<BinSnapshot> = self
            .shared
            .views
            .iter()
            .map(|b| snapshot(b.value()))
            .collect();
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    async fn delete_bin(&self, name: &str) -> Result<(), StoreError> {
        match self.write(Op::DeleteBin(name.to_owned())).await? {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError> {
        self.shared
            .views
            .get(name)
            .map(|b| Arc::clone(&b.capture))
            .ok_or_else(|| StoreError::NoSuchBin(name.to_owned()))
    }

    async fn capture(
        &self,
        name: &str,
        new: NewCapture,
    ) -> Result<Arc<CapturedRequest>, StoreError> {
        match self.write(Op::Capture(name.to_owned(), new)).await? {
            Outcome::Captured(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
        let name = name.to_owned();
        let query = query.clone();
        let path = self.path.clone();
        self.readers
            .read(move |tx| {
                let head = bin_head(tx, &path, &name)?;
                let after = int(query.after.unwrap_or(0));
                let before = query.before.map_or(i64::MAX, int);
                let f = &query.filter;
                let mut page = Vec::new();
                let matched;
                if f.method.is_none() && f.path.is_none() && f.text.is_none() {
                    matched = tx
                        .prepare_cached(
                            "SELECT count(*) FROM requests WHERE bin = ?1 AND seq > ?2 \
                             AND seq < ?3",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![head.id, after, before], |r| r.get::<_, i64>(0))
                        })
                        .map_err(|e| unavailable(&path, e))?
                        .max(0) as u64;
                    page = decoded(
                        tx,
                        &path,
                        "SELECT data FROM requests WHERE bin = ?1 AND seq > ?2 AND seq < ?3 \
                         ORDER BY seq DESC LIMIT ?4",
                        params![head.id, after, before, int(query.limit as u64)],
                    )?;
                } else {
                    // Filters read every request of the range, as the memory store does.
                    let err = |e: rusqlite::Error| unavailable(&path, e);
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT data FROM requests WHERE bin = ?1 AND seq > ?2 AND seq < ?3 \
                             ORDER BY seq DESC",
                        )
                        .map_err(err)?;
                    let mut rows = stmt.query(params![head.id, after, before]).map_err(err)?;
                    let mut n = 0u64;
                    while let Some(row) = rows.next().map_err(err)? {
                        let data = row
                            .get_ref(0)
                            .map_err(err)?
                            .as_blob()
                            .map_err(|e| unavailable(&path, e))?;
                        let r = decode(&path, data)?;
                        if !f.matches(&r) {
                            continue;
                        }
                        n += 1;
                        if page.len() < query.limit {
                            page.push(r);
                        }
                    }
                    matched = n;
                }
                // As the memory store: a cursor to the next page when more matched.
                let next_before = if matched > page.len() as u64 {
                    page.last().map(|r| r.seq)
                } else {
                    None
                };
                Ok(Page {
                    requests: page,
                    total: head.request_count,
                    matched,
                    next_before,
                    evicted: head.evicted,
                })
            })
            .await
    }

    async fn read_after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
        let name = name.to_owned();
        let path = self.path.clone();
        self.readers
            .read(move |tx| {
                let head = bin_head(tx, &path, &name)?;
                decoded(
                    tx,
                    &path,
                    "SELECT data FROM requests WHERE bin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                    params![head.id, int(after), int(limit as u64)],
                )
            })
            .await
    }

    async fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError> {
        let name = name.to_owned();
        let id = id.to_owned();
        let path = self.path.clone();
        self.readers
            .read(move |tx| {
                let head = bin_head(tx, &path, &name)?;
                let found = if let Ok(seq) = id.parse::<u64>() {
                    decoded(
                        tx,
                        &path,
                        "SELECT data FROM requests WHERE bin = ?1 AND seq = ?2",
                        params![head.id, int(seq)],
                    )?
                } else if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                    decoded(
                        tx,
                        &path,
                        "SELECT data FROM requests WHERE bin = ?1 AND id = ?2",
                        params![head.id, uuid.as_bytes()],
                    )?
                } else {
                    Vec::new()
                };
                found
                    .into_iter()
                    .next()
                    .ok_or(StoreError::NoSuchRequest(id))
            })
            .await
    }

    async fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError> {
        match self
            .write(Op::DeleteRequest(name.to_owned(), id.to_owned()))
            .await?
        {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn clear_requests(&self, name: &str) -> Result<u64, StoreError> {
        match self.write(Op::Clear(name.to_owned())).await? {
            Outcome::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }

    async fn expire_idle(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError> {
        // The sweeper asks every minute: no transaction (and no sync) when nothing is idle.
        let Some(ttl) = self.limits.bin_ttl else {
            return Ok(0);
        };
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        if !self
            .shared
            .views
            .iter()
            .any(|b| now - b.last_activity > ttl)
        {
            return Ok(0);
        }
        match self.write(Op::Expire(now)).await? {
            Outcome::Count(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    async fn health(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.readers
            .read(move |tx| {
                tx.query_row("SELECT count(*) FROM counters", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| unavailable(&path, e))
            })
            .await?;
        if self.writes.as_ref().is_none_or(|w| w.is_closed()) {
            return Err(unavailable(&self.path, "the writer thread stopped"));
        }
        Ok(())
    }
}
