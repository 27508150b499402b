//! Embedded SQLite with the in-process backend: no Redis involved.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

#[derive(sqlx::FromRow, Serialize, Deserialize, Debug, PartialEq)]
struct Item {
    id: i64,
    label: String,
}

async fn db() -> SqlitePool {
    let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL);
                   INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

#[cached_query(ttl = 1, cache = cache, skip(cache, calls))]
async fn items_from(
    cache: &QueryCache,
    pool: &SqlitePool,
    calls: &AtomicUsize,
    min: i64,
) -> Result<Vec<Item>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_as("SELECT id, label FROM items WHERE id >= ? ORDER BY id").bind(min).fetch_all(pool).await
}

#[cached_query(cache = cache, skip(cache))]
async fn label(
    cache: &QueryCache,
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT label FROM items WHERE id = ?").bind(id).fetch_optional(conn).await
}

#[tokio::test]
async fn sqlite_results_are_cached_in_memory_and_expire() {
    let (pool, cache, calls) = (db().await, QueryCache::in_memory(100), AtomicUsize::new(0));
    let two_and_three = vec![Item { id: 2, label: "two".into() }, Item { id: 3, label: "three".into() }];
    assert_eq!(items_from(&cache, &pool, &calls, 2).await.unwrap(), two_and_three);
    sqlx::query("DELETE FROM items WHERE id = 3").execute(&pool).await.unwrap();
    assert_eq!(items_from(&cache, &pool, &calls, 2).await.unwrap(), two_and_three, "a hit");
    assert_eq!(calls.load(SeqCst), 1);

    // ttl = 1 s: poll until the entry is gone (bounded), then the fresh rows come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while items_from(&cache, &pool, &calls, 2).await.unwrap().len() == 2 {
        assert!(Instant::now() < deadline, "the entry never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test]
async fn connections_none_results_and_invalidation() {
    let (pool, cache) = (db().await, QueryCache::in_memory(100));
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(label(&cache, &mut conn, 1).await.unwrap().as_deref(), Some("one"));
    assert_eq!(label(&cache, &mut conn, 9).await.unwrap(), None);
    sqlx::query("INSERT INTO items VALUES (9, 'nine')").execute(&mut *conn).await.unwrap();
    assert_eq!(label(&cache, &mut conn, 9).await.unwrap(), None, "None is cached too");
    label_invalidate(&cache, 9).await.unwrap();
    assert_eq!(label(&cache, &mut conn, 9).await.unwrap().as_deref(), Some("nine"));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.invalidations), (1, 3, 1));
}

#[cached_query(cache = cache, skip(cache))]
async fn label_in(
    cache: &QueryCache,
    tx: &mut sqlx::SqliteTransaction<'_>,
    id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT label FROM items WHERE id = ?").bind(id).fetch_optional(&mut **tx).await
}

/// sqlx's alias `SqliteTransaction<'_>` is a transaction like `Transaction<'_, Sqlite>`: reads
/// through it bypass the cache, so a row that is rolled back is never served afterwards (it
/// was, when the alias was taken for a key parameter and `skip`ped).
#[tokio::test]
async fn reads_in_a_transaction_under_sqlxs_alias_bypass_the_cache() {
    let (pool, cache) = (db().await, QueryCache::in_memory(100));
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO items VALUES (9, 'uncommitted')").execute(&mut *tx).await.unwrap();
    assert_eq!(label_in(&cache, &mut tx, 9).await.unwrap().as_deref(), Some("uncommitted"));
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    assert_eq!(label_in(&cache, &mut tx, 9).await.unwrap(), None, "the rolled-back row is not served");
    assert_eq!(cache.stats().writes, 0, "nothing read in a transaction is stored");
}
