//! A Redis that may evict keys is warned about once: an evicted invalidation counter lets
//! entries computed before its first increment be served again (README, "Invalidation"). (A
//! test binary of its own: it installs the global `tracing` subscriber that captures the logs.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cached_query::QueryCache;
use cached_query_tests::{RedisServer, free_port, unique_prefix};

/// Collects what `tracing` logs, to search it.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The lines about the Redis on `port` that say `what`.
    fn about(&self, port: u16, what: &str) -> usize {
        let logs = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        logs.lines().filter(|l| l.contains(what) && l.contains(&format!(":{port}"))).count()
    }

    async fn until_about(&self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.about(port, what) == 0 {
            assert!(Instant::now() < deadline, "nothing logged about {port}: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn cache_at(redis: &RedisServer) -> QueryCache {
    QueryCache::builder().redis_url(redis.url()).prefix(unique_prefix("eviction")).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_is_warned_about_once_per_cache() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let with = |policy: &str| {
        let args = ["--maxmemory", "100mb", "--maxmemory-policy", policy].map(String::from).to_vec();
        let mut server = RedisServer::unstarted_with(free_port(), args);
        server.restart();
        server
    };
    let (evicting, safe, unlimited) = (with("allkeys-lru"), with("noeviction"), RedisServer::start());
    let caches = [cache_at(&evicting).await, cache_at(&safe).await, cache_at(&unlimited).await];
    logs.until_about(evicting.port, "may evict keys").await;
    logs.until_about(safe.port, "evicts no keys").await;
    logs.until_about(unlimited.port, "evicts no keys").await;
    assert_eq!(logs.about(evicting.port, "may evict keys"), 1);
    assert_eq!(logs.about(safe.port, "may evict keys") + logs.about(unlimited.port, "may evict keys"), 0);
    drop(caches);
}
