//! What freshness from Postgres costs and how fresh it is (`tables = auto` +
//! `.watch_postgres`): the propagation delay from a commit on another connection to the first
//! call that sees it; the write throughput of a table with the trigger and without it, under
//! concurrent single-row UPDATEs (pgbench-like); and a hit of a function with a table
//! dependency next to one with a tag. Recorded in `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin feed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use sqlx::{Connection, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn by_table(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n FROM bench_feed WHERE id = $1").bind(id).fetch_one(pool).await
}

#[cached_query(ttl = 300, tags = ["bench_feed"], cache = cache, skip(cache))]
async fn by_tag(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n FROM bench_feed WHERE id = $1").bind(id).fetch_one(pool).await
}

const ROWS: i64 = 10_000;

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// UPDATEs per second of `tasks` connections for `secs`, each on a random row.
async fn write_rate(database_url: &str, tasks: usize, secs: f64) -> f64 {
    let (done, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (done, stop, url) = (done.clone(), stop.clone(), database_url.to_owned());
        handles.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            while !stop.load(Relaxed) {
                sqlx::query("UPDATE bench_feed SET n = n + 1 WHERE id = $1")
                    .bind(fastrand::i64(1..=ROWS))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                done.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Relaxed) as f64 / secs
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = PgPool::connect(&database_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS bench_feed;
         CREATE TABLE bench_feed (id bigint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO bench_feed SELECT g, 0 FROM generate_series(1, {ROWS}) g;"
    )))
    .execute(&pool)
    .await?;

    // Write throughput, with and without the trigger, in turn.
    let (tasks, secs) = (8, 4.0);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        sqlx::raw_sql("DROP TRIGGER IF EXISTS cached_query_changed ON bench_feed").execute(&pool).await?;
        without.push(write_rate(&database_url, tasks, secs).await);
        cached_query::postgres::install(&pool, &["bench_feed"]).await?;
        with.push(write_rate(&database_url, tasks, secs).await);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (with, without) = (median(with), median(without));
    println!("| UPDATEs/s, {tasks} connections, random rows | without trigger | with trigger | ratio |");
    println!("|---|---:|---:|---:|");
    println!("| median of 3 × {secs} s | {without:.0} | {with:.0} | {:.2} |", with / without);

    // Propagation delay: a commit elsewhere, then calls until one sees it.
    let prefix = format!("cq-bench-feed:{}", std::process::id());
    let cache = QueryCache::builder()
        .redis_url(&redis_url)
        .prefix(&prefix)
        .watch_postgres(pool.clone())
        .build()
        .await?;
    let started = Instant::now();
    while cache.stats().hits == 0 && started.elapsed() < Duration::from_secs(10) {
        by_table(&cache, &pool, 1).await?;
    }
    let mut writer = PgConnection::connect(&database_url).await?;
    let mut delays = Vec::new();
    for round in 1..=300 {
        let id = 1 + round % 50;
        let before = by_table(&cache, &pool, id).await?;
        by_table(&cache, &pool, id).await?; // cached
        sqlx::query("UPDATE bench_feed SET n = n + 1 WHERE id = $1").bind(id).execute(&mut writer).await?;
        let committed = Instant::now();
        while by_table(&cache, &pool, id).await? == before {}
        delays.push(committed.elapsed());
    }
    let (p50, p99) = percentiles(delays);
    println!("\n| propagation delay, commit to seen (300 writes) | p50 | p99 |");
    println!("|---|---:|---:|");
    println!("| Postgres NOTIFY → Redis counter → next call | {p50:.1?} | {p99:.1?} |");

    // A hit with a table dependency against one with a tag (the same counters' work).
    by_tag(&cache, &pool, 1).await?;
    let mut rows = Vec::new();
    for (name, table) in
        [("tables = auto", true), ("tags = [...]", false), ("tables = auto", true), ("tags = [...]", false)]
    {
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let started = Instant::now();
            if table {
                by_table(&cache, &pool, 1).await?
            } else {
                by_tag(&cache, &pool, 1).await?
            };
            samples.push(started.elapsed());
        }
        rows.push((name, percentiles(samples)));
    }
    println!("\n| hit, 5,000 sequential calls (two rounds each, in turn) | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in rows {
        println!("| {name} | {p50:.1?} | {p99:.1?} |");
    }
    sqlx::raw_sql("DROP TABLE bench_feed").execute(&pool).await?;
    Ok(())
}
