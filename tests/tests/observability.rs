//! Counts per function (`function_stats()`) and the metrics of the feature `metrics`, against
//! real Redis and Postgres: names, labels and values as docs/observability.md promises them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{FunctionStats, QueryCache, cached_query};
use cached_query_tests::{pg, redis_cache, redis_cache_with, redis_conn, redis_url, user_name, users_table};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sqlx::PgPool;

#[cached_query(ttl = 60, cache = cache, skip(cache))]
async fn doubled(cache: &QueryCache, x: i64) -> i64 {
    x * 2
}

#[cached_query(ttl = 60, name = "halved", cache = cache, skip(cache))]
async fn halved(cache: &QueryCache, x: i64) -> i64 {
    x / 2
}

#[cached_query(ttl = 1, stale = 60, jitter = 0, name = "aged", cache = cache, skip(cache))]
async fn aged(cache: &QueryCache, x: i64) -> i64 {
    x + 1
}

/// Calls `call` until `cache`'s counts of `function` satisfy `done` (10 s at most).
async fn until_counted<F: Future>(
    cache: &QueryCache,
    function: &str,
    done: impl Fn(&FunctionStats) -> bool,
    mut call: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        call().await;
        let all = cache.function_stats();
        if all.iter().any(|f| f.name == function && done(f)) {
            return;
        }
        assert!(Instant::now() < deadline, "{function} never counted as expected: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(all: &'a [FunctionStats], name: &str) -> &'a FunctionStats {
    all.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no stats of {name}: {all:?}"))
}

/// Hits, misses, errors and bypasses per function, with the global `stats()` agreeing.
async fn counted(cache: &QueryCache, pool: &PgPool) {
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        user_name(cache, pool, "t_obs", &calls, 1).await.unwrap();
    }
    user_name(cache, pool, "t_obs", &calls, 2).await.unwrap();
    cache.invalidate_tags(["user:1"]).await.unwrap();
    user_name(cache, pool, "t_obs", &calls, 1).await.unwrap();
    assert_eq!(doubled(cache, 4).await, 8);
    // Bytes that are not an entry: a decode error of that function, answered by its query.
    let key = cache.key("cached_query_tests::user_name", 0, &(2i64,)).unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("garbage")
        .query_async(&mut redis_conn(&redis_url()).await)
        .await
        .unwrap();
    user_name(cache, pool, "t_obs", &calls, 2).await.unwrap();

    let all = cache.function_stats();
    let name = of(&all, "cached_query_tests::user_name");
    assert_eq!((name.hits, name.misses, name.stale, name.bypasses, name.errors), (2, 4, 0, 0, 1), "{name:?}");
    let doubled = of(&all, "observability::doubled");
    assert_eq!((doubled.hits, doubled.misses), (0, 1), "{doubled:?}");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (2, 5, 1), "{stats:?}");
}

#[tokio::test]
async fn function_stats_count_each_function() {
    let pool = pg().await;
    users_table(&pool, "t_obs").await;
    counted(&redis_cache("obs_stats").await, &pool).await;
    // A passthrough cache consults nothing: every call is a bypass.
    let passthrough = QueryCache::passthrough();
    doubled(&passthrough, 1).await;
    doubled(&passthrough, 1).await;
    let all = passthrough.function_stats();
    assert_eq!(of(&all, "observability::doubled").bypasses, 2, "{all:?}");
}

/// The metrics, on a recorder of this thread's own: their names and labels are a contract.
#[test]
fn metrics_have_the_documented_names_and_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let cache = redis_cache("obs_metrics").await;
            doubled(&cache, 1).await;
            doubled(&cache, 1).await;
            cache.invalidate_tags(["user:9"]).await.unwrap();
            cache.invalidate_tables(["users"]).await.unwrap();
            cache.invalidate(&cache.key("observability::doubled", 0, &(1i64,)).unwrap()).await.unwrap();
            cache.invalidate_all().await.unwrap();
            // A stale value served: past its second of freshness, within `stale`.
            until_counted(&cache, "aged", |f| f.stale == 1, || aged(&cache, 1)).await;
            // The local tier, once its backplane is up.
            let local = redis_cache_with("obs_local", |b| b.local_cache(10)).await;
            until_counted(&local, "halved", |f| f.local_hits == 1, || halved(&local, 8)).await;
            // Nothing listens there: the call's failure is its function's, the invalidation's
            // no function's. After three failures the breaker opens: the next call bypasses
            // the cache.
            let down = QueryCache::builder()
                .redis_url("redis://127.0.0.1:1")
                .prefix("obs_down")
                .build()
                .await
                .unwrap();
            until_counted(&down, "halved", |f| f.bypasses == 1, || halved(&down, 4)).await;
            // An entry over max_value_bytes: returned, not stored, counted as `oversized`.
            let small = redis_cache_with("obs_small", |b| b.max_value_bytes(8)).await;
            assert_eq!(halved(&small, 10).await, 5);
            // A cache that consults nothing: a bypass before any lookup, timed as well.
            assert_eq!(doubled(&QueryCache::passthrough(), 3).await, 6);
            let _ = down.invalidate_tags(["user:9"]).await;
        })
    });
    let metrics: Vec<_> = snapshotter.snapshot().into_vec();
    let find = |kind: MetricKind, name: &str, labels: &[(&str, &str)]| {
        metrics
            .iter()
            .find(|(key, _, _, _)| {
                key.kind() == kind
                    && key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    };
    let calls = |outcome| {
        find(
            MetricKind::Counter,
            "cached_query_calls_total",
            &[("function", "observability::doubled"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("miss"), Some(&DebugValue::Counter(1)), "{metrics:?}");
    assert_eq!(calls("hit"), Some(&DebugValue::Counter(1)));
    // One duration of `doubled`'s calls answered so.
    let timed_once = |outcome| {
        let labels = [("function", "observability::doubled"), ("outcome", outcome)];
        let duration = find(MetricKind::Histogram, "cached_query_call_duration_seconds", &labels);
        matches!(duration, Some(DebugValue::Histogram(values)) if values.len() == 1)
    };
    assert!(timed_once("hit"), "{metrics:?}");
    let query = find(
        MetricKind::Histogram,
        "cached_query_query_duration_seconds",
        &[("function", "observability::doubled")],
    );
    assert!(matches!(query, Some(DebugValue::Histogram(values)) if values.len() == 1), "{metrics:?}");
    for function in ["halved", ""] {
        let errors = metrics.iter().find(|(key, _, _, _)| {
            key.key().name() == "cached_query_errors_total"
                && key.key().labels().any(|l| l.key() == "function" && l.value() == function)
        });
        assert!(
            matches!(errors, Some((_, _, _, DebugValue::Counter(n))) if *n >= 1),
            "`{function}`: {metrics:?}"
        );
    }
    for kind in ["key", "tag", "table", "all"] {
        let invalidations = find(MetricKind::Counter, "cached_query_invalidations_total", &[("kind", kind)]);
        assert_eq!(invalidations, Some(&DebugValue::Counter(1)), "{kind}: {metrics:?}");
    }
    let aged = |outcome| {
        find(MetricKind::Counter, "cached_query_calls_total", &[("function", "aged"), ("outcome", outcome)])
    };
    assert_eq!((aged("miss"), aged("stale")), (Some(&DebugValue::Counter(1)), Some(&DebugValue::Counter(1))));
    let local_hits = find(MetricKind::Counter, "cached_query_local_hits_total", &[("function", "halved")]);
    assert_eq!(local_hits, Some(&DebugValue::Counter(1)), "{metrics:?}");
    let halved = |outcome| {
        find(MetricKind::Counter, "cached_query_calls_total", &[("function", "halved"), ("outcome", outcome)])
    };
    assert_eq!(halved("bypass"), Some(&DebugValue::Counter(1)), "{metrics:?}");
    assert_eq!(calls("bypass"), Some(&DebugValue::Counter(1)), "{metrics:?}");
    assert!(timed_once("bypass"), "{metrics:?}");
    // The connection manager retries a refused connection (100 ms later) within the call's
    // timeout (50 ms): the call sees a timeout; three open the breaker.
    let refused = find(
        MetricKind::Counter,
        "cached_query_errors_total",
        &[("function", "halved"), ("kind", "timeout")],
    );
    assert_eq!(refused, Some(&DebugValue::Counter(3)), "{metrics:?}");
    let oversized = find(
        MetricKind::Counter,
        "cached_query_errors_total",
        &[("function", "halved"), ("kind", "oversized")],
    );
    assert_eq!(oversized, Some(&DebugValue::Counter(1)), "{metrics:?}");
    let breaker = find(MetricKind::Gauge, "cached_query_breaker_open", &[]);
    assert!(matches!(breaker, Some(DebugValue::Gauge(open)) if open.0 == 1.0), "{metrics:?}");
}

/// Each call is a `debug` span `cache.get` with the key, `cache.hit` and the size; a miss's
/// query is a `cache.query` span inside it (a subscriber of this thread's own, at `debug`), on
/// Redis.
#[test]
fn calls_are_spans_that_tracing_backends_recognise() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let logs = cached_query_tests::logs::Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let cache = redis_cache("obs_spans").await;
            doubled(&cache, 21).await;
            doubled(&cache, 21).await;
        })
    });
    let text = logs.text();
    let closed: Vec<&str> = text.lines().filter(|line| line.contains("close")).collect();
    let get = |hit: &str| {
        closed.iter().any(|line| {
            line.contains("cache.get")
                && line.contains("function=\"observability::doubled\"")
                && line.contains(&format!("cache.hit={hit}"))
                && line.contains("cache.key=")
        })
    };
    assert!(get("false") && get("true"), "{text}");
    assert!(
        closed.iter().any(|line| line.contains("cache.get") && line.contains("cache.item_size=")),
        "{text}"
    );
    assert!(
        closed.iter().any(|line| line.contains("cache.get") && line.contains("cache.query")),
        "the query nests: {text}"
    );
    assert!(
        closed.iter().any(|line| line.contains("cache.get") && line.contains("cache.set")),
        "the store nests: {text}"
    );
}

#[cached_query(ttl = 1, stale = 60, jitter = 0, name = "flaky", cache = cache, skip(cache, down))]
async fn flaky(cache: &QueryCache, down: std::sync::Arc<AtomicBool>, x: i64) -> Result<i64, String> {
    if down.load(SeqCst) { Err("the database is down".to_owned()) } else { Ok(x) }
}

/// A failure repeated on every call (Redis down, every background refresh failing) logs one
/// warning per 10 s, not one per call; nothing logs at `info` per call.
#[test]
fn warnings_are_rate_limited_and_calls_log_nothing_at_info() {
    let logs = cached_query_tests::logs::Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let calls = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let (cache, down) =
                (redis_cache("obs_warnings").await, std::sync::Arc::new(AtomicBool::new(false)));
            assert_eq!(flaky(&cache, down.clone(), 1).await, Ok(1));
            down.store(true, SeqCst);
            let (mut calls, deadline) = (1, Instant::now() + Duration::from_secs(15));
            while cache.stats().refresh_errors < 3 {
                assert!(Instant::now() < deadline, "refreshes did not fail: {:?}", cache.stats());
                assert_eq!(flaky(&cache, down.clone(), 1).await, Ok(1), "fail-safe: the stale value");
                calls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let unreachable = QueryCache::builder()
                .redis_url("redis://127.0.0.1:1")
                .prefix("obs_warnings_down")
                .build()
                .await
                .unwrap();
            for x in 0..30 {
                assert_eq!(doubled(&unreachable, x).await, x * 2);
            }
            calls + 30
        })
    });
    let text = logs.text();
    let count = |what: &str| text.lines().filter(|line| line.contains(what)).count();
    assert_eq!(count("background refresh failed"), 1, "{text}");
    assert_eq!(count("cache operation failed"), 1, "{text}");
    assert!(count(" INFO ") < 3, "{calls} calls: {text}");
}
