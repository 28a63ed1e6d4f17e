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
