//! The example service's `/metrics`, in a process of its own: the metrics recorder is global,
//! and another test calling the same data-access functions would add to its counts.
#![cfg(feature = "metrics")]

mod common;

use axum::http::{Method, StatusCode};
use cached_query::QueryCache;
use cached_query_examples::service::{AppState, reset_schema, router};
use common::{send, urls};
use sqlx::PgPool;

/// `/metrics` renders the cache's metrics in Prometheus's format once a recorder is installed:
/// the calls of a data-access function by outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served() {
    let (database_url, redis_url) = urls();
    let pool = PgPool::connect(&database_url).await.unwrap();
    // The tables must exist (a fresh database has none): a failed query is never cached.
    reset_schema(&pool).await.unwrap();
    let prefix = format!("cq-example-metrics:{}:{}", std::process::id(), fastrand::u64(..));
    let cache = QueryCache::builder().redis_url(&redis_url).prefix(prefix).build().await.unwrap();
    cached_query_examples::service::install_metrics();
    let app = router(AppState::new(pool, cache));
    for _ in 0..3 {
        let (status, _) = send(&app, Method::GET, "/profiles/nobody-metrics", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the query ran and found no one");
    }
    let (status, body) = send(&app, Method::GET, "/metrics", None).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK);
    let line = |outcome: &str| {
        body.lines().find(|line| {
            line.starts_with("cached_query_calls_total")
                && line.contains("function=\"cached_query_examples::service::data::profile\"")
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(line("miss").is_some_and(|l| l.ends_with(" 1")), "{body}");
    assert!(line("hit").is_some_and(|l| l.ends_with(" 2")), "{body}");
}
