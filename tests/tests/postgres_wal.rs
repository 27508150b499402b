//! Freshness from Postgres's write-ahead log (`tables = auto` + `.watch_postgres_wal(pool)`,
//! no triggers): a write committed by any client invalidates the entries that read its table;
//! rollbacks and other tables do not; a lost connection (and its temporary slot) loses nothing;
//! instances on one prefix share one reader, and another takes over when it stops;
//! a commit that is in the log but not yet visible is not applied before it is. Each test runs
//! a Postgres of its own with `wal_level = logical`, and the shared Redis.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{PostgresServer, psql, redis_conn, redis_url, unique_prefix, until_a_hit, until_eq};
use sqlx::{Connection, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn wal_item(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT name FROM t_wal_items WHERE id = $1").bind(id).fetch_one(pool).await
}

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn wal_other_count(cache: &QueryCache, pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("WITH o AS (SELECT id FROM t_wal_other) SELECT count(*) FROM o").fetch_one(pool).await
}

/// Quotes, a colon and a comma in a table's name (as the log writes it: `public."Odd: T, x"`).
#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn wal_odd_count(cache: &QueryCache, pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM "Odd: T, x""#).fetch_one(pool).await
}

/// A server with `settings` besides `wal_level = logical`, the tables of these tests and rows.
async fn server(settings: &[&str]) -> (PostgresServer, PgPool) {
    let server = PostgresServer::start_with(&[&["wal_level=logical"], settings].concat());
    let pool = PgPool::connect(&server.url()).await.unwrap();
    sqlx::raw_sql(
        r#"CREATE TABLE t_wal_items (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE t_wal_other (id bigint);
         CREATE TABLE t_wal_fence (n bigint);
         CREATE TABLE t_wal_elsewhere (n bigint);
         CREATE TABLE "Odd: T, x" (n bigint);
         INSERT INTO t_wal_items VALUES (1, 'a'), (2, 'b');
         INSERT INTO t_wal_other VALUES (1), (2), (3);
         INSERT INTO t_wal_fence VALUES (0);"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    (server, pool)
}

async fn watching(prefix: &str, pool: &PgPool) -> QueryCache {
    QueryCache::builder()
        .redis_url(redis_url())
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .change_poll_interval(Duration::from_millis(10))
        .watch_postgres_wal(pool.clone())
        .build()
        .await
        .unwrap()
}

/// Another program's write: `psql`, the Postgres command-line client.
async fn elsewhere(server: &PostgresServer, sql: &str) {
    psql(&server.url(), sql).await;
}

/// The version (commit position) the feed applied last to `table`'s counter.
async fn seen(prefix: &str, table: &str) -> Option<String> {
    let mut conn = redis_conn(&redis_url()).await;
    redis::cmd("HGET")
        .arg(format!("{prefix}:table:{table}:seen"))
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn counter(prefix: &str, table: &str) -> Option<u64> {
    let mut conn = redis_conn(&redis_url()).await;
    redis::cmd("GET").arg(format!("{prefix}:table:{table}")).query_async(&mut conn).await.unwrap()
}

/// Commits a change to `t_wal_fence` and waits until `prefix`'s feed applied it: every commit
/// before it has been decoded and handled.
async fn fence(server: &PostgresServer, prefix: &str) {
    let before = seen(prefix, "t_wal_fence").await;
    elsewhere(server, "UPDATE t_wal_fence SET n = n + 1").await;
    let started = Instant::now();
    while seen(prefix, "t_wal_fence").await == before {
        assert!(started.elapsed() < Duration::from_secs(10), "the fence never came through");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `fence` needs the fence table among the program's tables.
#[cached_query(ttl = 300, tables = ["t_wal_fence"], cache = cache, skip(cache))]
async fn fence_table(cache: &QueryCache) -> Result<i64, sqlx::Error> {
    Ok(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_anyone_invalidate_through_the_log_and_nothing_else_does() {
    let (server, pool) = server(&[]).await;
    let prefix = unique_prefix("wal");
    let (cache, calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    fence_table(&cache).await.unwrap();
    until_a_hit(&cache, || wal_item(&cache, &pool, &calls, 1)).await;

    elsewhere(&server, "UPDATE t_wal_items SET name = 'a2' WHERE id = 1").await;
    until_eq("a2".to_owned(), || async { wal_item(&cache, &pool, &calls, 1).await.unwrap() }).await;

    // A table no function reads, and a rolled-back write of one it does: still a hit.
    let runs = calls.load(SeqCst);
    elsewhere(&server, "INSERT INTO t_wal_elsewhere VALUES (1)").await;
    let mut conn = PgConnection::connect(&server.url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("UPDATE t_wal_items SET name = 'rolled back' WHERE id = 1").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    fence(&server, &prefix).await;
    assert_eq!(wal_item(&cache, &pool, &calls, 1).await.unwrap(), "a2");
    assert_eq!(calls.load(SeqCst), runs, "a hit: nothing it reads committed a change");

    // TRUNCATE of a table read in a CTE.
    assert_eq!(wal_other_count(&cache, &pool).await.unwrap(), 3);
    assert_eq!(wal_other_count(&cache, &pool).await.unwrap(), 3);
    elsewhere(&server, "TRUNCATE t_wal_other").await;
    until_eq(0, || async { wal_other_count(&cache, &pool).await.unwrap() }).await;
    assert_eq!(wal_odd_count(&cache, &pool).await.unwrap(), 0);
    assert_eq!(wal_odd_count(&cache, &pool).await.unwrap(), 0);
    elsewhere(&server, r#"INSERT INTO "Odd: T, x" VALUES (1)"#).await;
    until_eq(1, || async { wal_odd_count(&cache, &pool).await.unwrap() }).await;

    // A second instance: both see a change, the table's counter moves once for it (both decode
    // the same commit position).
    let (second, second_calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&second, || wal_item(&second, &pool, &second_calls, 2)).await;
    fence(&server, &prefix).await;
    let before = counter(&prefix, "t_wal_items").await;
    elsewhere(&server, "UPDATE t_wal_items SET name = 'b2' WHERE id = 2").await;
    until_eq("b2".to_owned(), || async { wal_item(&cache, &pool, &calls, 2).await.unwrap() }).await;
    until_eq("b2".to_owned(), || async { wal_item(&second, &pool, &second_calls, 2).await.unwrap() }).await;
    fence(&server, &prefix).await;
    assert_eq!(counter(&prefix, "t_wal_items").await, before.map(|v| v + 1), "one increment for one change");
    assert_eq!((cache.stats().errors, second.stats().errors), (0, 0));
}

/// Instances on one prefix share one reader of the log (one slot decoding); when it stops,
/// another takes over, and writes are seen again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_reads_the_log_and_another_takes_over() {
    let (server, pool) = server(&[]).await;
    let prefix = unique_prefix("wal_reader");
    let (first, calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&first, || wal_item(&first, &pool, &calls, 1)).await;
    let (second, second_calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&second, || wal_item(&second, &pool, &second_calls, 1)).await;
    let slots = || async {
        let slots = "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'cached_query_%'";
        sqlx::query_scalar::<_, String>(slots).fetch_all(&pool).await.unwrap()
    };
    let before = slots().await;
    assert_eq!(before.len(), 1, "one reader for two instances: {before:?}");

    // The reader's instance goes away: its slot with it, and the other one takes over.
    drop(first);
    until_eq(true, || async {
        let now = slots().await;
        now.len() == 1 && now != before
    })
    .await;
    elsewhere(&server, "UPDATE t_wal_items SET name = 'after' WHERE id = 1").await;
    until_eq("after".to_owned(), || async { wal_item(&second, &pool, &second_calls, 1).await.unwrap() })
        .await;
}

/// The feed's connection is killed, and a write commits while its new slot cannot be made yet
/// (a transaction holds it back): the feed is down meanwhile (the query runs), and once back the
/// value written in the gap is served, never the one cached before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_feed_resynchronises_and_misses_nothing() {
    let (server, pool) = server(&[]).await;
    let (cache, calls) = (watching(&unique_prefix("wal_gap"), &pool).await, AtomicUsize::new(0));
    until_a_hit(&cache, || wal_item(&cache, &pool, &calls, 1)).await;

    // A slot is consistent only once the transactions running when it was asked for have ended.
    let mut holder = PgConnection::connect(&server.url()).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("INSERT INTO t_wal_elsewhere VALUES (2)").execute(&mut *held).await.unwrap();
    let kill = "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                WHERE slot_name LIKE 'cached_query_%' AND active_pid IS NOT NULL";
    let killed: Vec<bool> = sqlx::query_scalar(kill).fetch_all(&pool).await.unwrap();
    assert_eq!(killed, [true], "one feed connection");
    elsewhere(&server, "UPDATE t_wal_items SET name = 'during the gap' WHERE id = 1").await;

    // Down: the query runs, and gives the new value.
    let bypassed = cache.stats().bypassed;
    until_eq("during the gap".to_owned(), || async { wal_item(&cache, &pool, &calls, 1).await.unwrap() })
        .await;
    assert!(cache.stats().bypassed > bypassed, "{:?}", cache.stats());

    held.commit().await.unwrap();
    // Back: hits again, of the value written during the gap.
    let hits = cache.stats().hits;
    until_eq(true, || async {
        assert_eq!(wal_item(&cache, &pool, &calls, 1).await.unwrap(), "during the gap");
        cache.stats().hits > hits
    })
    .await;
}

/// A commit that is in the log before other sessions can see it (here: waiting for a
/// synchronous standby that does not exist) is applied only once it is visible; applied
/// earlier, a query would re-cache the old value after the invalidation, for the whole TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_applied_once_it_is_visible() {
    // Only a session that asks for it waits for the standby.
    let (server, pool) = server(&["synchronous_standby_names=nobody", "synchronous_commit=local"]).await;
    let prefix = unique_prefix("wal_visible");
    let (cache, calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    fence_table(&cache).await.unwrap();
    until_a_hit(&cache, || wal_item(&cache, &pool, &calls, 1)).await;

    // The writer's commit is flushed to the log, then waits for the standby.
    let url = server.url();
    let writer = tokio::spawn(async move {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("SET synchronous_commit = on; UPDATE t_wal_items SET name = 'new' WHERE id = 1")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    let pid: i32 =
        until_some(|| async { sqlx::query_scalar(waiting).fetch_optional(&pool).await.unwrap() }).await;
    // Decoded once the feed's slot has consumed the log up to here (a fence's commit would wait
    // for the standby too).
    let flushed: String =
        sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text").fetch_one(&pool).await.unwrap();
    let consumed = "SELECT bool_or(confirmed_flush_lsn >= $1::pg_lsn) FROM pg_replication_slots \
                    WHERE slot_name LIKE 'cached_query_%'";
    until_eq(Some(true), || async {
        sqlx::query_scalar(consumed).bind(&flushed).fetch_one(&pool).await.unwrap()
    })
    .await;
    // Not visible yet: the cached value is still the database's.
    assert_eq!(wal_item(&cache, &pool, &calls, 1).await.unwrap(), "a");
    sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&pool).await.unwrap(); // committed locally
    writer.await.unwrap();
    until_eq("new".to_owned(), || async { wal_item(&cache, &pool, &calls, 1).await.unwrap() }).await;
}

/// The instance that takes the lease over serves nothing from the cache until its own slot and
/// invalidations are in place: here its slot waits behind a running transaction, and a write
/// committed meanwhile is seen at once (the query runs), never the value cached before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_reader_serves_nothing_until_its_slot_is_ready() {
    let (server, pool) = server(&[]).await;
    let prefix = unique_prefix("wal_takeover");
    let (first, calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&first, || wal_item(&first, &pool, &calls, 1)).await;
    let (second, second_calls) = (watching(&prefix, &pool).await, AtomicUsize::new(0));
    until_a_hit(&second, || wal_item(&second, &pool, &second_calls, 1)).await;

    let mut holder = PgConnection::connect(&server.url()).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("INSERT INTO t_wal_elsewhere VALUES (3)").execute(&mut *held).await.unwrap();
    drop(first); // its lease is released: the second instance takes over, and waits for its slot
    let creating = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                    AND query LIKE 'SELECT pg_create_logical_replication_slot%'";
    until_eq(1i64, || async { sqlx::query_scalar(creating).fetch_one(&pool).await.unwrap() }).await;
    elsewhere(&server, "UPDATE t_wal_items SET name = 'while taking over' WHERE id = 1").await;
    assert_eq!(wal_item(&second, &pool, &second_calls, 1).await.unwrap(), "while taking over");
    held.commit().await.unwrap();
    until_a_hit(&second, || wal_item(&second, &pool, &second_calls, 1)).await;
    assert_eq!(wal_item(&second, &pool, &second_calls, 1).await.unwrap(), "while taking over");
}

/// A commit that is not visible yet (waiting for a synchronous standby) holds back only its
/// own tables: another table's visible change is applied, and served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invisible_commit_holds_back_only_its_own_tables() {
    let (server, pool) = server(&["synchronous_standby_names=nobody", "synchronous_commit=local"]).await;
    let (cache, calls) = (watching(&unique_prefix("wal_partial"), &pool).await, AtomicUsize::new(0));
    until_a_hit(&cache, || wal_item(&cache, &pool, &calls, 1)).await;
    let url = server.url();
    let writer = tokio::spawn(async move {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let waits = "SET synchronous_commit = on; UPDATE t_wal_other SET id = id + 10";
        let _ = sqlx::raw_sql(waits).execute(&mut conn).await; // cancelled below
    });
    let waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    let pid: i32 =
        until_some(|| async { sqlx::query_scalar(waiting).fetch_optional(&pool).await.unwrap() }).await;
    elsewhere(&server, "UPDATE t_wal_items SET name = 'visible' WHERE id = 1").await;
    // Served from the cache (a hit: the feed up, not bypassed), and new.
    let bypassed = cache.stats().bypassed;
    until_eq(true, || async {
        let hits = cache.stats().hits;
        wal_item(&cache, &pool, &calls, 1).await.unwrap() == "visible" && cache.stats().hits > hits
    })
    .await;
    assert_eq!(cache.stats().bypassed, bypassed, "{:?}", cache.stats());
    sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&pool).await.unwrap();
    writer.await.unwrap();
}

/// Polls `f` until it gives `Some`, within 10 s.
async fn until_some<T, F: std::future::Future<Output = Option<T>>>(mut f: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
