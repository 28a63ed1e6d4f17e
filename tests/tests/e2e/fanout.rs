//! Live fan-out coalescing (issue 8): events queued for a subscriber while it could not run
//! reach it as one body frame (one write), not one frame per event, with every event intact.
//!
//! The server runs on a single-threaded runtime, and the store publishes a burst of captures in
//! one synchronous call: the subscriber cannot be polled between those sends, so the test
//! checks what it then sends (HTTP chunks, one per body frame), never durations.

use std::sync::{Arc, Mutex};

use bin_server::store::{
    BinName, BinSettings, BinSnapshot, CaptureSettings, CapturedRequest, LiveEvent, LiveHub,
    MemoryStore, NewCapture, Page, PageQuery, Store, StoreError, StoreLimits, StoreStats,
};
use bin_server::{AppState, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::{OneThreadServer, within};

/// Captures held back and published together, in one call, once this many have arrived.
const BURST: usize = 8;

/// A [`MemoryStore`] whose live events for captures go out in bursts of [`BURST`], sent one
/// after another without yielding, as if they had all landed between two polls of a subscriber.
struct Bursts {
    inner: MemoryStore,
    /// What the routes subscribe to (the inner store publishes to its own, which nobody reads).
    hub: LiveHub,
    held: Mutex<Vec<LiveEvent>>,
}

#[bin_server::store::async_trait]
impl Store for Bursts {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn limits(&self) -> &StoreLimits {
        self.inner.limits()
    }
    fn live(&self) -> &LiveHub {
        &self.hub
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
        let request = self.inner.capture(name, new).await?;
        let mut held = self.held.lock().unwrap();
        held.push(LiveEvent::Captured {
            bin: BinName::parse(name)?,
            request: Arc::clone(&request),
            rendered: Arc::default(),
        });
        if held.len() == BURST {
            for ev in held.drain(..) {
                self.hub.publish(name, || ev);
            }
        }
        Ok(request)
    }
    async fn requests(&self, name: &str, query: &PageQuery) -> Result<Page, StoreError> {
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

/// A state whose store holds captures back and publishes them in one burst.
fn bursting_state() -> AppState {
    let mut state = AppState::new(StoreLimits::default(), ServerConfig::default());
    state.store = Arc::new(Bursts {
        inner: MemoryStore::new(StoreLimits::default()),
        hub: LiveHub::default(),
        held: Mutex::new(Vec::new()),
    });
    state
}

/// A raw HTTP/1.1 SSE response, read one chunk (one body frame of the server) at a time.
struct Chunks {
    reader: BufReader<tokio::net::TcpStream>,
}

impl Chunks {
    async fn open(addr: std::net::SocketAddr, path: &str) -> Self {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            within("the response head", reader.read_line(&mut line))
                .await
                .unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        Self { reader }
    }

    /// The next chunk's text.
    async fn next(&mut self) -> String {
        within("a body chunk", async {
            let mut size = String::new();
            self.reader.read_line(&mut size).await.unwrap();
            let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
            assert!(size > 0, "the stream ended");
            let mut data = vec![0; size + 2];
            self.reader.read_exact(&mut data).await.unwrap();
            assert_eq!(&data[size..], b"\r\n");
            data.truncate(size);
            String::from_utf8(data).unwrap()
        })
        .await
    }
}

async fn capture(s: &OneThreadServer, bin: &str, n: usize) {
    let r = s
        .client
        .post(s.url(&format!("/b/{bin}")))
        .body(format!("{{\"n\":{n}}}"))
        .send();
    assert_eq!(within("a capture", r).await.unwrap().status(), 200);
}

#[tokio::test]
async fn events_queued_while_a_subscriber_waits_go_out_in_one_frame() {
    let s = OneThreadServer::start(bursting_state());
    let r = s
        .client
        .put(s.url("/api/bins/burst"))
        .json(&serde_json::json!({}))
        .send();
    assert!(within("PUT bin", r).await.unwrap().status().is_success());
    // A bin's stream, then the all-bins stream; each with a smee subscriber of the bin.
    for (k, path) in ["/api/bins/burst/stream", "/api/stream"]
        .into_iter()
        .enumerate()
    {
        let mut stream = Chunks::open(s.addr, path).await;
        let mut smee = Chunks::open(s.addr, "/api/bins/burst/smee").await;
        assert!(stream.next().await.starts_with("event: ready\n"));
        assert_eq!(smee.next().await, "event: ready\ndata: {}\n\n");

        let first = k * BURST;
        for n in 0..BURST {
            capture(&s, "burst", first + n).await;
        }

        // The whole burst in one chunk: every event, in order, each with its id.
        let frame = stream.next().await;
        let events: Vec<&str> = frame.split_terminator("\n\n").collect();
        assert_eq!(events.len(), BURST, "{frame}");
        for (i, ev) in events.iter().enumerate() {
            let seq = first + i + 1;
            assert!(ev.starts_with("event: request\ndata: {"), "{ev}");
            assert!(ev.ends_with(&format!("\nid: {seq}")), "{ev}");
            assert!(ev.contains(&format!("{{\\\"n\\\":{}}}", first + i)), "{ev}");
        }
        let frame = smee.next().await;
        let messages: Vec<&str> = frame.split_terminator("\n\n").collect();
        assert_eq!(messages.len(), BURST, "{frame}");
        for (i, ev) in messages.iter().enumerate() {
            assert!(ev.starts_with("data: {"), "{ev}");
            assert!(ev.ends_with(&format!("\nid: {}", first + i + 1)), "{ev}");
        }
    }
}
