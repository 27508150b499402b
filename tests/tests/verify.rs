//! Shadow verification against real Postgres and Redis: a change made without its
//! invalidation is found by a verified hit, counted, and its entry invalidated; a change whose
//! invalidation is there is not reported.

use std::time::{Duration, Instant};

use cached_query::{CacheError, QueryCache, cached_query};
use cached_query_tests::{pg, redis_url, unique_prefix};
use sqlx::PgPool;

#[cached_query(ttl = 300, verify = 1.0, cache = cache, skip(cache), tags = ["verify_item:{id}"])]
async fn item(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM t_verify WHERE id = $1").bind(id).fetch_one(pool).await
}

/// Verified at the cache's rate (`.verify(p)`): bare `verify`.
#[cached_query(ttl = 300, verify, cache = cache, skip(cache))]
async fn item_at_the_caches_rate(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM t_verify WHERE id = $1").bind(id).fetch_one(pool).await
}

async fn verifying(rate: f64) -> QueryCache {
    QueryCache::builder()
        .redis_url(redis_url())
        .prefix(unique_prefix("verify"))
        .verify(rate)
        .build()
        .await
        .unwrap()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn rename(pool: &PgPool, id: i64, name: &str) {
    sqlx::query("UPDATE t_verify SET name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_invalidation_is_found_counted_and_healed() {
    let pool = pg().await;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS t_verify;
         CREATE TABLE t_verify (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t_verify VALUES (1, 'a'), (2, 'b');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let cache = verifying(0.0).await;
    assert_eq!(item(&cache, &pool, 1).await.unwrap(), "a");

    // The deliberate bug: a write without its invalidation.
    rename(&pool, 1, "a2").await;
    assert_eq!(item(&cache, &pool, 1).await.unwrap(), "a", "the stale value is served");
    until("the stale entry is detected", || cache.stats().stale_detected == 1).await;
    until("the entry is invalidated", || cache.stats().invalidations == 1).await;
    assert_eq!(item(&cache, &pool, 1).await.unwrap(), "a2");

    // With its invalidation, the same change is not reported.
    rename(&pool, 2, "b2").await;
    item(&cache, &pool, 2).await.unwrap();
    cache.invalidate_tags(["verify_item:2"]).await.unwrap();
    assert_eq!(item(&cache, &pool, 2).await.unwrap(), "b2");
    // Every verification of these hits has ended (each holds a flight of its own while it
    // runs its query and waits its grace period).
    until("the verifications end", || cache.in_flight() == 0).await;
    assert_eq!(cache.stats().stale_detected, 1, "{:?}", cache.stats());

    // The builder's rate: 0 verifies nothing, 1 every hit.
    let off = verifying(0.0).await;
    item_at_the_caches_rate(&off, &pool, 1).await.unwrap();
    rename(&pool, 1, "a3").await;
    assert_eq!(item_at_the_caches_rate(&off, &pool, 1).await.unwrap(), "a2");
    let on = verifying(1.0).await;
    item_at_the_caches_rate(&on, &pool, 1).await.unwrap();
    rename(&pool, 1, "a4").await;
    item_at_the_caches_rate(&on, &pool, 1).await.unwrap();
    until("the builder's rate verifies", || on.stats().stale_detected == 1).await;
    assert_eq!(off.stats().stale_detected, 0);
}

#[tokio::test]
async fn a_rate_outside_0_and_1_is_an_error_from_build() {
    for rate in [-0.1, 1.5, f64::NAN] {
        let built = QueryCache::builder().in_memory(10).verify(rate).build().await;
        assert!(matches!(built, Err(CacheError::Config(message)) if message.contains("verify")), "{rate}");
    }
}
