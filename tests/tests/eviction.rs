//! A Redis that may evict keys is warned about once: an evicted invalidation counter lets
//! entries computed before its first increment be served again (docs/guarantees.md, "Invalidation"). (A
//! test binary of its own: it installs the global `tracing` subscriber that captures the logs.)

use std::time::{Duration, Instant};

use cached_query::QueryCache;
use cached_query_tests::logs::Logs;
use cached_query_tests::{RedisServer, free_port, unique_prefix};

/// The lines about the Redis on `port` that say `what`.
fn about(logs: &Logs, port: u16, what: &str) -> usize {
    logs.text().lines().filter(|l| l.contains(what) && l.contains(&format!(":{port}"))).count()
}

async fn until_about(logs: &Logs, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while about(logs, port, what) == 0 {
        assert!(Instant::now() < deadline, "nothing logged about {port}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cache_at(redis: &RedisServer) -> QueryCache {
    QueryCache::builder().redis_url(redis.url()).prefix(unique_prefix("eviction")).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_is_warned_about_once_per_cache() {
    let logs = Logs::capture(tracing::Level::DEBUG);

    let with = |policy: &str| {
        let args = ["--maxmemory", "100mb", "--maxmemory-policy", policy].map(String::from).to_vec();
        let mut server = RedisServer::unstarted_with(free_port(), args);
        server.restart();
        server
    };
    let (evicting, safe, unlimited) = (with("allkeys-lru"), with("noeviction"), RedisServer::start());
    let caches = [cache_at(&evicting).await, cache_at(&safe).await, cache_at(&unlimited).await];
    until_about(&logs, evicting.port, "may evict keys").await;
    until_about(&logs, safe.port, "evicts no keys").await;
    until_about(&logs, unlimited.port, "evicts no keys").await;
    assert_eq!(about(&logs, evicting.port, "may evict keys"), 1);
    assert_eq!(about(&logs, safe.port, "may evict keys") + about(&logs, unlimited.port, "may evict keys"), 0);
    drop(caches);
}
