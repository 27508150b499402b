//! How the cost of a hit, a miss and an invalidation grows (#24, item 4), along five axes, each
//! in a prefix of its own on Redis at `REDIS_URL`: the value's size, the tags per entry, the
//! concurrent callers, the distinct counters an instance depends on (past the 100,000 that
//! client tracking keeps), and the entries of one function. Prints a table per axis and, with
//! `--write`, draws a chart per axis into `docs/charts/growth-*.svg`; `--axis NAME` (`size`,
//! `tags`, `tasks`, `counters`, `entries`) runs that axis alone. Its keys are deleted at the end.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin growth -- --write
//! ```

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_examples::charts::{self, Throughput};

#[cached_query(ttl = 3600, cache = cache, skip(cache, size))]
async fn sized(cache: &QueryCache, size: usize, id: i64) -> Vec<u8> {
    // Bytes that do not compress much (the default compresses from 16 KiB).
    (0..size)
        .map(|i| (xxhash_rust::xxh3::xxh3_64(&(i as u64 ^ id as u64).to_le_bytes()) % 64) as u8)
        .collect()
}

#[cached_query(ttl = 3600, tags = ["own:{id}"], cache = cache, skip(cache))]
async fn own_tag(cache: &QueryCache, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn plain(cache: &QueryCache, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 3600, tags = ["t0:{id}"], cache = cache, skip(cache))]
async fn tags_1(cache: &QueryCache, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 3600, tags = ["t0:{id}", "t1:{id}", "t2:{id}", "t3:{id}", "t4:{id}"], cache = cache, skip(cache))]
async fn tags_5(cache: &QueryCache, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 3600, tags = ["t0:{id}", "t1:{id}", "t2:{id}", "t3:{id}", "t4:{id}", "t5:{id}", "t6:{id}", "t7:{id}", "t8:{id}", "t9:{id}"], cache = cache, skip(cache))]
async fn tags_10(cache: &QueryCache, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 3600, tags = ["t0:{id}", "t1:{id}", "t2:{id}", "t3:{id}", "t4:{id}", "t5:{id}", "t6:{id}", "t7:{id}", "t8:{id}", "t9:{id}", "t10:{id}", "t11:{id}", "t12:{id}", "t13:{id}", "t14:{id}", "t15:{id}", "t16:{id}", "t17:{id}", "t18:{id}", "t19:{id}", "t20:{id}", "t21:{id}", "t22:{id}", "t23:{id}", "t24:{id}", "t25:{id}", "t26:{id}", "t27:{id}", "t28:{id}", "t29:{id}", "t30:{id}", "t31:{id}", "t32:{id}", "t33:{id}", "t34:{id}", "t35:{id}", "t36:{id}", "t37:{id}", "t38:{id}", "t39:{id}", "t40:{id}", "t41:{id}", "t42:{id}", "t43:{id}", "t44:{id}", "t45:{id}", "t46:{id}", "t47:{id}", "t48:{id}", "t49:{id}"], cache = cache, skip(cache))]
async fn tags_50(cache: &QueryCache, id: i64) -> i64 {
    id
}

/// p50 of `calls` sequential calls of `call(i)`, in microseconds.
async fn p50<F: Future>(calls: usize, mut call: impl FnMut(usize) -> F) -> f64 {
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        black_box(call(i).await);
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[calls / 2].as_secs_f64() * 1e6
}

/// Calls `call(id)` for every id of `ids` (misses: they store the entries), from 8 tasks.
async fn fill<F, Fut>(ids: std::ops::Range<i64>, call: F)
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: Future + Send,
{
    let tasks: Vec<_> = (0..8)
        .map(|first| {
            let (call, ids) = (call.clone(), ids.clone());
            tokio::spawn(async move {
                for id in ids.skip(first).step_by(8) {
                    call(id).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn cache(url: &str, run: &str, axis: &str) -> QueryCache {
    QueryCache::builder()
        .redis_url(url)
        .prefix(format!("{run}:{axis}"))
        .max_value_bytes(4 << 20)
        .build()
        .await
        .unwrap()
}

/// Warms `cache`'s tracked connection (it is made in the background on first use).
async fn warm(cache: &QueryCache) {
    for _ in 0..50 {
        plain(cache, -1).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Axis {
    name: &'static str,
    x: &'static str,
    /// Each column's name, then a row per x: the x and each column's value.
    columns: Vec<&'static str>,
    rows: Vec<(f64, Vec<f64>)>,
}

impl Axis {
    fn print(&self) {
        println!("\n### {} ({})\n", self.name, self.x);
        println!("| {} | {} |", self.x, self.columns.join(" | "));
        println!("| ---: |{}", " ---: |".repeat(self.columns.len()));
        for (x, values) in &self.rows {
            let values: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
            println!("| {x} | {} |", values.join(" | "));
        }
    }

    fn chart(&self, file: &str, y: &str) -> Result<(), Box<dyn std::error::Error>> {
        let series: Vec<Throughput> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, path)| Throughput {
                path,
                points: self.rows.iter().map(|(x, v)| (*x, v[i].max(0.01))).collect(),
            })
            .collect();
        charts::lines(Path::new(file), self.name, (self.x, y), &series)
    }
}

async fn value_size(url: &str, run: &str) -> Axis {
    let cache = cache(url, run, "size").await;
    warm(&cache).await;
    let conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut rows = Vec::new();
    for size in [100usize, 1_000, 10_000, 100_000, 1_000_000] {
        let base = size as i64 * 1_000;
        let miss = p50(50, |i| sized(&cache, size, base + i as i64)).await;
        let hit = p50(200, |i| sized(&cache, size, base + (i % 50) as i64)).await;
        let key = cache.key("growth::sized", 0, &(base,)).unwrap();
        let get = p50(200, |_| {
            let (mut conn, key) = (conn.clone(), key.clone());
            async move { redis::cmd("GET").arg(key).query_async::<Vec<u8>>(&mut conn).await.unwrap() }
        })
        .await;
        rows.push((size as f64, vec![hit, miss, get]));
    }
    Axis {
        name: "value size",
        x: "bytes",
        columns: vec!["hit p50 µs", "miss p50 µs", "raw GET p50 µs"],
        rows,
    }
}

async fn tags_per_entry(url: &str, run: &str) -> Axis {
    let cache = cache(url, run, "tags").await;
    warm(&cache).await;
    let mut rows = Vec::new();
    macro_rules! measure {
        ($n:expr, $f:ident, $t:expr) => {{
            let miss = p50(200, |i| $f(&cache, i as i64)).await;
            let hit = p50(1_000, |i| $f(&cache, (i % 200) as i64)).await;
            let tags: Vec<String> = (0..$t).map(|t| format!("t{t}:7")).collect();
            let invalidation = p50(200, |_| cache.invalidate_tags(tags.clone())).await;
            rows.push(($n as f64, vec![hit, miss, invalidation]));
        }};
    }
    measure!(1, tags_1, 1);
    measure!(5, tags_5, 5);
    measure!(10, tags_10, 10);
    measure!(50, tags_50, 50);
    Axis {
        name: "tags per entry",
        x: "tags",
        columns: vec!["hit p50 µs", "miss p50 µs", "invalidation of all its tags p50 µs"],
        rows,
    }
}

async fn concurrency(url: &str, run: &str) -> Axis {
    let cache = cache(url, run, "tasks").await;
    warm(&cache).await;
    for id in 0..1_000 {
        plain(&cache, id).await;
    }
    let mut rows = Vec::new();
    for tasks in [1usize, 8, 64, 256, 1_024] {
        let before = cache.stats();
        let started = Instant::now();
        let run_for = Duration::from_secs(2);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let (mut calls, mut samples, mut id) = (0u64, Vec::new(), t as i64 * 37);
                    while started.elapsed() < run_for {
                        let at = Instant::now();
                        black_box(plain(&cache, id % 1_000).await);
                        samples.push(at.elapsed());
                        calls += 1;
                        id += 13;
                    }
                    (calls, samples)
                })
            })
            .collect();
        let (mut calls, mut samples) = (0, Vec::new());
        for handle in handles {
            let (c, s) = handle.await.unwrap();
            calls += c;
            samples.extend(s);
        }
        samples.sort();
        let elapsed = started.elapsed().as_secs_f64();
        let hits = (cache.stats().hits - before.hits) as f64;
        rows.push((
            tasks as f64,
            vec![
                calls as f64 / elapsed / 1_000.0,
                hits / elapsed / 1_000.0,
                100.0 * hits / calls.max(1) as f64,
                samples[samples.len() / 2].as_secs_f64() * 1e6,
            ],
        ));
    }
    Axis {
        name: "concurrent callers",
        x: "tasks",
        columns: vec![
            "calls/s (thousands)",
            "hits/s (thousands)",
            "% answered from the cache",
            "call p50 µs",
        ],
        rows,
    }
}

async fn distinct_counters(url: &str, run: &str) -> Axis {
    let mut rows = Vec::new();
    for counters in [1_000i64, 50_000, 150_000] {
        let cache = cache(url, run, &format!("counters{counters}")).await;
        warm(&cache).await;
        fill(0..counters, {
            let cache = cache.clone();
            move |id| {
                let cache = cache.clone();
                async move { own_tag(&cache, id).await }
            }
        })
        .await;
        // Two passes: the counters are read (and kept, up to 100,000) on the first.
        for id in 0..counters.min(20_000) {
            own_tag(&cache, id).await;
        }
        let step = (counters / 1_000).max(1);
        let hit = p50(2_000, |i| own_tag(&cache, (i as i64 * step) % counters)).await;
        let invalidation =
            p50(200, |i| cache.invalidate_tags([format!("own:{}", i as i64 * step % counters)])).await;
        rows.push((counters as f64, vec![hit, invalidation]));
    }
    Axis {
        name: "distinct counters an instance reads",
        x: "counters",
        columns: vec!["hit p50 µs", "invalidation p50 µs"],
        rows,
    }
}

async fn entries(url: &str, run: &str) -> Axis {
    let mut rows = Vec::new();
    let cache = cache(url, run, "entries").await;
    warm(&cache).await;
    // Redis's own share: a raw `GET` of the same entries, beside each hit.
    let raw = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut stored = 0i64;
    for count in [1_000i64, 10_000, 100_000, 300_000, 1_000_000] {
        fill(stored..count, {
            let cache = cache.clone();
            move |id| {
                let cache = cache.clone();
                async move { plain(&cache, id).await }
            }
        })
        .await;
        stored = count;
        let step = (count / 1_000).max(1);
        let hit = p50(2_000, |i| plain(&cache, (i as i64 * step) % count)).await;
        let keys: Vec<String> =
            (0..1_000).map(|i| cache.key("growth::plain", 0, &((i * step) % count,)).unwrap()).collect();
        let get = p50(2_000, |i| {
            let (mut raw, key) = (raw.clone(), keys[i % keys.len()].clone());
            async move { redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut raw).await.unwrap() }
        })
        .await;
        let miss = p50(200, |i| plain(&cache, 10_000_000 + count * 10 + i as i64)).await;
        rows.push((count as f64, vec![hit, get, miss]));
    }
    let columns = vec!["hit p50 µs", "raw GET p50 µs", "miss p50 µs"];
    Axis { name: "entries of one function", x: "entries", columns, rows }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let write = std::env::args().any(|a| a == "--write");
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--axis").and_then(|at| args.get(at + 1)).cloned();
    let run = format!("growth:{}", std::process::id());
    let chosen = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let mut axes = Vec::new();
    if chosen("size") {
        axes.push((value_size(&url, &run).await, "growth-size", "µs"));
    }
    if chosen("tags") {
        axes.push((tags_per_entry(&url, &run).await, "growth-tags", "µs"));
    }
    if chosen("tasks") {
        axes.push((concurrency(&url, &run).await, "growth-tasks", "thousands/s, µs"));
    }
    if chosen("counters") {
        axes.push((distinct_counters(&url, &run).await, "growth-counters", "µs"));
    }
    if chosen("entries") {
        axes.push((entries(&url, &run).await, "growth-entries", "µs"));
    }
    if axes.is_empty() {
        return Err(format!("no axis {only:?}: size, tags, tasks, counters or entries").into());
    }
    for (axis, file, y) in &axes {
        axis.print();
        if write {
            axis.chart(&format!("docs/charts/{file}.svg"), y)?;
        }
    }
    let deleted = cached_query_examples::delete_matching(&url, &format!("{run}:*")).await?;
    eprintln!("deleted the run's {deleted} keys");
    Ok(())
}
