//! A Redis URL with a password (a server's, an ACL user's on a cluster and behind Sentinels): no
//! log line, `Debug` or error shows it. (A test binary of its
//! own: it installs the global `tracing` subscriber that captures the logs.)

use cached_query::{QueryCache, cached_query};
use cached_query_tests::logs::Logs;
use cached_query_tests::{RedisServer, pg, unique_prefix};
use sqlx::PgPool;

#[cached_query(ttl = 60, cache = cache, skip(cache))]
async fn triple(cache: &QueryCache, pool: &PgPool, n: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint * 3").bind(n).fetch_one(pool).await
}

async fn cache_at(url: &str, test: &str) -> QueryCache {
    QueryCache::builder().redis_url(url).prefix(unique_prefix(test)).build().await.unwrap()
}

#[tokio::test]
async fn the_password_appears_in_no_log_debug_or_error() {
    let logs = Logs::capture(tracing::Level::INFO);

    let (pool, mut redis) = (pg().await, RedisServer::start_with_password("hunter2secret"));
    let cache = cache_at(&redis.url(), "password").await;
    assert_eq!(triple(&cache, &pool, 4).await.unwrap(), 12);
    assert_eq!(triple(&cache, &pool, 4).await.unwrap(), 12);
    assert_eq!(cache.stats().hits, 1, "the password works");
    redis.stop();
    for n in 0..10 {
        assert_eq!(triple(&cache, &pool, n).await.unwrap(), n * 3);
    }
    let err = triple_invalidate(&cache, 4).await.unwrap_err();
    let wrong = format!("redis://:hunter2secret@127.0.0.1:{}/not-a-db", redis.port);
    let bad = QueryCache::builder().redis_url(wrong).build().await.unwrap_err();
    // An ACL user's password, on a cluster and behind Sentinels (nothing listens there: the
    // calls fail over to the database, and their failures are logged).
    let acl = "redis://app:hunter2secret@127.0.0.1:1";
    let cluster =
        QueryCache::builder().redis_cluster([acl]).prefix(unique_prefix("acl")).build().await.unwrap();
    let sentinel =
        QueryCache::builder().redis_sentinel("m", [acl]).prefix(unique_prefix("acl")).build().await.unwrap();
    for other in [&cluster, &sentinel] {
        for n in 0..5 {
            assert_eq!(triple(other, &pool, n).await.unwrap(), n * 3);
        }
        assert!(other.stats().errors >= 1, "{:?}", other.stats());
    }
    let errs = [
        cluster.invalidate_tags(["t"]).await.unwrap_err(),
        sentinel.invalidate_tags(["t"]).await.unwrap_err(),
    ];
    let shown = format!("{cache:?} {err} {err:?} {bad} {bad:?} {cluster:?} {sentinel:?} {errs:?}");
    assert!(shown.contains("app:***@"), "the user is shown, not the password: {shown}");
    let logged = logs.text();
    assert!(logged.contains("cached_query"), "something was logged: {logged}");
    assert!(!shown.contains("hunter2secret"), "{shown}");
    assert!(!logged.contains("hunter2secret"), "{logged}");
    println!(
        "| A Redis URL with a password | 22 calls | outage, bad URL, cluster, Sentinel | 22 | 0 | 0 | - |"
    );
}
