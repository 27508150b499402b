//! The engine behind a [`QueryCache`](crate::QueryCache): the store and every concern that
//! serves it, built once and shared by the cache's clones and its background tasks. The call
//! path (`lookup`, `lease`, `entry`) and invalidation (`invalidation`) are its methods.

use std::sync::{Arc, Weak};

use crate::CacheError;
use crate::admission::Admission;
use crate::backplane::Backplane;
use crate::bounded::Bounded;
use crate::decoded::Decoded;
use crate::feed::Feed;
use crate::flight::Flights;
use crate::function_stats::Functions;
use crate::health::Health;
use crate::keyspace::Keyspace;
use crate::local::Local;
use crate::settings::Settings;
use crate::stats::Stats;
use crate::store::Store;
use crate::warn::WarnLimiter;

pub(crate) struct Engine {
    pub store: Arc<Store>,
    pub settings: Settings,
    pub stats: Stats,
    /// The counts per function (`QueryCache::function_stats`).
    pub functions: Functions,
    pub flights: Flights,
    /// The keys counted for `admit_after`.
    pub admission: Admission,
    pub health: Health,
    /// The database's change feed, if one is watched.
    pub feed: Feed,
    /// Where invalidations and writes are announced (Redis only: whatever `local` is).
    pub backplane: Option<Backplane>,
    /// The in-process tier (`.local_cache(n)`, Redis only).
    pub local: Option<Arc<Local>>,
    /// Decoded values kept for reuse (`.reuse_decoded(bytes)`).
    pub decoded: Option<Decoded>,
    /// The names of every key and channel of this cache.
    pub keyspace: Keyspace,
    warnings: WarnLimiter,
    /// Background refreshes whose query failed (a database outage fails every one of them).
    pub refresh_warnings: WarnLimiter,
    /// This engine, for the background tasks it starts (which must not keep it alive).
    me: Weak<Engine>,
}

impl Engine {
    /// Builds the engine and starts its background tasks (they end with it).
    pub fn new(store: Store, settings: Settings) -> Arc<Engine> {
        let store = Arc::new(store);
        let keyspace = Keyspace::new(
            &settings.prefix,
            store.is_cluster().then_some(settings.cluster_shards),
            &settings.default_schema,
        );
        let backplane = store.is_redis().then(|| Backplane::new(&keyspace));
        let local = match (settings.local_cache, &backplane) {
            (Some(max_entries), Some(backplane)) => {
                let local = Local::new(max_entries, backplane, &keyspace);
                Local::listen(&local, store.backplane_clients());
                Local::spawn_heartbeat(&local, Arc::downgrade(&store));
                Some(local)
            }
            _ => None,
        };
        if store.is_redis() {
            Store::spawn_eviction_check(&store);
        }
        if store.is_cluster() && settings.record_layout {
            spawn_layout_check(&store, &settings);
        }
        let decoded = Decoded::new(settings.reuse_decoded);
        let health = Health::new(keyspace.shards());
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            store,
            settings,
            stats: Stats::default(),
            functions: Functions::default(),
            flights: Flights::default(),
            admission: Admission::default(),
            health,
            feed: Feed::default(),
            backplane,
            local,
            decoded,
            keyspace,
            warnings: WarnLimiter::new(),
            refresh_warnings: WarnLimiter::new(),
        })
    }

    /// Runs a store operation on the names of the first shard (those that are no entry's)
    /// within the timeout, counted from this call. Fails at once if that shard's circuit
    /// breaker is open at this call; failures to reach the store count towards opening it
    /// (see `invalidation`, which settles them).
    pub fn bounded<T, F>(&self, op: F) -> Bounded<'_, Engine, F>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        Bounded::new(self, 0, op)
    }

    /// Like [`bounded`](Self::bounded), for an operation on `key` (an entry, or its counter or
    /// lease), under its shard's breaker.
    pub fn bounded_at<T, F>(&self, key: &str, op: F) -> Bounded<'_, Engine, F>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        Bounded::new(self, self.keyspace.shard_of(key), op)
    }

    /// A weak handle on this engine, for a background task.
    pub fn myself(&self) -> Weak<Engine> {
        self.me.clone()
    }

    /// Counts a cache failure that the caller answers without the cache, and logs it.
    pub fn failed(&self, op: &str, key: &str, err: &CacheError) {
        Stats::count(&self.stats.errors);
        self.functions.error(&self.keyspace, key, err);
        self.warnings.warn(|suppressed| {
            tracing::warn!(
                backend = %self.store.describe(),
                op,
                key,
                %err,
                suppressed,
                "cached_query: cache operation failed; answering from the database"
            );
        });
    }
}

/// Records this cache's number of shards for its prefix on the cluster, or finds another
/// recorded there: instances that cut one prefix differently would miss each other's
/// invalidations, which is said loudly (an error log) rather than guessed around.
fn spawn_layout_check(store: &Arc<Store>, settings: &Settings) {
    let (store, key, shards) =
        (store.clone(), Keyspace::layout(&settings.prefix), settings.cluster_shards.to_string());
    tokio::spawn(async move {
        for attempt in 0..10u32 {
            match store.claim(&key, &shards).await {
                Ok(held) if held == shards => return,
                Ok(held) => {
                    return tracing::error!(
                        ours = %shards,
                        recorded = %held,
                        "cached_query: other instances of this prefix cut it into another number of shards \
                         (`cluster_shards`): invalidations between them would be missed; use one number"
                    );
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200 << attempt.min(5))).await,
            }
        }
    });
}
