//! What every end-to-end test needs: a real server on 127.0.0.1:0, raw HTTP/1.1 on a socket (to
//! send header case and order exactly), a small SSE reader, and bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bin_server::store::StoreLimits;
use bin_server::{AppState, ServerConfig};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A running bin-server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(StoreLimits::default(), ServerConfig::default()).await
    }

    pub async fn with(limits: StoreLimits, config: ServerConfig) -> Self {
        Self::with_state(AppState::new(limits, config)).await
    }

    pub async fn with_state(state: AppState) -> Self {
        Self::with_state_at(state, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A server on a given address (a restarted server on the port of one shut down).
    pub async fn with_state_at(state: AppState, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bin_server::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap();
        Self {
            addr,
            base: format!("http://{addr}"),
            client,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a named bin with the given JSON body (`PUT`), asserting success.
    pub async fn put_bin(&self, name: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .client
            .put(self.url(&format!("/api/bins/{name}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT bin {name}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// One sample of `/metrics` (a metric without labels).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics"))
    }

    /// Waits (at most [`WAIT`]) until a `/metrics` sample reaches `value`: the readiness signal
    /// of tests that must act only once, say, their waiters hold.
    pub async fn until_metric(&self, name: &str, value: u64) {
        within(&format!("{name} to reach {value}"), async {
            while self.metric(name).await != value {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = within("/metrics", self.client.get(self.url("/metrics")).send()).await;
        r.unwrap().text().await.unwrap()
    }

    /// Sends the shutdown signal and waits for `run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        within("server shutdown", self.task.take().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends `request` verbatim on a fresh connection and returns the whole response (the request
/// should carry `Connection: close`).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    within("raw HTTP exchange", async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    })
    .await
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub data: String,
    /// The stream's last event id after this event, as a browser's `EventSource` keeps it
    /// (`None` until an event set one).
    pub id: Option<String>,
}

impl Sse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads events from an open SSE response (parsed by `eventsource-stream`, as a browser would).
pub struct SseReader {
    events: futures_util::stream::BoxStream<
        'static,
        Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
    >,
}

impl SseReader {
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        use eventsource_stream::Eventsource;
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = within("SSE connect", req.send()).await.unwrap();
        assert_eq!(resp.status(), 200, "SSE {url}");
        Self {
            events: resp.bytes_stream().eventsource().boxed(),
        }
    }

    /// The next event (comments skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Sse> {
        within("an SSE event", async {
            match self.events.next().await {
                Some(Ok(ev)) => Some(Sse {
                    event: ev.event,
                    data: ev.data,
                    id: (!ev.id.is_empty()).then_some(ev.id),
                }),
                Some(Err(_)) | None => None,
            }
        })
        .await
    }

    /// Skips events until one named `name` arrives.
    pub async fn next_named(&mut self, name: &str) -> Sse {
        loop {
            let ev = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stream ended before a {name:?} event"));
            if ev.event == name {
                return ev;
            }
        }
    }
}

/// A server on a runtime with a single thread, in its own OS thread: whatever blocks that thread
/// blocks every connection (as a blocking scan on a worker thread would block that worker's),
/// and tasks run one at a time, so a test can order what the server does without timing.
pub struct OneThreadServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl OneThreadServer {
    pub fn start(state: AppState) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = bin_server::run(listener, state, async move {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Self {
            addr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap(),
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for OneThreadServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
