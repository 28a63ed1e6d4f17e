//! The in-memory [`Store`]: a `DashMap` of bins, each a ring buffer behind its own mutex, and one
//! ledger of captures in global arrival order for the byte budget.
//!
//! Locks: the ledger mutex is taken before any bin mutex, never after (capture, eviction and
//! compaction all follow that order), and no lock is held across an `.await` (there are none in
//! this module). Critical sections are a few pointer moves, so std mutexes are right here.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use api::EvictionCounts;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveEvent, LiveHub,
    NewCapture, Page, PageQuery, Store, StoreError, StoreLimits, StoreStats,
};

impl Borrow<str> for BinName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

struct Bin {
    name: BinName,
    created_at: DateTime<Utc>,
    state: Mutex<BinState>,
}

struct BinState {
    settings: BinSettings,
    capture: Arc<CaptureSettings>,
    max_requests: u32,
    /// Oldest first; sequence numbers strictly increase.
    requests: VecDeque<Arc<CapturedRequest>>,
    next_seq: u64,
    bytes: u64,
    evicted_by_bin_limit: u64,
    evicted_by_byte_budget: u64,
    last_activity: DateTime<Utc>,
    /// Set when the bin is deleted while someone still holds it: captures then fail.
    deleted: bool,
}

impl Bin {
    fn lock(&self) -> MutexGuard<'_, BinState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the bin, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One capture in global arrival order. An entry whose request is gone already (evicted by
/// its bin's limit, deleted) is stale and skipped; stale entries are compacted away.
struct LedgerEntry {
    bin: Weak<Bin>,
    seq: u64,
}

#[derive(Default)]
struct Ledger {
    entries: VecDeque<LedgerEntry>,
}

/// The embedded store. See the module docs for its locking.
pub struct MemoryStore {
    limits: StoreLimits,
    bins: DashMap<BinName, Arc<Bin>>,
    /// Serializes captures and budget evictions so the ledger's order is the store's order.
    ledger: Mutex<Ledger>,
    /// Serializes bin creation so `--max-bins` cannot be overshot by a race.
    creating: Mutex<()>,
    live: LiveHub,
    bytes_stored: AtomicU64,
    requests_stored: AtomicU64,
    captures_total: AtomicU64,
    evicted_by_bin_limit: AtomicU64,
    evicted_by_byte_budget: AtomicU64,
    truncated_total: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("bins", &self.bins.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            bins: DashMap::new(),
            ledger: Mutex::new(Ledger::default()),
            creating: Mutex::new(()),
            live: LiveHub::default(),
            bytes_stored: AtomicU64::new(0),
            requests_stored: AtomicU64::new(0),
            captures_total: AtomicU64::new(0),
            evicted_by_bin_limit: AtomicU64::new(0),
            evicted_by_byte_budget: AtomicU64::new(0),
            truncated_total: AtomicU64::new(0),
        }
    }

    fn lock_ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bin(&self, name: &str) -> Result<Arc<Bin>, StoreError> {
        self.bins
            .get(name)
            .map(|b| Arc::clone(b.value()))
            .ok_or_else(|| StoreError::NoSuchBin(name.to_owned()))
    }

    fn capped(&self, settings: &BinSettings) -> (u32, u64) {
        let max_requests = settings
            .max_requests
            .unwrap_or(self.limits.max_requests_per_bin)
            .min(self.limits.max_requests_per_bin);
        let max_body = settings
            .max_body_bytes
            .unwrap_or(self.limits.max_body_bytes)
            .min(self.limits.max_body_bytes);
        (max_requests, max_body)
    }

    fn new_bin(&self, name: BinName, settings: BinSettings) -> Arc<Bin> {
        let (max_requests, max_body_bytes) = self.capped(&settings);
        let now = Utc::now();
        Arc::new(Bin {
            name,
            created_at: now,
            state: Mutex::new(BinState {
                capture: Arc::new(CaptureSettings::new(&settings, max_body_bytes)),
                settings,
                max_requests,
                requests: VecDeque::new(),
                next_seq: 1,
                bytes: 0,
                evicted_by_bin_limit: 0,
                evicted_by_byte_budget: 0,
                last_activity: now,
                deleted: false,
            }),
        })
    }

    /// Inserts a new bin unless the name is taken or the server is full.
    fn insert_bin(&self, name: BinName, settings: BinSettings) -> Result<Arc<Bin>, StoreError> {
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if self.bins.contains_key(name.as_str()) {
            return Err(StoreError::BinExists(name.to_string()));
        }
        if self.bins.len() >= self.limits.max_bins {
            return Err(StoreError::TooManyBins(self.limits.max_bins));
        }
        let bin = self.new_bin(name.clone(), settings);
        self.bins.insert(name, Arc::clone(&bin));
        Ok(bin)
    }

    fn snapshot(&self, bin: &Bin) -> BinSnapshot {
        let st = bin.lock();
        BinSnapshot {
            name: bin.name.clone(),
            created_at: bin.created_at,
            last_activity: st.last_activity,
            request_count: st.requests.len() as u64,
            total_captured: st.next_seq - 1,
            bytes_stored: st.bytes,
            evicted: evictions(&st),
            settings: st.settings.clone(),
            max_requests: st.max_requests,
            max_body_bytes: st.capture.max_body_bytes,
        }
    }

    /// Removes one stored request's weight from the global counters.
    fn forget(&self, r: &CapturedRequest) {
        self.bytes_stored.fetch_sub(r.stored_bytes(), Relaxed);
        self.requests_stored.fetch_sub(1, Relaxed);
    }

    /// Evicts the oldest requests across bins until the byte budget holds again.
    fn enforce_budget(&self, ledger: &mut Ledger) {
        while self.bytes_stored.load(Relaxed) > self.limits.max_bytes {
            let Some(entry) = ledger.entries.pop_front() else {
                break;
            };
            let Some(bin) = entry.bin.upgrade() else {
                continue;
            };
            let mut st = bin.lock();
            // The ledger is in arrival order, so a live entry is always its bin's oldest.
            if st.requests.front().is_some_and(|r| r.seq == entry.seq) {
                let r = st.requests.pop_front().expect("front checked above");
                st.bytes -= r.stored_bytes();
                st.evicted_by_byte_budget += 1;
                self.evicted_by_byte_budget.fetch_add(1, Relaxed);
                self.forget(&r);
            }
        }
        // Entries of requests evicted by their bin's limit or deleted stay until popped; keep
        // them from outgrowing the live ones so the ledger stays bounded by the store itself.
        let live = self.requests_stored.load(Relaxed) as usize;
        if ledger.entries.len() > 2 * live + 1024 {
            ledger.entries.retain(|e| {
                e.bin.upgrade().is_some_and(|b| {
                    b.lock()
                        .requests
                        .binary_search_by_key(&e.seq, |r| r.seq)
                        .is_ok()
                })
            });
        }
    }

    /// Removes every request of a bin (and marks it deleted when `deleting`); returns how many.
    fn empty(&self, bin: &Bin, deleting: bool) -> u64 {
        let removed: Vec<_> = {
            let mut st = bin.lock();
            st.deleted |= deleting;
            st.bytes = 0;
            st.requests.drain(..).collect()
        };
        for r in &removed {
            self.forget(r);
        }
        removed.len() as u64
    }

    /// Removes a bin and its requests and tells its subscribers.
    fn remove_bin(&self, name: &str) -> Result<(), StoreError> {
        let (_, bin) = self
            .bins
            .remove(name)
            .ok_or_else(|| StoreError::NoSuchBin(name.to_owned()))?;
        self.empty(&bin, true);
        self.publish(&bin, || LiveEvent::BinDeleted {
            bin: bin.name.clone(),
        });
        Ok(())
    }

    fn publish(&self, bin: &Bin, event: impl FnOnce() -> LiveEvent) {
        self.live.publish(bin.name.as_str(), event);
    }

    /// The requests of a bin with a sequence number above `after`, oldest first.
    fn after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
        let bin = self.bin(name)?;
        let st = bin.lock();
        let start = st.requests.partition_point(|r| r.seq <= after);
        Ok(st.requests.range(start..).take(limit).cloned().collect())
    }
}

fn evictions(st: &BinState) -> EvictionCounts {
    EvictionCounts {
        by_bin_limit: st.evicted_by_bin_limit,
        by_byte_budget: st.evicted_by_byte_budget,
        total: st.evicted_by_bin_limit + st.evicted_by_byte_budget,
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    fn live(&self) -> &LiveHub {
        &self.live
    }

    async fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError> {
        let bin = self.insert_bin(name.unwrap_or_else(BinName::random), settings)?;
        Ok(self.snapshot(&bin))
    }

    async fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError> {
        loop {
            if let Ok(bin) = self.bin(name.as_str()) {
                let (max_requests, max_body_bytes) = self.capped(&settings);
                let mut evicted = Vec::new();
                {
                    let mut st = bin.lock();
                    st.capture = Arc::new(CaptureSettings::new(&settings, max_body_bytes));
                    // Who may reach a bin is fixed when it is created.
                    let token_hash = st.settings.token_hash;
                    st.settings = BinSettings {
                        token_hash,
                        ..settings
                    };
                    st.max_requests = max_requests;
                    st.last_activity = Utc::now();
                    // A lowered limit applies now, oldest first, counted like any eviction.
                    while st.requests.len() > max_requests as usize {
                        let r = st.requests.pop_front().expect("len checked");
                        st.bytes -= r.stored_bytes();
                        st.evicted_by_bin_limit += 1;
                        evicted.push(r);
                    }
                }
                for r in &evicted {
                    self.evicted_by_bin_limit.fetch_add(1, Relaxed);
                    self.forget(r);
                }
                return Ok((self.snapshot(&bin), false));
            }
            match self.insert_bin(name.clone(), settings.clone()) {
                Ok(bin) => return Ok((self.snapshot(&bin), true)),
                // Created by a concurrent PUT between our lookup and insert: update it instead.
                Err(StoreError::BinExists(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError> {
        let bin = self.bin(name)?;
        Ok(self.snapshot(&bin))
    }

    async fn list_bins(&self) -> Result<Vec<BinSnapshot>, StoreError> {
        let bins: Vec<Arc<Bin>> = self.bins.iter().map(|b| Arc::clone(b.value())).collect();
        let mut out: Vec<BinSnapshot> = bins.iter().map(|b| self.snapshot(b)).collect();
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    async fn delete_bin(&self, name: &str) -> Result<(), StoreError> {
        self.remove_bin(name)
    }

    async fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError> {
        Ok(Arc::clone(&self.bin(name)?.lock().capture))
    }

    async fn capture(
        &self,
        name: &str,
        new: NewCapture,
    ) -> Result<Arc<CapturedRequest>, StoreError> {
        let bin = self.bin(name)?;
        let truncated = new.truncated;
        let mut ledger = self.lock_ledger();
        let (request, evicted) = {
            let mut st = bin.lock();
            if st.deleted {
                return Err(StoreError::NoSuchBin(name.to_owned()));
            }
            let now = Utc::now();
            let request = Arc::new(new.finish(st.next_seq, now));
            st.next_seq += 1;
            st.last_activity = now;
            st.bytes += request.stored_bytes();
            st.requests.push_back(Arc::clone(&request));
            let evicted = if st.requests.len() > st.max_requests as usize {
                let old = st.requests.pop_front().expect("len checked");
                st.bytes -= old.stored_bytes();
                st.evicted_by_bin_limit += 1;
                Some(old)
            } else {
                None
            };
            (request, evicted)
        };
        self.captures_total.fetch_add(1, Relaxed);
        self.requests_stored.fetch_add(1, Relaxed);
        self.bytes_stored.fetch_add(request.stored_bytes(), Relaxed);
        if truncated {
            self.truncated_total.fetch_add(1, Relaxed);
        }
        if let Some(old) = &evicted {
            self.evicted_by_bin_limit.fetch_add(1, Relaxed);
            self.forget(old);
            // Usually the request a full bin just dropped is also the oldest in the ledger
            // (always so with one busy bin): drop its entry now rather than leave it stale.
            if ledger.entries.front().is_some_and(|e| {
                e.seq == old.seq && std::ptr::eq(e.bin.as_ptr(), Arc::as_ptr(&bin))
            }) {
                ledger.entries.pop_front();
            }
        }
        ledger.entries.push_back(LedgerEntry {
            bin: Arc::downgrade(&bin),
            seq: request.seq,
        });
        self.enforce_budget(&mut ledger);
        drop(ledger);
        self.publish(&bin, || LiveEvent::Captured {
            bin: bin.name.clone(),
            request: Arc::clone(&request),
            rendered: Arc::default(),
        });
        Ok(request)
    }

    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
        let bin = self.bin(name)?;
        // Copy the pointers out so filtering (text search over bodies) runs without the lock:
        // captures into this bin never wait for a scan.
        let (all, evicted) = {
            let st = bin.lock();
            (
                st.requests.iter().cloned().collect::<Vec<_>>(),
                evictions(&st),
            )
        };
        let total = all.len() as u64;
        let mut matched = 0u64;
        let mut page = Vec::new();
        let mut next_before = None;
        for r in all.iter().rev() {
            if query.before.is_some_and(|b| r.seq >= b) || query.after.is_some_and(|a| r.seq <= a) {
                continue;
            }
            if !query.filter.matches(r) {
                continue;
            }
            matched += 1;
            if page.len() < query.limit {
                page.push(Arc::clone(r));
            } else if next_before.is_none() {
                next_before = page.last().map(|r: &Arc<CapturedRequest>| r.seq);
            }
        }
        Ok(Page {
            requests: page,
            total,
            matched,
            next_before,
            evicted,
        })
    }

    async fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError> {
        let bin = self.bin(name)?;
        let st = bin.lock();
        find(&st.requests, id)
            .map(|i| Arc::clone(&st.requests[i]))
            .ok_or_else(|| StoreError::NoSuchRequest(id.to_owned()))
    }

    async fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let bin = self.bin(name)?;
        let removed = {
            let mut st = bin.lock();
            let i =
                find(&st.requests, id).ok_or_else(|| StoreError::NoSuchRequest(id.to_owned()))?;
            let r = st.requests.remove(i).expect("index found above");
            st.bytes -= r.stored_bytes();
            r
        };
        self.forget(&removed);
        self.publish(&bin, || LiveEvent::Deleted {
            bin: bin.name.clone(),
            id: removed.id,
        });
        Ok(())
    }

    async fn clear_requests(&self, name: &str) -> Result<u64, StoreError> {
        let bin = self.bin(name)?;
        let removed = self.empty(&bin, false);
        self.publish(&bin, || LiveEvent::Cleared {
            bin: bin.name.clone(),
        });
        Ok(removed)
    }

    async fn read_after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
        self.after(name, after, limit)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats {
            bins: self.bins.len() as u64,
            requests_stored: self.requests_stored.load(Relaxed),
            bytes_stored: self.bytes_stored.load(Relaxed),
            captures_total: self.captures_total.load(Relaxed),
            evicted_by_bin_limit: self.evicted_by_bin_limit.load(Relaxed),
            evicted_by_byte_budget: self.evicted_by_byte_budget.load(Relaxed),
            truncated_total: self.truncated_total.load(Relaxed),
        })
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Deletes bins idle for longer than the TTL; returns how many.
    async fn expire_idle(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(ttl) = self.limits.bin_ttl else {
            return Ok(0);
        };
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let idle: Vec<BinName> = self
            .bins
            .iter()
            .filter(|b| now - b.value().lock().last_activity > ttl)
            .map(|b| b.key().clone())
            .collect();
        let mut deleted = 0;
        for name in &idle {
            if self.remove_bin(name.as_str()).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Finds a request by id, or by sequence number given as digits.
fn find(requests: &VecDeque<Arc<CapturedRequest>>, id: &str) -> Option<usize> {
    if let Ok(seq) = id.parse::<u64>() {
        return requests.binary_search_by_key(&seq, |r| r.seq).ok();
    }
    let id = uuid::Uuid::parse_str(id).ok()?;
    requests.iter().position(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    //! What only the memory store has (its ledger). What every backend promises is checked by
    //! the conformance suite, `bin-server/tests/store_conformance.rs`.
    use super::*;
    use crate::store::RawHeaders;

    fn store(max_requests: u32) -> MemoryStore {
        MemoryStore::new(StoreLimits {
            max_requests_per_bin: max_requests,
            max_body_bytes: 1024,
            max_bytes: 1 << 30,
            max_bins: 3,
            bin_ttl: None,
        })
    }

    fn req(body: &[u8]) -> NewCapture {
        let mut c = NewCapture::new(
            "POST",
            "/p",
            None,
            &RawHeaders::new(),
            body.len(),
            "127.0.0.1:1".parse().unwrap(),
        );
        c.push_body(body);
        c
    }

    async fn named(s: &MemoryStore, n: &str) {
        s.create_bin(Some(BinName::parse(n).unwrap()), BinSettings::default())
            .await
            .unwrap();
    }

    #[test]
    fn names_are_validated() {
        assert!(BinName::parse("ci-run_1").is_ok());
        assert!(BinName::parse(&uuid::Uuid::new_v4().to_string()).is_ok());
        for bad in ["", "-x", "Upper", "a b", "a/b", &"a".repeat(65)] {
            assert!(
                matches!(BinName::parse(bad), Err(StoreError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn ledger_stays_bounded_under_bin_cap_churn() {
        let s = store(2);
        named(&s, "a").await;
        for _ in 0..10_000 {
            s.capture("a", req(b"x")).await.unwrap();
        }
        assert_eq!(
            s.lock_ledger().entries.len(),
            2,
            "stale entries were dropped at once"
        );
        assert_eq!(s.stats().await.unwrap().requests_stored, 2);
    }

    #[tokio::test]
    async fn ledger_stays_bounded_when_stale_entries_are_not_at_the_front() {
        let s = store(2);
        named(&s, "quiet").await;
        named(&s, "busy").await;
        s.capture("quiet", req(b"old")).await.unwrap();
        for _ in 0..10_000 {
            s.capture("busy", req(b"x")).await.unwrap();
        }
        assert!(s.lock_ledger().entries.len() <= 2 * 3 + 1024 + 1);
        assert_eq!(s.stats().await.unwrap().requests_stored, 3);
    }
}
