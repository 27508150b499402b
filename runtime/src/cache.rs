//! [`QueryCache`]: the handle every cached function talks to.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::builder::QueryCacheBuilder;
use crate::codec::{self, Meta};
use crate::flight::Flights;
use crate::key;
use crate::lookup::{Target, now_ms};
use crate::stats::{CacheStats, Counters};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::warn::WarnLimiter;

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
    warnings: WarnLimiter,
}

/// What the builder configures, besides the store.
pub(crate) struct Settings {
    pub prefix: String,
    pub default_ttl: Duration,
    pub timeout: Duration,
    pub jitter: f64,
    pub lock: bool,
    pub lock_wait: Duration,
    pub lock_lease: Duration,
    pub single_flight: bool,
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
    /// Starts configuring a cache.
    pub fn builder() -> QueryCacheBuilder {
        QueryCacheBuilder::default()
    }

    /// An in-process cache of at most `max_entries` entries, with the builder's defaults
    /// (prefix `"cq"`, TTL 60 s). Same semantics as the Redis backend, no network.
    pub fn in_memory(max_entries: u64) -> QueryCache {
        QueryCache::new(Store::Memory(MemoryStore::new(max_entries)), Settings::default())
    }

    pub(crate) fn new(store: Store, settings: Settings) -> Self {
        let inner = Inner {
            store,
            settings,
            counters: Counters::default(),
            flights: Flights::default(),
            warnings: WarnLimiter::new(),
        };
        QueryCache { inner: Arc::new(inner) }
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

    /// The namespace that starts every key of this cache.
    pub fn prefix(&self) -> &str {
        &self.inner.settings.prefix
    }

    /// The TTL of functions that set none.
    pub fn default_ttl(&self) -> Duration {
        self.inner.settings.default_ttl
    }

    /// The key under which a function named `name` (see the `name` option), at `version`,
    /// caches its result for `args`: the tuple of its key parameters in declaration order,
    /// e.g. `&(id,)` for one parameter or `&()` for none.
    pub fn key<A: Serialize + ?Sized>(
        &self,
        name: &str,
        version: u32,
        args: &A,
    ) -> Result<String, CacheError> {
        let hash = key::hash_args(args).map_err(|e| CacheError::Encode(e.to_string()))?;
        Ok(self.key_from(&key::head(name, version), hash))
    }

    pub(crate) fn key_from(&self, head: &str, hash: u128) -> String {
        key::join(&self.inner.settings.prefix, head, hash)
    }

    /// Reads and decodes the value under `key`. An entry that does not decode as `T` is
    /// reported as absent.
    pub async fn get<T: DeserializeOwned + 'static>(&self, key: &str) -> Result<Option<T>, CacheError> {
        let bytes = self.bounded(self.inner.store.get(key)).await?;
        Ok(bytes.and_then(|b| codec::decode(&b).ok()).map(|(value, _)| value))
    }

    /// Encodes `value` and stores it under `key` for `ttl`.
    pub async fn set<T: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let meta = Meta { fresh_until_ms: now_ms() + ttl.as_millis() as u64, query_ms: 0, gens: 0 };
        let bytes = codec::encode(value, meta)?;
        self.bounded(self.inner.store.set(key, &bytes, ttl)).await
    }

    /// Invalidates the entry under `key` (the generated `<fn>_invalidate` functions call this):
    /// from the moment this returns, no lookup serves it, nor a value whose query began
    /// before. Returns the error if Redis could not be reached.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        let result = match self.bump(&[format!("{key}:gen")]).await {
            // The entry is invalid already; deleting it only frees the memory.
            Ok(()) => self.bounded(self.inner.store.delete(key)).await,
            Err(err) => Err(err),
        };
        self.count_invalidation("invalidate", key, result)
    }

    /// Invalidates every entry carrying one of `tags` (see the `tags` option), whatever their
    /// number, in one round trip: from the moment this returns, no lookup serves any of them,
    /// nor a value whose query began before.
    pub async fn invalidate_tags<I>(&self, tags: I) -> Result<(), CacheError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let keys: Vec<String> = tags.into_iter().map(|tag| self.tag_key(tag.as_ref())).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let result = self.bump(&keys).await;
        self.count_invalidation("invalidate_tags", &keys.join(" "), result)
    }

    /// Invalidates every entry of this cache's prefix at once (a namespace generation: no
    /// `KEYS`, no `FLUSHDB`; the old entries expire on their own).
    pub async fn invalidate_all(&self) -> Result<(), CacheError> {
        let key = self.ns_key();
        let result = self.bump(std::slice::from_ref(&key)).await;
        self.count_invalidation("invalidate_all", &key, result)
    }

    fn count_invalidation(
        &self,
        op: &str,
        what: &str,
        result: Result<(), CacheError>,
    ) -> Result<(), CacheError> {
        match &result {
            Ok(()) => Counters::bump(&self.inner.counters.invalidations),
            Err(err) => self.failed(op, what, err),
        }
        result
    }

    fn ns_key(&self) -> String {
        format!("{}:ns", self.inner.settings.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}:tag:{tag}", self.inner.settings.prefix)
    }

    /// The entry `key` of a call with `tags`, and the counters it depends on.
    pub(crate) fn target(&self, key: String, tags: &[String]) -> Target {
        let mut gen_keys = Vec::with_capacity(2 + tags.len());
        gen_keys.push(self.ns_key());
        gen_keys.push(format!("{key}:gen"));
        gen_keys.extend(tags.iter().map(|tag| self.tag_key(tag)));
        Target { key, gen_keys }
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

    /// Runs a store operation within the timeout.
    pub(crate) async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.inner.settings.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout(self.inner.settings.timeout)),
        }
    }
}
