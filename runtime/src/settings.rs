//! What a cache is configured with, besides its store (set by the builder).

use std::time::Duration;

/// What the builder configures, besides the store.
pub(crate) struct Settings {
    pub prefix: String,
    pub default_ttl: Duration,
    pub timeout: Duration,
    /// The longest making a connection may take (`None`: see [`Settings::timeouts`]).
    pub connect_timeout: Option<Duration>,
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
    /// Record (and check) the number of shards under the prefix (see `engine`).
    pub record_layout: bool,
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
            connect_timeout: None,
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
            record_layout: true,
            verify: 0.0,
            passthrough: false,
            publish_stats: None,
        }
    }
}

/// The shortest default for making a connection: it takes several round trips (TCP, TLS,
/// `AUTH`/`HELLO`), each of which a request's timeout is sized for alone.
pub(crate) const CONNECT_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// How long a store's requests and its connection attempts may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// A request (`.timeout`).
    pub request: Duration,
    /// A connection attempt (`.connect_timeout`; by default the request's, at least
    /// `CONNECT_TIMEOUT_FLOOR`). Callers stay bounded by the request's: a slow attempt goes on
    /// in the background while they fail open.
    pub connect: Duration,
    /// A connection attempt of the cluster client to a node (`.connect_timeout`; by default
    /// the request's): it reconnects while holding back every request to every node.
    pub cluster_connect: Duration,
}

impl Settings {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            request: self.timeout,
            connect: self.connect_timeout.unwrap_or(self.timeout.max(CONNECT_TIMEOUT_FLOOR)),
            cluster_connect: self.connect_timeout.unwrap_or(self.timeout),
        }
    }
}
