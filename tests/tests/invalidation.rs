//! Invalidation against real Postgres and Redis (and the in-memory backend): tags, the
//! write-side attribute, namespace flush, negative results, and no stale set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::matrix::{rename, tags_invalidate_exactly_their_entries};
use cached_query_tests::{pg, redis_cache, redis_conn, redis_url, unique_prefix, user_name, users_table};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::Notify;

#[tokio::test]
async fn tags_in_memory() {
    tags_invalidate_exactly_their_entries(QueryCache::in_memory(100), "t_inv_tags_mem").await;
}

#[tokio::test]
async fn a_failed_write_invalidates_nothing() {
    let (pool, cache, calls) = (pg().await, redis_cache("failed_write").await, AtomicUsize::new(0));
    users_table(&pool, "t_inv_failed").await;
    user_name(&cache, &pool, "t_inv_failed", &calls, 1).await.unwrap();
    assert!(rename(&cache, &pool, "t_inv_no_such_table", 1, "x").await.is_err());
    user_name(&cache, &pool, "t_inv_failed", &calls, 1).await.unwrap();
    assert_eq!(calls.load(SeqCst), 1, "still cached");
    assert_eq!(cache.stats().invalidations, 0);
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Query {
    org: Org,
    limit: i64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Org {
    id: i64,
}

#[cached_query(cache = cache, skip(cache, calls), tags = ["org:{q.org.id}"])]
async fn org_report(cache: &QueryCache, calls: &AtomicUsize, q: Query) -> Vec<i64> {
    calls.fetch_add(1, SeqCst);
    (0..q.limit).map(|i| q.org.id * 100 + i).collect()
}

#[tokio::test]
async fn tag_templates_reach_into_fields() {
    let (cache, calls) = (redis_cache("fields").await, AtomicUsize::new(0));
    let q = |org| Query { org: Org { id: org }, limit: 2 };
    assert_eq!(org_report(&cache, &calls, q(7)).await, [700, 701]);
    org_report(&cache, &calls, q(8)).await;
    cache.invalidate_tags(["org:7"]).await.unwrap();
    org_report(&cache, &calls, q(7)).await;
    org_report(&cache, &calls, q(8)).await;
    assert_eq!(calls.load(SeqCst), 3);
}

#[cached_query(ttl = 60, none_ttl = 2, cache = cache, skip(cache, table))]
async fn maybe_name(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

#[cached_query(ttl = 60, cache_none = false, cache = cache, skip(cache, table))]
async fn names_above(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    min: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id > $1 ORDER BY id")))
        .bind(min)
        .fetch_all(pool)
        .await
}

#[tokio::test]
async fn negative_results_get_their_own_ttl_or_none() {
    let (pool, cache) = (pg().await, redis_cache("negative").await);
    users_table(&pool, "t_inv_negative").await;
    let mut conn = redis_conn(&redis_url()).await;
    let pttl = |key: String| {
        let mut conn = conn.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.unwrap() }
    };
    assert_eq!(maybe_name(&cache, &pool, "t_inv_negative", 1).await.unwrap().as_deref(), Some("alice"));
    assert_eq!(maybe_name(&cache, &pool, "t_inv_negative", 99).await.unwrap(), None);
    let found = pttl(cache.key("invalidation::maybe_name", 0, &(1i64,)).unwrap()).await;
    let missing = pttl(cache.key("invalidation::maybe_name", 0, &(99i64,)).unwrap()).await;
    assert!(found > 50_000, "a row keeps the ttl: {found} ms");
    assert!(missing > 0 && missing <= 2_200, "None keeps none_ttl: {missing} ms");

    assert!(names_above(&cache, &pool, "t_inv_negative", 10).await.unwrap().is_empty());
    assert_eq!(names_above(&cache, &pool, "t_inv_negative", 1).await.unwrap(), ["bob", "carol"]);
    let empty = cache.key("invalidation::names_above", 0, &(10i64,)).unwrap();
    let exists: bool = redis::cmd("EXISTS").arg(&empty).query_async(&mut conn).await.unwrap();
    assert!(!exists, "cache_none = false: an empty result is not stored");
    assert_eq!(cache.stats().writes, 3);
}

/// A reader whose query can be held between reading the database and returning.
#[cached_query(ttl = 60, cache = cache, skip(cache, gate), tags = ["row:{id}"])]
async fn gated(cache: &QueryCache, pool: &PgPool, gate: &Gate, id: i64) -> Result<String, sqlx::Error> {
    let value =
        sqlx::query_scalar("SELECT name FROM t_inv_gated WHERE id = $1").bind(id).fetch_one(pool).await;
    gate.read.notify_one();
    gate.resume.notified().await;
    value
}

#[derive(Default)]
struct Gate {
    read: Notify,
    resume: Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_began_before_an_invalidation_is_never_served_after_it() {
    let (pool, cache, gate) = (pg().await, redis_cache("stale_set").await, Arc::new(Gate::default()));
    users_table(&pool, "t_inv_gated").await;
    // The reader misses and reads 'alice' from the database, then waits.
    let reader = {
        let (pool, cache, gate) = (pool.clone(), cache.clone(), gate.clone());
        tokio::spawn(async move { gated(&cache, &pool, &gate, 1).await })
    };
    gate.read.notified().await;
    // The writer updates the row and invalidates; the invalidation returns.
    sqlx::query("UPDATE t_inv_gated SET name = 'alicia' WHERE id = 1").execute(&pool).await.unwrap();
    cache.invalidate_tags(["row:1"]).await.unwrap();
    // The slow reader resumes and stores its old value.
    gate.resume.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), "alice", "its own call began before the write");
    // The next read must see the write.
    let next = tokio::spawn({
        let (pool, cache, gate) = (pool.clone(), cache.clone(), gate.clone());
        async move { gated(&cache, &pool, &gate, 1).await }
    });
    // It must run its query (a hit would never reach the gate, and would return 'alice').
    if tokio::time::timeout(Duration::from_secs(10), gate.read.notified()).await.is_err() {
        panic!("the next read did not run its query: it returned {:?}", next.await.unwrap());
    }
    gate.resume.notify_one();
    assert_eq!(next.await.unwrap().unwrap(), "alicia");
    assert_eq!(cache.stats().writes, 2);
}

#[cached_query(ttl = 60, cache = cache, skip(cache), tags = ["counter"])]
async fn counter(cache: &QueryCache, pool: &PgPool, delay_ms: i32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT v FROM t_inv_counter, pg_sleep($1 / 1000.0)")
        .bind(delay_ms)
        .fetch_one(pool)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_never_see_a_value_older_than_a_finished_invalidation() {
    let pool = pg().await;
    sqlx::raw_sql("DROP TABLE IF EXISTS t_inv_counter; CREATE TABLE t_inv_counter (v bigint NOT NULL); INSERT INTO t_inv_counter VALUES (0);")
        .execute(&pool)
        .await
        .unwrap();
    let prefix = unique_prefix("randomized");
    let cache = QueryCache::builder().redis_url(redis_url()).prefix(prefix).build().await.unwrap();
    // The newest value whose invalidation has returned.
    let published = Arc::new(AtomicI64::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let writer = {
        let (pool, cache, published) = (pool.clone(), cache.clone(), published.clone());
        tokio::spawn(async move {
            let mut v = 0;
            while Instant::now() < deadline && v < 500 {
                v += 1;
                sqlx::query("UPDATE t_inv_counter SET v = $1").bind(v).execute(&pool).await.unwrap();
                cache.invalidate_tags(["counter"]).await.unwrap();
                published.store(v, SeqCst);
                tokio::time::sleep(Duration::from_millis(fastrand_ms(v, 15))).await;
            }
            v
        })
    };
    let readers: Vec<_> = (0..6)
        .map(|r| {
            let (pool, cache, published) = (pool.clone(), cache.clone(), published.clone());
            tokio::spawn(async move {
                let (mut reads, mut i) = (0, 0i64);
                while Instant::now() < deadline {
                    i += 1;
                    let floor = published.load(SeqCst);
                    let seen = counter(&cache, &pool, fastrand_ms(i * 7 + r, 20) as i32).await.unwrap();
                    assert!(
                        seen >= floor,
                        "reader {r} saw {seen} after the invalidation of {floor} had returned"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writes = writer.await.unwrap();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(writes > 20 && reads > 100, "too little happened: {writes} writes, {reads} reads");
    assert!(cache.stats().hits > 0, "the cache served some reads: {:?}", cache.stats());
}

/// A deterministic spread of small delays (no RNG needed in the test).
fn fastrand_ms(seed: i64, max: u64) -> u64 {
    (seed.unsigned_abs().wrapping_mul(2_654_435_761) >> 7) % max
}

#[cached_query(ttl = 60, cache = cache, skip(cache, db), tags = ["version"])]
async fn version(cache: &QueryCache, db: &AtomicI64) -> i64 {
    db.load(SeqCst)
}

/// A counter that expired (8 days without an increment) or was evicted, then is incremented
/// again, takes none of its old values: entries computed under them stay invalid.
#[tokio::test]
async fn a_counter_made_again_does_not_revive_old_entries() {
    let prefix = unique_prefix("counter_again");
    let cache = QueryCache::builder().redis_url(redis_url()).prefix(&prefix).build().await.unwrap();
    let db = AtomicI64::new(1);
    cache.invalidate_tags(["version"]).await.unwrap();
    assert_eq!(version(&cache, &db).await, 1);
    assert_eq!(version(&cache, &db).await, 1);
    assert_eq!(cache.stats().hits, 1);

    db.store(2, SeqCst);
    let mut conn = redis_conn(&redis_url()).await;
    let gone: i64 =
        redis::cmd("DEL").arg(format!("{prefix}:tag:version")).query_async(&mut conn).await.unwrap();
    assert_eq!(gone, 1, "the tag's counter existed");
    cache.invalidate_tags(["version"]).await.unwrap();
    assert_eq!(version(&cache, &db).await, 2, "the entry computed before this invalidation");
}
