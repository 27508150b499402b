//! The rules of an entry: how long it is fresh (TTL or `none_ttl`, ± jitter), how long it is
//! kept past that (`stale`), whether it is stored at all, and when it is refreshed early.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::decoded::{Copier, MIN_PAYLOAD};
use crate::engine::Engine;
use crate::keyspace::{CounterNames, Target};
use crate::outcome::Adapter;
use crate::stats::Stats;

/// The longest an entry is kept (and the longest `ttl`): less than `COUNTER_KEEP`, so that an
/// entry computed while one of its counters did not exist (read as 0) is gone before that
/// counter, once incremented, can expire and read as 0 again. (Entries computed under a
/// counter's values stay invalid when it is made again: see `stamp::counter_start`.)
pub(crate) const MAX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// How one function caches, resolved from its attribute and the cache's defaults.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub ttl: Duration,
    /// How long past `ttl` an entry may still be served while it is refreshed.
    pub stale: Duration,
    /// Serve the stale value when its refresh fails (otherwise delete it).
    pub fail_safe: bool,
    /// Fraction of `ttl` by which expiry is moved at random, both ways.
    pub jitter: f64,
    /// Probabilistic early refresh (XFetch).
    pub early: bool,
    /// Take a Redis lease before running the query on a miss.
    pub lock: bool,
    /// Share queries among concurrent callers of a key (see `flight`).
    pub single_flight: bool,
    /// The TTL of empty results (`None`, an empty `Vec`), if not `ttl`.
    pub none_ttl: Option<Duration>,
    /// Whether empty results are stored at all.
    pub cache_none: bool,
    /// Whether the query can be run in the background (its future is `'static`).
    pub refreshable: bool,
    /// The share of hits verified in the background (see `verify`); 0 unless refreshable.
    pub verify: f64,
    /// The function's key name (metrics' `function` label).
    pub function: &'static str,
}

/// An envelope ready to be stored and shared: the entry's bytes, how long to keep it, and
/// whether to store it at all.
pub(crate) struct Envelope {
    pub bytes: Arc<[u8]>,
    pub keep: Duration,
    pub storable: bool,
    /// The value, kept for the local tier's entry (see `lookup::Engine::local_value`).
    pub kept: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Engine {
    /// What to store for a query's `result` (see `envelope`), if it is cacheable; its value is
    /// kept for reuse (see `decoded`) when it is to be stored.
    pub fn prepare<R, A: Adapter<R>>(
        &self,
        target: &Target,
        result: &R,
        policy: &Policy,
        stamp: Option<u64>,
        query_time: Duration,
        copier: Option<Copier<A::Value>>,
    ) -> Option<Envelope> {
        let value = A::value(result)?;
        let mut envelope = self.envelope(target, value, A::is_empty(value), policy, stamp, query_time)?;
        if let (true, Some(decoded), Some(copier)) = (envelope.storable, &self.decoded, copier) {
            decoded.computed(target.key(), &envelope.bytes, value, copier);
        }
        if let (true, Some(_), Some(copier)) = (envelope.storable, &self.local, copier)
            && envelope.bytes.len() >= MIN_PAYLOAD
        {
            envelope.kept = Some(copier.keep(value));
        }
        Some(envelope)
    }

    /// The envelope of a fresh result, how long to keep it (TTL or `none_ttl`, ± jitter, plus
    /// `stale`) and whether to store it at all. Synchronous, so that no reference to the value
    /// lives across an `await`.
    fn envelope<V: Serialize + DeserializeOwned + 'static>(
        &self,
        target: &Target,
        value: &V,
        empty: bool,
        policy: &Policy,
        stamp: Option<u64>,
        query_time: Duration,
    ) -> Option<Envelope> {
        let ttl = if empty { policy.none_ttl.unwrap_or(policy.ttl) } else { policy.ttl };
        let fresh = jittered(ttl.min(MAX_KEEP), policy.jitter);
        let now = now_ms();
        let meta = Meta {
            fresh_until_ms: now + fresh.as_millis() as u64,
            query_ms: query_time.as_millis().min(u32::MAX as u128) as u32,
            stamp: stamp.unwrap_or_default(),
            stored_ms: now,
        };
        let key = target.key();
        // Named in the entry, for tools that tell whether it is still valid.
        let depends: CounterNames =
            target.depends().iter().map(|name| self.keyspace.relative(name)).collect();
        match codec::encode_with(value, meta, &depends, self.settings.compress_above) {
            Ok(bytes) => {
                let max = self.settings.max_value_bytes;
                let oversized = bytes.len() > max;
                if oversized {
                    Stats::count(&self.stats.oversized);
                    let err = CacheError::Oversized { size: bytes.len(), max };
                    self.failed("set", key, &err);
                }
                Some(Envelope {
                    bytes: bytes.into(),
                    keep: fresh.saturating_add(policy.stale).min(MAX_KEEP),
                    // Unknown counters (the cache failed) could not be checked later.
                    storable: stamp.is_some() && (policy.cache_none || !empty) && !oversized,
                    kept: None,
                })
            }
            Err(err) => {
                self.failed("encode", key, &err);
                None
            }
        }
    }
}

/// `ttl` moved by a uniformly random fraction in `[-jitter, +jitter]`.
fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    ttl.mul_f64(1.0 + jitter * (2.0 * fastrand::f64() - 1.0)).max(Duration::from_millis(1))
}

/// XFetch (Vattani et al., VLDB 2015): refresh early with a probability that grows as expiry
/// nears, faster for entries whose query took longer: `now - query_time * ln(u) >= expiry`.
pub(crate) fn early_refresh_due(now_ms: u64, meta: Meta) -> bool {
    let u = fastrand::f64().max(f64::MIN_POSITIVE);
    now_ms as f64 - f64::from(meta.query_ms.max(1)) * u.ln() >= meta.fresh_until_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueryCache;

    #[test]
    fn jitter_stays_within_its_bounds_and_spreads() {
        let ttl = Duration::from_secs(100);
        let all: Vec<_> = (0..1000).map(|_| jittered(ttl, 0.1)).collect();
        assert!(all.iter().all(|d| *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110)));
        assert!(
            all.iter().any(|d| *d < Duration::from_secs(95))
                && all.iter().any(|d| *d > Duration::from_secs(105))
        );
        assert_eq!(jittered(ttl, 0.0), ttl);
    }

    /// `ttl = 18446744073709551615` compiles, and a builder takes `Duration::MAX`: capped.
    #[test]
    fn huge_durations_are_capped_not_overflowed() {
        let cache = QueryCache::in_memory(10);
        let policy = Policy {
            ttl: Duration::MAX,
            stale: Duration::MAX,
            fail_safe: true,
            jitter: 0.5,
            early: false,
            lock: false,
            single_flight: true,
            none_ttl: None,
            cache_none: true,
            refreshable: false,
            verify: 0.0,
            function: "f",
        };
        let target = cache.engine().keyspace.target("f:v0:", 1, &[], &[]);
        for _ in 0..20 {
            let envelope =
                cache.engine().envelope(&target, &1u8, false, &policy, Some(0), Duration::ZERO).unwrap();
            assert_eq!(envelope.keep, MAX_KEEP);
            let meta = codec::meta(&envelope.bytes).unwrap();
            assert!(meta.fresh_until_ms <= now_ms() + 2 * MAX_KEEP.as_millis() as u64);
        }
    }

    #[test]
    fn early_refresh_grows_likelier_near_expiry() {
        let meta = Meta { fresh_until_ms: 10_000, query_ms: 100, stamp: 0, stored_ms: 0 };
        let due = |now| (0..2000).filter(|_| early_refresh_due(now, meta)).count();
        assert_eq!(due(0), 0, "10 s ahead of a 100 ms query: never");
        let (far, near) = (due(9_700), due(9_950));
        assert!(far < near, "{far} < {near}");
        assert_eq!(due(10_000), 2000, "at expiry: always");
    }
}
