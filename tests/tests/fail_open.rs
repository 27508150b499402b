//! Redis failures never fail a query: each test breaks a `redis-server` of its own.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{RedisServer, free_port, redis_cache_at, unique_prefix};

#[cached_query(ttl = 60, cache = cache, skip(cache, calls))]
async fn double(cache: &QueryCache, calls: &AtomicUsize, n: i64) -> Result<i64, String> {
    calls.fetch_add(1, SeqCst);
    Ok(n * 2)
}

#[tokio::test]
async fn a_stopped_redis_only_costs_cache_hits() {
    let mut redis = RedisServer::start();
    let (cache, calls) = (redis_cache_at(&redis.url(), "stopped").await, AtomicUsize::new(0));
    assert_eq!(double(&cache, &calls, 4).await, Ok(8));
    assert_eq!(double(&cache, &calls, 4).await, Ok(8));
    assert_eq!((calls.load(SeqCst), cache.stats().hits), (1, 1));

    redis.stop();
    for _ in 0..5 {
        assert_eq!(double(&cache, &calls, 4).await, Ok(8), "answered by the body");
    }
    assert_eq!(calls.load(SeqCst), 6);
    assert!(cache.stats().errors >= 5, "{:?}", cache.stats());
    assert!(double_invalidate(&cache, 4).await.is_err(), "an invalidation that failed says so");
}

#[tokio::test]
async fn redis_down_at_build_is_not_an_error_and_the_cache_connects_later() {
    let mut redis = RedisServer::unstarted();
    let cache = redis_cache_at(&redis.url(), "late").await;
    let calls = AtomicUsize::new(0);
    assert_eq!(double(&cache, &calls, 1).await, Ok(2));
    assert_eq!(cache.stats().hits, 0);

    redis.restart();
    // The connection manager reconnects on its own schedule: poll, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.stats().hits == 0 {
        assert!(Instant::now() < deadline, "no hit after Redis came up: {:?}", cache.stats());
        assert_eq!(double(&cache, &calls, 1).await, Ok(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_malformed_url_is_an_error_from_build() {
    for url in ["not a url", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport"] {
        let err = QueryCache::builder().redis_url(url).build().await.unwrap_err();
        assert!(err.to_string().contains("invalid"), "{url}: {err}");
    }
    let err = QueryCache::builder().build().await.unwrap_err();
    assert!(err.to_string().contains("redis_url"), "{err}");
}

#[tokio::test]
async fn zero_timeouts_are_errors_from_build() {
    let err = QueryCache::builder().in_memory(10).timeout(Duration::ZERO).build().await.unwrap_err();
    assert!(err.to_string().contains("the timeout must be greater than zero"), "{err}");
    let err = QueryCache::builder().in_memory(10).connect_timeout(Duration::ZERO).build().await.unwrap_err();
    assert!(err.to_string().contains("the connect timeout must be greater than zero"), "{err}");
    // "No limit" is a valid timeout, for requests and connections (Redis down here).
    let url = format!("redis://127.0.0.1:{}", free_port());
    for builder in [
        QueryCache::builder().redis_url(&url).timeout(Duration::MAX),
        QueryCache::builder().redis_url(&url).connect_timeout(Duration::MAX),
        QueryCache::builder().redis_sentinel("m", [url.clone()]).timeout(Duration::MAX),
    ] {
        builder.build().await.unwrap();
    }
}

#[tokio::test]
async fn the_password_never_shows() {
    let url = format!("redis://:hunter2secret@127.0.0.1:{}", free_port());
    let cache = QueryCache::builder().redis_url(&url).build().await.unwrap();
    let shown = format!("{cache:?}");
    assert!(!shown.contains("hunter2secret") && shown.contains(":***@"), "{shown}");
    let calls = AtomicUsize::new(0);
    assert_eq!(double(&cache, &calls, 2).await, Ok(4));
    let err = double_invalidate(&cache, 2).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2secret"), "{err:?}");
    let bad = QueryCache::builder().redis_url("redis://:hunter2secret@host:port").build().await.unwrap_err();
    assert!(!format!("{bad} {bad:?}").contains("hunter2secret"), "{bad:?}");
}

#[cached_query(ttl = 60, cache = cache, skip(cache, calls), lock = true)]
async fn leased_double(cache: &QueryCache, calls: &AtomicUsize, n: i64) -> Result<i64, String> {
    calls.fetch_add(1, SeqCst);
    Ok(n * 2)
}

/// With `lock = true`, a Redis that cannot be reached holds no lease worth waiting for: each
/// call runs its query at once, not after `lock_wait`.
#[tokio::test]
async fn no_lease_is_waited_for_while_redis_is_down() {
    let redis = RedisServer::unstarted();
    let cache = QueryCache::builder()
        .redis_url(redis.url())
        .prefix(unique_prefix("lease_down"))
        .lock_wait(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);
    for n in 0..5 {
        let call = tokio::time::timeout(Duration::from_secs(30), leased_double(&cache, &calls, n));
        assert_eq!(call.await, Ok(Ok(n * 2)), "waited for a lease that nobody holds");
    }
    assert_eq!(calls.load(SeqCst), 5);
}

/// A cache dropped while Redis is down leaves nothing running: its breaker's probe ends with it.
#[tokio::test]
async fn a_cache_dropped_during_an_outage_leaves_no_probe_behind() {
    let redis = RedisServer::unstarted();
    let (cache, calls) = (redis_cache_at(&redis.url(), "dropped_in_outage").await, AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.stats().errors < 3 {
        assert!(Instant::now() < deadline, "no failures: {:?}", cache.stats());
        assert_eq!(double(&cache, &calls, 1).await, Ok(2));
    }
    let runtime = tokio::runtime::Handle::current().metrics();
    assert!(runtime.num_alive_tasks() > 0, "the probe runs");
    drop(cache);
    while runtime.num_alive_tasks() > 0 {
        assert!(Instant::now() < deadline, "{} tasks still alive", runtime.num_alive_tasks());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
