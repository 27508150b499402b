//! [`QueryCache`]: the handle every cached function talks to.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::backplane::Backplane;
use crate::bounded::Bounded;
use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::decoded::Decoded;
use crate::flight::Flights;
use crate::health::{Health, PROBE_EVERY};
use crate::key;
use crate::keyspace::{self, Keyspace, Target};
use crate::local::{HEARTBEAT_EVERY, Local};
use crate::settings::Settings;
use crate::stats::{CacheStats, Counters};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::warn::WarnLimiter;

/// Queued invalidation counters delivered per round trip.
const DELIVER_AT_ONCE: usize = 100;

/// How long the check of Redis's eviction policy may take (connecting included).
const EVICTION_CHECK_WITHIN: Duration = Duration::from_secs(5);

/// A cache of query results, in Redis or in this process. Cheap to clone (an `Arc`).
///
/// Make one with [`QueryCache::builder`] (or [`QueryCache::in_memory`]), then either
/// [`install`](crate::install) it as the process-wide default or hand it to functions with
/// `#[cached_query(cache = ...)]`.
///
/// Every operation is bounded by the builder's `timeout`. A failure seen by a cached function
/// is never returned to its caller: the function runs its query instead, and the failure is
/// counted in [`stats`](QueryCache::stats) and logged (at most one warning per 10 s).
#[derive(Clone)]
pub struct QueryCache {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub settings: Settings,
    pub counters: Counters,
    pub flights: Flights,
    pub health: Health,
    /// Where invalidations and writes are announced (Redis only: whatever `local` is).
    pub backplane: Option<Backplane>,
    /// The in-process tier (`.local_cache(n)`, Redis only).
    pub local: Option<Arc<Local>>,
    /// Decoded values kept for reuse (`.reuse_decoded(bytes)`).
    pub decoded: Option<Decoded>,
    /// The names of every key and channel of this cache.
    pub keyspace: Keyspace,
    warnings: WarnLimiter,
}

impl fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryCache")
            .field("backend", &self.inner.store.describe())
            .field("prefix", &self.inner.settings.prefix)
            .field("default_ttl", &self.inner.settings.default_ttl)
            .field("timeout", &self.inner.settings.timeout)
            .finish()
    }
}

impl QueryCache {
    /// An in-process cache of at most `max_entries` entries, with the builder's defaults
    /// (prefix `"cq"`, TTL 60 s). Same semantics as the Redis backend, no network.
    pub fn in_memory(max_entries: u64) -> QueryCache {
        QueryCache::new(Store::Memory(MemoryStore::new(max_entries)), Settings::default())
    }

    pub(crate) fn new(store: Store, settings: Settings) -> Self {
        let keyspace = Keyspace::new(&settings.prefix, store.is_cluster());
        let backplane = matches!(store, Store::Redis(_)).then(|| Backplane::new(&keyspace));
        let local = match (&store, settings.local_cache, &backplane) {
            (Store::Redis(redis), Some(max_entries), Some(backplane)) => {
                let local = Local::new(max_entries, backplane, &keyspace);
                Local::listen(&local, redis.clients().to_vec());
                Some(local)
            }
            _ => None,
        };
        let decoded = Decoded::new(settings.reuse_decoded);
        let inner = Inner {
            store,
            settings,
            counters: Counters::default(),
            flights: Flights::default(),
            health: Health::default(),
            backplane,
            local,
            decoded,
            keyspace,
            warnings: WarnLimiter::new(),
        };
        let cache = QueryCache { inner: Arc::new(inner) };
        if cache.inner.local.is_some() {
            cache.spawn_heartbeat();
        }
        if matches!(cache.inner.store, Store::Redis(_)) {
            cache.spawn_eviction_check();
        }
        cache
    }

    /// Warns once if Redis may evict keys (`maxmemory` set, a policy other than
    /// `noeviction`): an evicted invalidation counter lets entries computed before its first
    /// increment be served again (README, "Invalidation"). Quietly nothing when Redis does not
    /// answer or does not allow `CONFIG GET`.
    fn spawn_eviction_check(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let Some(inner) = weak.upgrade() else { return };
            let Store::Redis(store) = &inner.store else { return };
            let policy = tokio::time::timeout(EVICTION_CHECK_WITHIN, store.eviction_policy()).await;
            match policy {
                Ok(Ok(Some(policy))) => tracing::warn!(
                    backend = %store.describe(),
                    policy,
                    "cached_query: Redis may evict keys at its maxmemory; an evicted invalidation \
                     counter can let an entry computed before its first increment be served again \
                     (give Redis the memory its entries need, or use maxmemory-policy noeviction)"
                ),
                Ok(Ok(None)) => {
                    tracing::debug!(backend = %store.describe(), "cached_query: Redis evicts no keys")
                }
                _ => {
                    tracing::debug!(backend = %store.describe(), "cached_query: Redis's eviction policy unknown")
                }
            }
        });
    }

    /// Checks the local tier's subscription every `HEARTBEAT_EVERY` (see `local`), for as long
    /// as the cache lives.
    fn spawn_heartbeat(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                let Some(local) = inner.local.clone() else { return };
                let Some((channel, message, seq)) = local.heartbeat() else { continue };
                let publish = inner.store.publish(channel, &message);
                let sent = matches!(tokio::time::timeout(HEARTBEAT_EVERY, publish).await, Ok(Ok(())));
                drop(inner);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                local.check_heartbeat(seq, sent);
            }
        });
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The counters since this cache was built.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// How many keys this cache is looking up, computing or refreshing right now (its
    /// single-flight map; entries leave it when their caller finishes or is dropped).
    pub fn in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// The namespace that starts every key of this cache (on a Redis Cluster the keys start
    /// with it as a hash tag, `{prefix}`).
    pub fn prefix(&self) -> &str {
        &self.inner.settings.prefix
    }

    /// The TTL of functions that set none.
    pub fn default_ttl(&self) -> Duration {
        self.inner.settings.default_ttl
    }

    /// The key under which a function named `name` (see the `name` option), at `version`,
    /// caches its result for `args`: the tuple of its key parameters in declaration order,
    /// e.g. `&(id,)` for one parameter or `&()` for none. For a method, see
    /// [`method_key`](Self::method_key).
    pub fn key<A: Serialize + ?Sized>(
        &self,
        name: &str,
        version: u32,
        args: &A,
    ) -> Result<String, CacheError> {
        self.key_of(None, name, version, args)
    }

    /// Like [`key`](Self::key), for a method (a function with a `self` receiver) of type `S`
    /// without a `name` option: its key also hashes the name of `S`, so that the
    /// instantiations of a generic `impl` have entries of their own.
    pub fn method_key<S: ?Sized, A: Serialize + ?Sized>(
        &self,
        name: &str,
        version: u32,
        args: &A,
    ) -> Result<String, CacheError> {
        self.key_of(Some(std::any::type_name::<S>()), name, version, args)
    }

    fn key_of<A: Serialize + ?Sized>(
        &self,
        method_of: Option<&str>,
        name: &str,
        version: u32,
        args: &A,
    ) -> Result<String, CacheError> {
        let hash = key::hash_args(method_of, args).map_err(|e| CacheError::Encode(e.to_string()))?;
        Ok(self.inner.keyspace.entry(&key::head(name, version), hash))
    }

    /// Reads and decodes the value under `key`. An entry that does not decode as `T` is
    /// reported as absent. A raw read: it does not check the entry's invalidation counters,
    /// so it also returns entries that a cached function would no longer serve.
    pub async fn get<T: DeserializeOwned + 'static>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let bytes = self.bounded(self.inner.store.get(key)).await?;
        Ok(bytes.and_then(|b| codec::decode(&b).ok()).map(|(value, _)| value))
    }

    /// The bytes [`set`](QueryCache::set) would store for `value` with `ttl` (the envelope and
    /// the encoded value): for tools that write Redis directly, and for measuring the codec.
    pub fn encode_entry<T: Serialize + DeserializeOwned + 'static>(
        value: &T,
        ttl: Duration,
    ) -> Result<Vec<u8>, CacheError> {
        let fresh_until_ms = now_ms().saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64);
        codec::encode(value, Meta { fresh_until_ms, query_ms: 0, stamp: 0 })
    }

    /// Decodes the bytes of an entry as they are stored (what a raw `GET` of its key returns)
    /// into a `T`: for tools that read Redis directly, and for measuring the codec.
    pub fn decode_entry<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CacheError> {
        codec::decode(bytes).map(|(value, _)| value).map_err(|e| CacheError::Decode(e.to_string()))
    }

    /// Encodes `value` and stores it under `key` for `ttl`. A raw write, with no invalidation
    /// counters: a cached function reading that key treats it as invalid (a miss). Like every
    /// write, it is announced to the instances' local tiers, which drop their copies of `key`.
    pub async fn set<T: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let bytes = QueryCache::encode_entry(value, ttl)?;
        // Only this cache's keys can be in a local tier (and on a cluster, another key would
        // be in another slot than the channel it is announced on).
        let message = self.inner.keyspace.owns(key).then(|| self.written_message(key)).flatten();
        self.bounded(self.inner.store.set(key, &bytes, ttl, self.announce(&message))).await
    }

    /// Invalidates the entry under `key` (the generated `<fn>_invalidate` functions call this):
    /// from the moment this returns, no lookup serves it, nor a value whose query began
    /// before. Returns the error if Redis could not be reached.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        if self.inner.store.is_cluster() && !self.inner.keyspace.owns(key) {
            // On a cluster, a key outside `{prefix}` is in another slot than the counters it
            // would be delivered with after an outage (`CROSSSLOT`).
            return Err(CacheError::Config(format!(
                "`{key}` is not a key of this cache (on a Redis Cluster they start with `{}`)",
                self.inner.keyspace.start()
            )));
        }
        // The key's own counter, `{key}:gen`.
        self.invalidate_counters("invalidate", vec![keyspace::key_counter(key)]).await?;
        // The entry is invalid already; deleting it only frees the memory.
        let _ = self.bounded(self.inner.store.delete(key, None)).await;
        Ok(())
    }

    /// Invalidates every entry carrying one of `tags` (see the `tags` option), whatever their
    /// number, in one round trip: from the moment this returns, no lookup serves any of them,
    /// nor a value whose query began before.
    pub async fn invalidate_tags<I>(&self, tags: I) -> Result<(), CacheError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let keys: Vec<String> =
            tags.into_iter().map(|tag| self.inner.keyspace.tag_counter(tag.as_ref())).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.invalidate_counters("invalidate_tags", keys).await
    }

    /// Invalidates every entry of this cache's prefix at once (a namespace generation: no
    /// `KEYS`, no `FLUSHDB`; the old entries expire on their own).
    pub async fn invalidate_all(&self) -> Result<(), CacheError> {
        self.invalidate_counters("invalidate_all", vec![self.inner.keyspace.namespace_counter().to_owned()])
            .await
    }

    /// Increments invalidation counters. When the store cannot be reached, the error is
    /// returned and the counters are queued: they are delivered before this cache serves
    /// anything from the store again (see `health`).
    ///
    /// In a task of its own, awaited: an invalidation usually follows a committed write, and
    /// must not be lost half-way (neither sent nor queued) because its caller's future was
    /// dropped (a request's timeout, a client gone).
    async fn invalidate_counters(&self, op: &'static str, keys: Vec<String>) -> Result<(), CacheError> {
        let cache = self.clone();
        match tokio::spawn(async move { cache.apply_invalidation(op, keys).await }).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(CacheError::Unavailable), // cancelled: its runtime is shutting down
        }
    }

    async fn apply_invalidation(&self, op: &str, keys: Vec<String>) -> Result<(), CacheError> {
        let result = self.bump(&keys).await;
        match &result {
            Ok(()) => Counters::bump(&self.inner.counters.invalidations),
            Err(err) => {
                self.failed(op, &keys.join(" "), err);
                self.inner.health.queue(&keys, self.inner.keyspace.namespace_counter());
                Counters::bump(&self.inner.counters.invalidations_queued);
            }
        }
        result
    }

    /// Delivers the queued invalidations, `DELIVER_AT_ONCE` counters per round trip (each
    /// within the timeout: the queue can hold 10,000); `true` if those queued when it began
    /// were delivered (others may have been queued meanwhile). Lookups go through the
    /// breaker (`bounded`: a failure counts towards opening it, and an open breaker fails at
    /// once); the breaker's own probe, which must get through while it is open, does not.
    pub(crate) async fn deliver_pending(&self, through_breaker: bool) -> bool {
        // One delivery at a time: every lookup that finds the queue non-empty would send it.
        // The others are not served meanwhile.
        let Some(_delivering) = self.inner.health.delivering() else { return false };
        let health = &self.inner.health;
        let since = health.queued();
        loop {
            let pending = health.pending(DELIVER_AT_ONCE, since);
            if pending.counters.is_empty() {
                return true;
            }
            let message = self.invalidation_message(&pending.counters);
            let bump = self.announced_bump(&pending.counters, &message);
            let delivered = if through_breaker {
                self.bounded(bump).await.is_ok()
            } else {
                matches!(tokio::time::timeout(self.inner.settings.timeout, bump).await, Ok(Ok(())))
            };
            if !delivered {
                return false;
            }
            health.delivered(&pending);
            Counters::bump(&self.inner.counters.invalidations);
            tracing::info!(counters = pending.counters.len(), "cached_query: queued invalidations delivered");
        }
    }

    /// The entry of a call (the key of `head` and `hash`) with `tags`, and the counters it
    /// depends on.
    pub(crate) fn target(&self, head: &str, hash: u128, tags: &[String]) -> Target {
        self.inner.keyspace.target(head, hash, tags)
    }

    /// Counts a cache failure that the caller answers without the cache, and logs it.
    pub(crate) fn failed(&self, op: &str, key: &str, err: &CacheError) {
        Counters::bump(&self.inner.counters.errors);
        self.inner.warnings.warn(|suppressed| {
            tracing::warn!(
                backend = %self.inner.store.describe(),
                op,
                key,
                %err,
                suppressed,
                "cached_query: cache operation failed; answering from the database"
            );
        });
    }

    /// Runs a store operation within the timeout, counted from this call.
    /// Fails at once if the circuit breaker is open at this call; counts failures to reach the store,
    /// opening the breaker (replacing the connections, and starting its probe) after a few in
    /// a row.
    pub(crate) fn bounded<T, F>(&self, op: F) -> Bounded<'_, F>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        Bounded::new(self, op)
    }

    /// Records how a bounded operation ended (see [`bounded`](Self::bounded)).
    pub(crate) fn settle<T>(&self, result: &Result<T, CacheError>) {
        let health = &self.inner.health;
        match result {
            Ok(_) => health.succeeded(),
            Err(err) if err.is_unavailable() => {
                if health.failed() {
                    // Requests that go unanswered may be stuck on a connection that nothing
                    // reports broken: the probe and what follows use new ones.
                    self.inner.store.replace_connections();
                    self.spawn_probe();
                }
            }
            Err(_) => {}
        }
    }

    /// While the breaker is open: try the store every `PROBE_EVERY`; once it answers,
    /// deliver the queued invalidations, then close the breaker. (Those queued meanwhile,
    /// which fail at once while it is open, are delivered by the next lookups before they
    /// serve anything: waiting for an empty queue could keep it open for as long as
    /// invalidations keep coming.)
    fn spawn_probe(&self) {
        tracing::warn!(
            backend = %self.inner.store.describe(),
            "cached_query: cache unreachable; bypassing it until it answers again"
        );
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                // Not beyond the cache's life: one dropped during an outage leaves no probe.
                let Some(inner) = weak.upgrade() else { return };
                let cache = QueryCache { inner };
                let timeout = cache.inner.settings.timeout;
                let answered = matches!(
                    tokio::time::timeout(
                        timeout,
                        cache.inner.store.ping(cache.inner.keyspace.namespace_counter())
                    )
                    .await,
                    Ok(Ok(()))
                );
                if answered && cache.deliver_pending(false).await {
                    cache.inner.health.close();
                    tracing::info!(backend = %cache.inner.store.describe(), "cached_query: cache reachable again");
                    return;
                }
            }
        });
    }
}
