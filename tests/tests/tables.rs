//! `tables = ...`: an entry depends on the tables its SQL reads; a write that
//! `#[cache_invalidate(tables = auto)]` finds, or `QueryCache::invalidate_tables`, invalidates
//! exactly the entries that read them. Real Postgres and Redis.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cached_query::{QueryCache, cache_invalidate, cached_query};
use cached_query_tests::{pg, redis_cache, redis_url};
use sqlx::PgPool;

async fn setup(pool: &PgPool) {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS t_tables_memberships, t_tables_users, t_tables_other;
         CREATE TABLE t_tables_users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE t_tables_memberships (user_id bigint NOT NULL, team_id bigint NOT NULL);
         CREATE TABLE t_tables_other (id bigint);
         INSERT INTO t_tables_users VALUES (1, 'ada'), (2, 'bob'), (3, 'cy');
         INSERT INTO t_tables_memberships VALUES (1, 10), (2, 10);",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The members of a team: reads two tables, one of them only in a subquery.
#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache, calls))]
async fn team_page(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    team: i64,
) -> Result<Vec<String>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar(
        "SELECT u.name FROM t_tables_users u
         WHERE u.id IN (SELECT m.user_id FROM t_tables_memberships m WHERE m.team_id = $1)
         ORDER BY u.name",
    )
    .bind(team)
    .fetch_all(pool)
    .await
}

#[cache_invalidate(tables = auto, cache = cache)]
async fn join_team(cache: &QueryCache, pool: &PgPool, user: i64, team: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO t_tables_memberships (user_id, team_id) VALUES ($1, $2)")
        .bind(user)
        .bind(team)
        .execute(pool)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_invalidates_the_entries_that_read_its_table_and_no_others() {
    let (pool, cache, calls) = (pg().await, redis_cache("tables").await, AtomicUsize::new(0));
    setup(&pool).await;
    assert_eq!(team_page(&cache, &pool, &calls, 10).await.unwrap(), ["ada", "bob"]);
    assert_eq!(team_page(&cache, &pool, &calls, 10).await.unwrap(), ["ada", "bob"]);
    assert_eq!(calls.load(SeqCst), 1, "a hit");

    // A table the entry does not read: still a hit.
    cache.invalidate_tables(["t_tables_other"]).await.unwrap();
    team_page(&cache, &pool, &calls, 10).await.unwrap();
    assert_eq!(calls.load(SeqCst), 1, "an unrelated table leaves it");

    // The write names its table itself (read only in a subquery by the entry).
    join_team(&cache, &pool, 3, 10).await.unwrap();
    assert_eq!(team_page(&cache, &pool, &calls, 10).await.unwrap(), ["ada", "bob", "cy"]);
    assert_eq!(calls.load(SeqCst), 2);

    // A write the macro cannot see, invalidated by name (unquoted: folded to lower case; the
    // default schema may be given or not).
    sqlx::query("UPDATE t_tables_users SET name = 'ada lovelace' WHERE id = 1").execute(&pool).await.unwrap();
    cache.invalidate_tables(["public.T_Tables_Users"]).await.unwrap();
    assert_eq!(team_page(&cache, &pool, &calls, 10).await.unwrap(), ["ada lovelace", "bob", "cy"]);
    assert_eq!(calls.load(SeqCst), 3);

    // The counter sits where the docs say.
    let mut conn = cached_query_tests::redis_conn(&redis_url()).await;
    let key = format!("{}:table:t_tables_users", cache.prefix());
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(exists, "{key}");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

#[test]
fn tables_lists_every_table_the_program_reads() {
    let tables = cached_query::tables();
    assert!(tables.contains(&"t_tables_users".to_owned()), "{tables:?}");
    assert!(tables.contains(&"t_tables_memberships".to_owned()), "{tables:?}");
    assert!(tables.windows(2).all(|w| w[0] < w[1]), "sorted, once: {tables:?}");
}
