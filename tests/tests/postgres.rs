//! `#[cached_query]` against a real Postgres and the shared Redis.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{keys_under, pg, redis_cache, redis_conn, redis_url, users_table};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    id: i64,
    name: String,
}

/// The test table is an argument (skipped from the key: every test has its own cache).
#[cached_query(ttl = 60, cache = cache, skip(cache, table, calls))]
async fn user_by_id(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    id: i64,
) -> Result<Option<User>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

#[tokio::test]
async fn miss_then_hit_runs_the_query_once() {
    let (pool, cache, calls) = (pg().await, redis_cache("miss_then_hit").await, AtomicUsize::new(0));
    users_table(&pool, "t_miss_then_hit").await;
    let alice = Some(User { id: 1, name: "alice".into() });
    for _ in 0..3 {
        let got = user_by_id(&cache, &pool, "t_miss_then_hit", &calls, 1).await.unwrap();
        assert_eq!(got, alice);
    }
    assert_eq!(calls.load(SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.writes, stats.errors), (1, 2, 1, 0));
}

#[tokio::test]
async fn a_hit_does_not_touch_the_database() {
    let (pool, cache, calls) = (pg().await, redis_cache("hit_no_db").await, AtomicUsize::new(0));
    users_table(&pool, "t_hit_no_db").await;
    let first = user_by_id(&cache, &pool, "t_hit_no_db", &calls, 2).await.unwrap();
    sqlx::query("DELETE FROM t_hit_no_db WHERE id = 2").execute(&pool).await.unwrap();
    let second = user_by_id(&cache, &pool, "t_hit_no_db", &calls, 2).await.unwrap();
    assert_eq!(first, Some(User { id: 2, name: "bob".into() }));
    assert_eq!(second, first, "the deleted row still comes back from the cache");
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test]
async fn the_entry_has_the_ttl_and_the_documented_key() {
    let (pool, cache, calls) = (pg().await, redis_cache("ttl").await, AtomicUsize::new(0));
    users_table(&pool, "t_ttl").await;
    user_by_id(&cache, &pool, "t_ttl", &calls, 3).await.unwrap();
    let keys = keys_under(&redis_url(), cache.prefix()).await;
    let expected = cache.key("postgres::user_by_id", 0, &(3i64,)).unwrap();
    assert_eq!(keys, std::slice::from_ref(&expected), "one entry, under the documented key");
    let ttl: i64 =
        redis::cmd("TTL").arg(&expected).query_async(&mut redis_conn(&redis_url()).await).await.unwrap();
    // 60 s, moved by the default jitter of ±10 % (`jitter = 0` pins it: see stampede.rs).
    assert!(ttl > 0 && ttl <= 66, "TTL {ttl} not in (0, 66]");
}

#[tokio::test]
async fn equal_arguments_share_an_entry_and_different_ones_do_not() {
    let (pool, cache, calls) = (pg().await, redis_cache("args").await, AtomicUsize::new(0));
    users_table(&pool, "t_args").await;
    for id in [1, 2, 1, 2, 3, 3] {
        user_by_id(&cache, &pool, "t_args", &calls, id).await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 3);
    assert_eq!(keys_under(&redis_url(), cache.prefix()).await.len(), 3);
}

#[cached_query(cache = cache, skip(cache, calls))]
async fn fails_unless_positive(cache: &QueryCache, calls: &AtomicUsize, n: i64) -> Result<i64, String> {
    calls.fetch_add(1, SeqCst);
    if n > 0 { Ok(n) } else { Err(format!("{n} is not positive")) }
}

#[tokio::test]
async fn errors_are_returned_and_never_cached() {
    let (cache, calls) = (redis_cache("errors").await, AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(fails_unless_positive(&cache, &calls, -1).await, Err("-1 is not positive".into()));
    }
    assert_eq!(calls.load(SeqCst), 3);
    assert!(keys_under(&redis_url(), cache.prefix()).await.is_empty());
    assert_eq!(cache.stats().writes, 0);
}

#[tokio::test]
async fn sqlx_errors_reach_the_caller_unchanged() {
    let (pool, cache, calls) = (pg().await, redis_cache("sqlx_errors").await, AtomicUsize::new(0));
    let err = user_by_id(&cache, &pool, "t_does_not_exist", &calls, 1).await.unwrap_err();
    assert!(err.to_string().contains("t_does_not_exist"), "{err}");
    assert!(keys_under(&redis_url(), cache.prefix()).await.is_empty());
}

/// A repository with the cache and the pool in `self`.
struct Repo {
    cache: QueryCache,
    pool: PgPool,
    table: String,
    calls: AtomicUsize,
}

impl Repo {
    #[cached_query(ttl = 30, cache = &self.cache)]
    async fn names_from(&self, min_id: i64) -> Result<Vec<String>, sqlx::Error> {
        self.calls.fetch_add(1, SeqCst);
        let sql = format!("SELECT name FROM {} WHERE id >= $1 ORDER BY id", self.table);
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(min_id).fetch_all(&self.pool).await
    }

    #[cached_query(cache = &self.cache)]
    async fn count(&self) -> Result<i64, sqlx::Error> {
        self.calls.fetch_add(1, SeqCst);
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", self.table)))
            .fetch_one(&self.pool)
            .await
    }
}

#[tokio::test]
async fn methods_with_self_are_cached_under_the_type_name() {
    let repo = Repo {
        cache: redis_cache("methods").await,
        pool: pg().await,
        table: "t_methods".into(),
        calls: AtomicUsize::new(0),
    };
    users_table(&repo.pool, &repo.table).await;
    for _ in 0..2 {
        assert_eq!(repo.names_from(2).await.unwrap(), ["bob", "carol"]);
        assert_eq!(repo.count().await.unwrap(), 3);
    }
    assert_eq!(repo.calls.load(SeqCst), 2);
    let key = repo.cache.method_key::<Repo, _>("postgres::Repo::names_from", 0, &(2i64,)).unwrap();
    assert!(keys_under(&redis_url(), repo.cache.prefix()).await.contains(&key));
    repo.names_from_invalidate(2).await.unwrap();
    repo.names_from(2).await.unwrap();
    assert_eq!(repo.calls.load(SeqCst), 3);
}

#[cached_query(cache = cache, skip(cache, table))]
async fn name_on_connection(
    cache: &QueryCache,
    conn: &mut PgConnection,
    table: &str,
    id: i64,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(conn)
        .await
}

#[cached_query(cache = cache, skip(cache, table))]
async fn name_in_transaction(
    cache: &QueryCache,
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    id: i64,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(&mut **tx)
        .await
}

#[tokio::test]
async fn connections_are_executors_and_transactions_bypass_the_cache() {
    let (pool, cache) = (pg().await, redis_cache("executors").await);
    users_table(&pool, "t_executors").await;
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(name_on_connection(&cache, &mut conn, "t_executors", 1).await.unwrap(), "alice");
    let mut tx = pool.begin().await.unwrap();
    assert_eq!(name_in_transaction(&cache, &mut tx, "t_executors", 3).await.unwrap(), "carol");
    sqlx::query("UPDATE t_executors SET name = 'caroline' WHERE id = 3").execute(&mut *tx).await.unwrap();
    let own_write = name_in_transaction(&cache, &mut tx, "t_executors", 3).await.unwrap();
    assert_eq!(own_write, "caroline", "a transaction reads its own writes");
    tx.rollback().await.unwrap();
    assert_eq!(name_on_connection(&cache, &mut conn, "t_executors", 3).await.unwrap(), "carol");
    let keys = keys_under(&redis_url(), cache.prefix()).await;
    assert!(keys.contains(&cache.key("postgres::name_on_connection", 0, &(1i64,)).unwrap()));
    let in_tx = cache.key("postgres::name_in_transaction", 0, &(3i64,)).unwrap();
    assert!(!keys.contains(&in_tx), "uncommitted data is never cached");
}

#[cached_query(cache = cache, skip(cache, calls), name = "scalars", version = 3)]
async fn plain_values(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    n: i32,
) -> (i64, String, Option<f64>) {
    calls.fetch_add(1, SeqCst);
    let row: (i64, String) =
        sqlx::query_as("SELECT $1::bigint * 2, repeat('x', $1)").bind(n).fetch_one(pool).await.unwrap();
    (row.0, row.1, (n > 1).then_some(0.5))
}

#[tokio::test]
async fn non_result_values_are_cached_as_they_are() {
    let (pool, cache, calls) = (pg().await, redis_cache("plain").await, AtomicUsize::new(0));
    for _ in 0..2 {
        assert_eq!(plain_values(&cache, &pool, &calls, 2).await, (4, "xx".into(), Some(0.5)));
        assert_eq!(plain_values(&cache, &pool, &calls, 1).await, (2, "x".into(), None));
    }
    assert_eq!(calls.load(SeqCst), 2);
    let keys = keys_under(&redis_url(), cache.prefix()).await;
    let key = cache.key("scalars", 3, &(2i32,)).unwrap();
    assert!(key.starts_with(&format!("{}:scalars:v3:", cache.prefix())), "{key}");
    assert!(keys.contains(&key));
}

#[tokio::test]
async fn invalidate_deletes_exactly_that_entry() {
    let (pool, cache, calls) = (pg().await, redis_cache("invalidate").await, AtomicUsize::new(0));
    users_table(&pool, "t_invalidate").await;
    user_by_id(&cache, &pool, "t_invalidate", &calls, 1).await.unwrap();
    user_by_id(&cache, &pool, "t_invalidate", &calls, 2).await.unwrap();
    sqlx::query("UPDATE t_invalidate SET name = 'alicia' WHERE id = 1").execute(&pool).await.unwrap();
    user_by_id_invalidate(&cache, 1).await.unwrap();
    let one = user_by_id(&cache, &pool, "t_invalidate", &calls, 1).await.unwrap();
    assert_eq!(one.unwrap().name, "alicia", "the write is visible after invalidation");
    user_by_id(&cache, &pool, "t_invalidate", &calls, 2).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3, "id 2 stayed cached");
    assert_eq!(cache.stats().invalidations, 1);
}

#[tokio::test]
async fn corrupt_bytes_are_a_miss_and_get_overwritten() {
    let (pool, cache, calls) = (pg().await, redis_cache("corrupt").await, AtomicUsize::new(0));
    users_table(&pool, "t_corrupt").await;
    let key = cache.key("postgres::user_by_id", 0, &(1i64,)).unwrap();
    let mut conn = redis_conn(&redis_url()).await;
    let good = {
        user_by_id(&cache, &pool, "t_corrupt", &calls, 1).await.unwrap();
        redis::cmd("GET").arg(&key).query_async::<Vec<u8>>(&mut conn).await.unwrap()
    };
    let foreign: [&[u8]; 4] = [b"garbage", b"", &good[..good.len() - 2], &[0xff; 64]];
    for (i, bytes) in foreign.iter().enumerate() {
        redis::cmd("SET").arg(&key).arg(*bytes).exec_async(&mut conn).await.unwrap();
        let got = user_by_id(&cache, &pool, "t_corrupt", &calls, 1).await.unwrap();
        assert_eq!(got, Some(User { id: 1, name: "alice".into() }));
        assert_eq!(calls.load(SeqCst), i + 2, "bad bytes #{i} ran the query");
        let now: Option<Option<User>> = cache.get(&key).await.unwrap();
        assert_eq!(now, Some(got), "bad bytes #{i} were overwritten with a good entry");
    }
    assert_eq!(cache.stats().decode_errors, 4);
}

mod v2 {
    //! The same function after `User` gained a nullable column: old entries must not decode
    //! into it with `email: None`.
    use super::*;

    #[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct User {
        pub id: i64,
        pub name: String,
        pub email: Option<String>,
    }

    #[cached_query(cache = cache, skip(cache, table), name = "postgres::user_by_id")]
    pub async fn user_by_id(
        cache: &QueryCache,
        pool: &PgPool,
        table: &str,
        id: i64,
    ) -> Result<Option<User>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, name || '@example.com' AS email FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    }
}

#[tokio::test]
async fn an_entry_of_the_old_struct_is_not_served_as_the_new_one() {
    let (pool, cache, calls) = (pg().await, redis_cache("drift").await, AtomicUsize::new(0));
    users_table(&pool, "t_drift").await;
    user_by_id(&cache, &pool, "t_drift", &calls, 1).await.unwrap();
    let new = v2::user_by_id(&cache, &pool, "t_drift", 1).await.unwrap().unwrap();
    assert_eq!(new.email.as_deref(), Some("alice@example.com"));
    assert_eq!(cache.stats().decode_errors, 1);
}
