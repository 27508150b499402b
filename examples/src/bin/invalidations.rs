//! Invalidation throughput (#24, item 5): tag invalidations per second from one instance and
//! from eight, and what they do meanwhile to another instance's hits (with a local tier) on
//! 1,000 warm keys whose tags are not invalidated. Against Redis at `REDIS_URL`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin invalidations
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_examples::{UserRow, user_row};

const KEYS: i64 = 1_000;
const READERS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);

#[cached_query(ttl = 3600, tags = ["item:{id}"], cache = cache, skip(cache))]
async fn item(cache: &QueryCache, id: i64) -> Option<UserRow> {
    Some(user_row(id))
}

/// The reader's answers over a run.
struct Counts {
    local: u64,
    redis: u64,
    misses: u64,
}

/// The reader's calls per second for `RUN_FOR` while `invalidators` instances each invalidate
/// tags no entry carries as fast as they can; their invalidations per second; the reader's
/// counts over the run.
async fn run(reader: &QueryCache, invalidators: &[QueryCache]) -> (f64, f64, Counts) {
    let (stop, invalidated, calls) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let before = reader.stats();
    let started = Instant::now();
    let writers: Vec<_> = invalidators
        .iter()
        .enumerate()
        .map(|(w, cache)| {
            let (cache, stop, invalidated) = (cache.clone(), stop.clone(), invalidated.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    if cache.invalidate_tags([format!("other:{w}:{n}")]).await.is_ok() {
                        invalidated.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (cache, calls) = (reader.clone(), calls.clone());
            tokio::spawn(async move {
                let mut id = r as i64 * 131;
                while started.elapsed() < RUN_FOR {
                    black_box(item(&cache, id % KEYS).await);
                    calls.fetch_add(1, Relaxed);
                    id += 7;
                    // A local hit never waits: let the other tasks (the invalidators, the
                    // backplane's listener) run, as a service's requests would.
                    if id % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in readers {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for task in writers {
        task.await.unwrap();
    }
    let after = reader.stats();
    let counts = Counts {
        local: after.local_hits - before.local_hits,
        redis: (after.hits - after.local_hits) - (before.hits - before.local_hits),
        misses: after.misses - before.misses,
    };
    (calls.load(Relaxed) as f64 / elapsed, invalidated.load(Relaxed) as f64 / elapsed, counts)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("invalidations:{}", std::process::id());
    let reader = QueryCache::builder().redis_url(&url).prefix(&prefix).local_cache(10_000).build().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.stats().local_hits == 0 && Instant::now() < deadline {
        item(&reader, 0).await; // until the backplane subscription is up
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 0..KEYS {
        item(&reader, id).await;
    }
    let (mut instances, mut elsewhere) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        instances.push(QueryCache::builder().redis_url(&url).prefix(&prefix).build().await?);
        elsewhere
            .push(QueryCache::builder().redis_url(&url).prefix(format!("{prefix}:other")).build().await?);
    }
    println!(
        "{READERS} reader tasks on {KEYS} warm keys (one instance with a local tier) for {RUN_FOR:?}, while other instances invalidate tags no entry carries.\n"
    );
    println!(
        "| invalidating instances | invalidations/s | reader calls/s | reader: local hits / Redis hits / misses |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    let runs = [
        ("0", &instances[..0]),
        ("1", &instances[..1]),
        ("8", &instances[..]),
        ("8, of another prefix", &elsewhere[..]),
    ];
    for (n, invalidators) in runs {
        let (calls, invalidations, counts) = run(&reader, invalidators).await;
        let total = (counts.local + counts.redis + counts.misses).max(1) as f64;
        println!(
            "| {n} | {invalidations:.0} | {calls:.0} | {:.1} % / {:.1} % / {:.1} % |",
            counts.local as f64 * 100.0 / total,
            counts.redis as f64 * 100.0 / total,
            counts.misses as f64 * 100.0 / total
        );
    }
    Ok(())
}
