//! Admission (`admit_after = n`) against real Redis: a key uses the cache only from its call
//! after the `n`-th in this process; the calls before run the body without a lookup or a store.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{keys_under, redis_cache, redis_conn, redis_url, unique_prefix};

#[cached_query(ttl = 60, cache = cache, skip(cache, runs), admit_after = 1, name = "admission_once")]
async fn once(cache: &QueryCache, runs: &AtomicUsize, id: i64) -> i64 {
    runs.fetch_add(1, SeqCst);
    id * 10
}

#[cached_query(ttl = 60, cache = cache, skip(cache, runs), admit_after = 2, name = "admission_twice")]
async fn twice(cache: &QueryCache, runs: &AtomicUsize, id: i64) -> i64 {
    runs.fetch_add(1, SeqCst);
    id * 10
}

/// The entries of a cache (keys under its prefix that hold a value, not a counter).
async fn entries(cache: &QueryCache) -> Vec<String> {
    let mut entries = Vec::new();
    for key in keys_under(&redis_url(), cache.prefix()).await {
        if cache.inspect(&key).await.is_ok_and(|found| found.is_some()) {
            entries.push(key);
        }
    }
    entries
}

#[tokio::test]
async fn a_key_is_stored_on_its_second_call_and_hit_from_its_third() {
    let cache = redis_cache("admission_second").await;
    let runs = AtomicUsize::new(0);

    assert_eq!(once(&cache, &runs, 7).await, 70);
    assert_eq!(runs.load(SeqCst), 1);
    assert!(entries(&cache).await.is_empty(), "a first call stores nothing");
    let stats = cache.stats();
    assert_eq!((stats.unadmitted, stats.misses, stats.writes), (1, 0, 0), "{stats:?}");

    assert_eq!(once(&cache, &runs, 7).await, 70);
    assert_eq!(runs.load(SeqCst), 2, "the second call is a miss");
    let stored = entries(&cache).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let ttl_ms: i64 =
        redis::cmd("PTTL").arg(&stored[0]).query_async(&mut redis_conn(&redis_url()).await).await.unwrap();
    assert!((50_000..=66_000).contains(&ttl_ms), "the entry has the function's ttl (jittered): {ttl_ms} ms");

    for _ in 0..3 {
        assert_eq!(once(&cache, &runs, 7).await, 70);
    }
    assert_eq!(runs.load(SeqCst), 2, "admitted: hits");

    // Another key is counted apart: its first call stores nothing.
    assert_eq!(once(&cache, &runs, 8).await, 80);
    assert_eq!(runs.load(SeqCst), 3);
    assert_eq!(entries(&cache).await, stored);

    let stats = cache.stats();
    assert_eq!((stats.unadmitted, stats.misses, stats.hits, stats.writes), (2, 1, 3, 1), "{stats:?}");
    let function = cache.function_stats().into_iter().find(|f| f.name == "admission_once").unwrap();
    assert_eq!((function.bypasses, function.misses, function.hits), (2, 1, 3), "{function:?}");
}

#[tokio::test]
async fn admit_after_two_stores_on_the_third_call() {
    let cache = redis_cache("admission_third").await;
    let runs = AtomicUsize::new(0);
    for call in 1..=2 {
        assert_eq!(twice(&cache, &runs, 3).await, 30);
        assert_eq!(runs.load(SeqCst), call);
        assert!(entries(&cache).await.is_empty(), "call {call} stored");
    }
    twice(&cache, &runs, 3).await;
    assert_eq!((runs.load(SeqCst), entries(&cache).await.len()), (3, 1), "the third call stores");
    twice(&cache, &runs, 3).await;
    assert_eq!(runs.load(SeqCst), 3, "the fourth hits");
}

/// An admitted key's entry is invalidated as any other; the key stays admitted, and a process
/// that never called the key reads the database until it has, entry or not.
#[tokio::test]
async fn invalidation_and_other_processes_are_unchanged() {
    let prefix = unique_prefix("admission_instances");
    // Not a test of timeouts: a slow reply on a loaded machine must not turn a hit into a miss.
    let build = || {
        QueryCache::builder().redis_url(redis_url()).prefix(&prefix).timeout(Duration::from_secs(2)).build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let runs = AtomicUsize::new(0);
    once(&a, &runs, 5).await;
    once(&a, &runs, 5).await;
    once(&a, &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 2);

    once_invalidate(&a, 5).await.unwrap();
    once(&a, &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 3, "invalidated: the next call runs the body");
    once(&a, &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 3, "and stored again");

    once(&b, &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 4, "b had not called the key: no lookup, though a stored it");
    once(&b, &runs, 5).await;
    assert_eq!(runs.load(SeqCst), 4, "b's second call finds a's entry");
    assert_eq!((b.stats().unadmitted, b.stats().hits, b.stats().writes), (1, 1, 0), "{:?}", b.stats());
}
