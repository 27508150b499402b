//! Counters behind [`QueryCache::stats`](crate::QueryCache::stats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cache's counters since it was built.
///
/// Every lookup of a cached function counts once as a hit (answered without running the
/// query) or a miss (ran it); `errors` counts cache failures (Redis unreachable, timeouts,
/// undecodable entries) that were answered by running the query instead.
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
    /// Invalidations applied: `<fn>_invalidate`, `invalidate`, `invalidate_tags`, `invalidate_all`.
    pub invalidations: u64,
    /// Hits that waited for another caller's lookup or query of the same key (single-flight).
    pub coalesced: u64,
    /// Hits served a stale value (past `ttl`, within `stale`), while it was refreshed or
    /// because its refresh failed (fail-safe).
    pub stale_served: u64,
    /// Background refreshes that stored a new value.
    pub refreshes: u64,
    /// Background refreshes whose query failed.
    pub refresh_errors: u64,
    /// Misses answered by another process's query while it held the lease (`lock = true`).
    pub lock_waits: u64,
    /// Invalidations that could not reach Redis: returned as errors, and queued for delivery
    /// before any further hit.
    pub invalidations_queued: u64,
    /// Results larger than `max_value_bytes`: returned, not stored.
    pub oversized: u64,
    /// Hits served by the in-process tier (`.local_cache(n)`); also in `hits`.
    pub local_hits: u64,
    /// Entries whose value was cloned from a kept one instead of decoded
    /// (`.reuse_decoded(bytes)`).
    pub reused_decodes: u64,
    /// Calls that ran their query without looking at the cache, because the database's change
    /// feed of a table they depend on was down (see `watch_postgres`).
    pub bypassed: u64,
    /// Verified hits (`verify`) whose value differed from the database's with no invalidation
    /// to explain it: a missing invalidation (each also logged and invalidated).
    pub stale_detected: u64,
    /// Results of functions with `result_tags` not stored because one of their tags was
    /// invalidated while their query ran (returned all the same).
    pub skipped_stores: u64,
    /// Calls of functions with `admit_after = n` that ran their query without the cache: their
    /// key had not been called `n` times before in this process within its TTL.
    pub unadmitted: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub decode_errors: AtomicU64,
    pub writes: AtomicU64,
    pub invalidations: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale_served: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_errors: AtomicU64,
    pub lock_waits: AtomicU64,
    pub invalidations_queued: AtomicU64,
    pub oversized: AtomicU64,
    pub local_hits: AtomicU64,
    pub reused_decodes: AtomicU64,
    pub bypassed: AtomicU64,
    pub stale_detected: AtomicU64,
    pub skipped_stores: AtomicU64,
    pub unadmitted: AtomicU64,
}

impl Stats {
    /// Counts one more.
    pub fn count(counter: &AtomicU64) {
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
            coalesced: self.coalesced.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            refresh_errors: self.refresh_errors.load(Relaxed),
            lock_waits: self.lock_waits.load(Relaxed),
            invalidations_queued: self.invalidations_queued.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            local_hits: self.local_hits.load(Relaxed),
            reused_decodes: self.reused_decodes.load(Relaxed),
            bypassed: self.bypassed.load(Relaxed),
            stale_detected: self.stale_detected.load(Relaxed),
            skipped_stores: self.skipped_stores.load(Relaxed),
            unadmitted: self.unadmitted.load(Relaxed),
        }
    }
}
