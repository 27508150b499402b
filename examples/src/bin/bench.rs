//! The workload benchmark (`shared/workload.md`): three queries against Postgres, each served
//! by the database, by a raw Redis `GET` of the bytes the cache stores (the physical limit),
//! by a raw `MGET` of those bytes and their invalidation counters (what a lookup without client
//! tracking reads), by a `#[cached_query]` hit (one `GET`: client tracking keeps the counters),
//! by the same hit with tracking off, by a hit in the local tier, and by the `cached` crate's Redis
//! store, one after another in one run. Prints Markdown tables and, with `--write`, replaces
//! the results section of `docs/benchmarks.md` and draws its charts (`docs/charts/`).
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin bench -- --write
//! cargo run --release -p cached-query-examples --bin bench --features mimalloc -- --write
//! ```
//!
//! The second runs every path with mimalloc as the global allocator and writes its own section.
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), `BENCH_SECS` (seconds per throughput point, default 1.5).
//!
//! `BENCH_PROFILE='Q1/hit'` (a query and a path's label) measures that path alone for 10 s at 32
//! tasks and prints its CPU time and system calls per call, for `perf record` or for A/B runs;
//! three paths exist only there: a raw `GET` through a plain multiplexed connection
//! (`redis-get, multiplexed`), through a connection like the cache's tracking one within a timer
//! like the cache's (`redis-get, tracking connection`), and without the timer
//! (`redis-get, no timer`).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cached::macros::concurrent_cached;
use cached_query::{QueryCache, cached_query};
use cached_query_examples::{User, charts};
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// With `--features mimalloc`: every path, ours and the peers', allocates through it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator the run used, the command line's features for it, and the section of
/// `docs/benchmarks.md` the run writes (`<!-- {section}:start -->`).
const ALLOCATOR: (&str, &str, &str) = if cfg!(feature = "mimalloc") {
    ("mimalloc", " --features mimalloc", "bench-mimalloc")
} else {
    ("the system's (glibc)", "", "bench")
};

/// A row of Q3.
#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Bucket {
    bucket: i32,
    count: i64,
    avg_name_len: f64,
}

use cached_query_examples::Q1;
const Q2: &str =
    "SELECT id, name, email, score, created_at FROM bench.users WHERE id >= $1 ORDER BY id LIMIT 100";
// The workload's Q3; the casts give the columns Rust types (`avg` is `numeric`).
const Q3: &str = "SELECT (score % 10)::int AS bucket, count(*) AS count, avg(length(name))::float8 AS avg_name_len \
                  FROM bench.users WHERE email LIKE $1 GROUP BY 1 ORDER BY 1";
const Q3_PATTERN: &str = "%7%@example.com";

async fn q1_db(pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(Q1).bind(id).fetch_optional(pool).await
}

async fn q2_db(pool: &PgPool, from: i64) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as(Q2).bind(from).fetch_all(pool).await
}

async fn q3_db(pool: &PgPool, pattern: &str) -> Result<Vec<Bucket>, sqlx::Error> {
    sqlx::query_as(Q3).bind(pattern).fetch_all(pool).await
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q1(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    q1_db(pool, id).await
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q2(cache: &QueryCache, pool: &PgPool, from: i64) -> Result<Vec<User>, sqlx::Error> {
    q2_db(pool, from).await
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q3(cache: &QueryCache, pool: &PgPool, pattern: &str) -> Result<Vec<Bucket>, sqlx::Error> {
    q3_db(pool, pattern).await
}

// The same, returning `Arc`s: a local hit hands out the kept value's allocation (docs/usage.md).
#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q1_arc(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<Arc<Option<User>>, sqlx::Error> {
    q1_db(pool, id).await.map(Arc::new)
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q2_arc(cache: &QueryCache, pool: &PgPool, from: i64) -> Result<Arc<Vec<User>>, sqlx::Error> {
    q2_db(pool, from).await.map(Arc::new)
}

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q3_arc(cache: &QueryCache, pool: &PgPool, pattern: &str) -> Result<Arc<Vec<Bucket>>, sqlx::Error> {
    q3_db(pool, pattern).await.map(Arc::new)
}

/// The pool, for the `cached` crate's functions (their arguments are their key).
static POOL: OnceLock<PgPool> = OnceLock::new();

fn pool() -> &'static PgPool {
    POOL.get().expect("the pool is set first")
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    cache_prefix_block = r##"{ "cq-bench-cached-q1:" }"##,
    map_error = r##"|e| sqlx::Error::Protocol(format!("{e:?}"))"##
)]
async fn q1_cached_crate(id: i64) -> Result<Option<User>, sqlx::Error> {
    q1_db(pool(), id).await
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    cache_prefix_block = r##"{ "cq-bench-cached-q2:" }"##,
    map_error = r##"|e| sqlx::Error::Protocol(format!("{e:?}"))"##
)]
async fn q2_cached_crate(from: i64) -> Result<Vec<User>, sqlx::Error> {
    q2_db(pool(), from).await
}

#[concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    cache_prefix_block = r##"{ "cq-bench-cached-q3:" }"##,
    map_error = r##"|e| sqlx::Error::Protocol(format!("{e:?}"))"##
)]
async fn q3_cached_crate(pattern: String) -> Result<Vec<Bucket>, sqlx::Error> {
    q3_db(pool(), &pattern).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Query {
    Q1,
    Q2,
    Q3,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Db,
    RedisGet,
    RedisGetDecode,
    RedisMgetDecode,
    Hit,
    HitMget,
    HitL1,
    HitL1Arc,
    CachedCrate,
    // Only with `BENCH_PROFILE`: what a raw `GET` costs on each kind of connection.
    GetMultiplexed,
    GetTracking,
    GetNoTimer,
}

const PATHS: [Path; 9] = [
    Path::Db,
    Path::RedisGet,
    Path::RedisGetDecode,
    Path::RedisMgetDecode,
    Path::Hit,
    Path::HitMget,
    Path::HitL1,
    Path::HitL1Arc,
    Path::CachedCrate,
];
/// Paths measured only one at a time (`BENCH_PROFILE`), to tell the connection's part of a hit's
/// cost from the timer's: a raw `GET` through a plain multiplexed connection (RESP2, with the
/// `redis` crate's default 500 ms response timeout, as the `cached` crate's store makes it), through
/// a connection made like the cache's tracking one (RESP3, `CLIENT TRACKING ON OPTIN`, a push
/// sender) within a `tokio::time::timeout` like the cache's, and through that connection with no
/// timer at all.
const PROFILE_ONLY: [Path; 3] = [Path::GetMultiplexed, Path::GetTracking, Path::GetNoTimer];
/// The cache's default timeout (`QueryCache::builder().timeout`), which bounds each request.
const TIMEOUT: Duration = Duration::from_millis(50);
const TASKS: [usize; 4] = [1, 8, 32, 128];
const IDS: usize = 1000;

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Db => "db",
            Path::RedisGet => "redis-get",
            Path::RedisGetDecode => "redis-get + decode",
            Path::RedisMgetDecode => "redis-mget + decode",
            Path::Hit => "hit",
            Path::HitMget => "hit, no tracking",
            Path::HitL1 => "hit-l1",
            Path::HitL1Arc => "hit-l1, Arc",
            Path::CachedCrate => "cached-crate",
            Path::GetMultiplexed => "redis-get, multiplexed",
            Path::GetTracking => "redis-get, tracking connection",
            Path::GetNoTimer => "redis-get, no timer",
        }
    }
}

/// Everything a call needs.
struct Bench {
    pool: PgPool,
    cache: QueryCache,
    /// The same entries, looked up without client tracking (counters read with each entry).
    untracked: QueryCache,
    local: QueryCache,
    raw: ConnectionManager,
    /// A plain multiplexed connection (RESP2, the `redis` crate's default response timeout).
    multiplexed: MultiplexedConnection,
    /// A connection made like the cache's tracking one, with no response timeout of its own.
    tracking: MultiplexedConnection,
    /// The keys of the cache's entries, by query and argument index.
    keys: [Vec<String>; 3],
    /// The cache's namespace counter (`{prefix}:ns`), which every lookup reads.
    ns_key: String,
}

/// The argument of call `i`: 1,000 distinct ids spread over the table.
fn id_of(i: usize) -> i64 {
    1 + (i % IDS) as i64 * 97
}

impl Bench {
    /// One call of `query` by `path`; returns something derived from the answer.
    async fn call(&self, query: Query, path: Path, i: usize) -> usize {
        let (pool, id) = (&self.pool, id_of(i));
        match (path, query) {
            (Path::Db, Query::Q1) => q1_db(pool, id).await.unwrap().is_some() as usize,
            (Path::Db, Query::Q2) => q2_db(pool, id).await.unwrap().len(),
            (Path::Db, Query::Q3) => q3_db(pool, Q3_PATTERN).await.unwrap().len(),
            (Path::RedisGet, q) => self.get(q, i).await.len(),
            (Path::GetMultiplexed, q) => self.get_on(self.multiplexed.clone(), q, i).await.len(),
            (Path::GetTracking, q) => {
                let get = self.get_on(self.tracking.clone(), q, i);
                tokio::time::timeout(TIMEOUT, get).await.map_or(0, |bytes| bytes.len())
            }
            (Path::GetNoTimer, q) => self.get_on(self.tracking.clone(), q, i).await.len(),
            (Path::RedisGetDecode, Query::Q1) => {
                self.get_decoded::<Option<User>>(Query::Q1, i).await.is_some() as usize
            }
            (Path::RedisGetDecode, Query::Q2) => self.get_decoded::<Vec<User>>(Query::Q2, i).await.len(),
            (Path::RedisGetDecode, Query::Q3) => self.get_decoded::<Vec<Bucket>>(Query::Q3, i).await.len(),
            (Path::RedisMgetDecode, Query::Q1) => {
                self.mget_decoded::<Option<User>>(Query::Q1, i).await.is_some() as usize
            }
            (Path::RedisMgetDecode, Query::Q2) => self.mget_decoded::<Vec<User>>(Query::Q2, i).await.len(),
            (Path::RedisMgetDecode, Query::Q3) => self.mget_decoded::<Vec<Bucket>>(Query::Q3, i).await.len(),
            (Path::Hit | Path::HitMget | Path::HitL1, q) => {
                let cache = match path {
                    Path::Hit => &self.cache,
                    Path::HitMget => &self.untracked,
                    _ => &self.local,
                };
                match q {
                    Query::Q1 => q1(cache, pool, id).await.unwrap().is_some() as usize,
                    Query::Q2 => q2(cache, pool, id).await.unwrap().len(),
                    Query::Q3 => q3(cache, pool, Q3_PATTERN).await.unwrap().len(),
                }
            }
            (Path::HitL1Arc, Query::Q1) => q1_arc(&self.local, pool, id).await.unwrap().is_some() as usize,
            (Path::HitL1Arc, Query::Q2) => q2_arc(&self.local, pool, id).await.unwrap().len(),
            (Path::HitL1Arc, Query::Q3) => q3_arc(&self.local, pool, Q3_PATTERN).await.unwrap().len(),
            (Path::CachedCrate, Query::Q1) => q1_cached_crate(id).await.unwrap().is_some() as usize,
            (Path::CachedCrate, Query::Q2) => q2_cached_crate(id).await.unwrap().len(),
            (Path::CachedCrate, Query::Q3) => q3_cached_crate(Q3_PATTERN.to_owned()).await.unwrap().len(),
        }
    }

    fn key(&self, query: Query, i: usize) -> &str {
        let keys = &self.keys[query as usize];
        &keys[i % keys.len()]
    }

    async fn get(&self, query: Query, i: usize) -> Vec<u8> {
        self.get_on(self.raw.clone(), query, i).await
    }

    async fn get_on(&self, mut conn: impl ConnectionLike, query: Query, i: usize) -> Vec<u8> {
        let bytes: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.key(query, i)).query_async(&mut conn).await.unwrap();
        bytes.expect("a warm key")
    }

    async fn get_decoded<T: DeserializeOwned + 'static>(&self, query: Query, i: usize) -> T {
        QueryCache::decode_entry(&self.get(query, i).await).expect("an entry of this type")
    }

    /// What a lookup reads, by hand: one `MGET` of the entry, the namespace counter and the
    /// key's counter; then the entry decoded.
    async fn mget_decoded<T: DeserializeOwned + 'static>(&self, query: Query, i: usize) -> T {
        let (mut conn, key) = (self.raw.clone(), self.key(query, i));
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(key)
            .arg(&self.ns_key)
            .arg(format!("{key}:gen"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let entry = values.into_iter().next().flatten().expect("a warm key");
        QueryCache::decode_entry(&entry).expect("an entry of this type")
    }
}

/// Median and p99 of sequential calls of `query` by each path: `ROUNDS` rounds, each making
/// a slice of every path's calls in turn, so that the machine's drifts hit all paths alike.
async fn sequential(bench: &Bench, query: Query) -> Vec<(Duration, Duration)> {
    const ROUNDS: usize = 30;
    let mut samples = vec![Vec::new(); PATHS.len()];
    for round in 0..ROUNDS {
        for (p, path) in PATHS.into_iter().enumerate() {
            // 3,000 calls in all (200 for the heavy query on the database).
            let per_round = if query == Query::Q3 && path == Path::Db { 7 } else { 100 };
            for i in round * per_round..(round + 1) * per_round {
                let started = Instant::now();
                black_box(bench.call(query, path, i).await);
                samples[p].push(started.elapsed());
            }
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            (s[s.len() / 2], s[s.len() * 99 / 100])
        })
        .collect()
}

/// Calls per second with `tasks` concurrent tasks calling in a loop for `secs`.
async fn throughput(bench: &Arc<Bench>, query: Query, path: Path, tasks: usize, secs: f64) -> f64 {
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (bench, stop, done) = (bench.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = t * 7919;
                while !stop.load(Relaxed) {
                    black_box(bench.call(query, path, i).await);
                    done.fetch_add(1, Relaxed);
                    i += 1;
                    // A local hit never waits on I/O: let the scheduler (and its timers) run.
                    tokio::task::consume_budget().await;
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (calls, elapsed) = (done.load(Relaxed), started.elapsed());
    stop.store(true, Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    calls as f64 / elapsed.as_secs_f64()
}

/// Windows per throughput point: each path's `secs` are split into this many windows, taken
/// in turn with the other paths' (like the sequential rounds), and the median window counts.
const WINDOWS: usize = 5;

/// Throughput of every path at each of `TASKS` (the rates of its windows), and at 32 tasks the
/// CPU seconds of this process and of Redis with the number of calls they served.
async fn throughputs(
    bench: &Arc<Bench>,
    query: Query,
    secs: f64,
) -> (Vec<Vec<Vec<f64>>>, Vec<(f64, f64, f64)>) {
    let mut rates = vec![vec![Vec::with_capacity(WINDOWS); TASKS.len()]; PATHS.len()];
    let mut cpu = vec![(0.0, 0.0, 0.0); PATHS.len()];
    for (t, tasks) in TASKS.into_iter().enumerate() {
        for _ in 0..WINDOWS {
            for (p, path) in PATHS.into_iter().enumerate() {
                let measure_cpu = tasks == 32;
                let before = if measure_cpu { cpu_used(bench).await } else { (0.0, 0.0) };
                let started = Instant::now();
                let rate = throughput(bench, query, path, tasks, secs / WINDOWS as f64).await;
                if measure_cpu {
                    let after = cpu_used(bench).await;
                    let used = &mut cpu[p];
                    used.0 += after.0 - before.0;
                    used.1 += after.1 - before.1;
                    used.2 += rate * started.elapsed().as_secs_f64();
                }
                rates[p][t].push(rate);
            }
        }
    }
    (rates, cpu)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// What one path measured: sequential median, throughput at each of `TASKS`.
struct Row {
    p50: Duration,
    p99: Duration,
    ops: Vec<f64>,
}

/// The query's charts, into docs/ at the paths `chart` gives (a message, no charts, if they
/// cannot be drawn).
fn draw(rows: &[Row], chart: &dyn Fn(&str) -> String, title: &str) {
    let docs = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"));
    let latencies: Vec<charts::Latency> = PATHS
        .iter()
        .zip(rows)
        .map(|(path, row)| charts::Latency {
            path: path.label(),
            p50_us: row.p50.as_secs_f64() * 1e6,
            p99_us: row.p99.as_secs_f64() * 1e6,
        })
        .collect();
    let throughputs: Vec<charts::Throughput> = PATHS
        .iter()
        .zip(rows)
        .map(|(path, row)| charts::Throughput {
            path: path.label(),
            points: TASKS.iter().map(|t| *t as f64).zip(row.ops.iter().copied()).collect(),
        })
        .collect();
    let drawn = std::fs::create_dir_all(docs.join("charts")).map_err(Into::into).and_then(|()| {
        charts::latency(&docs.join(chart("latency")), &format!("{title}: latency by path"), &latencies)?;
        charts::throughput(
            &docs.join(chart("throughput")),
            &format!("{title}: throughput by tasks"),
            &throughputs,
        )
    });
    if let Err(err) = drawn {
        eprintln!("no charts: {err}");
    }
}

/// CPU seconds used so far by this process and by the Redis server.
async fn cpu_used(bench: &Bench) -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 14 and 15 (user, system), in clock ticks (100 per second on Linux), counted after
    // the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let client = (ticks(11) + ticks(12)) / 100.0;
    let info: String =
        redis::cmd("INFO").arg("cpu").query_async(&mut bench.raw.clone()).await.unwrap_or_default();
    let redis = info
        .lines()
        .filter_map(|line| line.strip_prefix("used_cpu_sys:").or_else(|| line.strip_prefix("used_cpu_user:")))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum();
    (client, redis)
}

/// `BENCH_PROFILE=Q1/hit` (any query and path, `PROFILE_ONLY` too): that path alone at 32 tasks
/// for 10 s, with the CPU time per call of this process and of Redis, and the read and write
/// system calls per call (`/proc/{pid}/io`: how many requests each one carries).
async fn profile(bench: &Arc<Bench>, which: &str) -> Result<(), Box<dyn std::error::Error>> {
    let query = [Query::Q1, Query::Q2, Query::Q3].into_iter().find(|q| which.starts_with(&format!("{q:?}/")));
    let path = PATHS.into_iter().chain(PROFILE_ONLY).find(|p| which.ends_with(&format!("/{}", p.label())));
    let (Some(query), Some(path)) = (query, path) else {
        return Err(format!("no such path: {which}").into());
    };
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut bench.raw.clone()).await?;
    let redis_pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap_or("").trim().to_owned();
    let syscalls = || [redis_pid.as_str(), "self"].map(syscalls_of);
    let (cpu, io, started) = (cpu_used(bench).await, syscalls(), Instant::now());
    let rate = throughput(bench, query, path, 32, 10.0).await;
    let calls = rate * started.elapsed().as_secs_f64();
    let (cpu_after, io_after) = (cpu_used(bench).await, syscalls());
    let per_call = |after: f64, before: f64| (after - before) / calls;
    println!(
        "{which}: {rate:.0} ops/s at 32 tasks; CPU µs per call: client {:.2}, Redis {:.2}; system calls per call: Redis reads {:.3}, writes {:.3}, client writes {:.3}",
        per_call(cpu_after.0, cpu.0) * 1e6,
        per_call(cpu_after.1, cpu.1) * 1e6,
        per_call(io_after[0].0, io[0].0),
        per_call(io_after[0].1, io[0].1),
        per_call(io_after[1].1, io[1].1),
    );
    println!("cache stats: {:?}", bench.cache.stats());
    Ok(())
}

/// Read and write system calls made so far by process `pid` (`syscr`, `syscw`; 0 if unreadable,
/// e.g. for a Redis server of another user).
fn syscalls_of(pid: &str) -> (f64, f64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    (field("syscr:"), field("syscw:"))
}

/// The `PROFILE_ONLY` paths' connections: a plain multiplexed one, and one made like the cache's
/// tracking connection (RESP3, a push sender, `CLIENT TRACKING ON OPTIN`, no response timeout).
async fn connections(url: &str) -> redis::RedisResult<(MultiplexedConnection, MultiplexedConnection)> {
    let multiplexed = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_push_sender(|_| Ok::<(), std::convert::Infallible>(()));
    let mut tracking = redis::Client::open(info.set_redis_settings(resp3))?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT").arg("TRACKING").arg("ON").arg("OPTIN").exec_async(&mut tracking).await?;
    Ok((multiplexed, tracking))
}

/// Warms every key of every cached path, and returns the cache's keys.
async fn warm(bench: &Bench, query: Query) -> Vec<String> {
    let distinct = if query == Query::Q3 { 1 } else { IDS };
    for i in 0..distinct {
        for path in [Path::Hit, Path::HitMget, Path::HitL1, Path::HitL1Arc, Path::CachedCrate] {
            bench.call(query, path, i).await;
        }
    }
    let name = match query {
        Query::Q1 => "bench::q1",
        Query::Q2 => "bench::q2",
        Query::Q3 => "bench::q3",
    };
    (0..distinct)
        .map(|i| match query {
            Query::Q3 => bench.cache.key(name, 0, &(Q3_PATTERN,)).unwrap(),
            _ => bench.cache.key(name, 0, &(id_of(i),)).unwrap(),
        })
        .collect()
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn kops(ops: f64) -> String {
    if ops >= 10_000.0 { format!("{:.0}k", ops / 1000.0) } else { format!("{ops:.0}") }
}

/// `name version` of a package in the workspace's lock file.
fn locked(name: &str) -> String {
    let lock = include_str!("../../../Cargo.lock");
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|at| lock[at + needle.len()..].split('"').next().unwrap_or("?").to_owned())
        .map_or_else(|| format!("{name} ?"), |v| format!("{name} {v}"))
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let secs: f64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.5);
    let write = std::env::args().any(|a| a == "--write");
    // The `cached` crate's Redis store reads its URL from this variable; set before any thread.
    // SAFETY: no other thread exists yet (the runtime's workers do not read the environment).
    unsafe { std::env::set_var("CACHED_REDIS_CONNECTION_STRING", &redis_url) };

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&database_url).await?;
    cached_query_examples::workload_table(&pool).await?;
    POOL.set(pool.clone()).expect("set once");
    let prefix = format!("cq-bench:{}", std::process::id());
    let cache = QueryCache::builder().redis_url(&redis_url).prefix(&prefix).build().await?;
    let untracked =
        QueryCache::builder().redis_url(&redis_url).prefix(&prefix).client_tracking(false).build().await?;
    let local = QueryCache::builder()
        .redis_url(&redis_url)
        .prefix(format!("{prefix}:l1"))
        .local_cache(10_000)
        .build()
        .await?;
    let raw = ConnectionManager::new(redis::Client::open(redis_url.as_str())?).await?;
    let ns_key = format!("{prefix}:ns");
    let (multiplexed, tracking) = connections(&redis_url).await?;
    let mut bench = Bench {
        pool,
        cache,
        untracked,
        local,
        raw,
        multiplexed,
        tracking,
        keys: [Vec::new(), Vec::new(), Vec::new()],
        ns_key,
    };
    // The local tier serves once its backplane subscription is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bench.local.stats().local_hits == 0 && Instant::now() < deadline {
        bench.call(Query::Q1, Path::HitL1, 0).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for query in [Query::Q1, Query::Q2, Query::Q3] {
        bench.keys[query as usize] = warm(&bench, query).await;
    }
    let bench = Arc::new(bench);
    let before = (bench.cache.stats(), bench.local.stats());
    // `BENCH_PROFILE=Q1/hit`: only that path, 32 tasks for 10 s (run under `perf record`).
    if let Ok(which) = std::env::var("BENCH_PROFILE") {
        return profile(&bench, &which).await;
    }

    let mut out = String::new();
    let cpu = command_output("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]);
    let redis_version = command_output("redis-server", &["--version"]);
    let postgres: String = sqlx::query_scalar("SHOW server_version").fetch_one(&bench.pool).await?;
    writeln!(out, "Machine: {} cores ({cpu}), shared by the client, Redis and Postgres.", num_cpus())?;
    writeln!(
        out,
        "Versions: {}, {}, {}, {}, {}; {redis_version}; PostgreSQL {postgres}.",
        command_output("rustc", &["--version"]),
        format_args!("cached-query {}", env!("CARGO_PKG_VERSION")),
        locked("cached"),
        locked("redis"),
        locked("sqlx")
    )?;
    writeln!(
        out,
        "Command: `cargo run --release -p cached-query-examples --bin bench{} -- --write` ({secs} s per throughput point, in {WINDOWS} windows taken in turn with the other paths'; the median window). Allocator: {}.\n",
        ALLOCATOR.1, ALLOCATOR.0
    )?;

    let mut ratios = String::from(
        "| query | hit / redis-get+decode (p50) | hit / redis-get (p50) | hit / db (p50) | hit / cached-crate (p50) | hit / cached-crate (ops @32) | hit / redis-get (ops @32) | hit / redis-mget+decode (ops @32) | hit / hit, no tracking (ops @32) | hit-l1 vs hit (p50) | hit-l1, Arc / Q1 hit-l1 (p50) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    // The one-row local hit, which the `Arc` hits of every query are compared with.
    let mut q1_hit_l1 = f64::NAN;
    for (query, name, what) in [
        (Query::Q1, "Q1", "point lookup, 1 row"),
        (Query::Q2, "Q2", "page of 100 rows"),
        (Query::Q3, "Q3", "aggregate over a sequential scan, 10 rows"),
    ] {
        writeln!(out, "### {name}: {what}\n")?;
        let chart = |kind: &str| format!("charts/{}-{}-{kind}.svg", ALLOCATOR.2, name.to_lowercase());
        if write {
            writeln!(
                out,
                "![{name} latency by path]({})\n![{name} throughput by tasks]({})\n",
                chart("latency"),
                chart("throughput")
            )?;
        }
        writeln!(
            out,
            "| path | p50 | p99 | ops/s @1 | @8 | @32 | @128 | CPU µs per call @32: client + Redis |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )?;
        let mut rows = Vec::new();
        let latencies = sequential(&bench, query).await;
        let (rates, cpu) = throughputs(&bench, query, secs).await;
        for ((path, (p50, p99)), (rates, (client, redis, calls))) in
            PATHS.into_iter().zip(latencies).zip(rates.into_iter().zip(cpu))
        {
            let ops: Vec<f64> = rates.into_iter().map(median).collect();
            let cpu_cell = format!("{:.1} + {:.1}", client * 1e6 / calls, redis * 1e6 / calls);
            let cells: Vec<String> = ops.iter().map(|o| kops(*o)).collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {cpu_cell} |",
                path.label(),
                micros(p50),
                micros(p99),
                cells.join(" | ")
            )?;
            eprintln!(
                "{name} {:<20} p50 {:>10} p99 {:>10} ops {:?}",
                path.label(),
                micros(p50),
                micros(p99),
                cells
            );
            rows.push(Row { p50, p99, ops });
        }
        writeln!(out)?;
        if write {
            draw(&rows, &chart, &format!("{name} ({what})"));
        }
        let row = |p: Path| &rows[PATHS.iter().position(|x| *x == p).unwrap()];
        let p50 = |p: Path| row(p).p50.as_secs_f64();
        let at32 = |p: Path| row(p).ops[2];
        if query == Query::Q1 {
            q1_hit_l1 = p50(Path::HitL1);
        }
        writeln!(
            ratios,
            "| {name} | {:.2} | {:.2} | {:.4} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0}× faster | {:.2} |",
            p50(Path::Hit) / p50(Path::RedisGetDecode),
            p50(Path::Hit) / p50(Path::RedisGet),
            p50(Path::Hit) / p50(Path::Db),
            p50(Path::Hit) / p50(Path::CachedCrate),
            at32(Path::Hit) / at32(Path::CachedCrate),
            at32(Path::Hit) / at32(Path::RedisGet),
            at32(Path::Hit) / at32(Path::RedisMgetDecode),
            at32(Path::Hit) / at32(Path::HitMget),
            p50(Path::Hit) / p50(Path::HitL1),
            p50(Path::HitL1Arc) / q1_hit_l1,
        )?;
    }
    out.push_str("### Ratios\n\n");
    out.push_str(&ratios);
    let after = (bench.cache.stats(), bench.local.stats());
    assert_eq!(after.0.misses, before.0.misses, "every measured `hit` call was a hit: {:?}", after.0);
    assert_eq!(after.1.misses, before.1.misses, "every measured `hit-l1` call was a hit: {:?}", after.1);
    println!("{out}");
    if write {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md");
        let doc = std::fs::read_to_string(path)?;
        let section = ALLOCATOR.2;
        let (start, end) = (format!("<!-- {section}:start -->\n"), format!("<!-- {section}:end -->"));
        let (Some(a), Some(b)) = (doc.find(&start), doc.find(&end)) else {
            return Err(format!("no {section}:start/end markers in {path}").into());
        };
        std::fs::write(path, format!("{}{start}{out}{}", &doc[..a], &doc[b..]))?;
        eprintln!("wrote {path}");
    }
    for pattern in [format!("{prefix}:*"), "cached-redis-store:cq-bench-cached-*".to_owned()] {
        cached_query_examples::delete_matching(&redis_url, &pattern).await?;
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
