//! Fault injection: each scenario breaks a `redis-server` of its own (never the shared one)
//! under a bounded load of cached calls against the real Postgres, and checks that every call
//! returns the database's answer. Each prints a row of `docs/reliability.md`
//! (`cargo test -p cached-query-tests --test faults -- --nocapture --test-threads 1`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::proxy::{StuckProxy, Which};
use cached_query_tests::{RedisServer, free_port, pg, redis_conn, unique_prefix};
use proptest::prelude::*;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const TIMEOUT: Duration = Duration::from_millis(50);

/// The database's answer for `n`: `n * 3`, computed by Postgres.
#[cached_query(ttl = 60, cache = cache, skip(cache))]
async fn triple(cache: &QueryCache, pool: &PgPool, n: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint * 3").bind(n).fetch_one(pool).await
}

async fn cache_at(url: &str, test: &str) -> QueryCache {
    QueryCache::builder().redis_url(url).prefix(unique_prefix(test)).timeout(TIMEOUT).build().await.unwrap()
}

/// What a load saw.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    wrong: AtomicU64,
    failed: AtomicU64,
    slowest_us: AtomicU64,
}

impl Tally {
    fn row(&self, scenario: &str, load: &str, faults: &str) {
        println!(
            "| {scenario} | {load} | {faults} | {} | {} | {} | {:.1} ms |",
            self.calls.load(SeqCst),
            self.wrong.load(SeqCst),
            self.failed.load(SeqCst),
            self.slowest_us.load(SeqCst) as f64 / 1000.0
        );
    }

    fn assert_all_correct(&self) {
        assert!(self.calls.load(SeqCst) > 0);
        assert_eq!(self.wrong.load(SeqCst), 0, "wrong answers");
        assert_eq!(self.failed.load(SeqCst), 0, "failed calls");
    }
}

/// 8 tasks × `per_task` calls over 40 keys, 1 ms apart; `fault` runs alongside, told the
/// number of calls made so far.
async fn load(cache: &QueryCache, pool: &PgPool, per_task: u64, tally: &Arc<Tally>) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (cache, pool, tally) = (cache.clone(), pool.clone(), tally.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let n = ((t * 31 + i * 7) % 40) as i64;
                    let started = Instant::now();
                    let answer = triple(&cache, &pool, n).await;
                    tally.slowest_us.fetch_max(started.elapsed().as_micros() as u64, SeqCst);
                    tally.calls.fetch_add(1, SeqCst);
                    match answer {
                        Ok(v) if v == n * 3 => {}
                        Ok(_) => drop(tally.wrong.fetch_add(1, SeqCst)),
                        Err(_) => drop(tally.failed.fetch_add(1, SeqCst)),
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn when_calls_reach(tally: &Tally, calls: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.calls.load(SeqCst) < calls {
        assert!(Instant::now() < deadline, "the load stalled at {} calls", tally.calls.load(SeqCst));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Hits served from Redis (not those shared by a concurrent caller's query).
fn redis_hits(cache: &QueryCache) -> u64 {
    let stats = cache.stats();
    stats.hits - stats.coalesced
}

/// Calls until the cache serves a hit from Redis again (bounded).
async fn until_hits_grow(cache: &QueryCache, pool: &PgPool, from: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_hits(cache) <= from {
        assert!(Instant::now() < deadline, "no hits after Redis came back: {:?}", cache.stats());
        assert_eq!(triple(cache, pool, 1).await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_then_restarted() {
    let (pool, mut redis, tally) = (pg().await, RedisServer::start(), Arc::new(Tally::default()));
    let cache = cache_at(&redis.url(), "killed").await;
    let fault = async {
        when_calls_reach(&tally, 600).await;
        redis.stop();
        when_calls_reach(&tally, 1400).await;
        redis.restart();
        redis_hits(&cache)
    };
    let (hits_at_restart, ()) = tokio::join!(fault, load(&cache, &pool, 300, &tally));
    tally.assert_all_correct();
    until_hits_grow(&cache, &pool, hits_at_restart).await;
    tally.row("Redis killed, restarted on the same port", "8 × 300", "kill, restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_then_thawed() {
    let (pool, redis, tally) = (pg().await, RedisServer::start(), Arc::new(Tally::default()));
    let cache = cache_at(&redis.url(), "frozen").await;
    let frozen = Arc::new(Tally::default());
    let fault = async {
        when_calls_reach(&tally, 400).await;
        redis.pause();
        // A load of its own while frozen: every call within 10 × the timeout.
        load(&cache, &pool, 50, &frozen).await;
        redis.resume();
    };
    tokio::join!(fault, load(&cache, &pool, 200, &tally));
    tally.assert_all_correct();
    frozen.assert_all_correct();
    let slowest = Duration::from_micros(frozen.slowest_us.load(SeqCst));
    assert!(slowest < TIMEOUT * 10, "a call took {slowest:?} while Redis was frozen");
    until_hits_grow(&cache, &pool, redis_hits(&cache)).await;
    frozen.row("Redis frozen (SIGSTOP), then thawed", "8 × 50 while frozen", "SIGSTOP, SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_spares_calls_the_timeout_during_an_outage() {
    let (pool, redis, tally) = (pg().await, RedisServer::start(), Arc::new(Tally::default()));
    let cache = cache_at(&redis.url(), "breaker").await;
    triple(&cache, &pool, 1).await.unwrap();
    redis.pause();
    // The first few calls pay the timeout and open the breaker; the rest skip Redis.
    let mut latencies = Vec::new();
    for n in 0..40 {
        let started = Instant::now();
        assert_eq!(triple(&cache, &pool, n).await.unwrap(), n * 3);
        latencies.push(started.elapsed());
    }
    redis.resume();
    let paid_timeout = latencies.iter().filter(|l| **l >= TIMEOUT).count();
    assert!(paid_timeout <= 4, "{paid_timeout} of 40 calls waited for the timeout: {latencies:?}");
    until_hits_grow(&cache, &pool, redis_hits(&cache)).await;
    tally.calls.store(40, SeqCst);
    tally.slowest_us.store(latencies.iter().max().unwrap().as_micros() as u64, SeqCst);
    tally.row("Circuit breaker while Redis is frozen", "40 sequential", "SIGSTOP, SIGCONT");
}

/// The breaker closes once Redis answers again, though invalidations keep coming (each fails
/// at once while it is open, and is queued): the probe delivers what was queued and closes
/// it, and the lookups deliver the rest before they serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_closes_while_invalidations_keep_coming() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let cache = cache_at(&redis.url(), "breaker_stream").await;
    until_hits_grow(&cache, &pool, 0).await;
    redis.pause();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.stats().errors < 3 {
        assert!(Instant::now() < deadline, "the breaker never opened: {:?}", cache.stats());
        assert_eq!(triple(&cache, &pool, 1).await.unwrap(), 3);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let invalidators: Vec<_> = (0..4)
        .map(|task| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    n += 1;
                    let _ = cache.invalidate_tags([format!("stream:{task}:{n}")]).await;
                    tokio::task::yield_now().await;
                }
                n
            })
        })
        .collect();
    redis.resume();
    until_hits_grow(&cache, &pool, redis_hits(&cache)).await;
    stop.store(true, SeqCst);
    for invalidator in invalidators {
        assert!(invalidator.await.unwrap() > 0);
    }
}

/// A cache through `proxy`, with a hit served and its tracked connection in use.
async fn cache_through(proxy: &StuckProxy, pool: &PgPool, test: &str) -> QueryCache {
    let cache = cache_at(&proxy.url(), test).await;
    until_hits_grow(&cache, pool, 0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.carried(Which::Tracking) == 0 {
        assert!(Instant::now() < deadline, "no tracked connection");
        assert_eq!(triple(&cache, pool, 1).await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stop_answering_are_replaced() {
    let (pool, redis, tally) = (pg().await, RedisServer::start(), Arc::new(Tally::default()));
    let proxy = StuckProxy::start(redis.port).await;
    let cache = cache_through(&proxy, &pool, "stuck").await;
    // Redis is fine, but nothing comes back on the connections the cache has: no error, no
    // reset, as behind a stuck proxy or from a server gone without one.
    assert!(proxy.stick(Which::All) >= 2, "the cache's connection and its tracked one");
    let hits = redis_hits(&cache);
    load(&cache, &pool, 50, &tally).await;
    tally.assert_all_correct();
    // The breaker's trip replaced them: hits again, through new connections.
    until_hits_grow(&cache, &pool, hits).await;
    tally.row("Connections stop answering (a stuck proxy), Redis fine", "8 × 50", "proxy holds all traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_connection_that_stops_answering_is_given_up() {
    let (pool, redis, tally) = (pg().await, RedisServer::start(), Tally::default());
    let proxy = StuckProxy::start(redis.port).await;
    let cache = cache_through(&proxy, &pool, "stuck-tracked").await;
    assert!(proxy.stick(Which::Tracking) >= 1);
    // The other connection answers, and an invalidation after each call succeeds on it, so
    // that failures never come three in a row and the breaker never trips: the tracked
    // connection is given up after a few requests in a row go unanswered on it.
    let (hits, mut latencies) = (redis_hits(&cache), Vec::new());
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(triple(&cache, &pool, 1).await.unwrap(), 3);
        latencies.push(started.elapsed());
        cache.invalidate_tags(["elsewhere"]).await.unwrap();
    }
    let paid_timeout = latencies.iter().filter(|l| **l >= TIMEOUT).count();
    assert!(paid_timeout <= 3, "{paid_timeout} of 20 calls waited for the timeout: {latencies:?}");
    assert!(redis_hits(&cache) > hits, "no hits after the tracked connection stuck: {:?}", cache.stats());
    tally.calls.store(20, SeqCst);
    tally.slowest_us.store(latencies.iter().max().unwrap().as_micros() as u64, SeqCst);
    tally.row(
        "The tracked connection stops answering, the other one fine",
        "20 sequential",
        "proxy holds it",
    );
}

/// A link whose round trip fits a request's timeout but not the several round trips a
/// connection takes (TCP, `HELLO`, `CLIENT TRACKING`): connecting has a timeout of its own
/// (by default the request's, at least 1 s), so the cache connects, tracks and hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_connects() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let proxy = StuckProxy::with_latency(redis.port, Duration::from_millis(30)).await;
    let timeout = Duration::from_millis(100); // a round trip is 60 ms
    let cache = QueryCache::builder()
        .redis_url(proxy.url())
        .prefix(unique_prefix("slow_link"))
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let (deadline, mut slowest, mut calls) = (Instant::now() + Duration::from_secs(20), Duration::ZERO, 0);
    while redis_hits(&cache) == 0 || proxy.carried(Which::Tracking) == 0 {
        assert!(Instant::now() < deadline, "never connected and tracked: {:?}", cache.stats());
        let started = Instant::now();
        assert_eq!(triple(&cache, &pool, 1).await.unwrap(), 3);
        (slowest, calls) = (slowest.max(started.elapsed()), calls + 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A warm hit on the tracked connection: one round trip, within the timeout.
    let hits = redis_hits(&cache);
    assert_eq!(triple(&cache, &pool, 1).await.unwrap(), 3);
    assert_eq!(redis_hits(&cache), hits + 1, "{:?}", cache.stats());
    // No call waited for a connection attempt (1 s): each gave up at its own timeout.
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    let tally = Tally::default();
    tally.calls.store(calls + 1, SeqCst);
    tally.slowest_us.store(slowest.as_micros() as u64, SeqCst);
    tally.row(
        "A slow link: connecting takes more than the timeout",
        "sequential, until tracked",
        "30 ms each way",
    );
}

/// An invalidation whose caller is dropped half-way (a request's timeout, a client gone) is
/// still applied, or queued when Redis does not answer: it usually follows a committed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_outlives_its_dropped_caller() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let proxy = StuckProxy::start(redis.port).await;
    let cache = cache_through(&proxy, &pool, "dropped_invalidation").await;
    assert!(proxy.stick(Which::All) >= 1);
    let call = tokio::time::timeout(Duration::from_millis(1), cache.invalidate_tags(["user:1"]));
    assert!(call.await.is_err(), "nothing answers: the caller gives up first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().invalidations_queued == 0 {
        assert!(Instant::now() < deadline, "lost with its caller: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_up() {
    let (pool, mut redis, tally) = (pg().await, RedisServer::unstarted(), Arc::new(Tally::default()));
    let cache = cache_at(&redis.url(), "absent").await;
    load(&cache, &pool, 100, &tally).await;
    assert_eq!((redis_hits(&cache), cache.stats().writes), (0, 0), "no Redis: nothing stored or read");
    redis.restart();
    load(&cache, &pool, 100, &tally).await;
    tally.assert_all_correct();
    until_hits_grow(&cache, &pool, 0).await;
    tally.row("Redis not there at start-up, started later", "8 × 200", "closed port, then start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory() {
    let (pool, redis, tally) = (pg().await, RedisServer::start(), Arc::new(Tally::default()));
    let cache = cache_at(&redis.url(), "oom").await;
    let mut conn = redis_conn(&redis.url()).await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .exec_async(&mut conn)
        .await
        .unwrap();
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").exec_async(&mut conn).await.unwrap();
    load(&cache, &pool, 50, &tally).await;
    tally.assert_all_correct();
    let stats = cache.stats();
    assert!(stats.errors >= 40 && stats.writes == 0, "every SET failed with OOM: {stats:?}");
    tally.row("Redis answers errors (OOM on every write)", "8 × 50", "maxmemory 1, noeviction");
}

/// Invalidations queued while Redis refused writes (OOM: it answers, so the breaker stays
/// closed) are delivered once, not once by every lookup that finds them queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_invalidations_are_delivered_once_not_by_every_lookup() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let cache = cache_at(&redis.url(), "one_delivery").await;
    let mut conn = redis_conn(&redis.url()).await;
    let config = |name: &str, value: &str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
    config("maxmemory-policy", "noeviction").exec_async(&mut conn).await.unwrap();
    config("maxmemory", "1").exec_async(&mut conn).await.unwrap();
    for n in 0..500 {
        assert!(cache.invalidate_tags([format!("tag{n}")]).await.is_err(), "OOM");
    }
    assert_eq!(cache.stats().invalidations_queued, 500);
    config("maxmemory", "0").exec_async(&mut conn).await.unwrap();
    redis::cmd("CONFIG").arg("RESETSTAT").exec_async(&mut conn).await.unwrap();
    let lookups: Vec<_> = (0..50)
        .map(|n| {
            let (cache, pool) = (cache.clone(), pool.clone());
            tokio::spawn(async move { triple(&cache, &pool, n).await.unwrap() == n * 3 })
        })
        .collect();
    for lookup in lookups {
        assert!(lookup.await.unwrap());
    }
    until_hits_grow(&cache, &pool, 0).await; // served again: the queue was delivered
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    let increments: u64 = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_incrby:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap());
    assert!(
        (500..=1000).contains(&increments),
        "{increments} increments for 500 queued counters: {:?}",
        cache.stats()
    );
}

mod other {
    //! Another version of the function, and another function, writing under the same names.
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Wide {
        pub a: i64,
        pub b: String,
    }

    #[cached_query(ttl = 60, cache = cache, skip(cache), name = "faults::triple")]
    pub async fn wide(cache: &QueryCache, n: i64) -> Result<Wide, String> {
        Ok(Wide { a: n, b: "x".into() })
    }

    #[cached_query(ttl = 60, cache = cache, skip(cache), name = "faults::triple")]
    pub async fn text(cache: &QueryCache, n: i64) -> String {
        n.to_string()
    }
}

#[tokio::test]
async fn foreign_and_corrupt_bytes_under_keys() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let cache = cache_at(&redis.url(), "corrupt").await;
    let mut conn = redis_conn(&redis.url()).await;
    let key = cache.key("faults::triple", 0, &(5i64,)).unwrap();
    triple(&cache, &pool, 5).await.unwrap();
    let good: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let mut random = vec![0u8; 64];
    random.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8).wrapping_mul(151).wrapping_add(7));
    let mut cases: Vec<(&str, Vec<u8>)> =
        vec![("random bytes", random), ("truncated", good[..good.len() - 3].to_vec())];
    for (what, write) in [("another struct's entry", 0), ("another type's entry", 1)] {
        redis::cmd("DEL").arg(&key).exec_async(&mut conn).await.unwrap();
        if write == 0 {
            other::wide(&cache, 5).await.unwrap();
        } else {
            other::text(&cache, 5).await;
        }
        cases.push((what, redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap()));
    }
    let tally = Tally::default();
    for (what, bytes) in &cases {
        redis::cmd("SET").arg(&key).arg(bytes).exec_async(&mut conn).await.unwrap();
        let before = cache.stats();
        let answer = triple(&cache, &pool, 5).await;
        tally.calls.fetch_add(1, SeqCst);
        assert_eq!(answer.unwrap(), 15, "{what}");
        assert_eq!(cache.stats().misses, before.misses + 1, "{what}: a miss");
        triple(&cache, &pool, 5).await.unwrap();
        assert_eq!(cache.stats().hits, before.hits + 1, "{what}: overwritten with a good entry");
    }
    tally.row(
        "Foreign or corrupt bytes under a key",
        "4 cases",
        "random, truncated, other struct, other type",
    );
}

#[cached_query(ttl = 60, cache = cache, skip(cache))]
async fn blob(cache: &QueryCache, pool: &PgPool, len: i32) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT repeat('x', $1)").bind(len).fetch_one(pool).await
}

#[tokio::test]
async fn values_over_max_value_bytes_are_returned_not_stored() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let cache = QueryCache::builder()
        .redis_url(redis.url())
        .prefix(unique_prefix("oversized"))
        .max_value_bytes(1024)
        .build()
        .await
        .unwrap();
    assert_eq!(blob(&cache, &pool, 10_000).await.unwrap().len(), 10_000);
    assert_eq!(blob(&cache, &pool, 10_000).await.unwrap().len(), 10_000);
    assert_eq!(blob(&cache, &pool, 100).await.unwrap().len(), 100);
    assert_eq!(blob(&cache, &pool, 100).await.unwrap().len(), 100);
    let stats = cache.stats();
    assert_eq!((stats.oversized, stats.writes, stats.hits), (2, 1, 1), "{stats:?}");
    Tally { calls: 4.into(), ..Tally::default() }.row(
        "A value over max_value_bytes",
        "4 calls",
        "10 kB value, 1 KiB limit",
    );
}

#[tokio::test]
async fn database_failures_reach_the_caller_and_nothing_is_cached() {
    let redis = RedisServer::start();
    let cache = cache_at(&redis.url(), "db_down").await;
    let closed = format!("postgres://postgres@127.0.0.1:{}/test", free_port());
    let pool =
        PgPoolOptions::new().acquire_timeout(Duration::from_millis(300)).connect_lazy(&closed).unwrap();
    for _ in 0..3 {
        let err = triple(&cache, &pool, 2).await.unwrap_err();
        assert!(matches!(err, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut), "{err:?}");
    }
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.writes), (3, 0));
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("*").query_async(&mut redis_conn(&redis.url()).await).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    Tally { calls: 3.into(), ..Tally::default() }.row(
        "The database fails",
        "3 calls",
        "pool on a closed port",
    );
}

#[tokio::test]
async fn an_invalidation_during_an_outage_is_delivered_before_any_hit() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let table = "t_faults_outage";
    cached_query_tests::users_table(&pool, table).await;
    let cache = cache_at(&redis.url(), "queued").await;
    assert_eq!(name(&cache, &pool, table, 1).await.unwrap(), "alice");
    redis.pause(); // the entry survives the outage
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'alicia' WHERE id = 1")))
        .execute(&pool)
        .await
        .unwrap();
    assert!(cache.invalidate_tags(["user:1"]).await.is_err(), "the caller is told");
    assert_eq!(cache.stats().invalidations_queued, 1);
    // More calls during the outage open the breaker: the queue is then delivered by its probe.
    for _ in 0..5 {
        assert_eq!(name(&cache, &pool, table, 1).await.unwrap(), "alicia");
    }
    redis.resume();
    assert_eq!(name(&cache, &pool, table, 1).await.unwrap(), "alicia", "not the old value");
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.stats().hits == 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.stats());
        assert_eq!(name(&cache, &pool, table, 1).await.unwrap(), "alicia");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Tally { calls: 2.into(), ..Tally::default() }.row(
        "Invalidation during an outage",
        "2 calls",
        "SIGSTOP, invalidate, SIGCONT",
    );
}

#[cached_query(ttl = 60, cache = cache, skip(cache, table), tags = ["user:{id}"])]
async fn name(cache: &QueryCache, pool: &PgPool, table: &str, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(pool)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_leaves_nothing_behind() {
    let (pool, redis) = (pg().await, RedisServer::start());
    let cache = cache_at(&redis.url(), "dropped").await;
    let calls = AtomicUsize::new(0);
    for _ in 0..20 {
        let slow = async {
            calls.fetch_add(1, SeqCst);
            triple(&cache, &pool, 99).await
        };
        let _ = tokio::time::timeout(Duration::from_micros(200), slow).await;
    }
    assert_eq!(cache.in_flight(), 0, "no stuck single-flight entry");
    assert_eq!(triple(&cache, &pool, 99).await.unwrap(), 297);
    assert_eq!(triple(&cache, &pool, 99).await.unwrap(), 297);
    assert!(cache.stats().hits >= 1);
    Tally { calls: 22.into(), ..Tally::default() }.row(
        "Callers dropped mid-flight",
        "20 + 2 calls",
        "timeout(200 µs)",
    );
}

#[derive(serde::Serialize)]
struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<i64>,
}

#[cached_query(ttl = 60, cache = cache, skip(cache))]
async fn describe(cache: &QueryCache, filter: Filter) -> String {
    format!("{:?} {:?}", filter.min, filter.max)
}

/// Arguments whose `Serialize` leaves out what tells them apart (here, which field is
/// skipped) still get keys of their own.
#[tokio::test]
async fn arguments_that_serialize_differently_never_share_an_entry() {
    let cache = QueryCache::in_memory(10);
    assert_eq!(describe(&cache, Filter { min: Some(5), max: None }).await, "Some(5) None");
    assert_eq!(describe(&cache, Filter { min: None, max: Some(5) }).await, "None Some(5)");
    assert_eq!(describe(&cache, Filter { min: Some(5), max: None }).await, "Some(5) None");
    assert_eq!(cache.stats().hits, 1);
}

trait Table {
    const NAME: &'static str;
}

struct Users;
struct Orders;

impl Table for Users {
    const NAME: &'static str = "users";
}

impl Table for Orders {
    const NAME: &'static str = "orders";
}

struct Repo<T> {
    cache: QueryCache,
    table: std::marker::PhantomData<T>,
}

impl<T: Table + Send + Sync> Repo<T> {
    #[cached_query(ttl = 60, cache = &self.cache)]
    async fn table(&self) -> String {
        T::NAME.to_owned()
    }
}

/// The instantiations of a generic `impl` share a method's name, and here nothing else: the
/// method's type is part of its key.
#[tokio::test]
async fn each_instantiation_of_a_generic_impl_has_its_own_entries() {
    let cache = QueryCache::in_memory(10);
    let users = Repo::<Users> { cache: cache.clone(), table: std::marker::PhantomData };
    let orders = Repo::<Orders> { cache: cache.clone(), table: std::marker::PhantomData };
    assert_eq!(users.table().await, "users");
    assert_eq!(orders.table().await, "orders");
    assert_eq!(users.table().await, "users");
    assert_eq!(cache.stats().hits, 1);
    users.table_invalidate().await.unwrap();
    assert_eq!(orders.table().await, "orders", "its entry is still there");
    assert_eq!(cache.stats().hits, 2);
}

proptest! {
    /// Different argument tuples never share a key, and keys never contain argument values.
    #[test]
    fn keys_are_injective_and_opaque(
        a in (".*", any::<i64>(), proptest::option::of("[:*\n ]{0,3}[a-z\u{e9}\u{1F600}]{0,4}")),
        b in (".*", any::<i64>(), proptest::option::of("[:*\n ]{0,3}[a-z\u{e9}\u{1F600}]{0,4}")),
    ) {
        let cache = QueryCache::in_memory(1);
        let (ka, kb) = (cache.key("f", 0, &a).unwrap(), cache.key("f", 0, &b).unwrap());
        prop_assert_eq!(ka == kb, a == b);
        for key in [&ka, &kb] {
            let hash = key.strip_prefix("cq:f:v0:").unwrap();
            prop_assert!(hash.len() == 32 && hash.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }
}
