//! What a cache hit costs next to a raw `GET` of one row's bytes plus their MessagePack decode
//! (the cache itself stores postcard when it can: see `bench` for the exact bytes):
//! sequential calls against Redis at `REDIS_URL`, for one row (the workload's Q1 shape).
//! With `REDIS_CLUSTER_URLS` (comma-separated node URLs), the same against a Redis Cluster.
//! The output is recorded in `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin hitpath
//! REDIS_CLUSTER_URLS=redis://127.0.0.1:7001 cargo run --release -p cached-query-examples --bin hitpath
//! ```

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_examples::{UserRow, user_row};

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn plain(cache: &QueryCache, id: i64) -> Option<UserRow> {
    Some(user_row(id))
}

#[cached_query(ttl = 3600, cache = cache, skip(cache), tags = ["users", "user:{id}"])]
async fn tagged(cache: &QueryCache, id: i64) -> Option<UserRow> {
    Some(user_row(id))
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn page(cache: &QueryCache, from: i64) -> Vec<UserRow> {
    (from..from + 100).map(user_row).collect()
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn shared_page(cache: &QueryCache, from: i64) -> std::sync::Arc<Vec<UserRow>> {
    std::sync::Arc::new((from..from + 100).map(user_row).collect())
}

const CALLS: usize = 5000;
/// Distinct pages of the local tier's 100-row rows.
const PAGES: i64 = 100;
const IDS: i64 = 1000;

fn summary(name: &str, mut samples: Vec<Duration>, base: Option<Duration>) -> Duration {
    samples.sort();
    let (p50, p99) = (samples[samples.len() / 2], samples[samples.len() * 99 / 100]);
    let ratio = base.map_or(String::from("1.00"), |b| format!("{:.2}", p50.as_secs_f64() / b.as_secs_f64()));
    println!("| {name} | {p50:.1?} | {p99:.1?} | {ratio} |");
    p50
}

/// Times `CALLS` sequential calls of `call(i)`.
async fn sample<F: Future>(mut call: impl FnMut(usize) -> F) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        black_box(call(i).await);
        samples.push(started.elapsed());
    }
    samples
}

/// Raw `GET` + decode of one-row values stored under keys of `cache` named `raw`, then the hit
/// of `plain` on `cache`, through `conn`, a connection of the same kind; prints both rows.
async fn raw_and_hit<C>(
    label: &str,
    cache: &QueryCache,
    conn: &mut C,
) -> Result<(), Box<dyn std::error::Error>>
where
    C: redis::aio::ConnectionLike + Clone,
{
    // Keys of the cache's own keyspace (on a cluster: its slot), named `raw`.
    let raw_keys: Vec<String> = (0..IDS).map(|id| cache.key("raw", 0, &id).unwrap()).collect();
    for (id, key) in raw_keys.iter().enumerate() {
        let bytes = rmp_serde::to_vec_named(&Some(user_row(id as i64)))?;
        redis::cmd("SET").arg(key).arg(bytes).arg("PX").arg(3_600_000).exec_async(conn).await?;
        plain(cache, id as i64).await;
    }
    let samples = sample(|i| {
        let (mut conn, key) = (conn.clone(), &raw_keys[i % IDS as usize]);
        async move {
            let bytes: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
            rmp_serde::from_slice::<Option<UserRow>>(&bytes).unwrap()
        }
    })
    .await;
    let base = summary(&format!("{label}: raw GET + MessagePack decode"), samples, None);
    let samples = sample(|i| plain(cache, (i as i64) % IDS)).await;
    summary(&format!("{label}: cached fn hit"), samples, Some(base));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("hitpath:{}", std::process::id());
    let cache = QueryCache::builder().redis_url(&url).prefix(&prefix).build().await?;
    let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
    // Warm every key, and keep the exact bytes of one entry for the raw GET.
    for id in 0..IDS {
        plain(&cache, id).await;
        tagged(&cache, id).await;
    }
    let raw_keys: Vec<String> = (0..IDS).map(|id| format!("{prefix}:raw:{id}")).collect();
    for (id, key) in raw_keys.iter().enumerate() {
        let bytes = rmp_serde::to_vec_named(&Some(user_row(id as i64)))?;
        redis::cmd("SET").arg(key).arg(bytes).arg("PX").arg(3_600_000).exec_async(&mut conn).await?;
    }

    println!("Sequential, {CALLS} calls over {IDS} warm keys, one row per value.\n");
    println!("| path | p50 | p99 | p50 / GET+decode |");
    println!("| --- | ---: | ---: | ---: |");
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        let bytes: Vec<u8> =
            redis::cmd("GET").arg(&raw_keys[i % IDS as usize]).query_async(&mut conn).await?;
        black_box(rmp_serde::from_slice::<Option<UserRow>>(&bytes)?);
        samples.push(started.elapsed());
    }
    let base = summary("raw GET + MessagePack decode", samples, None);
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        black_box(plain(&cache, (i as i64) % IDS).await);
        samples.push(started.elapsed());
    }
    summary("cached fn hit (MGET of the entry and 2 counters)", samples, Some(base));
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        black_box(tagged(&cache, (i as i64) % IDS).await);
        samples.push(started.elapsed());
    }
    summary("cached fn hit with 2 tags (MGET of the entry and 4 counters)", samples, Some(base));
    let stats = cache.stats();
    assert_eq!(stats.misses, 2 * IDS as u64, "every measured call was a hit: {stats:?}");

    // The same function with the in-process tier in front of Redis.
    let local = QueryCache::builder()
        .redis_url(&url)
        .prefix(format!("{prefix}:l1"))
        .local_cache(10_000)
        .build()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while local.stats().local_hits == 0 && Instant::now() < deadline {
        plain(&local, 0).await; // warms the key, until the backplane subscription is up
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 0..IDS {
        plain(&local, id).await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        black_box(plain(&local, (i as i64) % IDS).await);
        samples.push(started.elapsed());
    }
    let hits_before = local.stats().local_hits;
    let one_row = summary("hit-l1: cached fn hit in the local tier", samples, Some(base));
    assert!(hits_before >= CALLS as u64, "every measured call was a local hit: {:?}", local.stats());

    // A page of 100 rows in the local tier (the workload's Q2 shape), as a `Vec` (each hit a
    // copy of the kept decode) and as an `Arc` (each hit the same allocation).
    for id in 0..PAGES {
        page(&local, id).await;
        shared_page(&local, id).await;
    }
    let samples = sample(|i| page(&local, i as i64 % PAGES)).await;
    summary("hit-l1, 100 rows as `Vec<UserRow>` (against the one-row hit-l1)", samples, Some(one_row));
    let samples = sample(|i| shared_page(&local, i as i64 % PAGES)).await;
    summary("hit-l1, 100 rows as `Arc<Vec<UserRow>>` (against the one-row hit-l1)", samples, Some(one_row));

    if let Ok(urls) = std::env::var("REDIS_CLUSTER_URLS") {
        let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
        let cluster = QueryCache::builder().redis_cluster(urls.clone()).prefix(&prefix).build().await?;
        let mut conn = redis::cluster::ClusterClient::new(urls.clone())?.get_async_connection().await?;
        raw_and_hit("cluster", &cluster, &mut conn).await?;
        raw_and_hit(
            "server",
            &cache,
            &mut redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?,
        )
        .await?;
        cpu_per_master(&urls, &format!("{prefix}:load")).await?;
    }
    cached_query_examples::delete_matching(&url, &format!("{prefix}:*")).await?;
    Ok(())
}

const LOAD_KEYS: i64 = 3_000;
const LOAD_TASKS: usize = 32;
const LOAD_FOR: Duration = Duration::from_secs(3);

/// Redis's CPU time (user + system, µs) and commands run so far, on the server at `url`.
async fn cpu_and_commands(url: &str) -> Result<(f64, u64, u64), Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let cpu = (field("used_cpu_user").unwrap_or(0.0) + field("used_cpu_sys").unwrap_or(0.0)) * 1e6;
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await?;
    let calls =
        |line: &str| line.split_once(":calls=").and_then(|(_, r)| r.split(',').next()?.parse::<u64>().ok());
    let commands = stats.lines().filter_map(calls).sum();
    let gets = stats.lines().find(|l| l.starts_with("cmdstat_get:")).and_then(calls).unwrap_or(0);
    Ok((cpu, commands, gets))
}

/// The cluster's masters, as URLs (from `CLUSTER SLOTS`).
async fn masters(urls: &[String]) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(urls[0].as_str())?.get_multiplexed_async_connection().await?;
    // Each range: first slot, last slot, then its master as [host, port, id, ...], replicas after.
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
    let mut masters = Vec::new();
    for range in slots {
        let master: Vec<redis::Value> = redis::from_redis_value(range[2].clone())?;
        let host: String = redis::from_redis_value(master[0].clone())?;
        let port: u16 = redis::from_redis_value(master[1].clone())?;
        masters.push(format!("redis://{host}:{port}"));
    }
    masters.sort();
    masters.dedup();
    Ok(masters)
}

/// `LOAD_TASKS` tasks of hits over `LOAD_KEYS` warm keys of one prefix, for `LOAD_FOR`: the
/// share of hits and Redis's CPU time per hit on each master.
async fn cpu_per_master(urls: &[String], prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let cache = QueryCache::builder().redis_cluster(urls.to_vec()).prefix(prefix).build().await?;
    for id in 0..LOAD_KEYS {
        plain(&cache, id).await;
    }
    for id in 0..LOAD_KEYS {
        plain(&cache, id).await; // once the tracked connections are up: counters known
    }
    let masters = masters(urls).await?;
    let mut before = Vec::new();
    for master in &masters {
        before.push(cpu_and_commands(master).await?);
    }
    let hits_before = cache.stats().hits;
    let started = Instant::now();
    let tasks: Vec<_> = (0..LOAD_TASKS)
        .map(|task| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut i = task as i64 * 97;
                while started.elapsed() < LOAD_FOR {
                    black_box(plain(&cache, i % LOAD_KEYS).await);
                    i += 31;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let hits = cache.stats().hits - hits_before;
    println!(
        "\n{LOAD_TASKS} tasks over {LOAD_KEYS} warm keys of one prefix for {LOAD_FOR:?}: {hits} hits, {:.0} hits/s\n",
        hits as f64 / LOAD_FOR.as_secs_f64()
    );
    println!("| master | GETs (share) | commands | Redis CPU | CPU per hit |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (master, (cpu0, commands0, gets0)) in masters.iter().zip(before) {
        let (cpu, commands, gets) = cpu_and_commands(master).await?;
        let gets = gets - gets0;
        println!(
            "| {master} | {gets} ({:.0} %) | {} | {:.0} ms | {:.1} µs |",
            gets as f64 * 100.0 / hits as f64,
            commands - commands0,
            (cpu - cpu0) / 1000.0,
            (cpu - cpu0) / gets.max(1) as f64
        );
    }
    Ok(())
}
