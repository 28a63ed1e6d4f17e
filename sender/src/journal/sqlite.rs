//! [`SqliteJournal`]: the journal in the sender's SQLite file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::lock;

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::{
    Journal, JournalError, MessageRecord, MessageStateRecord, Snapshot, err, state_from, state_name,
};
use crate::queue::writer::Writer;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
    id   TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    webhook_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS messages_webhook ON messages (webhook_id);
CREATE TABLE IF NOT EXISTS attempts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    json       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_webhook ON attempts (webhook_id);
CREATE TABLE IF NOT EXISTS evictions (
    webhook_id TEXT PRIMARY KEY,
    attempts   INTEGER NOT NULL,
    messages   INTEGER NOT NULL
);
";

/// The sender's SQLite file: webhooks, messages, attempts (and, through the same writer
/// thread, the delivery queue). The file is locked exclusively while open: one server per file.
///
/// Writes go to the file's writer thread, which commits them in groups (see
/// [`crate::queue::writer`]). Creating, changing and deleting a webhook wait for their commit;
/// the log's writes (a message, its state, an attempt, evictions, counters) do not: they are
/// committed with the next group, in order, before any queue change submitted after them.
pub struct SqliteJournal {
    writer: Arc<Writer>,
    /// Counters writes not yet run, the latest per webhook (see
    /// [`Journal::put_webhook_later`]): while one waits in the writer's queue, newer ones
    /// replace its value instead of queueing a write each.
    counters: Arc<Mutex<HashMap<String, String>>>,
    _lock: std::fs::File,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal").finish_non_exhaustive()
    }
}

impl SqliteJournal {
    /// Opens (or creates) the sender's file at `path` and locks it.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| JournalError(format!("{}: {e}", path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError(format!(
                    "{}: another bin-server has this file open",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(JournalError(format!(
                    "{}: cannot lock the file: {e}",
                    path.display()
                )));
            }
        }
        let conn = crate::queue::open_connection(path).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            writer: Arc::new(Writer::start(conn)),
            counters: Arc::default(),
            _lock: lock,
        })
    }

    /// The writer, for the queue that shares the file.
    pub(crate) fn writer(&self) -> Arc<Writer> {
        Arc::clone(&self.writer)
    }

    /// Runs `f` in the next group and waits for its commit.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.writer
            .call_blocking(move |conn| f(conn).map_err(|e| e.to_string()))
            .map_err(JournalError)
    }

    /// Runs `f` in the next group without waiting; a failure is logged.
    fn later(
        &self,
        what: String,
        f: impl FnOnce(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) {
        self.writer.submit(
            move |conn| f(conn).map_err(|e| e.to_string()),
            move |r| {
                if let Err(e) = r {
                    tracing::warn!("sender store: {what}: {e}");
                }
            },
        );
    }

    /// [`SqliteJournal::later`] for `f` that changes the file with one statement at most (no
    /// savepoint: see [`Writer::submit_one`]).
    fn later_one(
        &self,
        what: String,
        f: impl FnOnce(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    ) {
        self.writer.submit_one(
            move |conn| f(conn).map_err(|e| e.to_string()),
            move |r| {
                if let Err(e) = r {
                    tracing::warn!("sender store: {what}: {e}");
                }
            },
        );
    }
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Journal for SqliteJournal {
    fn load(&self) -> Result<Snapshot, JournalError> {
        self.with(|tx| {
            let mut snap = Snapshot::default();
            let mut stmt = tx.prepare("SELECT json FROM webhooks ORDER BY seq")?;
            for json in stmt.query_map([], |r| r.get::<_, String>(0))? {
                snap.webhooks
                    .push(serde_json::from_str(&json?).map_err(json_err)?);
            }
            let mut stmt = tx.prepare(
                "SELECT id, webhook_id, event, body, created_at, state, attempts, next_at, error
                 FROM messages ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(MessageRecord {
                    id: r.get(0)?,
                    webhook_id: r.get(1)?,
                    event: r.get(2)?,
                    body: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                    created_at_ms: r.get(4)?,
                    state: MessageStateRecord {
                        state: state_from(&r.get::<_, String>(5)?),
                        attempts: r.get(6)?,
                        next_attempt_at_ms: r.get(7)?,
                        error: r.get(8)?,
                    },
                })
            })?;
            for m in rows {
                snap.messages.push(m?);
            }
            let mut stmt = tx.prepare("SELECT json FROM attempts ORDER BY seq")?;
            for json in stmt.query_map([], |r| r.get::<_, String>(0))? {
                snap.attempts
                    .push(serde_json::from_str(&json?).map_err(json_err)?);
            }
            let mut stmt = tx.prepare("SELECT webhook_id, attempts, messages FROM evictions")?;
            for row in stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })? {
                let (id, a, m) = row?;
                snap.evicted
                    .insert(id, (a.unsigned_abs(), m.unsigned_abs()));
            }
            Ok(snap)
        })
    }

    fn put_webhook(&self, webhook: &api::WebhookOut) -> Result<(), JournalError> {
        let json = serde_json::to_string(webhook).map_err(err)?;
        let id = webhook.id.clone();
        // Newer than any counters write still waiting (the registry calls in the order of its
        // changes): that one has nothing left to write.
        lock(&self.counters).remove(&id);
        self.with(move |tx| upsert_webhook(tx, &id, &json))
    }

    /// One delivery after another changes a webhook's counters; when the writer is behind,
    /// the writes waiting for the same webhook collapse into one of the latest value, run at
    /// the first one's place in the queue (so never after a later change it would undo).
    fn put_webhook_later(&self, webhook: &api::WebhookOut) {
        let json = match serde_json::to_string(webhook) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!("sender store: webhook {}: {e}", webhook.id);
                return;
            }
        };
        let id = webhook.id.clone();
        if lock(&self.counters).insert(id.clone(), json).is_some() {
            // A write of this webhook is waiting: it takes this value.
            return;
        }
        let counters = Arc::clone(&self.counters);
        // One change: an update, or (when it found no row) an insert.
        self.later_one(format!("saving webhook {id}"), move |tx| {
            match lock(&counters).remove(&id) {
                Some(json) => upsert_webhook(tx, &id, &json),
                // Replaced by a write of the whole webhook, or the webhook was deleted.
                None => Ok(()),
            }
        });
    }

    fn delete_webhook(&self, id: &str) -> Result<(), JournalError> {
        let id = id.to_owned();
        lock(&self.counters).remove(&id);
        self.with(move |tx| {
            tx.execute("DELETE FROM webhooks WHERE id = ?1", [&id])?;
            tx.execute("DELETE FROM messages WHERE webhook_id = ?1", [&id])?;
            tx.execute("DELETE FROM attempts WHERE webhook_id = ?1", [&id])?;
            tx.execute("DELETE FROM evictions WHERE webhook_id = ?1", [&id])?;
            Ok(())
        })
    }

    fn insert_message(&self, m: &MessageRecord) -> Result<(), JournalError> {
        self.insert_messages(std::slice::from_ref(m))
    }

    fn insert_messages(&self, messages: &[MessageRecord]) -> Result<(), JournalError> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let what = format!("saving message {}", first.id);
        let messages = messages.to_vec();
        self.later(what, move |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO messages
                     (id, webhook_id, event, body, created_at, state, attempts, next_at, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for m in &messages {
                stmt.execute(params![
                    m.id,
                    m.webhook_id,
                    m.event,
                    &m.body[..],
                    m.created_at_ms,
                    state_name(m.state.state),
                    m.state.attempts,
                    m.state.next_attempt_at_ms,
                    m.state.error
                ])?;
            }
            Ok(())
        });
        Ok(())
    }

    fn update_message(&self, id: &str, s: &MessageStateRecord) -> Result<(), JournalError> {
        let (id, s) = (id.to_owned(), s.clone());
        self.later_one(format!("saving message {id}"), move |tx| {
            tx.prepare_cached(
                "UPDATE messages SET state = ?2, attempts = ?3, next_at = ?4, error = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                state_name(s.state),
                s.attempts,
                s.next_attempt_at_ms,
                s.error
            ])?;
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
        self.later(format!("evicting from webhook {webhook_id}"), move |tx| {
            for id in &messages {
                tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                    .execute([id])?;
            }
            for id in &attempts {
                tx.prepare_cached("DELETE FROM attempts WHERE id = ?1")?
                    .execute([id])?;
            }
            tx.execute(
                "INSERT INTO evictions (webhook_id, attempts, messages) VALUES (?1, ?2, ?3)
                 ON CONFLICT (webhook_id) DO UPDATE SET
                     attempts = attempts + excluded.attempts,
                     messages = messages + excluded.messages",
                params![webhook_id, attempts.len() as i64, messages.len() as i64],
            )?;
            Ok(())
        });
        Ok(())
    }

    fn insert_attempt(&self, a: &api::AttemptOut) -> Result<(), JournalError> {
        let json = serde_json::to_string(a).map_err(err)?;
        let (id, webhook_id) = (a.id.clone(), a.webhook_id.clone());
        self.later_one(format!("saving attempt {id}"), move |tx| {
            tx.prepare_cached("INSERT INTO attempts (id, webhook_id, json) VALUES (?1, ?2, ?3)")?
                .execute(params![id, webhook_id, json])?;
            Ok(())
        });
        Ok(())
    }
}

fn upsert_webhook(tx: &Connection, id: &str, json: &str) -> Result<(), rusqlite::Error> {
    // An update first: a counters write (one per delivery) then skips the insert's MAX(seq),
    // a scan of the webhooks.
    let updated = tx
        .prepare_cached("UPDATE webhooks SET json = ?2 WHERE id = ?1")?
        .execute(params![id, json])?;
    if updated > 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO webhooks (id, seq, json)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM webhooks), ?2)
         ON CONFLICT (id) DO UPDATE SET json = excluded.json",
    )?
    .execute(params![id, json])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::journal::conformance::suite!(async {
        let dir = tempfile::tempdir().unwrap();
        let journal = SqliteJournal::open(&dir.path().join("hookbin.sender.db")).unwrap();
        crate::journal::conformance::Fixture::with_guard(journal, dir)
    });
}
