//! Tags computed from the result (`result_tags`) against real Postgres and Redis (and the
//! in-memory backend): an invalidation that lands while the query runs keeps its result out of
//! the cache, for the caller that waited on it too; the local tier drops an entry when one of
//! its result tags is invalidated elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cached_query::{QueryCache, cached_query};
use cached_query_tests::matrix::{Backend, local_instances};
use cached_query_tests::{pg, redis_cache, redis_url, users_table};
use sqlx::PgPool;
use tokio::sync::Notify;

/// Whether the reader of user `id` is held between reading the database and returning.
#[derive(Default)]
struct Gate {
    read: Notify,
    resume: Notify,
}

fn tags(names: &[(i64, String)]) -> Vec<String> {
    names.iter().map(|(id, _)| format!("user:{id}")).collect()
}

/// Every user named like `pattern`: which users it holds is known only once it ran.
#[cached_query(ttl = 60, cache = cache, skip(cache, gate, table), result_tags = tags)]
async fn named_like(
    cache: &QueryCache,
    pool: &PgPool,
    gate: Option<&Gate>,
    table: &str,
    pattern: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let sql = format!("SELECT id, name FROM {table} WHERE name LIKE $1 ORDER BY id");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(pattern).fetch_all(pool).await;
    if let Some(gate) = gate {
        gate.read.notify_one();
        gate.resume.notified().await;
    }
    rows
}

async fn rename(pool: &PgPool, table: &str, id: i64, to: &str) {
    let sql = format!("UPDATE {table} SET name = $2 WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(to).execute(pool).await.unwrap();
}

/// Waits for the gated reader to have read the database (with a deadline).
async fn until_read(gate: &Gate, what: &str) {
    if tokio::time::timeout(Duration::from_secs(10), gate.read.notified()).await.is_err() {
        panic!("{what}: the query did not run");
    }
}

/// The held reader: a query reads the database, a write and its invalidation of a tag of that
/// result land and return, and then the query stores. The entry must not be served after the
/// invalidation: the tag was not known when the query began, so its counter could not be read
/// before it; the tag's mark, later than the epoch the query read first, tells.
async fn a_result_read_before_an_invalidation_of_its_tags_is_not_served_after_it(
    cache: QueryCache,
    table: &str,
) {
    let (pool, gate) = (pg().await, Arc::new(Gate::default()));
    users_table(&pool, table).await;
    let reader = |gate: Option<Arc<Gate>>| {
        let (pool, cache, table) = (pool.clone(), cache.clone(), table.to_owned());
        tokio::spawn(async move { named_like(&cache, &pool, gate.as_deref(), &table, "a%").await.unwrap() })
    };
    let first = reader(Some(gate.clone()));
    until_read(&gate, "the first read").await;
    rename(&pool, table, 1, "alicia").await;
    cache.invalidate_tags(["user:1"]).await.unwrap();
    // A caller that begins now joins the held query's flight: it must not take its result.
    let joined = reader(None);
    tokio::task::yield_now().await;
    gate.resume.notify_one();
    assert_eq!(first.await.unwrap(), [(1, "alice".to_owned())], "its own call began before the write");
    assert_eq!(joined.await.unwrap(), [(1, "alicia".to_owned())], "began after the invalidation returned");
    assert_eq!(cache.stats().skipped_stores, 1, "{:?}", cache.stats());
    // A read now must see the write, from the store or from its own query.
    assert_eq!(named_like(&cache, &pool, None, table, "a%").await.unwrap(), [(1, "alicia".to_owned())]);
    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_reader_on_redis() {
    let cache = redis_cache("result_held").await;
    a_result_read_before_an_invalidation_of_its_tags_is_not_served_after_it(cache, "t_result_held").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_reader_in_memory() {
    let cache = QueryCache::in_memory(100);
    a_result_read_before_an_invalidation_of_its_tags_is_not_served_after_it(cache, "t_result_held_mem").await;
}

/// A tag of the result invalidated from another instance drops the entry from this one's
/// local tier, and an unrelated one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tiers_drop_entries_by_their_result_tags() {
    let (pool, table) = (pg().await, "t_result_local");
    users_table(&pool, table).await;
    let instances = local_instances(&Backend::Server(redis_url()), "result_local", 2).await;
    let (reader, writer) = (&instances[0], &instances[1]);
    let read = || named_like(reader, &pool, None, table, "%o%");
    assert_eq!(read().await.unwrap(), [(2, "bob".to_owned()), (3, "carol".to_owned())]);
    // The local tier serves once its backplane subscription is up (in its own time).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reader.stats().local_hits == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no local hit: {:?}", reader.stats());
        assert_eq!(read().await.unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    writer.invalidate_tags(["user:1"]).await.unwrap();
    rename(&pool, table, 3, "caroline").await;
    writer.invalidate_tags(["user:3"]).await.unwrap();
    // The backplane's message arrives in its own time: poll with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while read().await.unwrap()[1].1 != "caroline" {
        assert!(tokio::time::Instant::now() < deadline, "the local tier kept the entry of user:3");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let calls = AtomicUsize::new(reader.stats().misses as usize);
    assert_eq!(calls.load(SeqCst), 2, "user:1 is not in the result: one miss for user:3");
}
