//! The path of a cached call, top to bottom.
//!
//! 1. `find`: join the key's flight. The leader GETs the entry and hands its bytes to the
//!    callers waiting on the same key; a fresh entry is returned. A stale one (past its TTL,
//!    within `stale`) is returned too, and refreshed once in the background.
//! 2. `compute`, on a miss: optionally take a Redis lease (`lock = true`) so that one process
//!    runs the query while the others poll for its result; run the query; store the result
//!    with its TTL (± jitter) + `stale`; hand it to the waiters.
//! 3. `spawn_refresh`: one background refresh per key and process (and, with `lock`, across
//!    processes). When it fails, the stale value stays and is served (fail-safe), or is deleted
//!    so that the next caller sees the error (`fail_safe = false`).
//!
//! Every cache failure on the way is counted and turns into "run the query".

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::Adapter;
use crate::codec::{self, Meta};
use crate::flight::{self, Leader, Role};
use crate::stats::Counters;
use crate::{CacheError, QueryCache};

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
    /// Share lookups and queries among concurrent callers of a key (see `flight`).
    pub single_flight: bool,
    /// Whether the query can be run in the background (its future is `'static`).
    pub refreshable: bool,
}

/// What `find` found.
pub(crate) enum Found<V> {
    /// A value to return; `refresh` asks for a background refresh of it, `fresh_until` is the
    /// freshness it had (a refresh that finds another one will skip).
    Value { value: V, refresh: Option<u64> },
    /// Nothing usable: the caller runs the query, leading the key's flight if it has one.
    Missing(Option<Leader>),
}

/// Unix time in milliseconds (entries carry wall-clock expiry, shared across processes).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The time between two looks for another process's result, while it holds the lease.
const LEASE_POLL: Duration = Duration::from_millis(10);

impl QueryCache {
    /// Step 1: the entry under `key`, through the key's flight.
    pub(crate) async fn find<V: DeserializeOwned + 'static>(&self, key: &str, policy: &Policy) -> Found<V> {
        let counters = &self.inner().counters;
        loop {
            let joined = policy.single_flight.then(|| self.inner().flights.join(key));
            let leader = match joined {
                None => None,
                Some(Role::Leader(leader)) => Some(leader),
                Some(Role::Waiter(rx)) => {
                    // The leader's bytes, or go round again (it failed or was dropped).
                    let Some(bytes) = flight::wait(rx).await else { continue };
                    let Ok((value, meta)) = codec::decode::<V>(&bytes) else {
                        Counters::bump(&counters.misses);
                        return Found::Missing(None);
                    };
                    Counters::bump(&counters.hits);
                    Counters::bump(&counters.coalesced);
                    if policy.refreshable && meta.fresh_until_ms <= now_ms() {
                        Counters::bump(&counters.stale_served);
                    }
                    return Found::Value { value, refresh: None };
                }
            };
            let Some((value, meta, bytes)) = self.read::<V>(key).await else {
                Counters::bump(&counters.misses);
                return Found::Missing(leader);
            };
            let now = now_ms();
            let stale = now >= meta.fresh_until_ms;
            if stale && !policy.refreshable {
                // Nobody can refresh it in the background: treat it as expired.
                Counters::bump(&counters.misses);
                return Found::Missing(leader);
            }
            if let Some(leader) = leader {
                leader.finish(Some(bytes));
            }
            Counters::bump(&counters.hits);
            if stale {
                Counters::bump(&counters.stale_served);
            }
            let refresh =
                (stale || (policy.early && early_refresh_due(now, meta))).then_some(meta.fresh_until_ms);
            return Found::Value { value, refresh };
        }
    }

    /// Step 2: runs the query for a missing entry, stores and shares its result.
    pub(crate) async fn compute<R, A, F>(
        &self,
        key: &str,
        policy: &Policy,
        leader: Option<Leader>,
        body: F,
    ) -> R
    where
        A: Adapter<R>,
        F: Future<Output = R>,
    {
        let mut lease = None;
        if policy.lock {
            match self.lease_or_result::<A::Value>(key).await {
                LeaseWait::Lease(held) => lease = Some(held),
                LeaseWait::Result(value, bytes) => {
                    if let Some(leader) = leader {
                        leader.finish(Some(bytes));
                    }
                    return A::wrap(value);
                }
                LeaseWait::GaveUp => {}
            }
        }
        let started = Instant::now();
        let result = body.await;
        let entry = A::value(&result).and_then(|v| self.envelope(key, v, policy, started.elapsed()));
        if let Some((bytes, keep)) = &entry {
            self.store(key, bytes, *keep).await;
        }
        if let Some(leader) = leader {
            // The waiters get the value even if it could not be stored.
            leader.finish(entry.map(|(bytes, _)| bytes));
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
        result
    }

    /// Step 3: refreshes `key` in the background, unless a refresh of it is under way here.
    pub(crate) fn spawn_refresh<R, A, F>(&self, key: &str, policy: Policy, seen_fresh_until: u64, body: F)
    where
        A: Adapter<R>,
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        // A flight of its own: at most one refresh per key in this process.
        let Role::Leader(refreshing) = self.inner().flights.join(&format!("{key}\0refresh")) else {
            return;
        };
        let (cache, key) = (self.clone(), key.to_owned());
        tokio::spawn(async move {
            let _refreshing = refreshing; // leaves the flight however the task ends
            cache.refresh::<R, A, F>(&key, &policy, seen_fresh_until, body).await;
        });
    }

    async fn refresh<R, A, F>(&self, key: &str, policy: &Policy, seen_fresh_until: u64, body: F)
    where
        A: Adapter<R>,
        F: Future<Output = R>,
    {
        // Another refresh (here or in another process) may have landed meanwhile.
        if let Ok(Some(bytes)) = self.bounded(self.inner().store.get(key)).await
            && codec::meta(&bytes).is_ok_and(|m| m.fresh_until_ms != seen_fresh_until)
        {
            return;
        }
        let lease = if policy.lock {
            match self.try_lease(key).await {
                Some(lease) => Some(lease),
                None => return, // another process refreshes it
            }
        } else {
            None
        };
        let started = Instant::now();
        let result = body.await;
        let counters = &self.inner().counters;
        let entry = A::value(&result).and_then(|v| self.envelope(key, v, policy, started.elapsed()));
        match entry {
            Some((bytes, keep)) => {
                if self.store(key, &bytes, keep).await {
                    Counters::bump(&counters.refreshes);
                }
            }
            None => {
                Counters::bump(&counters.refresh_errors);
                if policy.fail_safe {
                    tracing::warn!(key, "cached_query: background refresh failed; serving the stale value");
                } else {
                    tracing::warn!(key, "cached_query: background refresh failed; dropping the stale value");
                    let _ = self.bounded(self.inner().store.delete(key)).await;
                }
            }
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
    }

    /// GETs and decodes the entry under `key`; failures are counted and logged.
    async fn read<V: DeserializeOwned + 'static>(&self, key: &str) -> Option<(V, Meta, Arc<[u8]>)> {
        match self.bounded(self.inner().store.get(key)).await {
            Ok(Some(bytes)) => match codec::decode(&bytes) {
                Ok((value, meta)) => Some((value, meta, bytes.into())),
                Err(err) => {
                    Counters::bump(&self.inner().counters.decode_errors);
                    self.failed("decode", key, &CacheError::Decode(err.to_string()));
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                self.failed("get", key, &err);
                None
            }
        }
    }

    /// The envelope of a fresh result, and how long Redis should keep it (TTL ± jitter,
    /// plus `stale`). Synchronous, so that no reference to the value lives across an `await`.
    fn envelope<V: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        value: &V,
        policy: &Policy,
        query_time: Duration,
    ) -> Option<(Arc<[u8]>, Duration)> {
        let fresh = jittered(policy.ttl, policy.jitter);
        let meta = Meta {
            fresh_until_ms: now_ms() + fresh.as_millis() as u64,
            query_ms: query_time.as_millis().min(u32::MAX as u128) as u32,
        };
        match codec::encode(value, meta) {
            Ok(bytes) => Some((bytes.into(), fresh + policy.stale)),
            Err(err) => {
                self.failed("encode", key, &err);
                None
            }
        }
    }

    /// Stores an envelope; failures are counted and logged.
    async fn store(&self, key: &str, bytes: &[u8], keep: Duration) -> bool {
        match self.bounded(self.inner().store.set(key, bytes, keep)).await {
            Ok(()) => {
                Counters::bump(&self.inner().counters.writes);
                true
            }
            Err(err) => {
                self.failed("set", key, &err);
                false
            }
        }
    }

    /// Takes the lease of `key`, or waits for the result of the process holding it, up to
    /// the cache's `lock_wait`.
    async fn lease_or_result<V: DeserializeOwned + 'static>(&self, key: &str) -> LeaseWait<V> {
        let deadline = Instant::now() + self.inner().settings.lock_wait;
        loop {
            if let Some(lease) = self.try_lease(key).await {
                return LeaseWait::Lease(lease);
            }
            if Instant::now() >= deadline {
                return LeaseWait::GaveUp;
            }
            tokio::time::sleep(LEASE_POLL).await;
            if let Some((value, _, bytes)) = self.read::<V>(key).await {
                Counters::bump(&self.inner().counters.lock_waits);
                return LeaseWait::Result(value, bytes);
            }
        }
    }

    /// `SET {key}:lock <token> NX PX <lease>`: `None` if another caller holds it (or Redis
    /// failed, which is counted).
    async fn try_lease(&self, key: &str) -> Option<Lease> {
        let lease = Lease { key: format!("{key}:lock"), token: format!("{:016x}", fastrand::u64(..)) };
        let taken = self.inner().store.try_lock(&lease.key, &lease.token, self.inner().settings.lock_lease);
        match self.bounded(taken).await {
            Ok(true) => Some(lease),
            Ok(false) => None,
            Err(err) => {
                self.failed("lock", &lease.key, &err);
                None
            }
        }
    }

    /// Deletes the lease if it is still ours (compare-and-delete).
    async fn release(&self, lease: Lease) {
        if let Err(err) = self.bounded(self.inner().store.unlock(&lease.key, &lease.token)).await {
            self.failed("unlock", &lease.key, &err);
        }
    }
}

struct Lease {
    key: String,
    token: String,
}

enum LeaseWait<V> {
    Lease(Lease),
    Result(V, Arc<[u8]>),
    GaveUp,
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
fn early_refresh_due(now_ms: u64, meta: Meta) -> bool {
    let u = fastrand::f64().max(f64::MIN_POSITIVE);
    now_ms as f64 - f64::from(meta.query_ms.max(1)) * u.ln() >= meta.fresh_until_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn early_refresh_grows_likelier_near_expiry() {
        let meta = Meta { fresh_until_ms: 10_000, query_ms: 100 };
        let due = |now| (0..2000).filter(|_| early_refresh_due(now, meta)).count();
        assert_eq!(due(0), 0, "10 s ahead of a 100 ms query: never");
        let (far, near) = (due(9_700), due(9_950));
        assert!(far < near, "{far} < {near}");
        assert_eq!(due(10_000), 2000, "at expiry: always");
    }
}
