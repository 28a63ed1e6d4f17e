//! [`SqliteQueue`]: the schedule in a SQLite file. WAL, `synchronous=FULL`: when a call
//! returns, what it did is committed and on disk, so a `kill -9` right after loses nothing.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::writer::Writer;
use super::{
    DeliveryQueue, Leased, QueueError, Task, lease_ms, new_token, trigger_from, trigger_name,
};

/// The SQLite [`DeliveryQueue`]. Calls go to the file's writer thread (see [`Writer`]): each
/// runs in its own savepoint of a group transaction (`BEGIN IMMEDIATE`, so a process on the
/// same file waits instead of both taking a task) and is answered once the group is committed.
#[derive(Clone)]
pub struct SqliteQueue {
    writer: Arc<Writer>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS delivery_queue (
    id          TEXT PRIMARY KEY,
    webhook_id  TEXT NOT NULL,
    failed      INTEGER NOT NULL,
    run_trigger TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    token       TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS delivery_queue_due
    ON delivery_queue (due_ms, seq) WHERE token IS NULL;
CREATE INDEX IF NOT EXISTS delivery_queue_leased
    ON delivery_queue (lease_until) WHERE token IS NOT NULL;
CREATE INDEX IF NOT EXISTS delivery_queue_webhook ON delivery_queue (webhook_id);
-- For MAX(seq) on every send: without it each send scans the whole queue.
CREATE INDEX IF NOT EXISTS delivery_queue_seq ON delivery_queue (seq);
";

pub(crate) fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// Opens `path` (created if missing) with the settings every sender connection uses.
pub fn open_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Cached statements keep their plans: without this, SQLite (built with STAT4) re-prepares
    // a statement each time a new value is bound to a parameter the plan may depend on.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Every statement the writer runs per delivery stays prepared (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteQueue {
    /// Opens (or creates) the queue in the file `path`, with a writer thread of its own.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        let conn = open_connection(path.as_ref()).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self {
            writer: Arc::new(Writer::start(conn)),
        })
    }

    /// The queue on a file's writer (shared with the rest of the sender's store).
    pub(crate) fn with_writer(writer: Arc<Writer>) -> Result<Self, QueueError> {
        writer
            .call_blocking(|conn| conn.execute_batch(SCHEMA).map_err(|e| e.to_string()))
            .map_err(unavailable)?;
        Ok(Self { writer })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        // The job's own error travels inside Ok, so a lost lease stays a lost lease.
        self.writer
            .call(move |conn| Ok(f(conn)))
            .await
            .map_err(unavailable)?
    }

    /// [`SqliteQueue::run`] for a job of one statement (no savepoint: see
    /// [`Writer::submit_one`]).
    async fn run_one<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.writer
            .call_one(move |conn| Ok(f(conn)))
            .await
            .map_err(unavailable)?
    }
}

/// Runs `sql` (its `?1` the task's id, `?2` the lease's token, in its `WHERE`; `more` binds
/// `?3`...) and fails with LeaseLost when it changed nothing: `leased` no longer holds its
/// task. One statement, the lease checked by the change itself.
fn with_lease(
    tx: &Connection,
    leased: &Leased,
    sql: &str,
    more: &[&dyn rusqlite::ToSql],
) -> Result<(), QueueError> {
    let mut stmt = tx.prepare_cached(sql).map_err(unavailable)?;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&leased.task.id, &leased.token];
    args.extend_from_slice(more);
    let changed = stmt.execute(&args[..]).map_err(unavailable)?;
    if changed == 0 {
        return Err(QueueError::LeaseLost(leased.task.id.clone()));
    }
    Ok(())
}

#[async_trait::async_trait]
impl DeliveryQueue for SqliteQueue {
    async fn send(&self, task: Task, due_ms: i64) -> Result<(), QueueError> {
        self.send_many(vec![(task, due_ms)]).await
    }

    async fn send_many(&self, tasks: Vec<(Task, i64)>) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        // One job: one savepoint, one commit for the lot.
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO delivery_queue
                         (id, webhook_id, failed, run_trigger, due_ms, seq, token, lease_until)
                     VALUES (?1, ?2, ?3, ?4, ?5,
                             (SELECT COALESCE(MAX(seq), 0) + 1 FROM delivery_queue), NULL, NULL)",
                )
                .map_err(unavailable)?;
            for (task, due_ms) in &tasks {
                stmt.execute(params![
                    task.id,
                    task.webhook_id,
                    task.failed,
                    trigger_name(task.trigger),
                    due_ms
                ])
                .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        max: usize,
        skip: &HashSet<String>,
    ) -> Result<Vec<Leased>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let skip = skip.clone();
        let until = now_ms.saturating_add(lease_ms(lease));
        self.run(move |conn| {
            let tx: &Connection = conn;
            tx.prepare_cached(
                "UPDATE delivery_queue SET token = NULL, lease_until = NULL
                 WHERE token IS NOT NULL AND lease_until <= ?1",
            )
            .and_then(|mut stmt| stmt.execute([now_ms]))
            .map_err(unavailable)?;
            let mut picked = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, webhook_id, failed, run_trigger, due_ms FROM delivery_queue
                         WHERE token IS NULL AND due_ms <= ?1 ORDER BY due_ms, seq",
                    )
                    .map_err(unavailable)?;
                let mut rows = stmt.query([now_ms]).map_err(unavailable)?;
                while picked.len() < max {
                    let Some(row) = rows.next().map_err(unavailable)? else {
                        break;
                    };
                    let webhook_id: String = row.get(1).map_err(unavailable)?;
                    if skip.contains(&webhook_id) {
                        continue;
                    }
                    let trigger: String = row.get(3).map_err(unavailable)?;
                    picked.push(Leased {
                        task: Task {
                            id: row.get(0).map_err(unavailable)?,
                            webhook_id,
                            failed: row.get(2).map_err(unavailable)?,
                            trigger: trigger_from(&trigger),
                        },
                        due_ms: row.get(4).map_err(unavailable)?,
                        token: new_token(),
                        lease_until_ms: until,
                    });
                }
            }
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE delivery_queue SET token = ?2, lease_until = ?3 WHERE id = ?1",
                    )
                    .map_err(unavailable)?;
                for l in &picked {
                    stmt.execute(params![l.task.id, l.token, until])
                        .map_err(unavailable)?;
                }
            }
            Ok(picked)
        })
        .await
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        let leased = leased.clone();
        self.run_one(move |tx| {
            with_lease(
                tx,
                &leased,
                "DELETE FROM delivery_queue WHERE id = ?1 AND token = ?2",
                &[],
            )
        })
        .await
    }

    async fn retry(&self, leased: &Leased, due_ms: i64, failed: u32) -> Result<(), QueueError> {
        let leased = leased.clone();
        self.run_one(move |tx| {
            with_lease(
                tx,
                &leased,
                "UPDATE delivery_queue SET token = NULL, lease_until = NULL, due_ms = ?3,
                     failed = ?4
                 WHERE id = ?1 AND token = ?2",
                &[&due_ms, &failed],
            )
        })
        .await
    }

    async fn due_now(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let id = id.to_owned();
        self.run(move |tx| {
            // Waiting (not leased, or its lease expired): due now unless it already is.
            let changed = tx
                .execute(
                    "UPDATE delivery_queue SET due_ms = MIN(due_ms, ?2)
                     WHERE id = ?1 AND (token IS NULL OR lease_until <= ?2)",
                    params![id, now_ms],
                )
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn remove_webhook(&self, webhook_id: &str) -> Result<Vec<String>, QueueError> {
        let webhook_id = webhook_id.to_owned();
        self.run(move |conn| {
            let tx: &Connection = conn;
            let ids = {
                let mut stmt = tx
                    .prepare("SELECT id FROM delivery_queue WHERE webhook_id = ?1 ORDER BY seq")
                    .map_err(unavailable)?;
                stmt.query_map([&webhook_id], |r| r.get::<_, String>(0))
                    .map_err(unavailable)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?
            };
            tx.execute(
                "DELETE FROM delivery_queue WHERE webhook_id = ?1",
                [&webhook_id],
            )
            .map_err(unavailable)?;
            Ok(ids)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>, QueueError> {
        self.run(|conn| {
            conn.query_row(
                "SELECT MIN(t) FROM (
                     SELECT MIN(due_ms) AS t FROM delivery_queue WHERE token IS NULL
                     UNION ALL
                     SELECT MIN(lease_until) FROM delivery_queue WHERE token IS NOT NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)
        })
        .await
    }

    async fn tasks(&self) -> Result<Vec<(Task, i64)>, QueueError> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, webhook_id, failed, run_trigger, due_ms FROM delivery_queue
                     ORDER BY due_ms, seq",
                )
                .map_err(unavailable)?;
            stmt.query_map([], |r| {
                let trigger: String = r.get(3)?;
                Ok((
                    Task {
                        id: r.get(0)?,
                        webhook_id: r.get(1)?,
                        failed: r.get(2)?,
                        trigger: trigger_from(&trigger),
                    },
                    r.get(4)?,
                ))
            })
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::queue::conformance::suite!(async {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteQueue::open(dir.path().join("queue.db")).unwrap();
        // The directory lives as long as the test's queue.
        crate::queue::conformance::Fixture::with_guard(queue, dir)
    });

    #[tokio::test]
    async fn what_was_answered_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let task = |id: &str| Task {
            id: id.into(),
            webhook_id: "wh_a".into(),
            failed: 0,
            trigger: api::AttemptTrigger::Scheduled,
        };
        {
            let q = SqliteQueue::open(&path).unwrap();
            q.send(task("msg_1"), 1_000).await.unwrap();
            q.send(task("msg_2"), 2_000).await.unwrap();
            let l = q
                .claim(1_000, Duration::from_secs(30), 1, &HashSet::new())
                .await
                .unwrap();
            q.retry(&l[0], 5_000, 1).await.unwrap();
        }
        let q = SqliteQueue::open(&path).unwrap();
        let all = q.tasks().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|(t, due)| (t.id.as_str(), t.failed, *due))
                .collect::<Vec<_>>(),
            [("msg_2", 0, 2_000), ("msg_1", 1, 5_000)]
        );
    }
}
