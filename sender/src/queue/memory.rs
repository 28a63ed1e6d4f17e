//! [`MemoryQueue`]: the schedule in this process's memory (lost on restart).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::{DeliveryQueue, Leased, QueueError, Task, lease_ms, new_token};

/// The in-memory [`DeliveryQueue`]: each webhook's due tasks ordered by (due, send order),
/// the webhooks ordered by their first due task, leased tasks ordered by lease end. Every call
/// is a short critical section; nothing awaits inside.
///
/// A claim merges the webhooks' lines in due order, so a webhook it skips (at its bound, or a
/// black hole holding its slots) costs one step however many tasks it has waiting, not one
/// per task.
#[derive(Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
}

/// (due, send order, id) of a task, the order tasks are claimed in.
type Key = (i64, u64, String);

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    /// Per webhook, the keys of its tasks not leased.
    lines: HashMap<String, BTreeSet<Key>>,
    /// (due, send order, webhook id) of each webhook's first task not leased.
    heads: BTreeSet<Key>,
    /// (lease end, id) of leased tasks.
    leased: BTreeSet<(i64, String)>,
    next_seq: u64,
}

struct Entry {
    task: Task,
    due_ms: i64,
    seq: u64,
    lease: Option<(String, i64)>,
}

impl Entry {
    fn key(&self) -> Key {
        (self.due_ms, self.seq, self.task.id.clone())
    }
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").finish_non_exhaustive()
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent before it can panic.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn head_of(webhook: &str, key: &Key) -> Key {
    (key.0, key.1, webhook.to_owned())
}

impl Inner {
    /// Puts a task not leased in its webhook's line (and the line's head in `heads`).
    fn line_insert(&mut self, webhook: &str, key: Key) {
        let line = self.lines.entry(webhook.to_owned()).or_default();
        let old = line.first().map(|k| head_of(webhook, k));
        line.insert(key);
        let new = line.first().map(|k| head_of(webhook, k));
        if old != new {
            if let Some(old) = old {
                self.heads.remove(&old);
            }
            self.heads.extend(new);
        }
    }

    fn line_remove(&mut self, webhook: &str, key: &Key) {
        let Some(line) = self.lines.get_mut(webhook) else {
            return;
        };
        let old = line.first().map(|k| head_of(webhook, k));
        line.remove(key);
        let new = line.first().map(|k| head_of(webhook, k));
        if line.is_empty() {
            self.lines.remove(webhook);
        }
        if old != new {
            if let Some(old) = old {
                self.heads.remove(&old);
            }
            self.heads.extend(new);
        }
    }

    fn unlink(&mut self, id: &str) -> Option<Entry> {
        let entry = self.tasks.remove(id)?;
        match &entry.lease {
            Some((_, until)) => {
                self.leased.remove(&(*until, id.to_owned()));
            }
            None => self.line_remove(&entry.task.webhook_id, &entry.key()),
        }
        Some(entry)
    }

    fn send(&mut self, task: Task, due_ms: i64) {
        self.unlink(&task.id);
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            task,
            due_ms,
            seq,
            lease: None,
        };
        self.line_insert(&entry.task.webhook_id, entry.key());
        self.tasks.insert(entry.task.id.clone(), entry);
    }

    /// The entry if `leased` still holds its lease.
    fn holder(&mut self, leased: &Leased) -> Result<(), QueueError> {
        match self.tasks.get(&leased.task.id) {
            Some(Entry {
                lease: Some((token, _)),
                ..
            }) if *token == leased.token => Ok(()),
            _ => Err(QueueError::LeaseLost(leased.task.id.clone())),
        }
    }

    /// Expired leases go back to due, keeping their due time and order.
    fn expire(&mut self, now_ms: i64) {
        while let Some((until, id)) = self.leased.first().cloned() {
            if until > now_ms {
                break;
            }
            self.leased.pop_first();
            if let Some(entry) = self.tasks.get_mut(&id) {
                entry.lease = None;
                let (webhook, key) = (entry.task.webhook_id.clone(), entry.key());
                self.line_insert(&webhook, key);
            }
        }
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn send(&self, task: Task, due_ms: i64) -> Result<(), QueueError> {
        self.inner().send(task, due_ms);
        Ok(())
    }

    async fn send_many(&self, tasks: Vec<(Task, i64)>) -> Result<(), QueueError> {
        let mut inner = self.inner();
        for (task, due_ms) in tasks {
            inner.send(task, due_ms);
        }
        Ok(())
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        max: usize,
        skip: &HashSet<String>,
    ) -> Result<Vec<Leased>, QueueError> {
        let mut inner = self.inner();
        inner.expire(now_ms);
        let until = now_ms.saturating_add(lease_ms(lease));
        let mut out = Vec::with_capacity(max.min(inner.tasks.len()));
        // The lines merged in due order: take the earliest head, its line's next task becomes
        // the line's head. Skipped webhooks' heads are set aside and put back at the end.
        let mut skipped = Vec::new();
        while out.len() < max {
            let Some(head) = inner.heads.pop_first() else {
                break;
            };
            if head.0 > now_ms {
                inner.heads.insert(head);
                break;
            }
            let webhook = head.2;
            if skip.contains(&webhook) {
                skipped.push((head.0, head.1, webhook));
                continue;
            }
            let line = inner.lines.get_mut(&webhook).expect("a head has its line");
            let (_, _, id) = line.pop_first().expect("a line is never empty");
            match line.first() {
                Some(next) => {
                    let next = head_of(&webhook, next);
                    inner.heads.insert(next);
                }
                None => {
                    inner.lines.remove(&webhook);
                }
            }
            let token = new_token();
            inner.leased.insert((until, id.clone()));
            let entry = inner.tasks.get_mut(&id).expect("due tasks are in the map");
            entry.lease = Some((token.clone(), until));
            out.push(Leased {
                task: entry.task.clone(),
                due_ms: entry.due_ms,
                token,
                lease_until_ms: until,
            });
        }
        inner.heads.extend(skipped);
        Ok(out)
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        let mut inner = self.inner();
        inner.holder(leased)?;
        inner.unlink(&leased.task.id);
        Ok(())
    }

    async fn retry(&self, leased: &Leased, due_ms: i64, failed: u32) -> Result<(), QueueError> {
        let mut inner = self.inner();
        inner.holder(leased)?;
        let mut entry = inner
            .unlink(&leased.task.id)
            .expect("a held lease is in the map");
        entry.lease = None;
        entry.due_ms = due_ms;
        entry.task.failed = failed;
        inner.line_insert(&entry.task.webhook_id, entry.key());
        inner.tasks.insert(leased.task.id.clone(), entry);
        Ok(())
    }

    async fn due_now(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let mut inner = self.inner();
        inner.expire(now_ms);
        let Some(entry) = inner.tasks.get(id) else {
            return Ok(false);
        };
        if entry.lease.is_some() {
            return Ok(false);
        }
        if entry.due_ms > now_ms {
            // Out of its webhook's line and back in at its new due time, its order kept.
            let mut entry = inner.unlink(id).expect("found above");
            entry.due_ms = now_ms;
            inner.line_insert(&entry.task.webhook_id, entry.key());
            inner.tasks.insert(id.to_owned(), entry);
        }
        Ok(true)
    }

    async fn remove_webhook(&self, webhook_id: &str) -> Result<Vec<String>, QueueError> {
        let mut inner = self.inner();
        let ids: Vec<String> = inner
            .tasks
            .values()
            .filter(|e| e.task.webhook_id == webhook_id)
            .map(|e| e.task.id.clone())
            .collect();
        for id in &ids {
            inner.unlink(id);
        }
        Ok(ids)
    }

    async fn next_due(&self) -> Result<Option<i64>, QueueError> {
        let inner = self.inner();
        let due = inner.heads.first().map(|k| k.0);
        let lease = inner.leased.first().map(|k| k.0);
        Ok(match (due, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn tasks(&self) -> Result<Vec<(Task, i64)>, QueueError> {
        let inner = self.inner();
        let mut all: Vec<(i64, u64, Task)> = inner
            .tasks
            .values()
            .map(|e| (e.due_ms, e.seq, e.task.clone()))
            .collect();
        all.sort_by_key(|(due, seq, _)| (*due, *seq));
        Ok(all.into_iter().map(|(due, _, t)| (t, due)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    crate::queue::conformance::suite!(async {
        crate::queue::conformance::Fixture::new(MemoryQueue::new())
    });
}
