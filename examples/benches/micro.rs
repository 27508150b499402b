//! Micro-benchmarks of what a hit costs besides the network: key derivation, the codec
//! (encode on a miss, decode on every hit) for a 1-row and a 100-row result, and a whole hit
//! on the in-process backend; with the allocations of each (divan's `AllocProfiler`).
//!
//! ```sh
//! cargo bench -p cached-query-examples --bench micro
//! ```

use std::time::Duration;

use cached_query::{QueryCache, cached_query};
use cached_query_examples::{User, user};
use divan::{AllocProfiler, Bencher, black_box};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const ROWS: [usize; 2] = [1, 100];

fn rows(n: usize) -> Vec<User> {
    (1..=n as i64).map(user).collect()
}

/// The key of a call with one `i64` argument: serialize, hash, format.
#[divan::bench]
fn key_derivation(bencher: Bencher) {
    let cache = QueryCache::in_memory(10);
    bencher.bench_local(|| cache.key("bench::q1", 0, &(black_box(42i64),)).unwrap());
}

/// A result into the bytes stored (what a miss pays once).
#[divan::bench(args = ROWS)]
fn encode(bencher: Bencher, n: usize) {
    let value = rows(n);
    bencher.bench_local(|| QueryCache::encode_entry(black_box(&value), Duration::from_secs(60)).unwrap());
}

/// The bytes stored back into the result (what every hit pays).
#[divan::bench(args = ROWS)]
fn decode(bencher: Bencher, n: usize) {
    let bytes = QueryCache::encode_entry(&rows(n), Duration::from_secs(60)).unwrap();
    bencher.bench_local(|| QueryCache::decode_entry::<Vec<User>>(black_box(&bytes)).unwrap());
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn page(cache: &QueryCache, n: usize) -> Vec<User> {
    rows(n)
}

/// A whole hit of a cached function, on the in-process backend: the macro's code, key
/// derivation, lookup, envelope checks and decode; no network.
#[divan::bench(args = ROWS)]
fn hit_in_memory(bencher: Bencher, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache = QueryCache::in_memory(100);
    runtime.block_on(page(&cache, n));
    bencher.bench_local(|| runtime.block_on(page(&cache, black_box(n))));
    assert_eq!(cache.stats().misses, 1, "every measured call was a hit");
}

/// The formats a cache could store 100 rows in, decoded (without an envelope): MessagePack
/// with field names (ours), MessagePack as arrays (the `cached` crate's), postcard, JSON.
#[divan::bench(args = ["msgpack-named", "msgpack-arrays", "postcard", "json"])]
fn decode_100_rows_by_format(bencher: Bencher, format: &str) {
    let value = rows(100);
    let bytes = match format {
        "msgpack-named" => rmp_serde::to_vec_named(&value).unwrap(),
        "msgpack-arrays" => rmp_serde::to_vec(&value).unwrap(),
        "postcard" => postcard::to_allocvec(&value).unwrap(),
        _ => serde_json::to_vec(&value).unwrap(),
    };
    bencher.bench_local(|| -> Vec<User> {
        let bytes = black_box(&bytes[..]);
        match format {
            "msgpack-named" | "msgpack-arrays" => rmp_serde::from_slice(bytes).unwrap(),
            "postcard" => postcard::from_bytes(bytes).unwrap(),
            _ => serde_json::from_slice(bytes).unwrap(),
        }
    });
}
