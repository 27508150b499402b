//! The in-process tier (`.local_cache(n)`): hits without the network, and coherence across
//! instances that share one Redis (each instance here is a `QueryCache` with connections of
//! its own, as separate processes would have).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::QueryCache;
use cached_query_tests::{
    RedisServer, pg, redis_url, unique_prefix, user_name, user_name_invalidate, users_table,
};
use sqlx::PgPool;

/// `n` instances with a local tier, sharing a prefix on the Redis at `url`.
async fn instances(url: &str, test: &str, n: usize) -> Vec<QueryCache> {
    let prefix = unique_prefix(test);
    let mut all = Vec::new();
    for _ in 0..n {
        let cache =
            QueryCache::builder().redis_url(url).prefix(&prefix).local_cache(1000).build().await.unwrap();
        all.push(cache);
    }
    // Each subscribes to the backplane in the background: wait until a hit can be local.
    all
}

/// Calls until `cache` answers `expected`, with a deadline; how long it took.
async fn until_answer(cache: &QueryCache, pool: &PgPool, table: &str, id: i64, expected: &str) -> Duration {
    let (started, calls) = (Instant::now(), AtomicUsize::new(0));
    loop {
        if user_name(cache, pool, table, &calls, id).await.unwrap() == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never saw {expected}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Calls until a hit comes from the local tier (its subscription is up), with a deadline.
async fn until_local_hit(cache: &QueryCache, pool: &PgPool, table: &str, id: i64) {
    let (deadline, calls) = (Instant::now() + Duration::from_secs(10), AtomicUsize::new(0));
    let before = cache.stats().local_hits;
    while cache.stats().local_hits == before {
        assert!(Instant::now() < deadline, "no local hit: {:?}", cache.stats());
        user_name(cache, pool, table, &calls, id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_come_from_the_local_tier() {
    let pool = pg().await;
    users_table(&pool, "t_local_hits").await;
    let cache = instances(&redis_url(), "local_hits", 1).await.remove(0);
    until_local_hit(&cache, &pool, "t_local_hits", 1).await;
    let before = cache.stats();
    let calls = AtomicUsize::new(0);
    for _ in 0..10 {
        assert_eq!(user_name(&cache, &pool, "t_local_hits", &calls, 1).await.unwrap(), "alice");
    }
    let after = cache.stats();
    assert_eq!(after.local_hits - before.local_hits, 10);
    assert_eq!(calls.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_anywhere_reaches_every_local_tier() {
    let pool = pg().await;
    let table = "t_local_coherence";
    users_table(&pool, table).await;
    let caches = instances(&redis_url(), "coherence", 3).await;
    for cache in &caches {
        until_local_hit(cache, &pool, table, 2).await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'robert' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    caches[0].invalidate_tags(["user:2"]).await.unwrap();
    // The invalidating instance: at once. The others: after the backplane's delay.
    let calls = AtomicUsize::new(0);
    assert_eq!(user_name(&caches[0], &pool, table, &calls, 2).await.unwrap(), "robert");
    let mut delays = Vec::new();
    for cache in &caches[1..] {
        delays.push(until_answer(cache, &pool, table, 2, "robert").await);
    }
    println!("propagation delays: {delays:?}");
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)), "{delays:?}");

    // A write that another instance recomputes replaces the copies too (exact invalidation).
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'bobby' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    user_name_invalidate(&caches[1], 2).await.unwrap();
    for cache in &caches {
        until_answer(cache, &pool, table, 2, "bobby").await;
    }
    caches[2].invalidate_all().await.unwrap();
    for cache in &caches {
        let before = cache.stats().local_hits;
        until_answer(cache, &pool, table, 1, "alice").await;
        assert!(cache.stats().local_hits >= before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_backplane_the_local_tier_is_bypassed() {
    let (pool, mut redis) = (pg().await, RedisServer::start());
    let table = "t_local_backplane";
    users_table(&pool, table).await;
    let cache = instances(&redis.url(), "backplane", 1).await.remove(0);
    until_local_hit(&cache, &pool, table, 3).await;
    redis.stop();
    // The subscription drops with the connection: the local tier stops serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    let calls = AtomicUsize::new(0);
    loop {
        let before = cache.stats().local_hits;
        assert_eq!(user_name(&cache, &pool, table, &calls, 3).await.unwrap(), "carol");
        if cache.stats().local_hits == before {
            break;
        }
        assert!(Instant::now() < deadline, "the local tier kept serving without its backplane");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bypassed_from = calls.load(SeqCst);
    for _ in 0..5 {
        assert_eq!(user_name(&cache, &pool, table, &calls, 3).await.unwrap(), "carol");
    }
    assert_eq!(calls.load(SeqCst), bypassed_from + 5, "every call ran its query");
    redis.restart();
    until_local_hit(&cache, &pool, table, 3).await;
}
