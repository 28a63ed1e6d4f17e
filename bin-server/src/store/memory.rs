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
use tokio::sync::broadcast;

use super::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveEvent, NewCapture,
    Page, PageQuery, RequestFilter, Store, StoreError, StoreLimits, StoreStats,
};

/// Live events buffered per bin subscriber before it is told to resync: enough for bursts of a
/// few hundred requests while the client reads, small enough that a stalled client costs little.
const BIN_EVENTS_BUFFER: usize = 256;
/// The same for subscribers of all bins.
const ALL_EVENTS_BUFFER: usize = 1024;

impl Borrow<str> for BinName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

struct Bin {
    name: BinName,
    created_at: DateTime<Utc>,
    /// Live events of this bin; lagging receivers are resynced by the stream route.
    tx: broadcast::Sender<LiveEvent>,
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
    all_tx: broadcast::Sender<LiveEvent>,
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
            all_tx: broadcast::channel(ALL_EVENTS_BUFFER).0,
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
            tx: broadcast::channel(BIN_EVENTS_BUFFER).0,
            state: Mutex::new(BinState {
                capture: Arc::new(capture_settings(&settings, max_body_bytes)),
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

    fn publish(&self, bin: &Bin, event: impl FnOnce() -> LiveEvent) {
        // Nobody watching: build nothing (a capture then allocates no shared rendering). The
        // event is built once and cloned into both channels, so the bin's subscribers and those
        // of all bins share what is rendered for it.
        let to_bin = bin.tx.receiver_count() > 0;
        let to_all = self.all_tx.receiver_count() > 0;
        if !to_bin && !to_all {
            return;
        }
        let event = event();
        // A send fails only when every receiver left meanwhile: then nobody is watching.
        if to_bin {
            let _ = bin.tx.send(event.clone());
        }
        if to_all {
            let _ = self.all_tx.send(event);
        }
    }
}

fn capture_settings(settings: &BinSettings, max_body_bytes: u64) -> CaptureSettings {
    CaptureSettings {
        response: settings.response.clone(),
        max_body_bytes,
        checks: settings.checks.clone(),
    }
}

fn evictions(st: &BinState) -> EvictionCounts {
    EvictionCounts {
        by_bin_limit: st.evicted_by_bin_limit,
        by_byte_budget: st.evicted_by_byte_budget,
        total: st.evicted_by_bin_limit + st.evicted_by_byte_budget,
    }
}

impl Store for MemoryStore {
    fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError> {
        let bin = self.insert_bin(name.unwrap_or_else(BinName::random), settings)?;
        Ok(self.snapshot(&bin))
    }

    fn put_bin(
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
                    st.capture = Arc::new(capture_settings(&settings, max_body_bytes));
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

    fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError> {
        let bin = self.bin(name)?;
        Ok(self.snapshot(&bin))
    }

    fn list_bins(&self) -> Vec<BinSnapshot> {
        let bins: Vec<Arc<Bin>> = self.bins.iter().map(|b| Arc::clone(b.value())).collect();
        let mut out: Vec<BinSnapshot> = bins.iter().map(|b| self.snapshot(b)).collect();
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.name.cmp(&b.name))
        });
        out
    }

    fn delete_bin(&self, name: &str) -> Result<(), StoreError> {
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

    fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError> {
        Ok(Arc::clone(&self.bin(name)?.lock().capture))
    }

    fn capture(&self, name: &str, new: NewCapture) -> Result<Arc<CapturedRequest>, StoreError> {
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

    fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
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
            if !matches(r, &query.filter) {
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

    fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError> {
        let bin = self.bin(name)?;
        let st = bin.lock();
        find(&st.requests, id)
            .map(|i| Arc::clone(&st.requests[i]))
            .ok_or_else(|| StoreError::NoSuchRequest(id.to_owned()))
    }

    fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError> {
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

    fn clear_requests(&self, name: &str) -> Result<u64, StoreError> {
        let bin = self.bin(name)?;
        let removed = self.empty(&bin, false);
        self.publish(&bin, || LiveEvent::Cleared {
            bin: bin.name.clone(),
        });
        Ok(removed)
    }

    fn subscribe(&self, name: &str) -> Result<broadcast::Receiver<LiveEvent>, StoreError> {
        Ok(self.bin(name)?.tx.subscribe())
    }

    fn subscribe_all(&self) -> broadcast::Receiver<LiveEvent> {
        self.all_tx.subscribe()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            bins: self.bins.len() as u64,
            requests_stored: self.requests_stored.load(Relaxed),
            bytes_stored: self.bytes_stored.load(Relaxed),
            captures_total: self.captures_total.load(Relaxed),
            evicted_by_bin_limit: self.evicted_by_bin_limit.load(Relaxed),
            evicted_by_byte_budget: self.evicted_by_byte_budget.load(Relaxed),
            truncated_total: self.truncated_total.load(Relaxed),
        }
    }

    fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Deletes bins idle for longer than the TTL; returns how many.
    fn expire_idle(&self, now: DateTime<Utc>) -> usize {
        let Some(ttl) = self.limits.bin_ttl else {
            return 0;
        };
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let idle: Vec<BinName> = self
            .bins
            .iter()
            .filter(|b| now - b.value().lock().last_activity > ttl)
            .map(|b| b.key().clone())
            .collect();
        idle.iter()
            .filter(|name| self.delete_bin(name.as_str()).is_ok())
            .count()
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

fn matches(r: &CapturedRequest, f: &RequestFilter) -> bool {
    if let Some(m) = &f.method
        && !r.method().eq_ignore_ascii_case(m)
    {
        return false;
    }
    if let Some(p) = &f.path {
        let ok = match p.strip_suffix('*') {
            Some(prefix) => r.path().starts_with(prefix),
            None => r.path() == p,
        };
        if !ok {
            return false;
        }
    }
    f.text.as_ref().is_none_or(|t| t.matches(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawHeaders;

    fn store(max_requests: u32, max_bytes: u64) -> MemoryStore {
        MemoryStore::new(StoreLimits {
            max_requests_per_bin: max_requests,
            max_body_bytes: 1024,
            max_bytes,
            max_bins: 3,
            bin_ttl: Some(std::time::Duration::from_secs(60)),
        })
    }

    fn req(body: &[u8]) -> NewCapture {
        let mut h = RawHeaders::new();
        h.push(b"Content-Type", b"text/plain");
        let mut c = NewCapture::new(
            "POST",
            "/p",
            None,
            &h,
            body.len(),
            "127.0.0.1:1".parse().unwrap(),
        );
        c.push_body(body);
        c
    }

    fn named(s: &MemoryStore, n: &str) {
        s.create_bin(Some(BinName::parse(n).unwrap()), BinSettings::default())
            .unwrap();
    }

    fn seqs(s: &MemoryStore, bin: &str) -> Vec<u64> {
        let q = PageQuery {
            limit: 100,
            before: None,
            after: None,
            filter: RequestFilter::default(),
        };
        s.requests(bin, &q)
            .unwrap()
            .requests
            .iter()
            .map(|r| r.seq)
            .collect()
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

    #[test]
    fn per_bin_cap_evicts_oldest_first_and_counts() {
        let s = store(3, 1 << 20);
        named(&s, "a");
        for i in 0..5u8 {
            s.capture("a", req(&[i])).unwrap();
        }
        assert_eq!(seqs(&s, "a"), vec![5, 4, 3]);
        let b = s.get_bin("a").unwrap();
        assert_eq!(b.request_count, 3);
        assert_eq!(b.total_captured, 5);
        assert_eq!(b.evicted.by_bin_limit, 2);
        assert_eq!(b.evicted.total, 2);
        let st = s.stats();
        assert_eq!(st.requests_stored, 3);
        assert_eq!(st.captures_total, 5);
        assert_eq!(st.evicted_by_bin_limit, 2);
        assert_eq!(st.bytes_stored, b.bytes_stored);
    }

    #[test]
    fn byte_budget_evicts_oldest_across_bins() {
        let one = req(&[0; 100]).finish(0, Utc::now()).stored_bytes();
        // Room for exactly four requests.
        let s = store(100, one * 4);
        named(&s, "a");
        named(&s, "b");
        s.capture("a", req(&[0; 100])).unwrap(); // a1
        s.capture("b", req(&[0; 100])).unwrap(); // b1
        s.capture("a", req(&[0; 100])).unwrap(); // a2
        s.capture("b", req(&[0; 100])).unwrap(); // b2
        assert_eq!(s.stats().evicted_by_byte_budget, 0);
        s.capture("b", req(&[0; 100])).unwrap(); // b3 evicts a1
        assert_eq!(seqs(&s, "a"), vec![2]);
        s.capture("a", req(&[0; 100])).unwrap(); // a3 evicts b1
        assert_eq!(seqs(&s, "b"), vec![3, 2]);
        assert_eq!(s.get_bin("a").unwrap().evicted.by_byte_budget, 1);
        assert_eq!(s.get_bin("b").unwrap().evicted.by_byte_budget, 1);
        let st = s.stats();
        assert_eq!(st.bytes_stored, one * 4);
        assert_eq!(st.requests_stored, 4);
        assert_eq!(st.evicted_by_byte_budget, 2);
    }

    #[test]
    fn budget_skips_requests_already_gone() {
        let one = req(&[0; 100]).finish(0, Utc::now()).stored_bytes();
        let s = store(100, one * 2);
        named(&s, "a");
        named(&s, "b");
        let a1 = s.capture("a", req(&[0; 100])).unwrap();
        s.capture("b", req(&[0; 100])).unwrap();
        s.delete_request("a", &a1.id.to_string()).unwrap();
        s.capture("a", req(&[0; 100])).unwrap();
        // a1 was deleted by hand: nothing was evicted for the budget.
        assert_eq!(s.stats().evicted_by_byte_budget, 0);
        s.capture("a", req(&[0; 100])).unwrap(); // evicts b1, the oldest still stored
        assert_eq!(seqs(&s, "b"), Vec::<u64>::new());
        assert_eq!(seqs(&s, "a"), vec![3, 2]);
    }

    #[test]
    fn ledger_stays_bounded_under_bin_cap_churn() {
        let s = store(2, 1 << 30);
        named(&s, "a");
        for _ in 0..10_000 {
            s.capture("a", req(b"x")).unwrap();
        }
        assert_eq!(
            s.lock_ledger().entries.len(),
            2,
            "stale entries were dropped at once"
        );
        assert_eq!(s.stats().requests_stored, 2);
    }

    #[test]
    fn ledger_stays_bounded_when_stale_entries_are_not_at_the_front() {
        let s = store(2, 1 << 30);
        named(&s, "quiet");
        named(&s, "busy");
        s.capture("quiet", req(b"old")).unwrap();
        for _ in 0..10_000 {
            s.capture("busy", req(b"x")).unwrap();
        }
        assert!(s.lock_ledger().entries.len() <= 2 * 3 + 1024 + 1);
        assert_eq!(s.stats().requests_stored, 3);
        assert_eq!(seqs(&s, "quiet"), vec![1]);
    }

    #[test]
    fn bin_limit_is_refused_clearly_and_nothing_is_lost() {
        let s = store(10, 1 << 20);
        named(&s, "a");
        s.capture("a", req(b"keep")).unwrap();
        named(&s, "b");
        named(&s, "c");
        let err = s.create_bin(None, BinSettings::default()).unwrap_err();
        assert_eq!(err, StoreError::TooManyBins(3));
        assert_eq!(seqs(&s, "a"), vec![1]);
        assert!(matches!(
            s.create_bin(Some(BinName::parse("a").unwrap()), BinSettings::default()),
            Err(StoreError::BinExists(_))
        ));
    }

    #[test]
    fn put_updates_settings_keeps_requests_and_applies_lower_cap() {
        let s = store(10, 1 << 20);
        let name = BinName::parse("ci").unwrap();
        let (_, created) = s.put_bin(name.clone(), BinSettings::default()).unwrap();
        assert!(created);
        for _ in 0..4 {
            s.capture("ci", req(b"x")).unwrap();
        }
        let settings = BinSettings {
            max_requests: Some(2),
            ..Default::default()
        };
        let (snap, created) = s.put_bin(name, settings).unwrap();
        assert!(!created);
        assert_eq!(snap.request_count, 2);
        assert_eq!(snap.evicted.by_bin_limit, 2);
        assert_eq!(seqs(&s, "ci"), vec![4, 3]);
        assert_eq!(s.stats().requests_stored, 2);
    }

    #[test]
    fn limits_are_capped_by_the_server() {
        let s = store(10, 1 << 20);
        let settings = BinSettings {
            max_requests: Some(1_000_000),
            max_body_bytes: Some(1 << 40),
            ..Default::default()
        };
        let b = s.create_bin(None, settings).unwrap();
        assert_eq!(b.max_requests, 10);
        assert_eq!(b.max_body_bytes, 1024);
    }

    #[test]
    fn delete_and_clear_release_bytes() {
        let s = store(10, 1 << 20);
        named(&s, "a");
        named(&s, "b");
        s.capture("a", req(b"1")).unwrap();
        s.capture("b", req(b"2")).unwrap();
        assert_eq!(s.clear_requests("a").unwrap(), 1);
        s.delete_bin("b").unwrap();
        let st = s.stats();
        assert_eq!((st.bytes_stored, st.requests_stored, st.bins), (0, 0, 1));
        assert_eq!(
            s.capture("b", req(b"3")).unwrap_err(),
            StoreError::NoSuchBin("b".into())
        );
        assert_eq!(s.get_bin("a").unwrap().total_captured, 1);
    }

    #[test]
    fn paging_and_filters() {
        let s = store(100, 1 << 20);
        named(&s, "a");
        for i in 0..10 {
            let mut h = RawHeaders::new();
            h.push(b"X-N", i.to_string().as_bytes());
            let method = if i % 2 == 0 { "GET" } else { "POST" };
            let path = format!("/p/{i}");
            let mut c = NewCapture::new(method, &path, None, &h, 0, "127.0.0.1:1".parse().unwrap());
            c.push_body(format!("Body number {i}").as_bytes());
            s.capture("a", c).unwrap();
        }
        let q = |limit, before, after, filter| PageQuery {
            limit,
            before,
            after,
            filter,
        };
        let p = s
            .requests("a", &q(3, None, None, RequestFilter::default()))
            .unwrap();
        assert_eq!(
            p.requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![10, 9, 8]
        );
        assert_eq!((p.total, p.matched, p.next_before), (10, 10, Some(8)));
        let p = s
            .requests("a", &q(3, Some(8), None, RequestFilter::default()))
            .unwrap();
        assert_eq!(
            p.requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![7, 6, 5]
        );
        let p = s
            .requests("a", &q(100, None, Some(8), RequestFilter::default()))
            .unwrap();
        assert_eq!(
            p.requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![10, 9]
        );
        assert_eq!(p.next_before, None);
        let f = RequestFilter {
            method: Some("post".into()),
            ..Default::default()
        };
        assert_eq!(s.requests("a", &q(100, None, None, f)).unwrap().matched, 5);
        let f = RequestFilter {
            path: Some("/p/1*".into()),
            ..Default::default()
        };
        assert_eq!(s.requests("a", &q(100, None, None, f)).unwrap().matched, 1);
        let f = RequestFilter {
            text: Some(crate::store::TextSearch::new("NUMBER 7").unwrap()),
            ..Default::default()
        };
        let p = s.requests("a", &q(100, None, None, f)).unwrap();
        assert_eq!(
            p.requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![8]
        );
        // by id and by seq
        let r = s.request("a", "3").unwrap();
        assert_eq!(s.request("a", &r.id.to_string()).unwrap().seq, 3);
        assert!(matches!(
            s.request("a", "nope"),
            Err(StoreError::NoSuchRequest(_))
        ));
    }

    #[test]
    fn idle_bins_expire() {
        let s = store(10, 1 << 20);
        named(&s, "a");
        assert_eq!(s.expire_idle(Utc::now()), 0);
        assert_eq!(s.expire_idle(Utc::now() + chrono::Duration::seconds(61)), 1);
        assert!(s.get_bin("a").is_err());
    }

    #[test]
    fn subscribers_see_captures() {
        let s = store(10, 1 << 20);
        named(&s, "a");
        let mut rx = s.subscribe("a").unwrap();
        let mut all = s.subscribe_all();
        let r = s.capture("a", req(b"hi")).unwrap();
        let mut rx2 = s.subscribe("a").unwrap();
        let r2 = s.capture("a", req(b"again")).unwrap();
        let rendered = |ev| match ev {
            LiveEvent::Captured {
                request, rendered, ..
            } => (request.id, rendered),
            other => panic!("unexpected {other:?}"),
        };
        let (id, first) = rendered(rx.try_recv().unwrap());
        assert_eq!(id, r.id);
        let (id, first_all) = rendered(all.try_recv().unwrap());
        assert_eq!(id, r.id);
        // One rendering per event, shared by the bin's subscribers and those of all bins.
        assert!(Arc::ptr_eq(&first, &first_all));
        let (_, second) = rendered(rx.try_recv().unwrap());
        let (id, second_rx2) = rendered(rx2.try_recv().unwrap());
        let (_, second_all) = rendered(all.try_recv().unwrap());
        assert_eq!(id, r2.id);
        assert!(Arc::ptr_eq(&second, &second_rx2) && Arc::ptr_eq(&second, &second_all));
        assert!(!Arc::ptr_eq(&first, &second), "each event has its own");
    }
}
