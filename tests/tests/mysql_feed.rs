//! Freshness from MySQL/MariaDB (`tables = auto` + `.watch_mysql(pool)`): row-level triggers
//! count committed changes, the cache polls them; a write by another client is seen within
//! the poll interval, a rolled-back one and one of another table are not. And Postgres polled
//! (`.change_poll_interval`) the same way. Real MariaDB (127.0.0.1:3306), Postgres and Redis.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{database_url, mysql_url, pg, redis_url, unique_prefix, until_a_hit, until_eq};
use sqlx::{Connection, MySqlConnection, MySqlPool, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn product(
    cache: &QueryCache,
    pool: &MySqlPool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar(
        "SELECT p.name FROM t_feed_products p JOIN t_feed_stock s ON s.product_id = p.id WHERE p.id = ?",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn polled_name(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT name FROM t_feed_polled WHERE id = $1").bind(id).fetch_one(pool).await
}

/// Another program's write: `mariadb`, the command-line client, on `MYSQL_URL`'s server.
async fn mysql_elsewhere(sql: &str) {
    let options: sqlx::mysql::MySqlConnectOptions = mysql_url().parse().unwrap();
    let output = tokio::process::Command::new("mariadb")
        .args(["-h", options.get_host(), "-P", &options.get_port().to_string(), "-u", options.get_username()])
        .args(["-D", options.get_database().unwrap_or("test"), "-e", sql])
        .output()
        .await
        .expect("the mariadb client on PATH");
    assert!(output.status.success(), "mariadb: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_writes_by_anyone_invalidate_within_the_poll_interval() {
    let pool = MySqlPool::connect(&mysql_url()).await.expect("MariaDB at MYSQL_URL");
    for statement in [
        "DROP TABLE IF EXISTS t_feed_products, t_feed_stock, t_feed_unrelated",
        "CREATE TABLE t_feed_products (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE t_feed_stock (product_id BIGINT NOT NULL, qty INT NOT NULL)",
        "CREATE TABLE t_feed_unrelated (id BIGINT)",
        "INSERT INTO t_feed_products VALUES (1, 'tea'), (2, 'coffee')",
        "INSERT INTO t_feed_stock VALUES (1, 10), (2, 5)",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await.unwrap();
    }
    cached_query::mysql::install(&pool, &["t_feed_products", "t_feed_stock", "t_feed_unrelated"])
        .await
        .unwrap();
    let cache = QueryCache::builder()
        .redis_url(redis_url())
        .prefix(unique_prefix("mysql_feed"))
        .default_schema("test")
        .watch_mysql(pool.clone())
        .change_poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);
    until_a_hit(&cache, || product(&cache, &pool, &calls, 1)).await;
    assert_eq!(product(&cache, &pool, &calls, 1).await.unwrap(), "tea");

    mysql_elsewhere("UPDATE t_feed_products SET name = 'green tea' WHERE id = 1").await;
    until_eq("green tea".to_owned(), || async { product(&cache, &pool, &calls, 1).await.unwrap() }).await;

    // A rolled-back write and a write of another table: after a few polls, still a hit.
    let mut conn = MySqlConnection::connect(&mysql_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("UPDATE t_feed_products SET name = 'rolled back' WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    mysql_elsewhere("INSERT INTO t_feed_unrelated VALUES (1)").await;
    let runs = calls.load(SeqCst);
    let polls_done = Instant::now() + Duration::from_millis(200);
    while Instant::now() < polls_done {
        assert_eq!(product(&cache, &pool, &calls, 1).await.unwrap(), "green tea");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.load(SeqCst), runs, "hits throughout");

    // A table read only through the join.
    mysql_elsewhere("DELETE FROM t_feed_stock WHERE product_id = 2").await;
    mysql_elsewhere("INSERT INTO t_feed_stock VALUES (2, 1)").await;
    let before = calls.load(SeqCst);
    product(&cache, &pool, &calls, 2).await.unwrap();
    mysql_elsewhere("UPDATE t_feed_stock SET qty = 0 WHERE product_id = 2").await;
    until_eq(true, || async {
        product(&cache, &pool, &calls, 2).await.unwrap();
        calls.load(SeqCst) > before + 1
    })
    .await;
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_polled_without_notify() {
    let pool = pg().await;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS t_feed_polled;
         CREATE TABLE t_feed_polled (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t_feed_polled VALUES (1, 'one');",
    )
    .execute(&pool)
    .await
    .unwrap();
    cached_query::postgres::install_polled(&pool, &["t_feed_polled"]).await.unwrap();
    let cache = QueryCache::builder()
        .redis_url(redis_url())
        .prefix(unique_prefix("pg_polled"))
        .watch_postgres(pool.clone())
        .change_poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);
    until_a_hit(&cache, || polled_name(&cache, &pool, &calls, 1)).await;
    let mut conn = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::query("UPDATE t_feed_polled SET name = 'uno' WHERE id = 1").execute(&mut conn).await.unwrap();
    until_eq("uno".to_owned(), || async { polled_name(&cache, &pool, &calls, 1).await.unwrap() }).await;
}
