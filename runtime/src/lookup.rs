//! The path of a cached call, top to bottom.
//!
//! 1. `find`: one round trip reads the entry and the invalidation counters it depends on (the
//!    namespace's, the key's, its tags'; on a single server, once known, they are kept in the
//!    process by client tracking and a warm hit is one `GET`: see `store::tracking`). An entry is valid only if it was computed from a read
//!    that began after the last increment of each: this is what makes an invalidation final
//!    (no stale set, see the README). A fresh entry is returned; a stale one (past its TTL,
//!    within `stale`) is returned too and refreshed once in the background.
//! 2. On a miss, the key's flight: the first caller leads, checks the entry once more (a flight
//!    may have just ended) and runs the query; the others wait and take its result if it was
//!    computed from the same counters they read, or if its leader joined after they first
//!    did (it read the counters after they began), and go round again otherwise.
//! 3. `compute`: optionally take a Redis lease (`lock = true`) so that one process runs the query
//!    while the others poll for its result; run the query; store the result with its TTL
//!    (± jitter) + `stale` and the counters read before it ran; hand it to the waiters.
//! 4. `spawn_refresh`: one background refresh per key and process (and, with `lock`, across
//!    processes). When it fails, the stale value stays and is served (fail-safe), or is deleted
//!    so that the next caller sees the error (`fail_safe = false`).
//!
//! Every cache failure on the way is counted and turns into "run the query".

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::decoded::Copier;
use crate::flight::{self, Leader, Role, Shared};
use crate::keyspace::{self, Target};
use crate::local::{Local, LocalEntry};
use crate::outcome::Adapter;
use crate::stamp::COUNTER_KEEP;
use crate::stats::Counters;
use crate::{CacheError, QueryCache};

/// The longest an entry is kept (and the longest `ttl`): less than `COUNTER_KEEP`, so that an
/// entry computed while one of its counters did not exist (read as 0) is gone before that
/// counter, once incremented, can expire and read as 0 again. (Entries computed under a
/// counter's values stay invalid when it is made again: see `stamp::counter_start`.)
const MAX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

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
}

/// The stamp of the counters read for a call (see `stamp`); `None` when they could not be
/// read (the cache failed).
type Stamp = Option<u64>;

/// What `find` found.
pub(crate) enum Found<V> {
    /// A value to return; `refresh` asks for a background refresh of it, with the freshness
    /// it had (a refresh that finds another one landed will skip).
    Value { value: V, refresh: Option<u64> },
    /// Nothing usable: the caller runs the query.
    Missing(Miss),
}

/// What a caller that must run the query carries to `compute`.
pub(crate) struct Miss {
    /// The key's flight, if this caller leads one.
    leader: Option<Leader>,
    /// The counters read before the query.
    stamp: Stamp,
    /// The local tier's epoch before the read (see `local`).
    epoch: Option<u64>,
}

/// What one read of an entry gave.
enum Read<V> {
    /// A valid entry (its counters unchanged).
    Hit { value: V, meta: Meta, bytes: Vec<u8> },
    /// None, or one that was invalidated, or one that does not decode.
    Miss { stamp: Stamp },
}

/// Failed queries of a key that its waiters wait for, one after the other, before each runs
/// its own.
const MAX_HANDOVERS: u32 = 2;

/// The time between two looks for another process's result, while it holds the lease.
const LEASE_POLL: Duration = Duration::from_millis(10);

impl QueryCache {
    /// Steps 1 and 2: the entry of `target`, or the duty to compute it.
    pub(crate) async fn find<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        policy: &Policy,
        copier: Option<Copier<V>>,
    ) -> Found<V> {
        let counters = &self.inner().counters;
        let local = self.inner().local.as_deref();
        let epoch = local.map(Local::epoch);
        if let Some(entry) = self.local_get(target).await
            && let Ok((value, meta)) = self.decode(target.key(), &entry.bytes, copier)
        {
            Counters::bump(&counters.hits);
            Counters::bump(&counters.local_hits);
            let refresh = (policy.early && early_refresh_due(now_ms(), meta)).then_some(meta.fresh_until_ms);
            return Found::Value { value, refresh };
        }
        let stamp = match self.read(target, copier).await {
            Read::Hit { value, meta, bytes } => {
                if let (Some(local), Some(epoch)) = (local, epoch) {
                    local.put(epoch, target.key(), self.local_entry(target, bytes.into(), meta)).await;
                }
                match self.serve(value, meta, policy) {
                    Ok(found) => return found,
                    Err(()) => Some(meta.stamp), // stale, and nobody can refresh it: a miss
                }
            }
            Read::Miss { stamp } => stamp,
        };
        if !policy.single_flight {
            Counters::bump(&counters.misses);
            return Found::Missing(Miss { leader: None, stamp, epoch });
        }
        let (mut first_ticket, mut failures) = (None, 0);
        loop {
            let (role, ticket) = self.inner().flights.join(target.key());
            let first_ticket = *first_ticket.get_or_insert(ticket);
            match role {
                Role::Waiter(rx) => {
                    // The leader's result, if computed from the counters this caller read, or
                    // by a leader that joined after this caller first did: it read the
                    // counters after this call began, so its result reflects every
                    // invalidation that had returned by then. (Not a leader that came
                    // earlier with other counters, nor one whose counters this caller could
                    // not compare, having failed to read its own.)
                    let (bytes, leader_ticket) = match flight::wait(rx).await {
                        Shared::Done(bytes, ticket) => (bytes, ticket),
                        Shared::Abandoned => continue,
                        // One waiter runs a failed query again; if that fails too, each caller
                        // runs its own rather than wait for as many failures as callers.
                        Shared::Failed => {
                            failures += 1;
                            if failures < MAX_HANDOVERS {
                                continue;
                            }
                            Counters::bump(&counters.misses);
                            return Found::Missing(Miss { leader: None, stamp, epoch });
                        }
                    };
                    if let Ok((value, meta)) = self.decode(target.key(), &bytes, copier)
                        && (stamp == Some(meta.stamp) || leader_ticket > first_ticket)
                    {
                        Counters::bump(&counters.hits);
                        Counters::bump(&counters.coalesced);
                        return Found::Value { value, refresh: None };
                    }
                }
                Role::Leader(leader) => {
                    // A flight may have ended between this caller's read and its joining.
                    // (Quietly: a bad entry was counted by the first read.)
                    return match self.read_counted(target, copier, false).await {
                        Read::Hit { value, meta, bytes } if now_ms() < meta.fresh_until_ms => {
                            leader.finish(Some(bytes.into()));
                            Counters::bump(&counters.hits);
                            Found::Value { value, refresh: None }
                        }
                        Read::Hit { meta, .. } => {
                            Counters::bump(&counters.misses);
                            Found::Missing(Miss { leader: Some(leader), stamp: Some(meta.stamp), epoch })
                        }
                        Read::Miss { stamp } => {
                            Counters::bump(&counters.misses);
                            Found::Missing(Miss { leader: Some(leader), stamp, epoch })
                        }
                    };
                }
            }
        }
    }

    /// A valid entry: fresh, or stale and refreshable (`Err` otherwise).
    fn serve<V>(&self, value: V, meta: Meta, policy: &Policy) -> Result<Found<V>, ()> {
        let counters = &self.inner().counters;
        let now = now_ms();
        let stale = now >= meta.fresh_until_ms;
        if stale && !policy.refreshable {
            return Err(());
        }
        Counters::bump(&counters.hits);
        if stale {
            Counters::bump(&counters.stale_served);
        }
        let refresh =
            (stale || (policy.early && early_refresh_due(now, meta))).then_some(meta.fresh_until_ms);
        Ok(Found::Value { value, refresh })
    }

    /// Step 3: runs the query for a missing entry, stores and shares its result.
    pub(crate) async fn compute<R, A, F>(
        &self,
        target: &Target,
        policy: &Policy,
        Miss { leader, stamp, epoch }: Miss,
        body: F,
        copier: Option<Copier<A::Value>>,
    ) -> R
    where
        A: Adapter<R>,
        F: Future<Output = R>,
    {
        let mut lease = None;
        if policy.lock {
            match self.lease_or_result::<A::Value>(target).await {
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
        let fresh = self.fresh::<R, A>(target, &result, policy, stamp, started.elapsed(), copier);
        if let Some(fresh) = &fresh
            && fresh.store
            && self.store(target.key(), &fresh.bytes, fresh.keep).await
        {
            self.written(target, fresh, epoch).await;
        }
        if let Some(leader) = leader {
            // The waiters get the value even if it was not stored.
            leader.finish(fresh.map(|fresh| fresh.bytes));
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
        result
    }

    /// Step 4: refreshes `target` in the background, unless a refresh of it is under way here.
    pub(crate) fn spawn_refresh<R, A, F>(
        &self,
        target: &Target,
        policy: Policy,
        seen_fresh_until: u64,
        body: F,
        copier: Option<Copier<A::Value>>,
    ) where
        A: Adapter<R>,
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        // A flight of its own: at most one refresh per key in this process.
        let (Role::Leader(refreshing), _) = self.inner().flights.join(&format!("{}\0refresh", target.key()))
        else {
            return;
        };
        let (cache, target) = (self.clone(), target.clone());
        tokio::spawn(async move {
            let _refreshing = refreshing; // leaves the flight however the task ends
            cache.refresh::<R, A, F>(&target, &policy, seen_fresh_until, body, copier).await;
        });
    }

    async fn refresh<R, A, F>(
        &self,
        target: &Target,
        policy: &Policy,
        seen_fresh_until: u64,
        body: F,
        copier: Option<Copier<A::Value>>,
    ) where
        A: Adapter<R>,
        F: Future<Output = R>,
    {
        let epoch = self.inner().local.as_deref().map(Local::epoch);
        // The counters to store with the new value, read before its query runs; and another
        // refresh (here or in another process) may have landed meanwhile.
        let stamp = match self.read::<A::Value>(target, None).await {
            Read::Hit { meta, .. } if meta.fresh_until_ms != seen_fresh_until => return,
            Read::Hit { meta, .. } => meta.stamp,
            Read::Miss { stamp: Some(stamp) } => stamp,
            // The cache failed (counted): no refresh now, and the stale value stays.
            Read::Miss { stamp: None } => return,
        };
        let lease = if policy.lock {
            match self.try_lease(target.key()).await {
                // Another process may have refreshed it, and released the lease, since this
                // one looked: look once more, holding the lease.
                Leasing::Taken(lease) => match self.read::<A::Value>(target, None).await {
                    Read::Hit { meta, .. } if meta.fresh_until_ms != seen_fresh_until => {
                        self.release(lease).await;
                        return;
                    }
                    _ => Some(lease),
                },
                // Another process refreshes it, or the cache failed (counted): no refresh.
                Leasing::Held | Leasing::Failed => return,
            }
        } else {
            None
        };
        let started = Instant::now();
        let result = body.await;
        let counters = &self.inner().counters;
        let fresh = self.fresh::<R, A>(target, &result, policy, Some(stamp), started.elapsed(), copier);
        match fresh {
            Some(fresh) if !fresh.store => {
                // Now empty, with `cache_none = false`: the old value must not stay.
                self.remove(target.key()).await;
            }
            Some(fresh) => {
                if self.store(target.key(), &fresh.bytes, fresh.keep).await {
                    Counters::bump(&counters.refreshes);
                    self.written(target, &fresh, epoch).await;
                }
            }
            None => {
                Counters::bump(&counters.refresh_errors);
                if policy.fail_safe {
                    tracing::warn!(key = %target.key(), "cached_query: background refresh failed; serving the stale value");
                } else {
                    tracing::warn!(key = %target.key(), "cached_query: background refresh failed; dropping the stale value");
                    self.remove(target.key()).await;
                }
            }
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
    }

    /// Decodes the entry under `key`, reusing a kept decode of the same bytes when it can
    /// (see `decoded`).
    fn decode<V: DeserializeOwned + 'static>(
        &self,
        key: &str,
        bytes: &[u8],
        copier: Option<Copier<V>>,
    ) -> Result<(V, Meta), codec::DecodeError> {
        match (&self.inner().decoded, copier) {
            (Some(decoded), Some(copier)) => {
                decoded.decode(key, bytes, copier, &self.inner().counters.reused_decodes)
            }
            _ => codec::decode(bytes),
        }
    }

    /// What the local tier keeps of an entry.
    fn local_entry(&self, target: &Target, bytes: Arc<[u8]>, meta: Meta) -> LocalEntry {
        let gen_keys = target.counters(&self.inner().keyspace).iter().map(|name| name.to_string()).collect();
        LocalEntry { bytes, fresh_until_ms: meta.fresh_until_ms, gen_keys }
    }

    /// A fresh entry of the local tier, if it has one and may serve.
    async fn local_get(&self, target: &Target) -> Option<LocalEntry> {
        self.inner().local.as_ref()?.get(target.key()).await
    }

    /// After this instance stored an entry (and announced it, see `store`): keep it locally.
    async fn written(&self, target: &Target, fresh: &Fresh, epoch: Option<u64>) {
        let (Some(local), Some(epoch)) = (self.inner().local.as_deref(), epoch) else { return };
        let Ok(meta) = codec::meta(&fresh.bytes) else { return };
        local.put(epoch, target.key(), self.local_entry(target, fresh.bytes.clone(), meta)).await;
    }

    /// Deletes an entry, telling the other instances to drop their copies. (A failure leaves
    /// an entry its counters still allow: nothing to count.)
    async fn remove(&self, key: &str) {
        let message = self.written_message(key);
        let _ = self.bounded(self.inner().store.delete(key, self.announce(&message))).await;
    }

    /// Reads the entry and its counters; failures are counted and logged.
    async fn read<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        copier: Option<Copier<V>>,
    ) -> Read<V> {
        self.read_counted(target, copier, true).await
    }

    async fn read_counted<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        copier: Option<Copier<V>>,
        count: bool,
    ) -> Read<V> {
        // Invalidations lost to an outage are delivered before anything is served again.
        // (Boxed: this rare path would otherwise make the lookup's future, which is moved a
        // few times on each call, more than twice as large.)
        let health = &self.inner().health;
        if health.has_pending() {
            let delivered = Box::pin(self.deliver_pending(true)).await;
            // Nor if others were queued meanwhile: they must be delivered too.
            if !delivered || health.has_pending() {
                return Read::Miss { stamp: None };
            }
        }
        let names = target.counters(&self.inner().keyspace);
        let fetch = self.inner().store.fetch(target.key(), &names);
        let (bytes, stamp) = match self.bounded(fetch).await {
            Ok(found) => found,
            Err(err) => {
                if count {
                    self.failed("get", target.key(), &err);
                }
                return Read::Miss { stamp: None };
            }
        };
        let Some(bytes) = bytes else { return Read::Miss { stamp: Some(stamp) } };
        if codec::meta(&bytes).is_ok_and(|meta| meta.stamp != stamp) {
            return Read::Miss { stamp: Some(stamp) }; // invalidated since it was computed: not decoded
        }
        match self.decode(target.key(), &bytes, copier) {
            Ok((value, meta)) => Read::Hit { value, meta, bytes },
            Err(err) => {
                if count {
                    Counters::bump(&self.inner().counters.decode_errors);
                    self.failed("decode", target.key(), &CacheError::Decode(err.to_string()));
                }
                Read::Miss { stamp: Some(stamp) }
            }
        }
    }

    /// What to store for a query's `result` (see `envelope`), if it is cacheable; its value is
    /// kept for reuse (see `decoded`) when it is to be stored.
    fn fresh<R, A: Adapter<R>>(
        &self,
        target: &Target,
        result: &R,
        policy: &Policy,
        stamp: Stamp,
        query_time: Duration,
        copier: Option<Copier<A::Value>>,
    ) -> Option<Fresh> {
        let value = A::value(result)?;
        let fresh = self.envelope(target.key(), value, A::is_empty(value), policy, stamp, query_time)?;
        if let (true, Some(decoded), Some(copier)) = (fresh.store, &self.inner().decoded, copier) {
            decoded.computed(target.key(), &fresh.bytes, value, copier);
        }
        Some(fresh)
    }

    /// The envelope of a fresh result, how long to keep it (TTL or `none_ttl`, ± jitter, plus
    /// `stale`) and whether to store it at all. Synchronous, so that no reference to the value
    /// lives across an `await`.
    fn envelope<V: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        value: &V,
        empty: bool,
        policy: &Policy,
        stamp: Stamp,
        query_time: Duration,
    ) -> Option<Fresh> {
        let ttl = if empty { policy.none_ttl.unwrap_or(policy.ttl) } else { policy.ttl };
        let fresh = jittered(ttl.min(MAX_KEEP), policy.jitter);
        let meta = Meta {
            fresh_until_ms: now_ms() + fresh.as_millis() as u64,
            query_ms: query_time.as_millis().min(u32::MAX as u128) as u32,
            stamp: stamp.unwrap_or_default(),
        };
        match codec::encode(value, meta) {
            Ok(bytes) => {
                let max = self.inner().settings.max_value_bytes;
                let oversized = bytes.len() > max;
                if oversized {
                    Counters::bump(&self.inner().counters.oversized);
                    let err = CacheError::Encode(format!(
                        "{} bytes, more than max_value_bytes ({max})",
                        bytes.len()
                    ));
                    self.failed("set", key, &err);
                }
                Some(Fresh {
                    bytes: bytes.into(),
                    keep: fresh.saturating_add(policy.stale).min(MAX_KEEP),
                    // Unknown counters (the cache failed) could not be checked later.
                    store: stamp.is_some() && (policy.cache_none || !empty) && !oversized,
                })
            }
            Err(err) => {
                self.failed("encode", key, &err);
                None
            }
        }
    }

    /// Stores an envelope, telling the other instances to drop their copies (in the same round
    /// trip); failures are counted and logged.
    async fn store(&self, key: &str, bytes: &[u8], keep: Duration) -> bool {
        let message = self.written_message(key);
        match self.bounded(self.inner().store.set(key, bytes, keep, self.announce(&message))).await {
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

    /// Increments invalidation counters: every entry checked against them is invalid from the
    /// moment this returns. The local tier drops its entries that depend on them in any case
    /// (when Redis was not reached, the invalidation is queued, and older values must not be
    /// served from here meanwhile).
    pub(crate) async fn bump(&self, gen_keys: &[String]) -> Result<(), CacheError> {
        let message = self.invalidation_message(gen_keys);
        let result = self.bounded(self.announced_bump(gen_keys, &message)).await;
        if let Some(local) = &self.inner().local {
            local.invalidated(gen_keys);
        }
        result
    }

    /// The backplane's message for an invalidation of `gen_keys` (Redis only), sent by every
    /// instance: the others' local tiers depend on it, whether or not this one has one.
    pub(crate) fn invalidation_message(&self, gen_keys: &[String]) -> Option<Vec<u8>> {
        self.inner().backplane.as_ref().map(|backplane| backplane.invalidated(gen_keys))
    }

    /// The backplane's message for a write or delete of `key` (Redis only).
    pub(crate) fn written_message(&self, key: &str) -> Option<Vec<u8>> {
        self.inner().backplane.as_ref().map(|backplane| backplane.written(key))
    }

    /// The backplane's channel and `message`, for the store to publish with its write.
    pub(crate) fn announce<'a>(&'a self, message: &'a Option<Vec<u8>>) -> Option<(&'a str, &'a [u8])> {
        self.inner().backplane.as_ref().zip(message.as_deref()).map(|(b, m)| (b.channel(), m))
    }

    /// The store operation that increments `gen_keys` and publishes `message` with them.
    pub(crate) fn announced_bump<'a>(
        &'a self,
        gen_keys: &'a [String],
        message: &'a Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), CacheError>> + 'a {
        self.inner().store.bump(gen_keys, COUNTER_KEEP, self.announce(message))
    }

    /// Takes the lease of the target's key, or waits for the result of the process holding
    /// it, up to the cache's `lock_wait`.
    async fn lease_or_result<V: DeserializeOwned + 'static>(&self, target: &Target) -> LeaseWait<V> {
        let deadline = Instant::now() + self.inner().settings.lock_wait.min(MAX_KEEP);
        loop {
            match self.try_lease(target.key()).await {
                Leasing::Taken(lease) => {
                    // The previous holder may have stored its result and released the lease
                    // since this caller last looked: look once more, holding the lease.
                    let Some(result) = self.fresh_result(target).await else {
                        return LeaseWait::Lease(lease);
                    };
                    self.release(lease).await;
                    return result;
                }
                // Fail-open: a cache that cannot be reached holds no lease worth waiting for.
                Leasing::Failed => return LeaseWait::GaveUp,
                Leasing::Held => {}
            }
            if Instant::now() >= deadline {
                return LeaseWait::GaveUp;
            }
            tokio::time::sleep(LEASE_POLL).await;
            if let Some(result) = self.fresh_result(target).await {
                return result;
            }
        }
    }

    /// The fresh entry of `target` that another process's query stored, if there is one.
    async fn fresh_result<V: DeserializeOwned + 'static>(&self, target: &Target) -> Option<LeaseWait<V>> {
        match self.read(target, None).await {
            Read::Hit { value, meta, bytes } if now_ms() < meta.fresh_until_ms => {
                Counters::bump(&self.inner().counters.lock_waits);
                Some(LeaseWait::Result(value, bytes.into()))
            }
            _ => None,
        }
    }

    /// `SET {key}:lock <token> NX PX <lease>`.
    async fn try_lease(&self, key: &str) -> Leasing {
        let (key, token) = (keyspace::lease(key), format!("{:016x}", fastrand::u64(..)));
        let taken = self.inner().store.try_lock(&key, &token, self.inner().settings.lock_lease);
        match self.bounded(taken).await {
            Ok(true) => Leasing::Taken(Lease { key, token, cache: Some(self.clone()) }),
            Ok(false) => Leasing::Held,
            Err(err) => {
                self.failed("lock", &key, &err);
                Leasing::Failed
            }
        }
    }

    /// Deletes the lease if it is still ours (compare-and-delete).
    async fn release(&self, mut lease: Lease) {
        self.unlock(&lease.key, &lease.token).await;
        lease.cache = None; // released: nothing left for its `Drop` (unless dropped above)
    }

    async fn unlock(&self, key: &str, token: &str) {
        if let Err(err) = self.bounded(self.inner().store.unlock(key, token)).await {
            self.failed("unlock", key, &err);
        }
    }
}

/// A result ready to be stored and shared.
struct Fresh {
    bytes: Arc<[u8]>,
    keep: Duration,
    store: bool,
}

/// A lease this caller holds (`lock = true`).
struct Lease {
    key: String,
    token: String,
    /// Until it is released: a lease dropped unreleased (its caller's future was dropped
    /// during the query) is released in the background, so that the next callers of the key,
    /// here or in other processes, need not wait `lock_wait` for it to expire.
    cache: Option<QueryCache>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(cache) = self.cache.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (key, token) = (std::mem::take(&mut self.key), std::mem::take(&mut self.token));
        runtime.spawn(async move { cache.unlock(&key, &token).await });
    }
}

/// What an attempt to take a lease gave.
enum Leasing {
    Taken(Lease),
    /// Another caller holds it.
    Held,
    /// The cache failed (counted and logged).
    Failed,
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

    /// A lookup's future is moved a few times on each call, and each move copies all of it:
    /// the in-memory store is synchronous and the rare path (queued invalidations) boxed, so
    /// that it stays small (it was 3 KB with `moka`'s futures and that path in it).
    #[tokio::test]
    async fn a_lookups_future_stays_small() {
        let cache = QueryCache::in_memory(10);
        let target = cache.inner().keyspace.target("f:v0:", 1, &[]);
        let read = cache.read_counted::<Option<String>>(&target, None, true);
        assert!(size_of_val(&read) <= 1024, "{} bytes", size_of_val(&read));
    }

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
        };
        for _ in 0..20 {
            let fresh = cache.envelope("k", &1u8, false, &policy, Some(0), Duration::ZERO).unwrap();
            assert_eq!(fresh.keep, MAX_KEEP);
            let meta = codec::meta(&fresh.bytes).unwrap();
            assert!(meta.fresh_until_ms <= now_ms() + 2 * MAX_KEEP.as_millis() as u64);
        }
    }

    #[test]
    fn early_refresh_grows_likelier_near_expiry() {
        let meta = Meta { fresh_until_ms: 10_000, query_ms: 100, stamp: 0 };
        let due = |now| (0..2000).filter(|_| early_refresh_due(now, meta)).count();
        assert_eq!(due(0), 0, "10 s ahead of a 100 ms query: never");
        let (far, near) = (due(9_700), due(9_950));
        assert!(far < near, "{far} < {near}");
        assert_eq!(due(10_000), 2000, "at expiry: always");
    }
}
