//! Counters behind [`QueryCache::stats`](crate::QueryCache::stats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cache's counters since it was built.
///
/// Every lookup of a cached function counts once as a hit or a miss; `errors` counts cache
/// failures (Redis unreachable, timeouts, undecodable entries) that were answered by running
/// the query instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that ran the query (absent, expired, undecodable, or the cache failed).
    pub misses: u64,
    /// Cache-side failures, each answered by the database instead (fail-open).
    pub errors: u64,
    /// Entries that did not decode (changed type, foreign or corrupt bytes); also in `errors`.
    pub decode_errors: u64,
    /// Values written to the cache.
    pub writes: u64,
    /// Entries deleted by `<fn>_invalidate` or [`QueryCache::invalidate`](crate::QueryCache::invalidate).
    pub invalidations: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub decode_errors: AtomicU64,
    pub writes: AtomicU64,
    pub invalidations: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            errors: self.errors.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            writes: self.writes.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
        }
    }
}
