//! Postgres restarted under load, on a server of the test's own: the watcher's listener is
//! cut, reconnects and resynchronises; a write made right after the restart (likely before
//! the listener is back) is seen, and the cache serves again afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{PostgresServer, redis_url, unique_prefix, until_a_hit};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn restart_name(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM t_restart WHERE id = $1").bind(id).fetch_one(pool).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_loses_no_change() {
    let server = tokio::task::spawn_blocking(PostgresServer::start).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&server.url())
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE t_restart (id bigint PRIMARY KEY, name text NOT NULL); INSERT INTO t_restart VALUES (1, 'before');")
        .execute(&pool)
        .await
        .unwrap();
    cached_query::postgres::install(&pool, &["t_restart"]).await.unwrap();
    let cache = QueryCache::builder()
        .redis_url(redis_url())
        .prefix(unique_prefix("pg_restart"))
        .watch_postgres(pool.clone())
        .build()
        .await
        .unwrap();
    until_a_hit(&cache, || restart_name(&cache, &pool, 1)).await;

    // Load throughout: calls that answer (from the cache, or the database once it is back) or
    // fail with the database's error while it is down; never a value that is not in it.
    let (stop, answered, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn({
        let (cache, pool, stop, answered, failed) =
            (cache.clone(), pool.clone(), stop.clone(), answered.clone(), failed.clone());
        async move {
            while !stop.load(SeqCst) {
                match restart_name(&cache, &pool, 1).await {
                    Ok(name) => {
                        assert!(name == "before" || name == "after", "{name}");
                        answered.fetch_add(1, SeqCst);
                    }
                    Err(_) => {
                        failed.fetch_add(1, SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let restarted = {
        let server = &server;
        tokio::task::block_in_place(|| server.restart());
        Instant::now()
    };
    let mut conn = PgConnection::connect(&server.url()).await.unwrap();
    sqlx::query("UPDATE t_restart SET name = 'after' WHERE id = 1").execute(&mut conn).await.unwrap();
    let written = Instant::now();
    loop {
        if let Ok(name) = restart_name(&cache, &pool, 1).await
            && name == "after"
        {
            break;
        }
        assert!(written.elapsed() < Duration::from_secs(20), "the write after the restart was never seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The feed is back: hits again, of the new value.
    let hits = cache.stats().hits;
    while cache.stats().hits == hits {
        assert_eq!(restart_name(&cache, &pool, 1).await.unwrap(), "after");
        assert!(written.elapsed() < Duration::from_secs(20), "no hit after the restart: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, SeqCst);
    load.await.unwrap();
    assert!(answered.load(SeqCst) > 0);
    println!(
        "restart: {} calls answered, {} failed while Postgres was down; seen {:?} after the write ({:?} after the restart)",
        answered.load(SeqCst),
        failed.load(SeqCst),
        written.elapsed(),
        restarted.elapsed()
    );
}
