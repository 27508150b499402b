//! Stampede protection against real Postgres and Redis: single-flight in a process, leases
//! across processes, stale-while-revalidate, fail-safe, TTL jitter and early refresh. Bodies
//! sleep in Postgres (`pg_sleep`) to hold the window open; executions are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use cached_query_tests::{keys_under, pg, redis_cache, redis_conn, redis_url, unique_prefix};
use sqlx::PgPool;

/// Counts executions, and the most that ever ran at once.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    fail: AtomicBool,
}

impl Probe {
    fn enter(&self) -> usize {
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(now, SeqCst);
        self.calls.fetch_add(1, SeqCst)
    }

    fn leave(&self) {
        self.running.fetch_sub(1, SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
}

/// An error that cannot be copied (as `sqlx::Error`): the waiters of a failed query are not
/// given it.
#[derive(Debug, PartialEq)]
struct Failure(String);

/// `n * 10` after `sleep` seconds in Postgres; fails while `probe.fail` is set, and on the
/// first execution if `fail_first`.
#[cached_query(ttl = 60, cache = cache, skip(cache, probe, sleep, fail_first))]
async fn slow(
    cache: &QueryCache,
    pool: &PgPool,
    probe: &Probe,
    sleep: f64,
    fail_first: bool,
    n: i64,
) -> Result<i64, Failure> {
    slow_shared(pool, probe, sleep, fail_first, n).await.map_err(Failure)
}

/// `slow` uncached, with an error that can be copied (`String`).
async fn slow_shared(
    pool: &PgPool,
    probe: &Probe,
    sleep: f64,
    fail_first: bool,
    n: i64,
) -> Result<i64, String> {
    let nth = probe.enter();
    let result = sqlx::query_scalar::<_, i64>("SELECT $1 * 10 FROM pg_sleep($2)")
        .bind(n)
        .bind(sleep)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string());
    probe.leave();
    if (fail_first && nth == 0) || probe.fail.load(SeqCst) { Err(format!("failure #{nth}")) } else { result }
}

#[cached_query(ttl = 60, cache = cache, skip(cache, probe, sleep))]
async fn slow_cloneable_error(
    cache: &QueryCache,
    pool: &PgPool,
    probe: &Probe,
    sleep: f64,
    n: i64,
) -> Result<i64, String> {
    slow_shared(pool, probe, sleep, false, n).await
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `callers` concurrent calls of `slow(.., sleep, fail_first, n)`; their results, in order.
async fn concurrently(
    callers: usize,
    (pool, cache, probe): (&PgPool, &QueryCache, &Arc<Probe>),
    (sleep, fail_first, n): (f64, bool, i64),
) -> Vec<Result<i64, Failure>> {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tokio::spawn(async move { slow(&cache, &pool, &probe, sleep, fail_first, n).await })
        })
        .collect();
    let mut results = Vec::with_capacity(callers);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_on_a_cold_key_run_the_query_once() {
    let (pool, cache, probe) = (pg().await, redis_cache("thousand").await, Arc::new(Probe::default()));
    let results = concurrently(1000, (&pool, &cache, &probe), (0.05, false, 7)).await;
    assert!(results.iter().all(|r| *r == Ok(70)));
    assert_eq!(probe.calls(), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits), (1, 999), "{stats:?}");
    assert!(stats.coalesced > 0, "{stats:?}");
    assert_eq!(cache.in_flight(), 0, "the single-flight map is empty again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_leader_hands_over_to_exactly_one_waiter() {
    let (pool, cache, probe) = (pg().await, redis_cache("handover").await, Arc::new(Probe::default()));
    let results = concurrently(50, (&pool, &cache, &probe), (0.05, true, 3)).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "only the failed leader sees its error");
    assert_eq!(results.iter().filter(|r| **r == Ok(30)).count(), 49);
    assert_eq!(probe.calls(), 2, "one failure, one success");
    assert_eq!(probe.max_running.load(SeqCst), 1, "never two at a time");
    assert_eq!(cache.in_flight(), 0);
}

/// A query that keeps failing is retried by one waiter; when that fails too, the others run
/// it each for itself, rather than one after another (the last of N waiting N failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_do_not_queue_behind_repeated_failures() {
    let (pool, cache, probe) = (pg().await, redis_cache("failing").await, Arc::new(Probe::default()));
    probe.fail.store(true, SeqCst);
    let results = concurrently(8, (&pool, &cache, &probe), (0.2, false, 4)).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert_eq!(probe.calls(), 8, "each caller saw its own failure");
    assert!(probe.max_running.load(SeqCst) > 1, "after two failures in turn, they ran side by side");
    assert_eq!(cache.in_flight(), 0);
}

/// A failing query whose error can be copied runs once for all its callers: they get its
/// error (before, 20 callers ran it 18 times against a database that was already failing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_of_a_failing_query_share_its_error_when_it_can_be_copied() {
    let (pool, cache, probe) = (pg().await, redis_cache("shared_error").await, Arc::new(Probe::default()));
    probe.fail.store(true, SeqCst);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tokio::spawn(async move { slow_cloneable_error(&cache, &pool, &probe, 0.5, 6).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err("failure #0".to_owned()));
    }
    assert_eq!(probe.calls(), 1, "one run for one failure");
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_strand_its_waiters() {
    let (pool, cache, probe) = (pg().await, redis_cache("cancelled").await, Arc::new(Probe::default()));
    // The leader's caller gives up after 150 ms (its future is dropped mid-query), long after
    // the waiters below have joined; its query would take 300 ms.
    let leader = {
        let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(150), slow(&cache, &pool, &probe, 0.3, false, 5)).await
        })
    };
    wait_until("the leader's query to start", || probe.calls() == 1).await;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tokio::spawn(async move { slow(&cache, &pool, &probe, 0.3, false, 5).await })
        })
        .collect();
    assert!(leader.await.unwrap().is_err(), "the leader's caller timed out");
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Ok(50));
    }
    assert_eq!(probe.calls(), 2, "one waiter took over");
    assert_eq!(cache.in_flight(), 0);
    // Nothing is left broken: the next call is a plain hit.
    assert_eq!(slow(&cache, &pool, &probe, 0.3, false, 5).await, Ok(50));
    assert_eq!(probe.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_of_keys_in_flight_does_not_grow() {
    let (pool, cache, probe) = (pg().await, redis_cache("bounded").await, Probe::default());
    for n in 0..200 {
        slow(&cache, &pool, &probe, 0.0, false, n).await.unwrap();
        slow(&cache, &pool, &probe, 0.0, false, n).await.unwrap();
    }
    assert_eq!(probe.calls(), 200);
    assert_eq!(cache.in_flight(), 0);
}

/// Instances that share a prefix, as processes would, each with its own connection.
async fn instances(
    test: &str,
    n: usize,
    configure: impl Fn(cached_query::QueryCacheBuilder) -> cached_query::QueryCacheBuilder,
) -> Vec<QueryCache> {
    let prefix = unique_prefix(test);
    let mut all = Vec::new();
    for _ in 0..n {
        let builder =
            QueryCache::builder().redis_url(redis_url()).prefix(&prefix).timeout(Duration::from_millis(500));
        all.push(configure(builder).build().await.unwrap());
    }
    all
}

/// A caller that takes the lease just after its holder stored the result and let go of it
/// (between the caller's last look and its next try) serves that result: many keys, each
/// looked up by four processes at once, with queries as short as the lease's polling interval
/// so that the holders finish while the others poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_after_its_holder_finished_runs_no_second_query() {
    let (pool, probe) = (pg().await, Arc::new(Probe::default()));
    let caches = instances("lease-handover", 4, |b| b.lock(true).lock_wait(Duration::from_secs(5))).await;
    let mut tasks = Vec::new();
    for n in 0..60 {
        for cache in &caches {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tasks.push(tokio::spawn(async move { slow(&cache, &pool, &probe, 0.01, false, n).await }));
        }
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(i as i64 / 4 * 10));
    }
    let stats: Vec<_> = caches.iter().map(QueryCache::stats).collect();
    assert_eq!(stats.iter().map(|s| s.errors).sum::<u64>(), 0, "{stats:?}");
    assert_eq!(probe.calls(), 60, "one query per key for four processes: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lets_one_process_of_many_run_the_query() {
    let (pool, probe) = (pg().await, Arc::new(Probe::default()));
    let caches = instances("lease", 4, |b| b.lock(true).lock_wait(Duration::from_secs(5))).await;
    let mut tasks = Vec::new();
    for cache in &caches {
        for _ in 0..25 {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tasks.push(tokio::spawn(async move { slow(&cache, &pool, &probe, 0.2, false, 9).await }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(90));
    }
    let stats: Vec<_> = caches.iter().map(QueryCache::stats).collect();
    assert_eq!(probe.calls(), 1, "one query for four processes: {stats:?}");
    assert_eq!(
        caches.iter().map(|c| c.stats().lock_waits).sum::<u64>(),
        3,
        "three waited for the lease holder"
    );
    let lock = format!("{}:lock", caches[0].key("stampede::slow", 0, &(9i64,)).unwrap());
    let exists: bool =
        redis::cmd("EXISTS").arg(&lock).query_async(&mut redis_conn(&redis_url()).await).await.unwrap();
    assert!(!exists, "the lease was released");
}

#[tokio::test]
async fn a_dead_lease_holder_blocks_nobody_longer_than_lock_wait() {
    let (pool, probe) = (pg().await, Probe::default());
    let cache =
        instances("dead_lease", 1, |b| b.lock(true).lock_wait(Duration::from_millis(200))).await.remove(0);
    let lock = format!("{}:lock", cache.key("stampede::slow", 0, &(4i64,)).unwrap());
    let mut conn = redis_conn(&redis_url()).await;
    // A lease held by a process that died: nobody will release it for a minute.
    redis::cmd("SET").arg(&lock).arg("dead").arg("PX").arg(60_000).exec_async(&mut conn).await.unwrap();
    assert_eq!(slow(&cache, &pool, &probe, 0.0, false, 4).await, Ok(40));
    assert_eq!(probe.calls(), 1);
    let holder: String = redis::cmd("GET").arg(&lock).query_async(&mut conn).await.unwrap();
    assert_eq!(holder, "dead", "someone else's lease is never deleted");
}

/// For stale-while-revalidate: the refresh outlives the call, so it runs on copies of the
/// shared references (`&QueryCache`, `&PgPool`) and owns the rest.
#[cached_query(ttl = 1, stale = 60, jitter = 0, cache = cache, skip(cache, probe, sleep))]
async fn swr(
    cache: &QueryCache,
    pool: &PgPool,
    probe: Arc<Probe>,
    sleep: f64,
    n: i64,
) -> Result<String, String> {
    name(pool, &probe, sleep, n).await
}

#[cached_query(ttl = 1, stale = 60, jitter = 0, fail_safe = false, cache = cache, skip(cache, probe, sleep))]
async fn swr_no_fail_safe(
    cache: &QueryCache,
    pool: &PgPool,
    probe: Arc<Probe>,
    sleep: f64,
    n: i64,
) -> Result<String, String> {
    name(pool, &probe, sleep, n).await
}

/// The uncached query behind both: `"one"`, `"two"`, ... after `sleep` seconds.
async fn name(pool: &PgPool, probe: &Probe, sleep: f64, n: i64) -> Result<String, String> {
    let nth = probe.enter();
    let result = sqlx::query_scalar("SELECT (ARRAY['one', 'two', 'three'])[$1] FROM pg_sleep($2)")
        .bind(n as i32)
        .bind(sleep)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string());
    probe.leave();
    if probe.fail.load(SeqCst) { Err(format!("failure #{nth}")) } else { result }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_at_once_while_one_refresh_runs() {
    let (pool, cache, probe) = (pg().await, redis_cache("swr").await, Arc::new(Probe::default()));
    let call = || swr(&cache, &pool, probe.clone(), 0.3, 1);
    assert_eq!(call().await.as_deref(), Ok("one"));
    // Poll (one call at a time) until the entry is stale: that call gets the stale value.
    while cache.stats().stale_served == 0 {
        assert_eq!(call().await.as_deref(), Ok("one"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The refresh (0.3 s) is under way: a burst of callers gets the stale value, no query.
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (pool, cache, probe) = (pool.clone(), cache.clone(), probe.clone());
            tokio::spawn(async move { swr(&cache, &pool, probe, 0.3, 1).await })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await.unwrap().as_deref(), Ok("one"));
    }
    wait_until("the refresh", || cache.stats().refreshes == 1).await;
    assert_eq!(probe.calls(), 2, "exactly one background refresh");
    assert_eq!(cache.stats().misses, 1, "no caller waited for the database after the first");
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_serving_the_stale_value() {
    let (pool, cache, probe) = (pg().await, redis_cache("fail_safe").await, Arc::new(Probe::default()));
    assert_eq!(swr(&cache, &pool, probe.clone(), 0.0, 2).await.as_deref(), Ok("two"));
    probe.fail.store(true, SeqCst); // the database fails from now on
    let deadline = Instant::now() + Duration::from_secs(15);
    while cache.stats().refresh_errors == 0 {
        assert!(Instant::now() < deadline, "no refresh failed: {:?}", cache.stats());
        assert_eq!(swr(&cache, &pool, probe.clone(), 0.0, 2).await.as_deref(), Ok("two"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(swr(&cache, &pool, probe.clone(), 0.0, 2).await.as_deref(), Ok("two"), "fail-safe");
    }
    assert!(cache.stats().stale_served >= 6, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fail_safe_a_failed_refresh_surfaces_the_error() {
    let (pool, cache, probe) = (pg().await, redis_cache("no_fail_safe").await, Arc::new(Probe::default()));
    let call = || swr_no_fail_safe(&cache, &pool, probe.clone(), 0.0, 3);
    assert_eq!(call().await.as_deref(), Ok("three"));
    probe.fail.store(true, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while cache.stats().refresh_errors == 0 {
        assert!(Instant::now() < deadline, "no refresh failed: {:?}", cache.stats());
        assert_eq!(call().await.as_deref(), Ok("three"), "stale, while its refresh runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(call().await.is_err(), "the stale value was dropped: the caller sees the error");
}

#[cached_query(ttl = 100, cache = cache, skip(cache))]
async fn jittered(cache: &QueryCache, n: i64) -> i64 {
    n
}

#[cached_query(ttl = 100, jitter = 0, cache = cache, skip(cache))]
async fn not_jittered(cache: &QueryCache, n: i64) -> i64 {
    n
}

#[tokio::test]
async fn expiry_is_spread_by_jitter_unless_turned_off() {
    let cache = redis_cache("jitter").await;
    let mut conn = redis_conn(&redis_url()).await;
    let (mut spread, mut flat) = (Vec::new(), Vec::new());
    for n in 0..40 {
        jittered(&cache, n).await;
        not_jittered(&cache, n).await;
        for (name, all) in [("stampede::jittered", &mut spread), ("stampede::not_jittered", &mut flat)] {
            let key = cache.key(name, 0, &(n,)).unwrap();
            all.push(redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.unwrap());
        }
    }
    let (min, max) = (*spread.iter().min().unwrap(), *spread.iter().max().unwrap());
    assert!(min >= 89_000 && max <= 110_000, "±10 % of 100 s: {min}..{max}");
    assert!(max - min > 5_000, "spread out: {min}..{max}");
    assert!(flat.iter().all(|ms| (95_000..=100_000).contains(ms)), "{flat:?}");
}

/// Early refresh: a 0.3 s query behind a 1 s TTL (and `stale`, so that a refresh that starts
/// late is still no foreground miss).
#[cached_query(ttl = 1, early = true, stale = 5, jitter = 0, cache = cache, skip(cache, probe, starts))]
async fn early(
    cache: &QueryCache,
    pool: &PgPool,
    probe: Arc<Probe>,
    starts: Arc<std::sync::Mutex<Vec<Instant>>>,
    n: i64,
) -> Result<i64, String> {
    starts.lock().unwrap().push(Instant::now());
    probe.enter();
    let result = sqlx::query_scalar("SELECT $1 FROM pg_sleep(0.3)")
        .bind(n)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string());
    probe.leave();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_runs_before_the_entry_expires() {
    let (pool, cache, probe) = (pg().await, redis_cache("early").await, Arc::new(Probe::default()));
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    assert_eq!(early(&cache, &pool, probe.clone(), starts.clone(), 8).await, Ok(8));
    // The entry was written before this instant, so it is fresh until no later than a TTL on.
    let fresh_until = Instant::now() + Duration::from_secs(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.calls() < 2 {
        assert!(Instant::now() < deadline, "no early refresh: {:?}", cache.stats());
        assert_eq!(early(&cache, &pool, probe.clone(), starts.clone(), 8).await, Ok(8));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = starts.lock().unwrap()[1];
    assert!(second < fresh_until, "the refresh started before expiry");
    assert_eq!(cache.stats().misses, 1, "no caller ran the query in the foreground");
}

#[cached_query(ttl = 60, cache = cache, skip(cache, entered), lock = true)]
async fn held(cache: &QueryCache, entered: &tokio::sync::Notify, n: i64) -> i64 {
    entered.notify_one();
    std::future::pending::<()>().await;
    n
}

/// A caller dropped during its query (a request's timeout, a client gone) releases its lease:
/// the next callers of the key, here or in other processes, need not wait for it to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_releases_its_lease() {
    let prefix = unique_prefix("dropped_lease");
    let cache = QueryCache::builder()
        .redis_url(redis_url())
        .prefix(&prefix)
        .lock_lease(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let entered = tokio::sync::Notify::new();
    tokio::select! {
        _ = held(&cache, &entered, 1) => unreachable!("the query never ends"),
        _ = entered.notified() => {}
    }
    let leases = |keys: Vec<String>| keys.into_iter().filter(|k| k.ends_with(":lock")).count();
    assert_eq!(cache.stats().errors, 0, "the lease was taken: {:?}", cache.stats());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if leases(keys_under(&redis_url(), &prefix).await) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the dropped caller's lease is still held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cached_query(ttl = 60, cache = cache, skip(cache, db, calls, gates), tags = ["churn"])]
async fn gated_read(
    cache: &QueryCache,
    db: &AtomicUsize,
    calls: &AtomicUsize,
    gates: &[tokio::sync::Notify],
) -> usize {
    let value = db.load(SeqCst);
    if let Some(gate) = gates.get(calls.fetch_add(1, SeqCst)) {
        gate.notified().await;
    }
    value
}

/// Callers that joined a flight and then saw its result computed from other counters (an
/// invalidation came between) run it again once, not one after another while invalidations
/// keep coming: the next leader read the counters after they began, and its result serves
/// them all.
#[tokio::test]
async fn invalidations_during_flights_cost_one_more_query_not_one_per_caller() {
    let cache = QueryCache::in_memory(100);
    let (db, calls) = (Arc::new(AtomicUsize::new(1)), Arc::new(AtomicUsize::new(0)));
    let gates: Arc<[tokio::sync::Notify; 2]> = Arc::default();
    let call = || {
        let (cache, db, calls, gates) = (cache.clone(), db.clone(), calls.clone(), gates.clone());
        tokio::spawn(async move { gated_read(&cache, &db, &calls, &gates[..]).await })
    };
    // Every spawned caller runs until it waits (the in-memory store answers at once).
    let settle = || async {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    };
    let invalidate = || async {
        db.fetch_add(1, SeqCst);
        cache.invalidate_tags(["churn"]).await.unwrap();
        settle().await;
    };
    let first = call();
    settle().await;
    assert_eq!(calls.load(SeqCst), 1, "the first caller runs the query and waits at its gate");
    invalidate().await;
    let others: Vec<_> = (0..3).map(|_| call()).collect();
    settle().await;
    assert_eq!(calls.load(SeqCst), 1, "the others wait for the first");
    invalidate().await;
    gates[0].notify_one();
    settle().await;
    assert_eq!(calls.load(SeqCst), 2, "its result is older than their counters: one of them runs it again");
    invalidate().await;
    gates[1].notify_one();
    assert_eq!(first.await.unwrap(), 1);
    for other in others {
        assert_eq!(other.await.unwrap(), 3, "the second query's, read after they began");
    }
    assert_eq!(calls.load(SeqCst), 2, "{:?}", cache.stats());
}
