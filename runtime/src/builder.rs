//! [`QueryCacheBuilder`]: how a [`QueryCache`] is configured.

use std::time::Duration;

use crate::keyspace;
use crate::settings::Settings;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisStore, Tls};
use crate::{CacheError, QueryCache};

enum Backend {
    Redis(String),
    Cluster(Vec<String>),
    Sentinel(String, Vec<String>),
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
#[derive(Default)]
pub struct QueryCacheBuilder {
    backend: Option<Backend>,
    settings: Settings,
    /// The database whose change feed to watch (`watch_postgres`, `watch_mysql`).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    watch: Option<Result<Watch, String>>,
    /// How often a polled change feed is read (`change_poll_interval`).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    poll: Option<std::time::Duration>,
    /// Certificates for `rediss://` URLs (`tls_root_certificate`, `tls_client_certificate`).
    tls: Tls,
}

/// A database whose change feed a cache watches.
#[cfg(any(feature = "postgres", feature = "mysql"))]
enum Watch {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "postgres")]
    PostgresWal(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
}

impl QueryCache {
    /// Starts configuring a cache.
    pub fn builder() -> QueryCacheBuilder {
        QueryCacheBuilder::default()
    }
}

impl QueryCacheBuilder {
    /// Stores entries in Redis at `url` (`redis://[user:password@]host[:port][/db]`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Some(Backend::Redis(url.into()));
        self
    }

    /// Stores entries in a Redis Cluster reached through any of `urls` (one or more of its
    /// nodes, `redis://[user:password@]host:port`); the rest of the cluster is discovered from
    /// them. The prefix's entries spread over every master (in
    /// [`cluster_shards`](Self::cluster_shards) shards), and a lookup is still one round trip
    /// to one node. See docs/internals.md ("Redis Cluster").
    pub fn redis_cluster<I>(mut self, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.backend = Some(Backend::Cluster(urls.into_iter().map(Into::into).collect()));
        self
    }

    /// Trusts `pem` (PEM root certificates, e.g. a private CA's) for `rediss://` URLs instead of
    /// the system's roots (feature `tls`; without this, the system's roots are trusted).
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root = Some(pem.into());
        self
    }

    /// Presents `certificate` (PEM) with its private `key` (PEM) to servers that ask for a
    /// client certificate (`tls-auth-clients yes`), on `rediss://` URLs (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls_client_certificate(
        mut self,
        certificate: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((certificate.into(), key.into()));
        self
    }

    /// How many shards the prefix's keys are cut into on a Redis Cluster (default 16, at most
    /// 1,024): each a hash tag of its own, their slots spread evenly, so that entries spread
    /// over up to this many masters. Each shard holds a copy of every tag, table and namespace
    /// counter: an invalidation increments one per shard. 1 keeps every key in one slot.
    pub fn cluster_shards(mut self, shards: u16) -> Self {
        self.settings.cluster_shards = shards;
        self
    }

    /// Whether this cache records its number of shards for its prefix on a Redis Cluster, and
    /// checks it against the one recorded (default `true`; docs/internals.md, "Redis Cluster").
    /// A tool that only looks at a prefix's entries (the command-line tool) turns it off, so
    /// that it never records a number that the services do not use.
    pub fn record_layout(mut self, record: bool) -> Self {
        self.settings.record_layout = record;
        self
    }

    /// Stores entries in the Redis master that the Redis Sentinels at `urls`
    /// (`redis://[user:password@]host:26379`, one or more) name `master_name`, and follows it
    /// through failovers: it is asked for again once it stops answering or turns replica. The
    /// URLs' user and password are used for the sentinels and the master alike. Lookups read
    /// their counters with each entry (no client tracking), and `.local_cache` is not available
    /// with it yet. See docs/usage.md ("Redis Sentinel").
    pub fn redis_sentinel<I>(mut self, master_name: impl Into<String>, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.backend =
            Some(Backend::Sentinel(master_name.into(), urls.into_iter().map(Into::into).collect()));
        self
    }

    /// Stores entries in this process, at most `max_entries` of them (no Redis needed).
    pub fn in_memory(mut self, max_entries: u64) -> Self {
        self.backend = Some(Backend::Memory(max_entries));
        self
    }

    /// The namespace that starts every key (default `"cq"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The TTL of functions that set no `ttl` of their own (default 60 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.settings.default_ttl = ttl;
        self
    }

    /// The longest any single cache operation may take before the cache gives up on it and
    /// the query runs instead (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The longest making a connection to Redis may take (default: the `timeout`, but at least
    /// 1 s). Connecting takes several round trips (TCP, TLS, `AUTH`, `HELLO`), so over a slow
    /// link it needs more than one request does. Calls never wait for it longer than `timeout`:
    /// meanwhile they run their queries, and the attempt goes on in the background. On a
    /// cluster, the cluster client's connections default to the `timeout` alone: it reconnects
    /// to a node while holding back the requests to every node.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = Some(timeout);
        self
    }

    /// Moves each entry's expiry by a random fraction of its TTL, up to `fraction` either way
    /// (default 0.1, i.e. ±10 %), so that entries written together do not expire together.
    /// `0.0` turns it off; a function's `jitter = ...` overrides it.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.settings.jitter = fraction;
        self
    }

    /// Shadow verification: the share of hits (in [0, 1], default 0: off) after which the query
    /// runs again in the background and its result is compared with the value served. A
    /// difference that no invalidation explains is counted (`stats().stale_detected`), logged at
    /// `warn` and invalidated: how a missing invalidation shows in production. Applies to the
    /// functions whose body can run in the background: those with `verify`, `stale` or `early`
    /// (a function's `verify = p` overrides it). See docs/guarantees.md.
    pub fn verify(mut self, probability: f64) -> Self {
        self.settings.verify = probability;
        self
    }

    /// Whether functions take a Redis lease before running their query on a miss, so that one
    /// process runs it while the others wait for its result (default `false`; a function's
    /// `lock = ...` overrides it).
    pub fn lock(mut self, lock: bool) -> Self {
        self.settings.lock = lock;
        self
    }

    /// How long a caller waits for the process holding the lease before running the query
    /// itself (default 1 s).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = wait;
        self
    }

    /// The largest entry stored, in bytes (default 1 MiB). A larger result is returned to its
    /// caller but not stored (counted in `stats().oversized`, and logged): a huge value would
    /// cost every hit more than its query saves, and could fill Redis.
    pub fn max_value_bytes(mut self, max: usize) -> Self {
        self.settings.max_value_bytes = max;
        self
    }

    /// Stores an entry's value compressed (LZ4) when it encodes to at least `bytes` bytes and
    /// compression makes it shorter (default 16 KiB; `usize::MAX`: never). Entries say whether
    /// they are, so a change of this setting leaves the others readable. `max_value_bytes`
    /// applies to the stored (compressed) size. See docs/benchmarks.md for what it saves and
    /// costs.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.settings.compress_above = bytes;
        self
    }

    /// Adds an in-process tier of at most `max_entries` entries in front of Redis: a hit there
    /// costs no network. Kept coherent across instances by a pub/sub channel per prefix; see
    /// docs/internals.md ("Local tier"). Ignored by the in-memory backend, which is local already.
    pub fn local_cache(mut self, max_entries: u64) -> Self {
        self.settings.local_cache = Some(max_entries);
        self
    }

    /// Whether concurrent callers of one key in this process share one lookup and one query
    /// (default `true`). Turning it off is for measuring what it saves.
    pub fn single_flight(mut self, on: bool) -> Self {
        self.settings.single_flight = on;
        self
    }

    /// Whether a lookup keeps the invalidation counters it depends on in this process, kept
    /// exact by Redis's server-assisted client-side caching (RESP3 `CLIENT TRACKING`, Redis
    /// 6+), so that a warm hit is one `GET` (default `true`); on a cluster, through one tracked
    /// connection per master. Off, or on a server that refuses it, every lookup reads the
    /// counters with its entry (one `MGET`). See docs/internals.md ("What a hit costs").
    pub fn client_tracking(mut self, on: bool) -> Self {
        self.settings.client_tracking = on;
        self
    }

    /// Keeps the entries of functions with `tables = ...` as fresh as the database behind
    /// `pool`: every committed change of a watched table (see [`crate::postgres::install`])
    /// invalidates that table's entries, whoever made it. While the feed is down (not yet
    /// synchronised, connection lost), those functions run their query without the cache.
    /// Needs a runtime: call `build()` inside one.
    #[cfg(feature = "postgres")]
    pub fn watch_postgres(mut self, pool: sqlx::PgPool) -> Self {
        self.watch = Some(Ok(Watch::Postgres(pool)));
        self
    }

    /// Like [`watch_postgres`](Self::watch_postgres), through a connection of the cache's own
    /// to `url` (for programs on another sqlx major than this crate's). A malformed URL is an
    /// error from `build()`.
    #[cfg(feature = "postgres")]
    pub fn watch_postgres_url(mut self, url: &str) -> Self {
        self.watch = Some(own_pool(url, "watch_postgres_url").map(Watch::Postgres));
        self
    }

    /// Like [`watch_postgres`](Self::watch_postgres) without triggers, at no cost to writes:
    /// the cache reads the database's write-ahead log through logical decoding, every
    /// `change_poll_interval` (default 250 ms; the propagation delay is up to it; each read
    /// makes the database decode the log again from the slot's restart point, so shorter
    /// intervals cost a busy database more: see docs/benchmarks.md). The server
    /// needs `wal_level = logical` and the `test_decoding` plugin (shipped with Postgres), and
    /// the pool's role the `REPLICATION` attribute. One instance per prefix reads the log (a
    /// lease in Redis; the others serve while it is ready, and one takes over when it stops),
    /// holding one connection with a temporary replication slot (dropped with the connection).
    /// See [`crate::postgres`] for choosing a feed, docs/guarantees.md for the costs.
    #[cfg(feature = "postgres")]
    pub fn watch_postgres_wal(mut self, pool: sqlx::PgPool) -> Self {
        self.watch = Some(Ok(Watch::PostgresWal(pool)));
        self
    }

    /// Like [`watch_postgres_wal`](Self::watch_postgres_wal), through a connection of the
    /// cache's own to `url`. A malformed URL is an error from `build()`.
    #[cfg(feature = "postgres")]
    pub fn watch_postgres_wal_url(mut self, url: &str) -> Self {
        self.watch = Some(own_pool(url, "watch_postgres_wal_url").map(Watch::PostgresWal));
        self
    }

    /// Keeps the entries of functions with `tables = ...` as fresh as the MySQL or MariaDB
    /// database behind `pool`, by reading its versions table (see [`crate::mysql::install`])
    /// every `change_poll_interval` (default 100 ms). While a read fails, those functions run
    /// their query without the cache. Needs a runtime: call `build()` inside one.
    #[cfg(feature = "mysql")]
    pub fn watch_mysql(mut self, pool: sqlx::MySqlPool) -> Self {
        self.watch = Some(Ok(Watch::MySql(pool)));
        self
    }

    /// How often a change feed is read: MySQL's always (default 100 ms), Postgres's write-ahead
    /// log always (default 250 ms); Postgres's triggers when this is set, instead of `LISTEN` (their `NOTIFY` then
    /// costs nothing: see [`crate::postgres::setup_sql_polled`]). The propagation delay is up
    /// to this interval.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub fn change_poll_interval(mut self, every: std::time::Duration) -> Self {
        self.poll = Some(every.max(std::time::Duration::from_millis(1)));
        self
    }

    /// The schema of unqualified table names (default `"public"`, Postgres's): `users` and
    /// `{schema}.users` are then one table for `tables = ...` and `invalidate_tables`. On MySQL,
    /// give the database's name.
    pub fn default_schema(mut self, schema: impl Into<String>) -> Self {
        self.settings.default_schema = keyspace::table_name(&schema.into());
        self
    }

    /// Roughly how many bytes of decoded values to keep (default 32 MiB; `0` turns it off), so
    /// that a hit whose entry holds the same value bytes as one computed here, or decoded here
    /// twice, is a clone of that value instead of a decode (same codec, type and payload
    /// length, same seeded 128-bit hash of the payload). Every hit still reads and checks its
    /// entry in the store. Applies to payloads of at least 512 bytes (multi-row results, where
    /// decoding dominates a hit) of types that are `Clone + Send + Sync`, whose `Clone` must
    /// give an equal value that shares no mutable state (not an `Arc<Mutex<_>>` a caller could
    /// change) and whose `Deserialize` depends on nothing but the bytes (`reuse = false` on a
    /// function turns it off for that function).
    /// See docs/internals.md ("What a hit costs").
    pub fn reuse_decoded(mut self, max_bytes: u64) -> Self {
        self.settings.reuse_decoded = max_bytes;
        self
    }

    /// Publishes this instance's [`function_stats`](QueryCache::function_stats) to Redis every
    /// `interval` (a hash per instance, `{prefix}:stats:{instance}`, kept three intervals), so
    /// that `cached-query stats` shows every instance of the prefix together. Off by default;
    /// Redis only.
    pub fn publish_stats(mut self, interval: Duration) -> Self {
        self.settings.publish_stats = Some(interval);
        self
    }

    /// How long a lease lasts if its holder never releases it (a crashed process; default 5 s).
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.settings.lock_lease = lease;
        self
    }

    /// Builds the cache. Fails on a bad configuration (such as a malformed Redis URL), but
    /// not when Redis is unreachable: the cache then starts degraded (every lookup runs the
    /// query) and connects by itself once Redis answers.
    pub async fn build(self) -> Result<QueryCache, CacheError> {
        let s = &self.settings;
        let problem = if s.prefix.is_empty() {
            Some("the prefix must not be empty")
        } else if s.default_ttl.is_zero() {
            Some("the default TTL must be greater than zero")
        } else if s.timeout.is_zero() {
            Some("the timeout must be greater than zero")
        } else if s.connect_timeout.is_some_and(|t| t.is_zero()) {
            Some("the connect timeout must be greater than zero")
        } else if !(0.0..1.0).contains(&s.jitter) {
            Some("the jitter must be a fraction in [0, 1)")
        } else if !(0.0..=1.0).contains(&s.verify) {
            Some("`verify` must be a probability in [0, 1]")
        } else if s.publish_stats.is_some_and(|every| every.is_zero()) {
            Some("the stats' publishing interval must be greater than zero")
        } else if s.lock_lease.is_zero() {
            Some("the lock lease must be greater than zero")
        } else if matches!(self.backend, Some(Backend::Cluster(_))) && s.prefix.contains(['{', '}']) {
            Some("on a Redis Cluster the prefix must not contain `{` or `}` (a hash tag follows it)")
        } else if matches!(self.backend, Some(Backend::Sentinel(..))) && s.local_cache.is_some() {
            Some(
                "`.local_cache` is not available with `.redis_sentinel` yet (its backplane would have to follow the master)",
            )
        } else if !(1..=1024).contains(&s.cluster_shards) {
            Some("`cluster_shards` must be between 1 and 1024")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(CacheError::Config(problem.into()));
        }
        let store = match self.backend {
            Some(Backend::Redis(url)) => {
                Store::Redis(RedisStore::new(&url, s.timeouts(), s.client_tracking, &self.tls)?)
            }
            Some(Backend::Cluster(urls)) => {
                Store::Redis(RedisStore::cluster(&urls, s.timeouts(), s.client_tracking, &self.tls)?)
            }
            Some(Backend::Sentinel(master, urls)) => {
                Store::Redis(RedisStore::sentinel(&master, &urls, s.timeouts(), &self.tls)?)
            }
            Some(Backend::Memory(max_entries)) => Store::Memory(MemoryStore::new(max_entries)),
            None => {
                return Err(CacheError::Config(
                    "no backend: call `.redis_url(..)`, `.redis_cluster(..)`, `.redis_sentinel(..)` or `.in_memory(..)` on the builder".into(),
                ));
            }
        };
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        let (watch, poll) = match self.watch {
            Some(Err(problem)) => return Err(CacheError::Config(problem)),
            Some(Ok(watch)) => (Some(watch), self.poll),
            None => (None, None),
        };
        let publish_stats = self.settings.publish_stats;
        let cache = QueryCache::new(store, self.settings);
        if let Some(every) = publish_stats {
            cache.engine_arc().spawn_stats_publisher(every);
        }
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        match (watch, poll) {
            #[cfg(feature = "postgres")]
            (Some(Watch::Postgres(pool)), None) => cache.engine().spawn_postgres_watch(pool),
            #[cfg(feature = "postgres")]
            (Some(Watch::Postgres(pool)), Some(every)) => cache
                .engine()
                .spawn_polling(every, move || crate::watch::postgres_versions_owned(pool.clone())),
            #[cfg(feature = "postgres")]
            (Some(Watch::PostgresWal(pool)), poll) => {
                let every = poll.unwrap_or(std::time::Duration::from_millis(250));
                cache.engine().spawn_postgres_wal_watch(pool, every, crate::tables())
            }
            #[cfg(feature = "mysql")]
            (Some(Watch::MySql(pool)), poll) => {
                let every = poll.unwrap_or(std::time::Duration::from_millis(100));
                cache.engine().spawn_polling(every, move || {
                    let pool = pool.clone();
                    async move { crate::mysql::versions(&pool).await }
                })
            }
            (None, _) => {}
        }
        Ok(cache)
    }
}

/// A pool of the cache's own for a change feed (`method` names the builder's method in errors).
#[cfg(feature = "postgres")]
fn own_pool(url: &str, method: &str) -> Result<sqlx::PgPool, String> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy(url)
        .map_err(|err| format!("invalid Postgres URL for {method}: {err}"))
}
