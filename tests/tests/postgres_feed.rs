//! Freshness from Postgres itself (`tables = auto` + `.watch_postgres(pool)`): a write
//! committed by any client invalidates the entries that read its table, through the triggers
//! `cached_query::postgres::install` creates; rollbacks and other tables do not; a lost
//! listener loses nothing; while the feed is down, nothing is served from the cache.
//! Real Postgres and Redis.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{CacheError, QueryCache, cached_query};
use cached_query_tests::{
    database_url, pg, psql, redis_conn, redis_url, unique_prefix, until_a_hit, until_eq,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn item_name(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT name FROM t_feed_items WHERE id = $1").bind(id).fetch_one(pool).await
}

/// Reads `t_feed_other` only through a subquery's neighbour: depends on both tables.
#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn other_count(cache: &QueryCache, pool: &PgPool, calls: &AtomicUsize) -> Result<i64, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT count(*) FROM t_feed_other WHERE id IN (SELECT id FROM t_feed_items)")
        .fetch_one(pool)
        .await
}

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn gap_name(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT name FROM t_feed_gap WHERE id = $1").bind(id).fetch_one(pool).await
}

async fn tables(pool: &PgPool, ddl: &str, tables: &[&str]) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.to_owned())).execute(pool).await.unwrap();
    cached_query::postgres::install(pool, tables).await.unwrap();
}

/// A cache on the shared Redis that watches `pool`'s database.
async fn watching(prefix: &str, pool: &PgPool) -> QueryCache {
    QueryCache::builder()
        .redis_url(redis_url())
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .watch_postgres(pool.clone())
        .build()
        .await
        .unwrap()
}

/// Another program's write: `psql`, the Postgres command-line client.
async fn elsewhere(sql: &str) {
    psql(&database_url(), sql).await;
}

/// The versions the feed applied to `table`'s counter (its `:seen` hash), as a fence: once it
/// moves, every notification sent before has been handled.
async fn seen(prefix: &str, table: &str) -> Vec<(String, String)> {
    let mut conn = redis_conn(&redis_url()).await;
    redis::cmd("HGETALL").arg(format!("{prefix}:table:{table}:seen")).query_async(&mut conn).await.unwrap()
}

async fn counter(prefix: &str, table: &str) -> Option<u64> {
    let mut conn = redis_conn(&redis_url()).await;
    redis::cmd("GET").arg(format!("{prefix}:table:{table}")).query_async(&mut conn).await.unwrap()
}

/// Makes a change to `t_feed_fence` and waits until `prefix`'s feed applied it.
async fn fence(prefix: &str) {
    let before = seen(prefix, "t_feed_fence").await;
    elsewhere("UPDATE t_feed_fence SET n = n + 1").await;
    let started = Instant::now();
    while seen(prefix, "t_feed_fence").await == before {
        assert!(started.elapsed() < Duration::from_secs(10), "the fence never came through");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_anyone_invalidate_and_nothing_else_does() {
    let pool = pg().await;
    tables(
        &pool,
        "DROP TABLE IF EXISTS t_feed_items, t_feed_other, t_feed_fence;
         CREATE TABLE t_feed_items (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE t_feed_other (id bigint);
         CREATE TABLE t_feed_fence (n bigint);
         INSERT INTO t_feed_items VALUES (1, 'a'), (2, 'b');
         INSERT INTO t_feed_other VALUES (1), (2), (3);
         INSERT INTO t_feed_fence VALUES (0);",
        &["t_feed_items", "t_feed_other", "t_feed_fence"],
    )
    .await;
    let prefix = unique_prefix("feed");
    let (cache, calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    // Until the feed is synchronised, the function bypasses the cache; then it hits.
    until_a_hit(&cache, || item_name(&cache, &pool, &calls, 1)).await;

    // Another program's write: seen within the propagation delay.
    elsewhere("UPDATE t_feed_items SET name = 'a2' WHERE id = 1").await;
    let delay =
        until_eq("a2".to_owned(), || async { item_name(&cache, &pool, &calls, 1).await.unwrap() }).await;
    println!("propagation delay (commit to invalidated, same machine): {delay:?}");

    // A table the function does not read, and a rolled-back write of one it does: still hits.
    let runs = calls.load(SeqCst);
    elsewhere("INSERT INTO t_feed_fence VALUES (1)").await;
    let mut conn = PgConnection::connect(&database_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("UPDATE t_feed_items SET name = 'rolled back' WHERE id = 1").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    fence(&prefix).await;
    assert_eq!(item_name(&cache, &pool, &calls, 1).await.unwrap(), "a2");
    assert_eq!(calls.load(SeqCst), runs, "a hit: nothing it reads committed a change");

    // TRUNCATE, of a table read next to a subquery.
    assert_eq!(other_count(&cache, &pool, &calls).await.unwrap(), 2);
    assert_eq!(other_count(&cache, &pool, &calls).await.unwrap(), 2);
    elsewhere("TRUNCATE t_feed_other").await;
    until_eq(0, || async { other_count(&cache, &pool, &calls).await.unwrap() }).await;

    // A second instance on the same Redis: both see a change, and the table's counter moves
    // once for it, not once per instance.
    let (second, second_calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&second, || item_name(&second, &pool, &second_calls, 2)).await;
    let before = counter(&prefix, "t_feed_items").await;
    elsewhere("UPDATE t_feed_items SET name = 'b2' WHERE id = 2").await;
    until_eq("b2".to_owned(), || async { item_name(&cache, &pool, &calls, 2).await.unwrap() }).await;
    until_eq("b2".to_owned(), || async { item_name(&second, &pool, &second_calls, 2).await.unwrap() }).await;
    fence(&prefix).await;
    assert_eq!(counter(&prefix, "t_feed_items").await, before.map(|v| v + 1), "one increment for one change");
    assert_eq!((cache.stats().errors, second.stats().errors), (0, 0));
}

/// The listener's connection is killed and a write lands in the gap: it is seen once the
/// listener is back and synchronised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_resynchronises_and_misses_nothing() {
    let admin = pg().await;
    tables(
        &admin,
        "DROP TABLE IF EXISTS t_feed_gap;
         CREATE TABLE t_feed_gap (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t_feed_gap VALUES (1, 'before');",
        &["t_feed_gap"],
    )
    .await;
    let application = format!("cq_gap_{}", std::process::id());
    let options: PgConnectOptions =
        database_url().parse::<PgConnectOptions>().unwrap().application_name(&application);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
    let (cache, calls) = (watching(&unique_prefix("feed_gap"), &pool).await, AtomicUsize::new(0));
    until_a_hit(&cache, || gap_name(&cache, &pool, &calls, 1)).await;
    let kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                WHERE application_name = $1 AND query LIKE 'LISTEN%'";
    let killed: Vec<bool> = sqlx::query_scalar(kill).bind(&application).fetch_all(&admin).await.unwrap();
    assert_eq!(killed, [true], "one listener");
    elsewhere("UPDATE t_feed_gap SET name = 'during the gap' WHERE id = 1").await;
    until_eq("during the gap".to_owned(), || async { gap_name(&cache, &pool, &calls, 1).await.unwrap() })
        .await;
    // A new listener is up, and the cache serves again.
    let listening =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'";
    until_eq(1i64, || async {
        sqlx::query_scalar(listening).bind(&application).fetch_one(&admin).await.unwrap()
    })
    .await;
    // Hits again, and of the value written during the gap: the resynchronisation invalidated
    // what was cached before it.
    let hits = cache.stats().hits;
    until_eq(true, || async {
        assert_eq!(gap_name(&cache, &pool, &calls, 1).await.unwrap(), "during the gap");
        cache.stats().hits > hits
    })
    .await;
}

/// A feed that never comes up: functions that depend on tables run their query every time and
/// store nothing; the others are cached as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_feed_is_down_nothing_is_served_from_the_cache() {
    let pool = pg().await;
    let prefix = unique_prefix("feed_down");
    let cache = QueryCache::builder()
        .redis_url(redis_url())
        .prefix(&prefix)
        .watch_postgres_url("postgres://postgres@127.0.0.1:1/test")
        .build()
        .await
        .unwrap();
    cached_query_tests::matrix::until_reachable(&cache).await;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS t_feed_items (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t_feed_items VALUES (9, 'nine') ON CONFLICT DO NOTHING;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        item_name(&cache, &pool, &calls, 9).await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 3, "every call ran its query");
    let stats = cache.stats();
    assert_eq!((stats.bypassed, stats.hits, stats.writes), (3, 0, 0), "{stats:?}");
    // A function without tables does not depend on the feed.
    let other_calls = AtomicUsize::new(0);
    cached_query_tests::user_name(&cache, &pool, "t_feed_items_users", &other_calls, 1).await.ok();
    assert_eq!(cache.stats().bypassed, 3);
}

#[tokio::test]
async fn a_malformed_postgres_url_is_an_error_from_build() {
    let built = QueryCache::builder().in_memory(10).watch_postgres_url("not a url").build().await;
    assert!(matches!(built, Err(CacheError::Config(message)) if message.contains("Postgres URL")));
}
