//! What web services write: handlers whose parameters are extractor patterns (`Path(slug)`,
//! `Extension(state)`), and entries that differ per viewer (`Option<viewer>` in the key and in
//! a tag). Real Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cached_query::{QueryCache, cache_invalidate, cached_query};
use cached_query_tests::redis_cache;

/// axum's extractors, as far as a handler's signature goes.
struct Path<T>(T);
struct Extension<T>(T);

#[derive(Clone)]
struct AppState {
    cache: QueryCache,
    runs: Arc<AtomicUsize>,
}

#[cached_query(ttl = 60, cache = &state.cache, skip(state), tags = ["article:{slug}"])]
async fn article(Extension(state): Extension<AppState>, Path(slug): Path<String>) -> Result<String, String> {
    state.runs.fetch_add(1, SeqCst);
    Ok(format!("the article {slug}"))
}

#[cache_invalidate(cache = &state.cache, tags = ["article:{slug}"])]
async fn edit(Extension(state): Extension<AppState>, Path(slug): Path<String>) -> Result<(), String> {
    let _ = (state, slug);
    Ok(())
}

#[tokio::test]
async fn extractor_patterns_make_the_key_and_the_tags() {
    let state = AppState { cache: redis_cache("handlers").await, runs: Arc::default() };
    let get = |slug: &str| article(Extension(state.clone()), Path(slug.to_owned()));
    assert_eq!(get("a").await.unwrap(), "the article a");
    assert_eq!(get("a").await.unwrap(), "the article a");
    assert_eq!(state.runs.load(SeqCst), 1, "keyed by the binding: the second call is a hit");
    assert_eq!(get("b").await.unwrap(), "the article b");
    assert_eq!(state.runs.load(SeqCst), 2, "another slug, another entry");

    // The write's tag names the binding of its own `Path(slug)`: only that article goes.
    edit(Extension(state.clone()), Path("a".to_owned())).await.unwrap();
    get("a").await.unwrap();
    get("b").await.unwrap();
    assert_eq!(state.runs.load(SeqCst), 3);

    // `<fn>_invalidate` takes the parameters as declared.
    article_invalidate(Extension(state.clone()), Path("b".to_owned())).await.unwrap();
    get("b").await.unwrap();
    assert_eq!(state.runs.load(SeqCst), 4);
}

/// Whether `viewer` (anonymous: `None`) favorited `article`.
#[cached_query(ttl = 60, cache = cache, skip(cache, runs), tags = ["viewer:{viewer}", "article:{article}"])]
async fn favorited(cache: &QueryCache, runs: &AtomicUsize, viewer: Option<i64>, article: i64) -> bool {
    runs.fetch_add(1, SeqCst);
    viewer == Some(article)
}

#[tokio::test]
async fn per_viewer_entries_and_their_tags() {
    let (cache, runs) = (redis_cache("per_viewer").await, AtomicUsize::new(0));
    for viewer in [Some(1), Some(2), None] {
        favorited(&cache, &runs, viewer, 1).await;
        favorited(&cache, &runs, viewer, 1).await;
    }
    assert_eq!(runs.load(SeqCst), 3, "one entry per viewer");
    assert!(favorited(&cache, &runs, Some(1), 1).await && !favorited(&cache, &runs, None, 1).await);

    // Viewer 1 follows someone: that viewer's entries go, the others' stay.
    cache.invalidate_tags(["viewer:1"]).await.unwrap();
    for viewer in [Some(1), Some(2), None] {
        favorited(&cache, &runs, viewer, 1).await;
    }
    assert_eq!(runs.load(SeqCst), 4);

    // `None` renders as nothing: the anonymous viewer's tag is `viewer:`.
    cache.invalidate_tags(["viewer:"]).await.unwrap();
    for viewer in [Some(1), Some(2), None] {
        favorited(&cache, &runs, viewer, 1).await;
    }
    assert_eq!(runs.load(SeqCst), 5);
}

/// `QueryCache::passthrough()`, the uncached instance a service is compared with: every call
/// runs its query, and invalidating does nothing (and does not fail).
#[tokio::test]
async fn a_passthrough_cache_caches_nothing() {
    let (cache, runs) = (QueryCache::passthrough(), AtomicUsize::new(0));
    for _ in 0..3 {
        favorited(&cache, &runs, Some(1), 1).await;
    }
    assert_eq!(runs.load(SeqCst), 3);
    let state = AppState { cache: cache.clone(), runs: Arc::default() };
    edit(Extension(state.clone()), Path("a".to_owned())).await.unwrap();
    article(Extension(state.clone()), Path("a".to_owned())).await.unwrap();
    article(Extension(state.clone()), Path("a".to_owned())).await.unwrap();
    assert_eq!(state.runs.load(SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.writes, stats.invalidations), (0, 0, 0, 0), "{stats:?}");
}
