//! What a miss costs (#24, item 1), on the workload's Q1 (`shared/workload.md`), against Redis
//! at `REDIS_URL` and Postgres at `DATABASE_URL`:
//!
//! - sequential, on ids never cached: the query alone, a raw `GET` of a missing key, a raw `SET`
//!   of the entry's bytes, and the cached function's miss (p50, p99), with the miss's p50
//!   against the sum of the three parts' p50s;
//! - the commands a miss sends to Redis (`INFO commandstats` around them);
//! - at 32 tasks: the client CPU per call of a miss against the same parts done by hand
//!   (query, encode, `GET`, `SET`), and a workload whose hit ratio is 10 % with the cache
//!   against the query alone (calls per second), and the same with `admit_after = 1`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin miss
//! ```

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_examples::{Q1, User, workload_table};
use sqlx::PgPool;

const CALLS: i64 = 2_000;
const TASKS: usize = 32;
const RUN_FOR: Duration = Duration::from_secs(3);

async fn q1_db(pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(Q1).bind(id).fetch_optional(pool).await
}

#[cached_query(ttl = 3600, cache = cache, skip(cache, pool))]
async fn q1(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    q1_db(pool, id).await
}

/// The same, storing a key's result from its second call in this process (`admit_after`).
#[cached_query(ttl = 3600, cache = cache, skip(cache, pool), admit_after = 1)]
async fn q1_admitted(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    q1_db(pool, id).await
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// Times `call(id)` for `CALLS` ids from `first`, one after the other.
async fn sequential<F: Future>(first: i64, mut call: impl FnMut(i64) -> F) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(CALLS as usize);
    for id in first..first + CALLS {
        let started = Instant::now();
        black_box(call(id).await);
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

/// The commands Redis has run so far, by name (`INFO commandstats`).
async fn commands(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    stats
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields; 11 and 12 after the command's `)`.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `TASKS` tasks calling `call(id)` on ids handed out in order from `next`, for `RUN_FOR`: calls
/// per second and client CPU per call.
async fn loaded<F, C>(next: Arc<AtomicI64>, call: C) -> (f64, Duration)
where
    F: Future + Send,
    C: Fn(i64) -> F + Clone + Send + Sync + 'static,
    F::Output: Send,
{
    let (started, cpu) = (Instant::now(), cpu_time());
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (next, call) = (next.clone(), call.clone());
            tokio::spawn(async move {
                let mut calls = 0u64;
                while started.elapsed() < RUN_FOR {
                    black_box(call(next.fetch_add(1, Relaxed)).await);
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    (calls as f64 / elapsed.as_secs_f64(), cpu / calls.max(1) as u32)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (database_url, redis_url) = cached_query_examples::urls();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&database_url).await?;
    workload_table(&pool).await?;
    let run = format!("miss:{}:{}", std::process::id(), fastrand::u32(..));
    let cache = QueryCache::builder().redis_url(&redis_url).prefix(&run).build().await?;
    let mut conn = redis::Client::open(redis_url.as_str())?.get_multiplexed_async_connection().await?;
    // Warms the connections, the tracked counters of the namespace, and Postgres's buffers.
    for id in 1..=200 {
        q1(&cache, &pool, 90_000 + id).await?;
        q1_db(&pool, id).await?;
    }
    let bytes = QueryCache::encode_entry(&q1_db(&pool, 1).await?, Duration::from_secs(3600))?;

    println!("Sequential, {CALLS} calls on ids never cached (Q1, one row).\n");
    println!("| path | p50 | p99 |");
    println!("| --- | ---: | ---: |");
    let db = sequential(1, |id| q1_db(&pool, id)).await;
    println!("| query alone | {:.1?} | {:.1?} |", db.0, db.1);
    let get = sequential(1, |id| {
        let (mut conn, key) = (conn.clone(), format!("{run}:missing:{id}"));
        async move { redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut conn).await.unwrap() }
    })
    .await;
    println!("| raw GET (a missing key) | {:.1?} | {:.1?} |", get.0, get.1);
    let set = sequential(1, |id| {
        let (mut conn, key, bytes) = (conn.clone(), format!("{run}:raw:{id}"), bytes.clone());
        async move {
            redis::cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("PX")
                .arg(3_600_000)
                .exec_async(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;
    println!("| raw SET (the entry's bytes) | {:.1?} | {:.1?} |", set.0, set.1);
    let before = commands(&mut conn).await;
    let miss = sequential(1, |id| q1(&cache, &pool, id)).await;
    let after = commands(&mut conn).await;
    let parts = db.0 + get.0 + set.0;
    println!("| cached fn miss | {:.1?} | {:.1?} |", miss.0, miss.1);
    println!(
        "\nmiss p50 / (query + GET + SET p50s) = {:.2} ({:.1?} against {:.1?}); misses: {:?}\n",
        miss.0.as_secs_f64() / parts.as_secs_f64(),
        miss.0,
        parts,
        cache.stats().misses
    );
    println!("Commands per miss (INFO commandstats around {CALLS} misses; INFO itself excluded):\n");
    for (name, calls) in &after {
        let was = before.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
        let per = (*calls - was) as f64 / CALLS as f64;
        if per > 0.0 && name != "info" {
            println!("- `{name}`: {per:.2}");
        }
    }

    println!("\n{TASKS} tasks for {RUN_FOR:?}, ids never cached:\n");
    println!("| path | calls/s | client CPU per call |");
    println!("| --- | ---: | ---: |");
    let (pool_c, cache_c) = (pool.clone(), cache.clone());
    let (rate, cpu) = loaded(Arc::new(AtomicI64::new(10_001)), move |id| {
        let (pool, cache) = (pool_c.clone(), cache_c.clone());
        async move { q1(&cache, &pool, id).await.unwrap() }
    })
    .await;
    println!("| cached fn miss | {rate:.0} | {cpu:.1?} |");
    let (pool_c, conn_c, run_c) = (pool.clone(), conn.clone(), run.clone());
    let (rate, by_hand) = loaded(Arc::new(AtomicI64::new(40_001)), move |id| {
        let (pool, mut conn, key) = (pool_c.clone(), conn_c.clone(), format!("{run_c}:hand:{id}"));
        async move {
            let _: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
            let row = q1_db(&pool, id).await.unwrap();
            let bytes = QueryCache::encode_entry(&row, Duration::from_secs(3600)).unwrap();
            redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("PX")
                .arg(3_600_000)
                .exec_async(&mut conn)
                .await
                .unwrap();
        }
    })
    .await;
    println!("| by hand: GET, query, encode, SET | {rate:.0} | {by_hand:.1?} |");
    println!("\nmiss CPU / by hand = {:.2}\n", cpu.as_secs_f64() / by_hand.as_secs_f64());

    // A hit ratio of 10 %: one call in ten on 100 warm ids, the others on ids never cached.
    let warm = QueryCache::builder().redis_url(&redis_url).prefix(format!("{run}:ten")).build().await?;
    for id in 1..=100 {
        q1(&warm, &pool, id).await?;
        for _ in 0..2 {
            q1_admitted(&warm, &pool, id).await?;
        }
    }
    println!("{TASKS} tasks for {RUN_FOR:?}, hit ratio 10 %:\n");
    println!("| path | calls/s |");
    println!("| --- | ---: |");
    let pick = |n: i64| if n % 10 == 0 { 1 + n % 100 } else { 60_000 + n };
    let pool_c = pool.clone();
    let (without, _) = loaded(Arc::new(AtomicI64::new(0)), move |n| {
        let pool = pool_c.clone();
        async move { q1_db(&pool, pick(n)).await.unwrap() }
    })
    .await;
    println!("| query alone | {without:.0} |");
    let (pool_c, warm_c) = (pool.clone(), warm.clone());
    let (with, _) = loaded(Arc::new(AtomicI64::new(0)), move |n| {
        let (pool, cache) = (pool_c.clone(), warm_c.clone());
        async move { q1(&cache, &pool, pick(n)).await.unwrap() }
    })
    .await;
    let ratio = |name: &str| {
        let f = warm.function_stats().into_iter().find(|f| f.name.ends_with(name)).unwrap();
        f.hits as f64 / (f.hits + f.misses + f.bypasses).max(1) as f64
    };
    println!("| cached fn | {with:.0} |");
    let (pool_c, warm_c) = (pool.clone(), warm.clone());
    let (admitted, _) = loaded(Arc::new(AtomicI64::new(0)), move |n| {
        let (pool, cache) = (pool_c.clone(), warm_c.clone());
        async move { q1_admitted(&cache, &pool, pick(n)).await.unwrap() }
    })
    .await;
    println!("| cached fn, `admit_after = 1` | {admitted:.0} |");
    println!("\nwith / without = {:.2} (hit ratio {:.2})", with / without, ratio("::q1"));
    println!(
        "admit_after = 1: with / without = {:.2} (hit ratio {:.2}; not admitted: {})",
        admitted / without,
        ratio("::q1_admitted"),
        warm.stats().unadmitted
    );
    cached_query_examples::delete_matching(&redis_url, &format!("{run}:*")).await?;
    Ok(())
}
