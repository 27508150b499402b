//! [`QueryCacheBuilder`]: how a [`QueryCache`] is configured.

use std::time::Duration;

use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::{CacheError, QueryCache};

pub(crate) const DEFAULT_PREFIX: &str = "cq";
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

enum Backend {
    Redis(String),
    Memory(u64),
}

/// Configures a [`QueryCache`]; made by [`QueryCache::builder`].
///
/// ```no_run
/// # async fn f() -> Result<(), cached_query::CacheError> {
/// use std::time::Duration;
/// let cache = cached_query::QueryCache::builder()
///     .redis_url("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .default_ttl(Duration::from_secs(60))
///     .timeout(Duration::from_millis(50))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct QueryCacheBuilder {
    backend: Option<Backend>,
    prefix: String,
    default_ttl: Duration,
    timeout: Duration,
}

impl Default for QueryCacheBuilder {
    fn default() -> Self {
        QueryCacheBuilder {
            backend: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl QueryCacheBuilder {
    /// Stores entries in Redis at `url` (`redis://[user:password@]host[:port][/db]`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Some(Backend::Redis(url.into()));
        self
    }

    /// Stores entries in this process, at most `max_entries` of them (no Redis needed).
    pub fn in_memory(mut self, max_entries: u64) -> Self {
        self.backend = Some(Backend::Memory(max_entries));
        self
    }

    /// The namespace that starts every key (default `"cq"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of functions that set no `ttl` of their own (default 60 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The longest any single cache operation may take before the cache gives up on it and
    /// the query runs instead (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the cache. Fails on a bad configuration (such as a malformed Redis URL), but
    /// not when Redis is unreachable: the cache then starts degraded (every lookup runs the
    /// query) and connects by itself once Redis answers.
    pub async fn build(self) -> Result<QueryCache, CacheError> {
        if self.prefix.is_empty() {
            return Err(CacheError::Config("the prefix must not be empty".into()));
        }
        if self.default_ttl.is_zero() {
            return Err(CacheError::Config(
                "the default TTL must be greater than zero".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(CacheError::Config(
                "the timeout must be greater than zero".into(),
            ));
        }
        let store = match self.backend {
            Some(Backend::Redis(url)) => Store::Redis(RedisStore::new(&url, self.timeout)?),
            Some(Backend::Memory(max_entries)) => Store::Memory(MemoryStore::new(max_entries)),
            None => {
                return Err(CacheError::Config(
                    "no backend: call `.redis_url(..)` or `.in_memory(..)` on the builder".into(),
                ));
            }
        };
        Ok(QueryCache::new(
            store,
            self.prefix,
            self.default_ttl,
            self.timeout,
        ))
    }
}
