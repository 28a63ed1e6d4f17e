//! The bin page's state: the list and its window, the filters, the selection, and the live requests queued for the next frame.

use super::*;

/// Starts the bin's page afresh.
#[derive(Clone, Copy)]
pub(super) struct Remount(pub(super) RwSignal<u32>);

/// The list's filters, mirrored on the client for live requests (same rules as the server).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Filter {
    pub(super) method: String,
    pub(super) text: String,
    /// `valid`, `invalid` or `missing`: the signature check's outcome. The server's list has no
    /// such filter, so it is applied here, to every page as it loads and to live requests (the
    /// list holds the whole bin up to its cap, so nothing is missed).
    pub(super) signature: String,
}

impl Filter {
    pub(super) fn query(&self) -> String {
        let mut q = String::new();
        if !self.method.is_empty() {
            q.push_str(&format!("&method={}", enc(&self.method)));
        }
        if !self.text.is_empty() {
            q.push_str(&format!("&q={}", enc(&self.text)));
        }
        q
    }

    pub(super) fn signature_matches(&self, r: &CapturedRequestOut) -> bool {
        self.signature.is_empty()
            || r.signature
                .as_ref()
                .is_some_and(|s| s.status == self.signature)
    }

    pub(super) fn matches(&self, r: &CapturedRequestOut) -> bool {
        if !self.signature_matches(r) {
            return false;
        }
        if !self.method.is_empty() && !r.method.eq_ignore_ascii_case(&self.method) {
            return false;
        }
        if self.text.is_empty() {
            return true;
        }
        let needle = self.text.to_ascii_lowercase();
        let has = |s: &str| s.to_ascii_lowercase().contains(&needle);
        has(&r.path)
            || r.query.as_deref().is_some_and(has)
            || r.headers.iter().any(|h| has(&h.name) || has(&h.value))
            || has(&String::from_utf8_lossy(&body::bytes(r)))
    }
}

/// What the list needs of a request: everything but its body and headers.
pub(super) fn summary(mut r: CapturedRequestOut) -> Row {
    r.body = None;
    r.headers = Vec::new();
    Arc::new(r)
}

/// Shared state of one bin's page.
#[derive(Clone, Copy)]
pub(super) struct BinState {
    pub(super) id: StoredValue<String>,
    pub(super) bin: RwSignal<Option<Result<BinOut, ApiError>>>,
    /// Newest first, summaries only, at most `cap()`.
    pub(super) list: RwSignal<Vec<Row>>,
    /// Requests matching the filters on the server (all pages).
    pub(super) matched: RwSignal<u64>,
    pub(super) loaded_all: RwSignal<bool>,
    pub(super) load_error: RwSignal<Option<String>>,
    pub(super) filter: RwSignal<Filter>,
    /// The selected request's sequence number: follows the URL (see [`BinState::select`]).
    pub(super) selected: RwSignal<Option<u64>>,
    /// Puts a selection in the URL (replacing the history entry); the URL sets `selected`.
    pub(super) navigate: Callback<Option<u64>>,
    /// A webhook message to select when it arrives (`?message=` from "View in bin").
    pub(super) pending_message: StoredValue<Option<String>>,
    pub(super) conn: RwSignal<Connection>,
    /// Set by the `deleted` event without an id: the bin is gone.
    pub(super) gone: RwSignal<bool>,
    /// The bin was not there when the page opened: it never existed (or expired before).
    pub(super) missing: RwSignal<bool>,
    /// Bumped by every load; a load whose number is stale stops.
    pub(super) load_gen: StoredValue<u64>,
    /// Whether bin counters may have changed since the last refresh.
    pub(super) bin_dirty: StoredValue<bool>,
    /// The list's scroll container, to keep the view steady and follow the keyboard.
    pub(super) viewport: NodeRef<Div>,
}

impl BinState {
    pub(super) fn cap(&self) -> usize {
        self.bin.with_untracked(|b| match b {
            Some(Ok(b)) => b.limits.max_requests as usize,
            _ => DEFAULT_CAP,
        })
    }

    pub(super) fn api(&self, rest: &str) -> String {
        format!("/api/bins/{}{rest}", enc(&self.id.get_value()))
    }

    /// Selects a request (or none) through the URL.
    pub(super) fn select(self, seq: Option<u64>) {
        self.navigate.run(seq);
    }

    pub(super) fn refresh_bin(self) {
        self.bin_dirty.set_value(false);
        let url = self.api("");
        spawn_local(async move {
            let res = server::get::<BinOut>(&url).await;
            if let Err(e) = &res
                && e.status == Some(404)
            {
                // Never seen on this page: it is not there at all (rather than deleted now).
                if self.bin.with_untracked(|b| !matches!(b, Some(Ok(_)))) {
                    self.missing.set(true);
                }
                self.gone.set(true);
            }
            self.bin.set(Some(res));
        });
    }

    /// (Re)loads the list from the newest request, page by page, until the cap or the end.
    pub(super) fn load(self) {
        let generation = self.load_gen.get_value() + 1;
        self.load_gen.set_value(generation);
        self.list.set(Vec::new());
        self.loaded_all.set(false);
        self.load_error.set(None);
        let full_filter = self.filter.get_untracked();
        let filter = full_filter.query();
        let by_signature = !full_filter.signature.is_empty();
        spawn_local(async move {
            let mut before: Option<u64> = None;
            let mut limit = FIRST_PAGE;
            loop {
                let mut url = self.api(&format!("/requests?summary=true&limit={limit}{filter}"));
                if let Some(b) = before {
                    url.push_str(&format!("&before={b}"));
                }
                let page = server::get::<RequestPage>(&url).await;
                if self.load_gen.get_value() != generation {
                    return;
                }
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        if e.status == Some(404) {
                            self.gone.set(true);
                        }
                        self.load_error.set(Some(e.message));
                        return;
                    }
                };
                let cap = self.cap();
                // `matched` counts the whole bin on the first page (later pages count below
                // their cursor).
                if before.is_none() && !by_signature {
                    self.matched.set(page.matched);
                }
                self.list.update(|list| {
                    // Live requests may have landed first: only append what is older.
                    let oldest = list.last().map_or(u64::MAX, |r| r.seq);
                    list.extend(
                        page.requests
                            .into_iter()
                            .filter(|r| r.seq < oldest && full_filter.signature_matches(r))
                            .map(summary),
                    );
                    list.truncate(cap);
                });
                if by_signature {
                    // Counted here: the server's count knows nothing of signatures.
                    self.matched
                        .set(self.list.with_untracked(|l| l.len() as u64));
                }
                before = page.next_before;
                if before.is_none() || self.list.with_untracked(|l| l.len()) >= cap {
                    self.loaded_all.set(true);
                    return;
                }
                limit = NEXT_PAGE;
            }
        });
    }

    /// Applies a batch of live requests (oldest first) in one update.
    pub(super) fn apply_live(self, batch: Vec<CapturedRequestOut>) {
        let filter = self.filter.get_untracked();
        let fresh: Vec<Row> = batch
            .into_iter()
            .filter(|r| filter.matches(r))
            .map(summary)
            .collect();
        self.bin_dirty.set_value(true);
        if fresh.is_empty() {
            return;
        }
        let cap = self.cap();
        let mut added = 0usize;
        self.list.update(|list| {
            let newest = list.first().map_or(0, |r| r.seq);
            let fresh: Vec<Row> = fresh.into_iter().rev().filter(|r| r.seq > newest).collect();
            added = fresh.len();
            list.splice(0..0, fresh);
            list.truncate(cap);
        });
        self.matched.update(|m| *m += added as u64);
        // Keep what the user is looking at in place when rows land above it.
        if let Some(el) = self.viewport.get_untracked() {
            let top = el.scroll_top();
            if top > 0 {
                el.set_scroll_top(top + added as i32 * ROW_HEIGHT);
            }
        }
    }

    pub(super) fn handle(self, ev: StreamEvent, queue: &LiveQueue) {
        match ev.name.as_str() {
            "request" => {
                if let Ok(r) = serde_json::from_str::<CapturedRequestOut>(&ev.data) {
                    if let Some(msg) = self.pending_message.get_value()
                        && r.headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("webhook-id") && h.value == msg)
                    {
                        self.pending_message.set_value(None);
                        self.select(Some(r.seq));
                    }
                    queue.push(r, self.cap(), move |batch| self.apply_live(batch));
                }
            }
            "resync" => {
                queue.clear();
                self.load();
                self.bin_dirty.set_value(true);
            }
            "bin_deleted" => {
                queue.clear();
                self.gone.set(true);
            }
            "deleted" | "cleared" => {
                let Ok(d) = serde_json::from_str::<DeletedEvent>(&ev.data) else {
                    return;
                };
                match d.id {
                    Some(id) => {
                        let gone = self
                            .list
                            .with_untracked(|l| l.iter().find(|r| r.id == id).map(|r| r.seq));
                        self.list.update(|l| l.retain(|r| r.id != id));
                        if gone.is_some() && self.selected.get_untracked() == gone {
                            self.select(None);
                        }
                    }
                    None => {
                        queue.clear();
                        self.list.set(Vec::new());
                        self.select(None);
                        self.matched.set(0);
                    }
                }
                self.bin_dirty.set_value(true);
            }
            _ => {}
        }
    }

    /// Selects the request `delta` rows away from the selected one, and scrolls to it.
    pub(super) fn step(self, delta: isize) {
        let target = self.list.with_untracked(|l| {
            if l.is_empty() {
                return None;
            }
            let current = self
                .selected
                .with_untracked(|s| s.and_then(|seq| l.iter().position(|r| r.seq == seq)));
            let idx = match current {
                Some(i) => (i as isize + delta).clamp(0, l.len() as isize - 1) as usize,
                None => 0,
            };
            Some((idx, l[idx].seq))
        });
        let Some((idx, seq)) = target else { return };
        self.select(Some(seq));
        if let Some(el) = self.viewport.get_untracked() {
            let top = idx as i32 * ROW_HEIGHT;
            let view_top = el.scroll_top();
            let height = el.client_height();
            if top < view_top {
                el.set_scroll_top(top);
            } else if top + ROW_HEIGHT > view_top + height {
                el.set_scroll_top(top + ROW_HEIGHT - height);
            }
        }
    }
}

/// Live requests waiting for the next animation frame. At most the bin's cap is kept: older
/// ones would be dropped from the list right away anyway.
#[derive(Clone, Default)]
pub(super) struct LiveQueue {
    pub(super) inner: Rc<RefCell<(VecDeque<CapturedRequestOut>, bool)>>,
}

impl LiveQueue {
    pub(super) fn push(
        &self,
        r: CapturedRequestOut,
        cap: usize,
        flush: impl FnOnce(Vec<CapturedRequestOut>) + 'static,
    ) {
        let mut inner = self.inner.borrow_mut();
        inner.0.push_back(r);
        while inner.0.len() > cap.max(1) {
            inner.0.pop_front();
        }
        if inner.1 {
            return;
        }
        inner.1 = true;
        let queue = self.clone();
        request_animation_frame(move || {
            let batch: Vec<_> = {
                let mut inner = queue.inner.borrow_mut();
                inner.1 = false;
                inner.0.drain(..).collect()
            };
            flush(batch);
        });
    }

    pub(super) fn clear(&self) {
        self.inner.borrow_mut().0.clear();
    }
}
