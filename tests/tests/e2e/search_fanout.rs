//! Search and live fan-out under load (issue 8): a text search never holds up captures, a query
//! past the length limit is refused, searches past the concurrency bound wait their turn (and are
//! counted), and one capture is serialised once for all of its live subscribers.
//!
//! A scan over many large bodies is stood in for by a store whose text searches block until the
//! test releases them, so the tests check the order of events (a capture answered while a scan
//! is still running), never durations.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bin_server::store::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveHub, MemoryStore,
    NewCapture, Page, PageQuery, Store, StoreError, StoreLimits, StoreStats,
};
use bin_server::{AppState, ServerConfig};
use serde_json::Value;

use crate::support::{OneThreadServer, SseReader, TestServer, WAIT, within};

/// A [`MemoryStore`] whose text searches (`q=`) signal that they started, then block their
/// thread until the test releases them (or gives up: a failing test never hangs the server).
struct HeldSearches {
    inner: MemoryStore,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// The test's side of [`HeldSearches`].
struct Held {
    started: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: mpsc::Sender<()>,
}

impl Held {
    async fn next_scan_started(&mut self) {
        within("a search to start scanning", self.started.recv())
            .await
            .expect("the store is alive");
    }

    fn finish_one_scan(&self) {
        self.release.send(()).unwrap();
    }
}

fn held_store() -> (HeldSearches, Held) {
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = mpsc::channel();
    (
        HeldSearches {
            inner: MemoryStore::new(StoreLimits::default()),
            started: started_tx,
            release: Mutex::new(release_rx),
        },
        Held {
            started: started_rx,
            release: release_tx,
        },
    )
}

#[bin_server::store::async_trait]
impl Store for HeldSearches {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn limits(&self) -> &StoreLimits {
        self.inner.limits()
    }
    fn live(&self) -> &LiveHub {
        self.inner.live()
    }
    async fn create_bin(
        &self,
        name: Option<BinName>,
        settings: BinSettings,
    ) -> Result<BinSnapshot, StoreError> {
        self.inner.create_bin(name, settings).await
    }
    async fn put_bin(
        &self,
        name: BinName,
        settings: BinSettings,
    ) -> Result<(BinSnapshot, bool), StoreError> {
        self.inner.put_bin(name, settings).await
    }
    async fn get_bin(&self, name: &str) -> Result<BinSnapshot, StoreError> {
        self.inner.get_bin(name).await
    }
    async fn list_bins(&self) -> Result<Vec<BinSnapshot>, StoreError> {
        self.inner.list_bins().await
    }
    async fn delete_bin(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_bin(name).await
    }
    async fn capture_settings(&self, name: &str) -> Result<Arc<CaptureSettings>, StoreError> {
        self.inner.capture_settings(name).await
    }
    async fn capture(
        &self,
        name: &str,
        new: NewCapture,
    ) -> Result<Arc<CapturedRequest>, StoreError> {
        self.inner.capture(name, new).await
    }
    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
        if query.filter.text.is_some() {
            // Text searches run on a blocking thread (the route's scan slots), so blocking
            // here holds up nothing else.
            let _ = self.started.send(());
            let release = self.release.lock().unwrap();
            // Bounded, so a test that failed (and dropped its sender) or forgot never hangs.
            let _ = release.recv_timeout(WAIT * 3);
        }
        self.inner.requests(name, query).await
    }
    async fn read_after(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<CapturedRequest>>, StoreError> {
        self.inner.read_after(name, after, limit).await
    }
    async fn request(&self, name: &str, id: &str) -> Result<Arc<CapturedRequest>, StoreError> {
        self.inner.request(name, id).await
    }
    async fn delete_request(&self, name: &str, id: &str) -> Result<(), StoreError> {
        self.inner.delete_request(name, id).await
    }
    async fn clear_requests(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.clear_requests(name).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }
    async fn expire_idle(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError> {
        self.inner.expire_idle(now).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}

impl OneThreadServer {
    async fn capture(&self, bin: &str, body: &'static str) -> u16 {
        let r = self
            .client
            .post(self.url(&format!("/b/{bin}")))
            .body(body)
            .send();
        within("a capture to be answered", r)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn search(&self, bin: &str, q: &str) -> tokio::task::JoinHandle<(u16, Value)> {
        let r = self
            .client
            .get(self.url(&format!("/api/bins/{bin}/requests")))
            .query(&[("q", q)])
            .send();
        tokio::spawn(async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    }

    async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send();
        within("/metrics", r).await.unwrap().text().await.unwrap()
    }
}

fn held_state() -> (AppState, Held) {
    let (store, held) = held_store();
    let mut state = AppState::new(StoreLimits::default(), ServerConfig::default());
    state.store = Arc::new(store);
    (state, held)
}

async fn make_bin(s: &OneThreadServer, name: &str) {
    let r = s
        .client
        .put(s.url(&format!("/api/bins/{name}")))
        .json(&serde_json::json!({}))
        .send();
    assert!(within("PUT bin", r).await.unwrap().status().is_success());
}

#[tokio::test]
async fn a_search_in_progress_does_not_hold_up_captures() {
    let (state, mut held) = held_state();
    let s = OneThreadServer::start(state);
    make_bin(&s, "scanned").await;
    assert_eq!(s.capture("scanned", "the NEEDLE is here").await, 200);

    let search = s.search("scanned", "needle");
    held.next_scan_started().await;
    // The scan is still running (held): the server must answer a capture meanwhile.
    assert_eq!(s.capture("scanned", "while scanning").await, 200);
    held.finish_one_scan();

    let (status, page) = within("the search result", search).await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["matched"], 1, "{page}");
    assert_eq!(page["requests"][0]["body"], "the NEEDLE is here");
}

#[tokio::test]
async fn searches_past_the_bound_wait_their_turn_and_are_counted() {
    let (mut state, mut held) = held_state();
    state.searches = Arc::new(tokio::sync::Semaphore::new(1));
    let s = OneThreadServer::start(state);
    make_bin(&s, "busy").await;
    assert_eq!(s.capture("busy", "needle one").await, 200);

    let first = s.search("busy", "needle");
    held.next_scan_started().await;
    let second = s.search("busy", "NEEDLE");
    // The second search queues for the one scan slot: counted, and not scanning.
    within("the second search to queue", async {
        while !s
            .metrics()
            .await
            .contains("hookbin_searches_queued_total 1\n")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(held.started.try_recv().is_err(), "only one scan at a time");
    // Captures go on while one search scans and another waits.
    assert_eq!(s.capture("busy", "needle two").await, 200);

    held.finish_one_scan();
    let (status, page) = within("the first search", first).await.unwrap();
    assert_eq!((status, page["matched"].as_u64()), (200, Some(2)), "{page}");
    held.next_scan_started().await;
    held.finish_one_scan();
    let (status, page) = within("the second search", second).await.unwrap();
    assert_eq!((status, page["matched"].as_u64()), (200, Some(2)), "{page}");
}

#[tokio::test]
async fn a_query_past_the_limit_is_refused_naming_it() {
    let s = TestServer::start().await;
    s.put_bin("long-q", serde_json::json!({})).await;
    let r = s
        .client
        .post(s.url("/b/long-q"))
        .body("a".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, page) = s
        .get_json(&format!("/api/bins/long-q/requests?q={}", "A".repeat(256)))
        .await;
    assert_eq!((status, page["matched"].as_u64()), (200, Some(1)), "{page}");

    let (status, err) = s
        .get_json(&format!("/api/bins/long-q/requests?q={}", "a".repeat(257)))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_query", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("256"), "{message}");
    // Multi-byte text counts in bytes: 129 'é' are 258 bytes.
    let (status, _) = s
        .get_json(&format!(
            "/api/bins/long-q/requests?q={}",
            "%C3%A9".repeat(129)
        ))
        .await;
    assert_eq!(status, 400);
    // Nothing stored was touched.
    let (_, page) = s.get_json("/api/bins/long-q/requests").await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn one_capture_is_serialised_once_for_all_its_subscribers() {
    let s = TestServer::start().await;
    s.put_bin("fan", serde_json::json!({})).await;
    let mut readers = Vec::new();
    for _ in 0..5 {
        readers.push(SseReader::open(&s.client, &s.url("/api/bins/fan/stream"), None).await);
    }
    readers.push(SseReader::open(&s.client, &s.url("/api/stream"), None).await);
    for r in &mut readers {
        r.next_named("ready").await;
    }

    for n in 1..=2u64 {
        let r = s.client.post(s.url("/b/fan")).body("{\"n\":1}").send();
        assert_eq!(within("capture", r).await.unwrap().status(), 200);
        let mut data = Vec::new();
        for r in &mut readers {
            let ev = r.next_named("request").await;
            assert_eq!(ev.id.as_deref(), Some(n.to_string().as_str()));
            data.push(ev.data);
        }
        assert!(data.iter().all(|d| *d == data[0]), "{data:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&data[0]).unwrap()["body"],
            "{\"n\":1}"
        );
        let metrics = s.metrics().await;
        // Six subscribers, one serialisation per capture.
        assert!(
            metrics.contains(&format!("hookbin_sse_renders_total {n}\n")),
            "{metrics}"
        );
    }
}
