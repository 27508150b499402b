//! Large values are stored compressed (`compress_above`), against a real Redis: the bytes in
//! Redis are the compressed envelope, hits decode them back, and a cache that does not
//! compress reads the compressed entries of one that does (and the other way round).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{redis_conn, redis_url, unique_prefix};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Row {
    id: i64,
    email: String,
}

#[cached_query(ttl = 60, name = "compression_rows", cache = cache, skip(cache, calls))]
async fn rows(cache: &QueryCache, calls: &AtomicUsize, n: i64) -> Vec<Row> {
    calls.fetch_add(1, SeqCst);
    (0..n).map(|id| Row { id, email: format!("user{id}@example.com") }).collect()
}

async fn cache(prefix: &str, compress_above: usize) -> QueryCache {
    QueryCache::builder()
        .redis_url(redis_url())
        .prefix(prefix)
        .compress_above(compress_above)
        .build()
        .await
        .unwrap()
}

async fn stored(key: &str) -> Vec<u8> {
    redis::cmd("GET").arg(key).query_async(&mut redis_conn(&redis_url()).await).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_are_stored_compressed_and_read_by_any_setting() {
    let prefix = unique_prefix("compression");
    let (packing, plain) = (cache(&prefix, 1024).await, cache(&prefix, usize::MAX).await);
    let calls = AtomicUsize::new(0);
    let expected = rows(&plain, &calls, 0).await; // warms the connection
    assert!(expected.is_empty());

    let big = rows(&packing, &calls, 2_000).await;
    let key = packing.key("compression_rows", 0, &(2_000i64,)).unwrap();
    let bytes = stored(&key).await;
    let uncompressed = QueryCache::encode_entry(&big, std::time::Duration::from_secs(60)).unwrap();
    assert!(bytes.len() * 3 < uncompressed.len(), "{} bytes against {}", bytes.len(), uncompressed.len());
    assert!(packing.inspect(&key).await.unwrap().unwrap().compressed);
    // A hit, through either cache.
    assert_eq!(rows(&packing, &calls, 2_000).await, big);
    assert_eq!(rows(&plain, &calls, 2_000).await, big);
    assert_eq!(calls.load(SeqCst), 2, "both hits");

    // Small values, and a cache that does not compress, store the plain envelope.
    let small = rows(&packing, &calls, 3).await;
    let small_key = packing.key("compression_rows", 0, &(3i64,)).unwrap();
    assert!(!packing.inspect(&small_key).await.unwrap().unwrap().compressed);
    assert_eq!(rows(&plain, &calls, 3).await, small);
    let plain_key = plain.key("compression_rows", 0, &(1_500i64,)).unwrap();
    rows(&plain, &calls, 1_500).await;
    assert!(!plain.inspect(&plain_key).await.unwrap().unwrap().compressed);
    assert_eq!(rows(&packing, &calls, 1_500).await.len(), 1_500);
    assert_eq!(calls.load(SeqCst), 4);
    assert_eq!((packing.stats().errors, plain.stats().errors), (0, 0));
}
