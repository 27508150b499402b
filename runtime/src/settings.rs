//! What a cache is configured with, besides its store (set by the builder).

use std::time::Duration;

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
    pub max_value_bytes: usize,
    /// The payload size from which entries are stored compressed (see `codec`).
    pub compress_above: usize,
    pub local_cache: Option<u64>,
    /// Keep the counters in this process, tracked by Redis (single server only).
    pub client_tracking: bool,
    /// The budget of decoded values kept for reuse, in bytes (`0`: none).
    pub reuse_decoded: u64,
    /// The schema of unqualified table names.
    pub default_schema: String,
    /// How many shards a Redis Cluster's keyspace has (see `keyspace`).
    pub cluster_shards: u16,
    /// The share of hits verified in the background (see `verify`).
    pub verify: f64,
    /// Caches nothing: every call runs its query (`QueryCache::passthrough`).
    pub passthrough: bool,
    /// How often `function_stats()` is published to Redis, if at all.
    pub publish_stats: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "cq".to_owned(),
            default_ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(50),
            jitter: 0.1,
            lock: false,
            lock_wait: Duration::from_secs(1),
            lock_lease: Duration::from_secs(5),
            single_flight: true,
            max_value_bytes: 1 << 20,
            compress_above: 16 << 10,
            local_cache: None,
            client_tracking: true,
            reuse_decoded: 32 << 20,
            default_schema: "public".to_owned(),
            cluster_shards: 16,
            verify: 0.0,
            passthrough: false,
            publish_stats: None,
        }
    }
}
