//! The backends the conformance suite runs against: each opens a fresh, empty store per call.

use std::sync::Arc;

use bin_server::store::{MemoryStore, Store, StoreLimits};

/// Opens fresh stores of one backend (and owns whatever they need: files, servers).
#[bin_server::store::async_trait]
pub trait Backend: Send {
    /// What [`Store::backend`] says.
    fn name(&self) -> &'static str;
    /// A new, empty store with these limits.
    async fn open(&mut self, limits: StoreLimits) -> Arc<dyn Store>;
}

/// The embedded default.
pub struct Memory;

#[bin_server::store::async_trait]
impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open(&mut self, limits: StoreLimits) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new(limits))
    }
}

/// One file per store in a temporary directory, removed with the backend.
pub struct Sqlite {
    dir: tempfile::TempDir,
    opened: usize,
}

impl Sqlite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            opened: 0,
        }
    }
}

#[bin_server::store::async_trait]
impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn open(&mut self, limits: StoreLimits) -> Arc<dyn Store> {
        self.opened += 1;
        let path = self.dir.path().join(format!("store-{}.db", self.opened));
        Arc::new(bin_server::store::SqliteStore::open(path, limits).unwrap())
    }
}

/// A `redis-server` of the test's own on a free loopback port, without persistence, killed
/// when dropped. Never port 6379 or a system service.
pub struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one and waits (at most 10 s) until it answers `PING`.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.run();
        server
    }

    fn run(&mut self) {
        let bin = std::env::var("HOOKBIN_REDIS_SERVER").unwrap_or("redis-server".into());
        let child = std::process::Command::new(&bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (install redis-server): {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.answers() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Whether the server answers `PING` now.
    pub fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Sends one command (RESP) and returns the start of the raw answer (used by
    /// `redis_store.rs`, not by every test crate).
    #[allow(dead_code)]
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// `redis://127.0.0.1:PORT/?prefix=...`
    pub fn url(&self, prefix: &str) -> String {
        format!("redis://127.0.0.1:{}/?prefix={prefix}", self.port)
    }

    /// Kills the server (its data is gone: no persistence) and waits until it is down.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (used by `redis_store.rs`, not by every test crate).
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server per backend; each store gets a key prefix of its own on it (a fresh, empty
/// store on the same server).
pub struct Redis {
    pub server: RedisServer,
    opened: usize,
}

impl Redis {
    pub fn new() -> Self {
        Self {
            server: RedisServer::start(),
            opened: 0,
        }
    }
}

#[bin_server::store::async_trait]
impl Backend for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn open(&mut self, limits: StoreLimits) -> Arc<dyn Store> {
        self.opened += 1;
        let url = self.server.url(&format!("t{}:", self.opened));
        Arc::new(
            bin_server::store::RedisStore::open(&url, limits)
                .await
                .unwrap(),
        )
    }
}
