//! Kept decodes (`.reuse_decoded(bytes)`): a hit whose entry holds the same value bytes as one
//! computed here, or decoded twice, is a clone of that value, never a stale or invalidated
//! value, and only for `Clone` types.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cached_query::{CacheStats, QueryCache, cached_query};
use cached_query_tests::{pg, redis_cache, redis_cache_with, redis_url, unique_prefix};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Row {
    id: i64,
    name: String,
}

/// The same rows, in a type that is not `Clone`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Page(Vec<(i64, String)>);

/// A table of 100 rows whose names are long enough for a page to be kept (≥ 512 bytes).
async fn rows_table(pool: &PgPool, table: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO {table} SELECT g, 'row number ' || g FROM generate_series(1, 100) g;"
    )))
    .execute(pool)
    .await
    .expect("create test table");
}

#[cached_query(ttl = 60, cache = cache, skip(cache, table, calls))]
async fn page(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    from: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    let sql = format!("SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id LIMIT 50");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from).fetch_all(pool).await
}

#[cached_query(ttl = 60, cache = cache, skip(cache, table, calls))]
async fn uncloneable_page(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    from: i64,
) -> Result<Page, sqlx::Error> {
    let rows = page(cache, pool, table, calls, from).await?;
    Ok(Page(rows.into_iter().map(|row| (row.id, row.name)).collect()))
}

#[tokio::test]
async fn hits_clone_the_kept_decode_until_the_entry_changes() {
    let (pool, cache, calls) = (pg().await, redis_cache("reuse").await, AtomicUsize::new(0));
    rows_table(&pool, "t_reuse").await;
    let expected: Vec<Row> =
        sqlx::query_as("SELECT id, name FROM t_reuse WHERE id >= 1 ORDER BY id LIMIT 50")
            .fetch_all(&pool)
            .await
            .unwrap();
    for _ in 0..4 {
        assert_eq!(page(&cache, &pool, "t_reuse", &calls, 1).await.unwrap(), expected);
    }
    let stats = cache.stats();
    assert_eq!((calls.load(SeqCst), stats.hits), (1, 3));
    assert_eq!(stats.reused_decodes, 3, "the value computed here is kept: every hit clones it");

    // A write and its invalidation: the next hits serve the new rows, never the kept ones
    // (same length as before: only the bytes differ).
    sqlx::query("UPDATE t_reuse SET name = 'ROW NUMBER 3' WHERE id = 3").execute(&pool).await.unwrap();
    page_invalidate(&cache, 1).await.unwrap();
    for _ in 0..3 {
        let got = page(&cache, &pool, "t_reuse", &calls, 1).await.unwrap();
        assert_eq!(got[2].name, "ROW NUMBER 3");
        assert_eq!(got.len(), 50);
    }
    let stats = cache.stats();
    assert_eq!((calls.load(SeqCst), stats.hits), (2, 5));
    assert_eq!(stats.reused_decodes, 5);
}

#[tokio::test]
async fn an_invalidation_that_leaves_the_entry_in_place_is_not_bypassed() {
    let (pool, cache, calls) = (pg().await, redis_cache("reuse_ns").await, AtomicUsize::new(0));
    rows_table(&pool, "t_reuse_ns").await;
    for _ in 0..3 {
        page(&cache, &pool, "t_reuse_ns", &calls, 1).await.unwrap();
    }
    assert_eq!(cache.stats().reused_decodes, 2);
    // `invalidate_all` only bumps the namespace's counter: the entry's bytes stay in Redis,
    // the same bytes as the kept value's.
    sqlx::query("UPDATE t_reuse_ns SET name = 'ROW NUMBER 1' WHERE id = 1").execute(&pool).await.unwrap();
    cache.invalidate_all().await.unwrap();
    assert_eq!(page(&cache, &pool, "t_reuse_ns", &calls, 1).await.unwrap()[0].name, "ROW NUMBER 1");
    assert_eq!(calls.load(SeqCst), 2, "the invalidated entry was not served");
    assert_eq!(cache.stats().reused_decodes, 2);
}

#[tokio::test]
async fn an_entry_rewritten_by_another_instance_is_decoded_again() {
    let pool = pg().await;
    rows_table(&pool, "t_reuse_other").await;
    let prefix = unique_prefix("reuse_other");
    let build = || {
        QueryCache::builder()
            .redis_url(redis_url())
            .prefix(&prefix)
            .timeout(Duration::from_millis(200))
            .build()
    };
    let (here, there, calls) = (build().await.unwrap(), build().await.unwrap(), AtomicUsize::new(0));
    for _ in 0..3 {
        page(&here, &pool, "t_reuse_other", &calls, 1).await.unwrap();
    }
    assert_eq!(here.stats().reused_decodes, 2);
    // The other instance invalidates and stores the new rows; this one's kept value is old.
    sqlx::query("UPDATE t_reuse_other SET name = 'ROW NUMBER 1' WHERE id = 1").execute(&pool).await.unwrap();
    page_invalidate(&there, 1).await.unwrap();
    let changed = |rows: Vec<Row>| rows[0].name == "ROW NUMBER 1";
    assert!(changed(page(&there, &pool, "t_reuse_other", &calls, 1).await.unwrap()));
    // Here, the other instance's entry: decoded twice (kept the second time), then cloned.
    for _ in 0..3 {
        assert!(changed(page(&here, &pool, "t_reuse_other", &calls, 1).await.unwrap()));
    }
    assert_eq!(calls.load(SeqCst), 2, "this instance's lookups were hits of the other's entry");
    assert_eq!(here.stats().reused_decodes, 3);
}

#[cached_query(ttl = 60, cache = cache, skip(cache, table, calls), reuse = false)]
async fn page_always_decoded(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    from: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    page(cache, pool, table, calls, from).await
}

#[tokio::test]
async fn types_that_are_not_clone_or_say_reuse_false_are_decoded_every_time() {
    let (pool, cache, calls) = (pg().await, redis_cache("reuse_false").await, AtomicUsize::new(0));
    rows_table(&pool, "t_reuse_false").await;
    let first = page_always_decoded(&cache, &pool, "t_reuse_false", &calls, 1).await.unwrap();
    let inner_hits = cache.stats().reused_decodes;
    for _ in 0..3 {
        assert_eq!(page_always_decoded(&cache, &pool, "t_reuse_false", &calls, 1).await.unwrap(), first);
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.reused_decodes), (3, inner_hits), "`reuse = false`: decoded");
    uncloneable(&pool, &redis_cache("reuse_no_clone").await).await;
}

async fn uncloneable(pool: &PgPool, cache: &QueryCache) {
    let calls = AtomicUsize::new(0);
    rows_table(pool, "t_reuse_no_clone").await;
    let first = uncloneable_page(cache, pool, "t_reuse_no_clone", &calls, 1).await.unwrap();
    let inner_hits = cache.stats().reused_decodes;
    for _ in 0..3 {
        assert_eq!(uncloneable_page(cache, pool, "t_reuse_no_clone", &calls, 1).await.unwrap(), first);
    }
    assert_eq!(cache.stats().reused_decodes, inner_hits, "`Page` is not `Clone`: decoded");
    assert_eq!(first.0.len(), 50);
}

/// A cache on the shared Redis under a prefix of its own, configured by `with`.
/// Four calls of `page` on a fresh table: the body's runs, and the cache's stats.
async fn four_calls(cache: &QueryCache, pool: &PgPool, table: &str) -> (usize, CacheStats) {
    rows_table(pool, table).await;
    let calls = AtomicUsize::new(0);
    for _ in 0..4 {
        assert_eq!(page(cache, pool, table, &calls, 1).await.unwrap().len(), 50);
    }
    (calls.load(SeqCst), cache.stats())
}

#[tokio::test]
async fn turned_off_nothing_is_kept() {
    let cache = redis_cache_with("reuse_off", |b| b.reuse_decoded(0)).await;
    let (calls, stats) = four_calls(&cache, &pg().await, "t_reuse_off").await;
    assert_eq!((calls, stats.hits, stats.reused_decodes), (1, 3, 0));
}

#[tokio::test]
async fn the_in_memory_backend_and_the_local_tier_reuse_too() {
    let pool = pg().await;
    let local = redis_cache_with("reuse_tiers", |b| b.local_cache(100)).await;
    for (cache, table) in [(QueryCache::in_memory(100), "t_reuse_mem"), (local, "t_reuse_local")] {
        let (calls, stats) = four_calls(&cache, &pool, table).await;
        assert_eq!((calls, stats.hits, stats.reused_decodes), (1, 3, 3), "{cache:?}");
    }
}

#[cached_query(ttl = 60, tags = ["shared"], cache = cache, skip(cache, table, calls))]
async fn shared_page(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    from: i64,
) -> Result<std::sync::Arc<Vec<Row>>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    let sql = format!("SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id LIMIT 50");
    Ok(std::sync::Arc::new(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from).fetch_all(pool).await?))
}

/// A function that returns `Arc<T>` (serde's `rc`): hits in the local tier hand out the same
/// allocation, kept in the entry, never another key's and never after an invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hits_of_an_arc_share_one_allocation() {
    use std::sync::Arc;
    let pool = pg().await;
    rows_table(&pool, "t_reuse_arc").await;
    let cache = redis_cache_with("reuse_arc", |b| b.local_cache(100)).await;
    let calls = AtomicUsize::new(0);
    let page_of = |from| shared_page(&cache, &pool, "t_reuse_arc", &calls, from);
    // Until the backplane is up, the local tier does not serve.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.stats().local_hits < 2 {
        assert!(std::time::Instant::now() < deadline, "no local hits: {:?}", cache.stats());
        page_of(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (a, b) = (page_of(1).await.unwrap(), page_of(1).await.unwrap());
    assert!(Arc::ptr_eq(&a, &b), "one allocation for every local hit");
    let other = page_of(2).await.unwrap();
    assert!(!Arc::ptr_eq(&a, &other) && other[0].id == 2, "another key's value");

    sqlx::query("UPDATE t_reuse_arc SET name = 'ROW NUMBER 3' WHERE id = 3").execute(&pool).await.unwrap();
    cache.invalidate_tags(["shared"]).await.unwrap();
    let after = page_of(1).await.unwrap();
    assert!(!Arc::ptr_eq(&a, &after), "not the value kept before the invalidation");
    assert_eq!(after[2].name, "ROW NUMBER 3");
    let again = (page_of(1).await.unwrap(), page_of(1).await.unwrap());
    assert!(Arc::ptr_eq(&again.0, &again.1) && again.0[2].name == "ROW NUMBER 3");
}
