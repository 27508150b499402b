//! Publishing this instance's `function_stats()` to Redis (`.publish_stats(interval)`), so that
//! a tool sees every instance of a prefix (`cached-query stats`): a hash per instance,
//! `{ks}:stats:{instance}`, one field per function (`hits stale misses bypasses errors
//! local_hits`), replaced every interval and kept three intervals, so that an instance gone
//! leaves nothing behind for long.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

/// How many intervals an instance's published counts outlive their last publication.
const KEPT_FOR: u32 = 3;

impl Engine {
    /// Publishes the counts every `every`, until the cache is dropped (Redis only).
    pub fn spawn_stats_publisher(self: &Arc<Self>, every: Duration) {
        if !self.store.is_redis() {
            return;
        }
        let (engine, key) = (Arc::downgrade(self), self.keyspace.stats(fastrand::u64(..)));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(engine) = engine.upgrade() else { return };
                let counts = engine.functions.snapshot().into_iter();
                let fields: Vec<(String, String)> = counts
                    .map(|f| {
                        let published = f.published();
                        (f.name, published)
                    })
                    .collect();
                let publish = engine.store.replace_hash(&key, &fields, every.saturating_mul(KEPT_FOR));
                if let Err(err) = engine.bounded(publish).await {
                    engine.failed("publish_stats", &key, &err);
                }
            }
        });
    }
}
