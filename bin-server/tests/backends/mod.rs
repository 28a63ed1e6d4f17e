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
