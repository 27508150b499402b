//! What an entry takes in Redis (#24, item 3), for values of the workload's shapes
//! (`shared/workload.md`: Q1 one row, Q2 a page of 100, Q3 ten buckets) and a 200 KB result:
//! the stored bytes (`STRLEN`) and Redis's own count (`MEMORY USAGE`), for this crate's entries
//! as stored by default, uncompressed, and compressed from 1 KiB, against the `cached` crate's
//! Redis store; and what compression costs a hit's decode. Against Redis at `REDIS_URL`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin memory
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use cached::prelude::ConcurrentCachedAsync;
use cached_query::QueryCache;
use cached_query_examples::{UserRow, user_row};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Bucket {
    bucket: i32,
    count: i64,
    avg_name_len: f64,
}

/// The median time of `f`, over `rounds` calls.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[rounds / 2]
}

struct Sizes {
    stored: u64,
    memory: u64,
}

async fn sizes(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Sizes {
    let stored: u64 = redis::cmd("STRLEN").arg(key).query_async(conn).await.unwrap();
    let memory: Option<u64> =
        redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query_async(conn).await.unwrap();
    Sizes { stored, memory: memory.unwrap_or(0) }
}

/// Stores `value` under one key through a cache that compresses from `compress_above`, and
/// returns the key.
async fn store<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    cache: &QueryCache,
    name: &str,
    value: &T,
) -> String {
    let key = cache.key(name, 0, &()).unwrap();
    cache.set(&key, value, Duration::from_secs(3600)).await.unwrap();
    key
}

async fn measure<T>(
    label: &str,
    value: T,
    url: &str,
    run: &str,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
{
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let build = |prefix: String, above: usize| {
        QueryCache::builder().redis_url(url).prefix(prefix).compress_above(above).build()
    };
    let default = build(format!("{run}:default"), 16 << 10).await?;
    let plain = build(format!("{run}:plain"), usize::MAX).await?;
    let packed = build(format!("{run}:packed"), 1 << 10).await?;
    let mut ours = Vec::new();
    for cache in [&default, &plain, &packed] {
        let key = store(cache, label, &value).await;
        let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        assert!(QueryCache::decode_entry::<T>(&bytes)? == value);
        let decode = median(2_001, || {
            black_box(QueryCache::decode_entry::<T>(black_box(&bytes)).unwrap());
        });
        ours.push((sizes(&mut conn, &key).await, decode, bytes.len()));
    }
    let theirs = cached::AsyncRedisCacheBuilder::<u32, T>::new()
        .ttl_secs(3600)
        .prefix(format!("cached-{}-{n}-", std::process::id()))
        .connection_string(url)
        .build()
        .await?;
    theirs.async_cache_set(1, value.clone()).await?;
    let mut their_key = None;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*cached-{}-{n}-*", std::process::id()))
        .query_async(&mut conn)
        .await?;
    if let Some(key) = keys.first() {
        their_key = Some(sizes(&mut conn, key).await);
    }
    let payload = rmp_serde::to_vec_named(&value)?.len();
    let row = |(s, d, _): &(Sizes, Duration, usize)| format!("{} / {} | {:.1?}", s.stored, s.memory, d);
    let theirs = their_key.map_or("-".to_owned(), |s| format!("{} / {}", s.stored, s.memory));
    println!(
        "| {label} | {payload} | {} | {} | {} | {theirs} |",
        row(&ours[0]),
        row(&ours[1]),
        row(&ours[2])
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = format!("memory:{}", std::process::id());
    println!("Bytes stored (`STRLEN`) / Redis's `MEMORY USAGE` of the key, and the decode of a hit.\n");
    println!(
        "| value | MessagePack bytes | default (16 KiB): stored / memory | decode | uncompressed: stored / memory | decode | compressed from 1 KiB: stored / memory | decode | `cached` crate: stored / memory |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    measure::<Option<UserRow>>("Q1 (1 row)", Some(user_row(1)), &url, &run, 1).await?;
    measure::<Vec<UserRow>>("Q2 (100 rows)", (1..=100).map(user_row).collect(), &url, &run, 2).await?;
    let buckets: Vec<Bucket> = (0..10)
        .map(|b| Bucket { bucket: b, count: 10_000 + i64::from(b), avg_name_len: 9.5 + f64::from(b) / 10.0 })
        .collect();
    measure::<Vec<Bucket>>("Q3 (10 buckets)", buckets, &url, &run, 3).await?;
    measure::<Vec<UserRow>>("2,500 rows (200 KB)", (1..=2_500).map(user_row).collect(), &url, &run, 4)
        .await?;
    Ok(())
}
