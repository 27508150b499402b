//! Fires concurrent callers at a hot key that expires every second, against real Postgres
//! (`DATABASE_URL`) and Redis (`REDIS_URL`), with and without stampede protection. Prints, per
//! mode: query executions per expiry, caller latency (p50/p99/max) and stale values served.
//! The output is recorded in `docs/stampede.md`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin stampede [-- CALLERS CYCLES]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The query behind the hot key: 50 ms of database work.
async fn query(pool: &PgPool, executions: &AtomicU64, id: i64) -> Result<i64, sqlx::Error> {
    executions.fetch_add(1, Relaxed);
    sqlx::query_scalar("SELECT $1 FROM pg_sleep(0.05)").bind(id).fetch_one(pool).await
}

#[cached_query(ttl = 1, jitter = 0, cache = cache, skip(cache, executions))]
async fn hot(cache: &QueryCache, pool: &PgPool, executions: &AtomicU64, id: i64) -> Result<i64, sqlx::Error> {
    query(pool, executions, id).await
}

#[cached_query(ttl = 1, jitter = 0, stale = 30, cache = cache, skip(cache, executions))]
async fn hot_stale(
    cache: &QueryCache,
    pool: &PgPool,
    executions: Arc<AtomicU64>,
    id: i64,
) -> Result<i64, sqlx::Error> {
    query(pool, &executions, id).await
}

#[cached_query(ttl = 3600, cache = cache, skip(cache, executions))]
async fn never_expires(
    cache: &QueryCache,
    pool: &PgPool,
    executions: &AtomicU64,
    id: i64,
) -> Result<i64, sqlx::Error> {
    query(pool, executions, id).await
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    PlainHit,
    Unprotected,
    SingleFlight,
    Lease,
    Stale,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PlainHit => "plain hits (no expiry)",
            Mode::Unprotected => "no protection",
            Mode::SingleFlight => "single-flight (default)",
            Mode::Lease => "single-flight + lock, 4 instances",
            Mode::Stale => "single-flight + stale = 30",
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let cycles: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let database =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = PgPoolOptions::new().max_connections(16).connect(&database).await?;

    println!(
        "{callers} callers, each calling every 2 ms, for {cycles} expiries of a 1 s TTL; a miss costs a 50 ms query.\n"
    );
    println!("| mode | executions / expiry | p50 | p99 | max | stale served |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let run_id = std::process::id();
    for mode in [Mode::PlainHit, Mode::Unprotected, Mode::SingleFlight, Mode::Lease, Mode::Stale] {
        let prefix = format!("stampede-bench:{run_id}:{}", mode as u8);
        let mut caches = Vec::new();
        for _ in 0..if mode == Mode::Lease { 4 } else { 1 } {
            let cache = QueryCache::builder()
                .redis_url(&redis)
                .prefix(&prefix)
                .single_flight(mode != Mode::Unprotected)
                .lock(mode == Mode::Lease)
                .build()
                .await?;
            caches.push(cache);
        }
        let executions = Arc::new(AtomicU64::new(0));
        call(mode, &caches[0], &pool, &executions).await?; // warm the key
        executions.store(0, Relaxed);
        // Each cycle is the TTL plus the 50 ms query that renews the entry; half a cycle more
        // makes sure the last expiry falls inside the run.
        let deadline = Instant::now() + Duration::from_millis(cycles * 1050 + 500);
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let (cache, pool, executions) =
                    (caches[i % caches.len()].clone(), pool.clone(), executions.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        call(mode, &cache, &pool, &executions).await.expect("query");
                        latencies.push(started.elapsed());
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await?);
        }
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let stale: u64 = caches.iter().map(|c| c.stats().stale_served).sum();
        println!(
            "| {} | {:.1} | {:.2?} | {:.2?} | {:.2?} | {stale} |",
            mode.name(),
            executions.load(Relaxed) as f64 / cycles as f64,
            at(0.5),
            at(0.99),
            latencies.last().expect("calls"),
        );
    }
    Ok(())
}

async fn call(
    mode: Mode,
    cache: &QueryCache,
    pool: &PgPool,
    executions: &Arc<AtomicU64>,
) -> Result<i64, sqlx::Error> {
    match mode {
        Mode::PlainHit => never_expires(cache, pool, executions, 1).await,
        Mode::Stale => hot_stale(cache, pool, executions.clone(), 1).await,
        _ => hot(cache, pool, executions, 1).await,
    }
}
