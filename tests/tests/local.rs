//! The in-process tier (`.local_cache(n)`): hits without the network, and coherence across
//! instances that share one Redis (each instance here is a `QueryCache` with connections of
//! its own, as separate processes would have).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query_tests::matrix::{Backend, local_instances, rename, until_local_hit};
use cached_query_tests::{RedisServer, pg, redis_url, user_name, users_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_come_from_the_local_tier() {
    let pool = pg().await;
    users_table(&pool, "t_local_hits").await;
    let cache = local_instances(&Backend::Server(redis_url()), "local_hits", 1).await.remove(0);
    until_local_hit(&cache, &pool, "t_local_hits", 1).await;
    let before = cache.stats();
    let calls = AtomicUsize::new(0);
    for _ in 0..10 {
        assert_eq!(user_name(&cache, &pool, "t_local_hits", &calls, 1).await.unwrap(), "alice");
    }
    let after = cache.stats();
    assert_eq!(after.local_hits - before.local_hits, 10);
    assert_eq!(calls.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_backplane_the_local_tier_is_bypassed() {
    let (pool, mut redis) = (pg().await, RedisServer::start());
    let table = "t_local_backplane";
    users_table(&pool, table).await;
    let cache = local_instances(&Backend::Server(redis.url()), "backplane", 1).await.remove(0);
    until_local_hit(&cache, &pool, table, 3).await;
    redis.stop();
    // The subscription drops with the connection: the local tier stops serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    let calls = AtomicUsize::new(0);
    loop {
        let before = cache.stats().local_hits;
        assert_eq!(user_name(&cache, &pool, table, &calls, 3).await.unwrap(), "carol");
        if cache.stats().local_hits == before {
            break;
        }
        assert!(Instant::now() < deadline, "the local tier kept serving without its backplane");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bypassed_from = calls.load(SeqCst);
    for _ in 0..5 {
        assert_eq!(user_name(&cache, &pool, table, &calls, 3).await.unwrap(), "carol");
    }
    assert_eq!(calls.load(SeqCst), bypassed_from + 5, "every call ran its query");
    redis.restart();
    until_local_hit(&cache, &pool, table, 3).await;
}

/// The local tier's listener and heartbeat run on the runtime that built the cache, and end
/// with it without a word: the local tier then stops serving within a few heartbeats, rather
/// than serve values whose invalidations it no longer hears.
#[test]
fn a_local_tier_whose_runtime_is_gone_stops_serving() {
    let table = "t_local_runtime_gone";
    let first = tokio::runtime::Runtime::new().unwrap();
    let cache = first.block_on(async {
        let pool = pg().await;
        users_table(&pool, table).await;
        let cache = local_instances(&Backend::Server(redis_url()), "runtime_gone", 1).await.remove(0);
        until_local_hit(&cache, &pool, table, 2).await;
        cache
    });
    drop(first);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = pg().await;
        let other =
            Backend::Server(redis_url()).builder(cache.prefix()).local_cache(1000).build().await.unwrap();
        rename(&other, &pool, table, 2, "robert").await.unwrap();
        let (deadline, calls) = (Instant::now() + Duration::from_secs(15), AtomicUsize::new(0));
        while user_name(&cache, &pool, table, &calls, 2).await.unwrap() != "robert" {
            assert!(Instant::now() < deadline, "the local tier kept serving: {:?}", cache.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// An instance without a local tier announces its invalidations and overwrites on the
/// backplane all the same (the other instances' local tiers depend on it): one `PUBLISH` with
/// each, in the same round trip. The store of a miss replaces nothing another instance may
/// hold: it publishes nothing. The in-memory backend, with no other instances, publishes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_a_local_tier_announces_what_it_changes() {
    let (pool, server, table) = (pg().await, RedisServer::start(), "t_local_announces");
    users_table(&pool, table).await;
    let cache = Backend::Server(server.url()).cache("announces").await;
    let calls_of = |commands: &[&str]| commands.iter().map(|c| server.calls(c)).collect::<Vec<_>>();
    let counted = ["set", "incrby", "publish", "eval"];
    let before = calls_of(&counted);
    cache.invalidate_tags(["user:1", "user:2"]).await.unwrap();
    let after = calls_of(&counted);
    // One EVAL setting the tag epoch and a mark per tag (3 SETs, see `Keyspace::tag_epoch`),
    // SET NX per counter (see `counter_start`), INCRBY per counter, one PUBLISH.
    let made: Vec<_> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(made, [3 + 2, 2, 1, 1]);

    let (before, queries) = (calls_of(&counted), AtomicUsize::new(0));
    assert_eq!(user_name(&cache, &pool, table, &queries, 1).await.unwrap(), "alice");
    let after = calls_of(&counted);
    let made: Vec<_> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(made, [1, 0, 0, 0], "a miss: its SET alone");

    let before = calls_of(&counted);
    let key = cache.key("cached_query_tests::user_name", 0, &(1i64,)).unwrap();
    cache.set(&key, &"alicia".to_owned(), Duration::from_secs(60)).await.unwrap();
    let made: Vec<_> = calls_of(&counted).iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(made, [1, 0, 1, 0], "an overwrite");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}
