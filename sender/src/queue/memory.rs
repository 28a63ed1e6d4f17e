//! [`MemoryQueue`]: the schedule in this process's memory (lost on restart).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::{DeliveryQueue, Leased, QueueError, Task, lease_ms, new_token};

/// The in-memory [`DeliveryQueue`]: due tasks ordered by (due, send order), leased tasks
/// ordered by lease end. Every call is a short critical section; nothing awaits inside.
#[derive(Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    /// (due, seq, id) of tasks not leased.
    due: BTreeSet<(i64, u64, String)>,
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

impl Inner {
    fn unlink(&mut self, id: &str) -> Option<Entry> {
        let entry = self.tasks.remove(id)?;
        match &entry.lease {
            Some((_, until)) => self.leased.remove(&(*until, id.to_owned())),
            None => self.due.remove(&(entry.due_ms, entry.seq, id.to_owned())),
        };
        Some(entry)
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
                self.due.insert((entry.due_ms, entry.seq, id));
            }
        }
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn send(&self, task: Task, due_ms: i64) -> Result<(), QueueError> {
        let mut inner = self.inner();
        inner.unlink(&task.id);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.due.insert((due_ms, seq, task.id.clone()));
        inner.tasks.insert(
            task.id.clone(),
            Entry {
                task,
                due_ms,
                seq,
                lease: None,
            },
        );
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
        let mut picked = Vec::new();
        for (due, _, id) in &inner.due {
            if *due > now_ms || picked.len() >= max {
                break;
            }
            let entry = &inner.tasks[id];
            if !skip.contains(&entry.task.webhook_id) {
                picked.push((entry.due_ms, entry.seq, id.clone()));
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            inner.due.remove(&key);
            let id = key.2;
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
        inner
            .due
            .insert((due_ms, entry.seq, leased.task.id.clone()));
        inner.tasks.insert(leased.task.id.clone(), entry);
        Ok(())
    }

    async fn due_now(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let mut inner = self.inner();
        inner.expire(now_ms);
        let Some(entry) = inner.tasks.get_mut(id) else {
            return Ok(false);
        };
        if entry.lease.is_some() {
            return Ok(false);
        }
        if entry.due_ms > now_ms {
            let old = (entry.due_ms, entry.seq, id.to_owned());
            entry.due_ms = now_ms;
            let new = (now_ms, entry.seq, id.to_owned());
            inner.due.remove(&old);
            inner.due.insert(new);
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
        let due = inner.due.first().map(|k| k.0);
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
