//! The process-wide default cache (its own test binary: `install` is global).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cached_query::{QueryCache, cached_query};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached_query(ttl = 60)]
async fn square(n: u32) -> u64 {
    CALLS.fetch_add(1, SeqCst);
    u64::from(n) * u64::from(n)
}

#[tokio::test]
async fn functions_use_the_installed_cache_and_run_uncached_without_one() {
    assert!(cached_query::installed().is_none());
    assert_eq!(square(3).await, 9);
    assert_eq!(square(3).await, 9);
    assert_eq!(CALLS.load(SeqCst), 2, "no cache installed: every call runs the body");
    assert_eq!(square_invalidate(3).await.ok(), Some(()), "nothing to invalidate");

    let first = QueryCache::in_memory(10);
    cached_query::install(first.clone());
    assert_eq!(square(3).await, 9);
    assert_eq!(square(3).await, 9);
    assert_eq!(CALLS.load(SeqCst), 3);
    assert_eq!(first.stats().hits, 1);

    let second = QueryCache::in_memory(10);
    cached_query::install(second.clone());
    assert_eq!(square(3).await, 9);
    assert_eq!(CALLS.load(SeqCst), 4, "the second install replaced the first");
    assert_eq!((first.stats().hits, second.stats().misses), (1, 1));
    square_invalidate(3).await.unwrap();
    assert_eq!(second.stats().invalidations, 1);
}
