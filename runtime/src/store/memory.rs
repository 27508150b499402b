//! The in-process backend, on moka: same TTL semantics as Redis, no network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;

use super::Marks;
use crate::clock::now_ms;
use crate::stamp::{COUNTER_KEEP, counter_start, stamp};
// The synchronous cache: its operations take no time worth yielding for, and a lookup's
// future stays small (every call moves it a few times; `moka`'s futures are large).
use moka::sync::Cache;

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
    /// Invalidation counters, each kept `COUNTER_KEEP` after its last increment.
    counters: Cache<String, u64>,
    /// The tag epoch, and the tags' marks (see `Keyspace::tag_epoch`).
    epoch: AtomicU64,
    marks: Cache<String, u64>,
    max_entries: u64,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> Self {
        let entries = Cache::builder().max_capacity(max_entries).expire_after(PerEntryTtl).build();
        let counters = Cache::builder().time_to_live(COUNTER_KEEP).build();
        let marks = Cache::builder().time_to_live(COUNTER_KEEP).build();
        MemoryStore { entries, counters, epoch: AtomicU64::new(0), marks, max_entries }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).map(|e| e.bytes.to_vec())
    }

    pub fn fetch(&self, key: &str, counters: &[&str]) -> (Option<Vec<u8>>, u64) {
        (self.get(key), self.marked(counters, &[]).0)
    }

    pub fn increment(&self, counters: &[String], marks: Marks<'_>) {
        if !marks.names.is_empty() {
            // As on Redis: the wall clock in microseconds, or one more if it went back.
            let (floor, mut epoch) = (now_ms() * 1000, 0);
            let _ = self.epoch.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                epoch = (e + 1).max(floor);
                Some(epoch)
            });
            for mark in marks.names {
                self.marks.insert(mark.clone(), epoch);
            }
        }
        for key in counters {
            self.counters
                .entry_by_ref(key.as_str())
                .and_upsert_with(|old| old.map_or_else(counter_start, |e| e.into_value()) + 1);
        }
    }

    pub fn tag_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn counter_values(&self, counters: &[&str]) -> Vec<u64> {
        counters.iter().map(|counter| self.counters.get(*counter).unwrap_or_default()).collect()
    }

    pub fn marked(&self, counters: &[&str], marks: &[String]) -> (u64, u64) {
        let values = self.counter_values(counters);
        let latest = marks.iter().filter_map(|mark| self.marks.get(mark)).max().unwrap_or(0);
        (stamp(&values), latest)
    }

    pub fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        self.entries.insert(key.to_owned(), Entry { bytes: value.into(), ttl });
    }

    pub fn delete(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub fn describe(&self) -> String {
        format!("in-memory (max {} entries)", self.max_entries)
    }
}
