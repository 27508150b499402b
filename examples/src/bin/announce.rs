//! What the backplane's `PUBLISH` costs an instance without a local tier (every instance on
//! Redis announces its invalidations and writes, see `runtime/src/backplane.rs`): sequential
//! round trips of the pipelines the cache sends, with and without their `PUBLISH`, with no
//! subscriber and with three (instances with a local tier listening), rounds interleaved; and
//! Redis's own CPU time per command (`INFO commandstats`). Recorded in `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin announce
//! ```

use std::time::{Duration, Instant};

use cached_query::QueryCache;
use redis::aio::MultiplexedConnection;

const CALLS: usize = 4000;
const ROUNDS: usize = 5;

/// The pipelines measured: (label, with its `PUBLISH`).
const PIPELINES: [(&str, bool); 4] = [
    ("invalidate one tag: SET NX + INCRBY + PEXPIRE", false),
    ("the same + PUBLISH", true),
    ("store an entry: SET PX", false),
    ("the same + PUBLISH", true),
];

async fn pipeline(conn: &mut MultiplexedConnection, which: usize, i: usize) {
    let mut pipe = redis::pipe();
    let key = format!("announce:{}", i % 1000);
    match which {
        0 | 1 => {
            pipe.cmd("SET").arg(format!("{key}:tag")).arg(1u64 << 40).arg("NX").ignore();
            pipe.incr(format!("{key}:tag"), 1).ignore().pexpire(format!("{key}:tag"), 60_000).ignore();
        }
        _ => {
            pipe.cmd("SET").arg(&key).arg([7u8; 120].as_slice()).arg("PX").arg(60_000).ignore();
        }
    }
    if PIPELINES[which].1 {
        pipe.publish("announce:bus", [1u8; 40].as_slice()).ignore();
    }
    let () = pipe.query_async(conn).await.expect("Redis answers");
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// Redis's `usec_per_call` of `command`.
async fn usec_per_call(conn: &mut MultiplexedConnection, command: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    let line = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|rest| rest.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn measure(conn: &mut MultiplexedConnection) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::new(); PIPELINES.len()];
    for _ in 0..ROUNDS {
        for (which, samples) in samples.iter_mut().enumerate() {
            for i in 0..CALLS / ROUNDS {
                let started = Instant::now();
                pipeline(conn, which, i).await;
                samples.push(started.elapsed());
            }
        }
    }
    samples
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
    for (label, listeners) in [("no subscriber", 0), ("3 subscribers", 3)] {
        // Instances with a local tier, listening on the channel measured.
        let mut listening = Vec::new();
        for _ in 0..listeners {
            let cache =
                QueryCache::builder().redis_url(&url).prefix("announce").local_cache(10).build().await?;
            listening.push(cache);
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // their subscriptions
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await?;
        let mut samples = measure(&mut conn).await;
        println!("\n{label}, {CALLS} sequential calls each, {ROUNDS} interleaved rounds:\n");
        println!("| pipeline | p50 | p99 |");
        println!("|---|---|---|");
        for ((name, _), samples) in PIPELINES.iter().zip(&mut samples) {
            let (p50, p99) = percentiles(samples);
            println!("| {name} | {p50:.1?} | {p99:.1?} |");
        }
        println!(
            "\nRedis CPU per call: PUBLISH {:.2} µs, SET {:.2} µs, INCRBY {:.2} µs",
            usec_per_call(&mut conn, "publish").await,
            usec_per_call(&mut conn, "set").await,
            usec_per_call(&mut conn, "incrby").await
        );
    }
    Ok(())
}
