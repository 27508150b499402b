//! Measures the serde codecs considered for cached values, on rows of the benchmark workload
//! (`bench.users`), for a 1-row and a 100-row result. Results go to `docs/codecs.md`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin codecs
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use cached_query_examples::{UserRow, user_row};
use serde::{Serialize, de::DeserializeOwned};

fn rows(n: i64) -> Vec<UserRow> {
    (1..=n).map(user_row).collect()
}

struct Codec {
    name: &'static str,
    drift_safe: &'static str,
    encode: fn(&Vec<UserRow>) -> Vec<u8>,
    decode: fn(&[u8]) -> Vec<UserRow>,
}

fn msgpack_named<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}
fn msgpack_compact<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).unwrap()
}
fn msgpack_decode<T: DeserializeOwned>(b: &[u8]) -> T {
    rmp_serde::from_slice(b).unwrap()
}

const CODECS: &[Codec] = &[
    Codec {
        name: "MessagePack, structs as maps (default)",
        drift_safe: "yes, with the shape fingerprint",
        encode: msgpack_named,
        decode: msgpack_decode,
    },
    Codec {
        name: "MessagePack, structs as arrays",
        drift_safe: "no: reordered fields of one type decode silently",
        encode: msgpack_compact,
        decode: msgpack_decode,
    },
    Codec {
        name: "postcard",
        drift_safe: "no: not self-describing",
        encode: |v| postcard::to_allocvec(v).unwrap(),
        decode: |b| postcard::from_bytes(b).unwrap(),
    },
    Codec {
        name: "JSON (serde_json)",
        drift_safe: "yes, with the shape fingerprint",
        encode: |v| serde_json::to_vec(v).unwrap(),
        decode: |b| serde_json::from_slice(b).unwrap(),
    },
];

/// Median time of one call of `f`, over batches run for about `budget`.
fn median(budget: Duration, mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || samples.len() < 20 {
        let t = Instant::now();
        for _ in 0..100 {
            f();
        }
        samples.push(t.elapsed() / 100);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    println!("| codec | rows | bytes | encode | decode | drift-safe |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for n in [1, 100] {
        let value = rows(n);
        for codec in CODECS {
            let bytes = (codec.encode)(&value);
            assert_eq!((codec.decode)(&bytes), value);
            let enc = median(Duration::from_millis(300), || {
                black_box((codec.encode)(black_box(&value)));
            });
            let dec = median(Duration::from_millis(300), || {
                black_box((codec.decode)(black_box(&bytes)));
            });
            println!(
                "| {} | {n} | {} | {:.2?} | {:.2?} | {} |",
                codec.name,
                bytes.len(),
                enc,
                dec,
                codec.drift_safe
            );
        }
    }
}
