//! [`QueryCache`]: the handle every cached function talks to, a thin facade over its engine
//! (see `engine`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::engine::Engine;
use crate::function_stats::{FunctionStats, metrics};
use crate::key;
use crate::keyspace;
use crate::settings::Settings;
use crate::stats::CacheStats;
use crate::store::Store;
use crate::store::memory::MemoryStore;

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
    engine: Arc<Engine>,
}

impl fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryCache")
            .field("backend", &self.engine.store.describe())
            .field("prefix", &self.engine.settings.prefix)
            .field("default_ttl", &self.engine.settings.default_ttl)
            .field("timeout", &self.engine.settings.timeout)
            .field("connect_timeout", &self.engine.settings.timeouts().connect)
            .finish()
    }
}

impl QueryCache {
    /// An in-process cache of at most `max_entries` entries, with the builder's defaults
    /// (prefix `"cq"`, TTL 60 s). Same semantics as the Redis backend, no network.
    pub fn in_memory(max_entries: u64) -> QueryCache {
        QueryCache::new(Store::Memory(MemoryStore::new(max_entries)), Settings::default())
    }

    /// A cache that caches nothing: every cached function called with it runs its query, and
    /// `#[cache_invalidate]` has nothing to do. (Its own methods, `get`, `set`, `invalidate_*`,
    /// work on an empty in-process store that no function reads.) For turning caching off by configuration, and
    /// for comparing a service's responses with and without its cache.
    pub fn passthrough() -> QueryCache {
        let settings = Settings { passthrough: true, ..Settings::default() };
        QueryCache::new(Store::Memory(MemoryStore::new(1)), settings)
    }

    pub(crate) fn new(store: Store, settings: Settings) -> Self {
        QueryCache { engine: Engine::new(store, settings) }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn engine_arc(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The counters since this cache was built.
    pub fn stats(&self) -> CacheStats {
        self.engine.stats.snapshot()
    }

    /// How many keys this cache is looking up, computing, refreshing or verifying right now
    /// (its single-flight map; entries leave it when their caller or task finishes or is
    /// dropped).
    pub fn in_flight(&self) -> usize {
        self.engine.flights.len()
    }

    /// Where a Redis Cluster records the number of shards that the caches of `prefix` cut it
    /// into ([`cluster_shards`](crate::QueryCacheBuilder::cluster_shards)): for tools that
    /// read or invalidate the caches' entries (the `cached-query` command-line tool does).
    pub fn layout_key(prefix: &str) -> String {
        keyspace::Keyspace::layout(prefix)
    }

    /// The namespace that starts every key of this cache (on a Redis Cluster followed by a
    /// shard's hash tag, `prefix{tag}`).
    pub fn prefix(&self) -> &str {
        &self.engine.settings.prefix
    }

    /// The TTL of functions that set none.
    pub fn default_ttl(&self) -> Duration {
        self.engine.settings.default_ttl
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
        Ok(self.engine.keyspace.entry(&key::head(name, version), hash))
    }

    /// Reads and decodes the value under `key`. An entry that does not decode as `T` is
    /// reported as absent. A raw read: it does not check the entry's invalidation counters,
    /// so it also returns entries that a cached function would no longer serve.
    pub async fn get<T: DeserializeOwned + 'static>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let bytes = self.engine.bounded_at(key, self.engine.store.get(key)).await?;
        Ok(bytes.and_then(|b| codec::decode(&b).ok()).map(|(value, _)| value))
    }

    /// The bytes [`set`](QueryCache::set) would store for `value` with `ttl` (the envelope and
    /// the encoded value): for tools that write Redis directly, and for measuring the codec.
    pub fn encode_entry<T: Serialize + DeserializeOwned + 'static>(
        value: &T,
        ttl: Duration,
    ) -> Result<Vec<u8>, CacheError> {
        let fresh_until_ms = now_ms().saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64);
        codec::encode(value, Meta { fresh_until_ms, query_ms: 0, stamp: 0, stored_ms: now_ms() })
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
        let fresh_until_ms = now_ms().saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64);
        let meta = Meta { fresh_until_ms, query_ms: 0, stamp: 0, stored_ms: now_ms() };
        let bytes = codec::encode_with(value, meta, &[], self.engine.settings.compress_above)?;
        // Only this cache's keys can be in a local tier.
        let message = self.engine.keyspace.owns(key).then(|| self.engine.written_message(key)).flatten();
        self.engine
            .bounded_at(key, self.engine.store.set(key, &bytes, ttl, self.engine.announce(&message)))
            .await
    }

    /// Invalidates the entry under `key` (the generated `<fn>_invalidate` functions call this):
    /// from the moment this returns, no lookup serves it, nor a value whose query began
    /// before. Returns the error if Redis could not be reached.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        // The key's own counter, `{key}:gen`.
        self.engine.invalidate("invalidate", vec![keyspace::key_counter(key)]).await?;
        metrics::invalidation("key");
        // The entry is invalid already; deleting it only frees the memory.
        let _ = self.engine.bounded_at(key, self.engine.store.delete(key, None)).await;
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
        self.invalidate_named("invalidate_tags", tags, [""; 0]).await
    }

    /// Invalidates every entry that depends on one of `tables` (see the `tables` option), in one
    /// round trip: from the moment this returns, no lookup serves any of them, nor a value whose
    /// query began before. For writes the macro cannot see (dynamic SQL, another code path).
    /// Names are taken as SQL writes them: `users`, `app."Orders"` (unquoted parts are folded to
    /// lower case; the default schema may be left out).
    pub async fn invalidate_tables<I>(&self, tables: I) -> Result<(), CacheError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.invalidate_named("invalidate_tables", [""; 0], tables).await
    }

    /// [`invalidate_tags`](Self::invalidate_tags) and [`invalidate_tables`](Self::invalidate_tables)
    /// in one round trip.
    pub async fn invalidate_tags_and_tables<T, U>(&self, tags: T, tables: U) -> Result<(), CacheError>
    where
        T: IntoIterator,
        T::Item: AsRef<str>,
        U: IntoIterator,
        U::Item: AsRef<str>,
    {
        self.invalidate_named("invalidate_tables", tags, tables).await
    }

    /// Increments the counters of `tags` and `tables` (`op` names the call in logs).
    async fn invalidate_named<T, U>(&self, op: &'static str, tags: T, tables: U) -> Result<(), CacheError>
    where
        T: IntoIterator,
        T::Item: AsRef<str>,
        U: IntoIterator,
        U::Item: AsRef<str>,
    {
        let keyspace = &self.engine.keyspace;
        let mut counters: Vec<String> =
            tags.into_iter().map(|tag| keyspace.tag_counter(tag.as_ref())).collect();
        let tag_count = counters.len();
        counters.extend(tables.into_iter().map(|table| keyspace.table_counter(table.as_ref())));
        if counters.is_empty() {
            return Ok(());
        }
        let table_count = counters.len() - tag_count;
        self.engine.invalidate(op, counters).await?;
        if tag_count > 0 {
            metrics::invalidation("tag");
        }
        if table_count > 0 {
            metrics::invalidation("table");
        }
        Ok(())
    }

    /// Invalidates every entry of this cache's prefix at once (a namespace generation: no
    /// `KEYS`, no `FLUSHDB`; the old entries expire on their own).
    pub async fn invalidate_all(&self) -> Result<(), CacheError> {
        let namespace = self.engine.keyspace.namespace_counter().to_owned();
        self.engine.invalidate("invalidate_all", vec![namespace]).await?;
        metrics::invalidation("all");
        Ok(())
    }

    /// The counts of each cached function called through this cache since it was built
    /// (sorted by name): hits, stale hits, misses, bypasses, errors, local-tier hits. The
    /// same counts as the metrics of the feature `metrics`, without a recorder.
    pub fn function_stats(&self) -> Vec<FunctionStats> {
        self.engine.functions.snapshot()
    }
}
