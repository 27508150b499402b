//! The in-process backend, on moka: same TTL semantics as Redis, no network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

/// Expires each entry after its own TTL.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub(crate) struct MemoryStore {
    entries: Cache<String, Entry>,
    max_entries: u64,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> Self {
        let entries = Cache::builder().max_capacity(max_entries).expire_after(PerEntryTtl).build();
        MemoryStore { entries, max_entries }
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).await.map(|e| e.bytes.to_vec())
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        self.entries.insert(key.to_owned(), Entry { bytes: value.into(), ttl }).await;
    }

    pub async fn delete(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    pub fn describe(&self) -> String {
        format!("in-memory (max {} entries)", self.max_entries)
    }
}
