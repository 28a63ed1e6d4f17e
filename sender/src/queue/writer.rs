//! One writer thread per sender SQLite file, committing in groups: every write waiting when a
//! transaction starts (up to [`GROUP`]) goes into it, each in its own savepoint (a failing one
//! is rolled back alone; a job of one write needs none, see [`Writer::submit_one`]), and one
//! sync to disk (`synchronous=FULL`) covers them all. A write's
//! caller hears back only after that commit: answered = committed. Writes run in the order they
//! were submitted.

use std::sync::mpsc;

use rusqlite::Connection;

/// Writes committed together at most.
const GROUP: usize = 512;
/// Writes waiting at most; a caller past it waits for room (backpressure, bounded memory).
const WAITING: usize = 16_384;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// Handle to the writer thread; it ends when every handle is dropped.
pub(crate) struct Writer {
    jobs: mpsc::SyncSender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Self {
        let (jobs, rx) = mpsc::sync_channel::<Job>(WAITING);
        std::thread::Builder::new()
            .name("sender-sqlite-writer".into())
            .spawn(move || run(&conn, &rx))
            .expect("a thread starts");
        Self { jobs }
    }

    /// Queues `f` for the next group; `reply` gets its result once that group is committed
    /// (or the commit's error).
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
        reply: impl FnOnce(Result<T, String>) + Send + 'static,
    ) {
        self.queue(f, reply, true);
    }

    /// [`Writer::submit`] for a job that changes the file with one statement at most (reads
    /// before it are fine): it runs without a savepoint of its own, since SQLite undoes a
    /// failed statement by itself and leaves the rest of the group as it was. The savepoint
    /// and its release were two more statements per job, and their sub-journal a copy of every
    /// page the job touched: most of a delivery's writes are such jobs.
    pub(crate) fn submit_one<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
        reply: impl FnOnce(Result<T, String>) + Send + 'static,
    ) {
        self.queue(f, reply, false);
    }

    fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
        reply: impl FnOnce(Result<T, String>) + Send + 'static,
        savepoint: bool,
    ) {
        let job: Job = Box::new(move |conn: &Connection| {
            let result = if savepoint {
                in_savepoint(conn, f)
            } else {
                f(conn)
            };
            Box::new(move |commit: Result<(), String>| reply(commit.and(result)))
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The writer is gone (it cannot be while a handle lives): dropping the job drops
            // its reply, which a caller waiting on it hears as the writer stopped.
            drop(job);
        }
    }

    /// [`Writer::submit`] and wait for the answer, asynchronously.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.call_with(f, true).await
    }

    /// [`Writer::submit_one`] and wait for the answer, asynchronously.
    pub(crate) async fn call_one<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.call_with(f, false).await
    }

    async fn call_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
        savepoint: bool,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(
            f,
            move |r| {
                let _ = tx.send(r);
            },
            savepoint,
        );
        rx.await
            .unwrap_or_else(|_| Err("the SQLite writer stopped".into()))
    }

    /// [`Writer::submit`] and wait for the answer, blocking (under `block_in_place` on a
    /// multi-threaded runtime, so the worker's other tasks move on).
    pub(crate) fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        let wait = || {
            rx.recv()
                .unwrap_or_else(|_| Err("the SQLite writer stopped".into()))
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }
    }
}

/// One statement from the connection's cache (every job runs two or three of these: parsed
/// once, not per job).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn run(conn: &Connection, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        let finishes: Vec<Finish> = group.into_iter().map(|job| job(conn)).collect();
        let committed = match begun {
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            }),
            // No group transaction: each job's savepoint was its own transaction, committed
            // by its RELEASE, so each job's own result stands.
            Err(_) => Ok(()),
        };
        for finish in finishes {
            finish(committed.clone());
        }
    }
}

/// Runs `f` in a savepoint of its own: a failing job is rolled back alone, the rest of the group
/// stays.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, String>,
) -> Result<T, String> {
    run_cached(conn, "SAVEPOINT job").map_err(|e| e.to_string())?;
    let r = f(conn);
    let end = if r.is_ok() {
        run_cached(conn, "RELEASE job")
    } else {
        run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
    };
    end.map_err(|e| e.to_string())?;
    r
}
