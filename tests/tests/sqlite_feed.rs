//! Freshness from SQLite (`cached_query::sqlite::watch`): the pool's own writes, committed,
//! invalidate the entries that read their tables, annotated or not; a rolled-back transaction
//! and a write to another table do not.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn label(
    cache: &QueryCache,
    pool: &SqlitePool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT label FROM items WHERE id = ?").bind(id).fetch_one(pool).await
}

/// Calls `label(1)` until it gives `expected` from the cache (a hit), within 10 s: an
/// invalidation lands just after its commit, and a value computed in between is not kept.
async fn until(cache: &QueryCache, pool: &SqlitePool, calls: &AtomicUsize, expected: &str) {
    let started = Instant::now();
    loop {
        let runs = calls.load(SeqCst);
        if label(cache, pool, calls, 1).await.unwrap() == expected && calls.load(SeqCst) == runs {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never a hit of {expected}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_of_the_pool_invalidate_their_tables() {
    let dir = std::env::temp_dir().join(format!("cq-sqlite-feed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.db");
    let _ = std::fs::remove_file(&file);
    let cache = QueryCache::in_memory(100);
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let pool = cached_query::sqlite::watch(SqlitePoolOptions::new().max_connections(4), &cache)
        .connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT NOT NULL);
         CREATE TABLE other (id INTEGER);
         INSERT INTO items VALUES (1, 'one');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let calls = AtomicUsize::new(0);
    until(&cache, &pool, &calls, "one").await;

    // A plain write, not annotated: seen (and cached again) once committed.
    sqlx::query("UPDATE items SET label = 'uno' WHERE id = 1").execute(&pool).await.unwrap();
    until(&cache, &pool, &calls, "uno").await;

    // Rolled back, and another table: still a hit afterwards.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE items SET label = 'rolled back' WHERE id = 1").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    sqlx::query("INSERT INTO other VALUES (1)").execute(&pool).await.unwrap();
    let invalidations = cache.stats().invalidations;
    // The write to `other` is invalidated (its own table) once it has committed.
    let started = Instant::now();
    while cache.stats().invalidations == invalidations {
        assert!(started.elapsed() < Duration::from_secs(10), "the write to `other` was never applied");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let runs = calls.load(SeqCst);
    assert_eq!(label(&cache, &pool, &calls, 1).await.unwrap(), "uno");
    assert_eq!(calls.load(SeqCst), runs, "a hit: the rollback and the other table left it");

    // A transaction of several statements: applied at its commit.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE items SET label = 'eins' WHERE id = 1").execute(&mut *tx).await.unwrap();
    sqlx::query("INSERT INTO items VALUES (2, 'zwei')").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    until(&cache, &pool, &calls, "eins").await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
