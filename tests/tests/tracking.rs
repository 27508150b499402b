//! Client tracking (`.client_tracking(true)`, the default on a single server): a warm hit is
//! one `GET`, the counters it is checked against are kept in the process and stay exact
//! (an invalidation from another instance is seen by the very next lookup), a lost tracking
//! connection falls back to reading the counters and comes back, and a server that refuses
//! tracking is read the old way. Each test runs its own `redis-server`, whose command counts
//! (`INFO commandstats`) show which path the lookups took.

use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{RedisServer, unique_prefix};

/// The "database": one number per test; an entry is `version * 1000 + id`.
#[cached_query(ttl = 60, cache = cache, skip(cache, source), tags = ["item:{id}"])]
async fn item(cache: &QueryCache, source: &AtomicI64, id: i64) -> i64 {
    source.load(SeqCst) * 1000 + id
}

async fn cache_on(server: &RedisServer, prefix: &str, tracking: bool) -> QueryCache {
    QueryCache::builder()
        .redis_url(server.url())
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .client_tracking(tracking)
        .build()
        .await
        .unwrap()
}

/// The `GET`s and `MGET`s that one call of `item(id)` cost, and its value.
async fn cost(server: &RedisServer, cache: &QueryCache, source: &AtomicI64, id: i64) -> ((u64, u64), i64) {
    let before = (server.calls("get"), server.calls("mget"));
    let value = item(cache, source, id).await;
    ((server.calls("get") - before.0, server.calls("mget") - before.1), value)
}

/// Calls `item(id)` until a hit costs exactly `per_hit` (`GET`s, `MGET`s): the tracked
/// connection is made in the background after the first lookup.
async fn until_hits_cost(
    server: &RedisServer,
    cache: &QueryCache,
    source: &AtomicI64,
    id: i64,
    per_hit: (u64, u64),
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = cache.stats().hits;
        let (cost, _) = cost(server, cache, source, id).await;
        if cost == per_hit && cache.stats().hits == hits + 1 {
            return;
        }
        assert!(Instant::now() < deadline, "a hit still costs {cost:?}, not {per_hit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_warm_hit_is_one_get_with_tracking_and_one_mget_without() {
    let server = RedisServer::start();
    for (tracking, per_hit) in [(true, (1, 0)), (false, (0, 1))] {
        let cache = cache_on(&server, &unique_prefix("one_get"), tracking).await;
        let source = AtomicI64::new(1);
        until_hits_cost(&server, &cache, &source, 7, per_hit).await;
        for id in [7, 7, 7] {
            assert_eq!(cost(&server, &cache, &source, id).await, (per_hit, 1007), "tracking {tracking}");
        }
        // A key seen for the first time: its own counter is read once, then kept.
        item(&cache, &source, 8).await;
        until_hits_cost(&server, &cache, &source, 8, per_hit).await;
    }
}

#[tokio::test]
async fn an_invalidation_by_another_instance_is_seen_by_the_next_lookup() {
    let server = RedisServer::start();
    let prefix = unique_prefix("next_lookup");
    let (reader, writer) = (cache_on(&server, &prefix, true).await, cache_on(&server, &prefix, true).await);
    let source = AtomicI64::new(0);
    until_hits_cost(&server, &reader, &source, 1, (1, 0)).await;
    let gets = server.calls("get");
    for version in 1..=150 {
        // The reader's counters are warm: its last lookup was a hit.
        assert_eq!(item(&reader, &source, 1).await, (version - 1) * 1000 + 1);
        source.store(version, SeqCst);
        match version % 3 {
            0 => item_invalidate(&writer, 1).await.unwrap(),
            1 => writer.invalidate_tags(["item:1"]).await.unwrap(),
            _ => writer.invalidate_all().await.unwrap(),
        }
        assert_eq!(item(&reader, &source, 1).await, version * 1000 + 1, "after invalidation {version}");
    }
    assert!(
        server.calls("get") - gets >= 150,
        "the hits went through the tracked connection ({} GETs)",
        server.calls("get") - gets
    );
}

#[tokio::test]
async fn a_lost_tracking_connection_falls_back_and_comes_back() {
    let server = RedisServer::start();
    let prefix = unique_prefix("lost_tracking");
    let (reader, writer) = (cache_on(&server, &prefix, true).await, cache_on(&server, &prefix, true).await);
    let source = AtomicI64::new(1);
    until_hits_cost(&server, &reader, &source, 1, (1, 0)).await;
    until_hits_cost(&server, &writer, &source, 2, (1, 0)).await;
    // Kill the tracking connections (flag `t`); the invalidation below is then pushed to nobody.
    let clients = server.command(&["CLIENT", "LIST"]).unwrap();
    let tracked: Vec<&str> = clients
        .lines()
        .filter(|l| l.split(' ').any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t'))))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(tracked.len(), 2, "one tracked connection per cache: {clients}");
    for id in &tracked {
        server.command(&["CLIENT", "KILL", "ID", id]).unwrap();
    }
    source.store(2, SeqCst);
    writer.invalidate_tags(["item:1"]).await.unwrap();
    assert_eq!(item(&reader, &source, 1).await, 2001, "the kept counters went with the connection");
    // Back to one GET per hit once the connection is made again.
    until_hits_cost(&server, &reader, &source, 1, (1, 0)).await;
    source.store(3, SeqCst);
    writer.invalidate_tags(["item:1"]).await.unwrap();
    assert_eq!(item(&reader, &source, 1).await, 3001, "tracked again");
}

#[tokio::test]
async fn a_server_that_refuses_tracking_is_read_with_mget() {
    for denied in ["-client|tracking", "-client|caching"] {
        let acl = format!("--user default on nopass ~* &* +@all {denied}");
        let mut server = RedisServer::unstarted_with(
            cached_query_tests::free_port(),
            acl.split(' ').map(String::from).collect(),
        );
        server.restart();
        let prefix = unique_prefix("refused");
        let (reader, writer) =
            (cache_on(&server, &prefix, true).await, cache_on(&server, &prefix, true).await);
        let source = AtomicI64::new(1);
        until_hits_cost(&server, &reader, &source, 1, (0, 1)).await;
        source.store(2, SeqCst);
        writer.invalidate_tags(["item:1"]).await.unwrap();
        assert_eq!(item(&reader, &source, 1).await, 2001, "{denied}");
        assert_eq!(cost(&server, &reader, &source, 1).await, ((0, 1), 2001), "{denied}: and stays on MGET");
    }
}

/// A cache used from a second runtime after the first, on which its tracked connection was
/// made, is gone (its connection's driver went with it, without a word).
#[test]
fn a_tracked_connection_whose_runtime_is_gone_is_made_again() {
    let server = RedisServer::start();
    let prefix = unique_prefix("runtime_gone");
    let runtime =
        || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let source = AtomicI64::new(1);
    let first = runtime();
    let (reader, writer) = first.block_on(async {
        let (reader, writer) =
            (cache_on(&server, &prefix, true).await, cache_on(&server, &prefix, true).await);
        until_hits_cost(&server, &reader, &source, 1, (1, 0)).await;
        (reader, writer)
    });
    drop(first);
    runtime().block_on(async {
        source.store(2, SeqCst);
        // The writer's connections went with the first runtime too: retry until it gets through.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.invalidate_tags(["item:1"]).await.is_err() {
            assert!(Instant::now() < deadline, "the writer reconnects");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(item(&reader, &source, 1).await, 2001);
        until_hits_cost(&server, &reader, &source, 1, (1, 0)).await;
        source.store(3, SeqCst);
        writer.invalidate_tags(["item:1"]).await.unwrap();
        assert_eq!(item(&reader, &source, 1).await, 3001, "tracked again, on the new runtime");
    });
}
