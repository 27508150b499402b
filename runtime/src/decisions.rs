//! The decision logic of a call (who leads, who waits, who retries, what is served, when the
//! breaker opens), tested against a store whose replies each test scripts (`store::scripted`):
//! slow, failing, never answering, or changed by "another process" between two operations.
//! On tokio's paused clock, so that every delay is exact and a test takes milliseconds; the
//! wall clock that entries expire by is moved with `clock::ahead`. The same behaviours are
//! tested against real Redis servers in `tests/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use crate::clock::ahead;
use crate::health::{PROBE_EVERY, TRIP_AFTER};
use crate::keyspace;
use crate::settings::Settings;
use crate::store::scripted::{Op, Reply, ScriptedStore};
use crate::store::{Marks, Store};
use crate::{QueryCache, cached_query};

/// The "database": a value, whether it fails, how long a query takes, and what ran.
#[derive(Default)]
struct Db {
    value: AtomicI64,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    runs: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Db {
    fn new(value: i64, delay_ms: u64) -> Arc<Db> {
        let db = Db::default();
        db.value.store(value, SeqCst);
        db.delay_ms.store(delay_ms, SeqCst);
        Arc::new(db)
    }

    async fn query(&self, id: i64) -> Result<i64, String> {
        self.runs.fetch_add(1, SeqCst);
        let running = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(running, SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(SeqCst))).await;
        self.running.fetch_sub(1, SeqCst);
        match self.failing.load(SeqCst) {
            true => Err("the database failed".to_owned()),
            false => Ok(self.value.load(SeqCst) * 1000 + id),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(SeqCst)
    }
}

#[cached_query(name = "read", ttl = 60, cache = cache, skip(cache, db))]
async fn read(cache: &QueryCache, db: &Db, id: i64) -> Result<i64, String> {
    db.query(id).await
}

/// An error that cannot be copied: waiters cannot be given it.
#[derive(Debug, PartialEq)]
struct Opaque(String);

#[cached_query(name = "read_opaque", ttl = 60, cache = cache, skip(cache, db))]
async fn read_opaque(cache: &QueryCache, db: &Db, id: i64) -> Result<i64, Opaque> {
    db.query(id).await.map_err(Opaque)
}

#[cached_query(name = "swr", ttl = 1, stale = 60, cache = cache, skip(cache, db))]
async fn swr(cache: &QueryCache, db: Arc<Db>, id: i64) -> Result<i64, String> {
    db.query(id).await
}

#[cached_query(name = "swr_no_fail_safe", ttl = 1, stale = 60, fail_safe = false, cache = cache, skip(cache, db))]
async fn swr_no_fail_safe(cache: &QueryCache, db: Arc<Db>, id: i64) -> Result<i64, String> {
    db.query(id).await
}

#[cached_query(name = "verified", ttl = 60, verify = 1.0, cache = cache, skip(cache, db))]
async fn verified(cache: &QueryCache, db: Arc<Db>, id: i64) -> Result<i64, String> {
    db.query(id).await
}

/// A cache on a scripted store that answers everything, with a 50 ms timeout.
fn scripted_cache() -> QueryCache {
    let settings = Settings { timeout: Duration::from_millis(50), ..Settings::default() };
    QueryCache::new(Store::Scripted(ScriptedStore::new()), settings)
}

fn store(cache: &QueryCache) -> &ScriptedStore {
    match &*cache.engine().store {
        Store::Scripted(store) => store,
        _ => unreachable!("a scripted cache"),
    }
}

/// How many operations of the log match `op`.
fn count(cache: &QueryCache, op: impl Fn(&Op) -> bool) -> usize {
    store(cache).log().iter().filter(|o| op(o)).count()
}

/// Waits (on the paused clock) until `done`.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened");
}

#[tokio::test(start_paused = true)]
async fn one_leader_runs_the_query_and_the_waiters_take_its_result() {
    let (cache, db) = (scripted_cache(), Db::new(7, 100));
    let calls = (0..8).map(|_| read(&cache, &db, 1));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r == &Ok(7001)), "{results:?}");
    assert_eq!(db.runs(), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.hits), (1, 7, 7), "{stats:?}");
    assert_eq!(count(&cache, |op| matches!(op, Op::Set(_))), 1, "one store");
    // Each caller read once; the leader not again: no flight of its key ended since its read.
    assert_eq!(count(&cache, |op| matches!(op, Op::Fetch(_))), 8);
}

#[tokio::test(start_paused = true)]
async fn a_failed_querys_error_goes_to_its_waiters_when_it_can_be_copied() {
    let (cache, db) = (scripted_cache(), Db::new(7, 100));
    db.failing.store(true, SeqCst);
    let results = futures_util::future::join_all((0..8).map(|_| read(&cache, &db, 1))).await;
    assert!(results.iter().all(|r| r == &Err("the database failed".to_owned())), "{results:?}");
    assert_eq!(db.runs(), 1, "one run for one failure");
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.hits), (8, 7, 0), "{stats:?}");
    // The next caller runs the query again: errors are not cached.
    db.failing.store(false, SeqCst);
    assert_eq!(read(&cache, &db, 1).await, Ok(7001));
    assert_eq!(db.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_query_one_waiter_retries_then_each_runs_its_own() {
    let (cache, db) = (scripted_cache(), Db::new(7, 100));
    db.failing.store(true, SeqCst);
    let results = futures_util::future::join_all((0..4).map(|_| read_opaque(&cache, &db, 1))).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
    // The leader's failure, one waiter's retry, then the two left side by side.
    assert_eq!(db.runs(), 4);
    assert_eq!(db.max_running.load(SeqCst), 2);
    assert_eq!(count(&cache, |op| matches!(op, Op::Set(_))), 0, "errors are not stored");
}

#[tokio::test(start_paused = true)]
async fn a_leader_dropped_mid_query_hands_over_to_a_waiter() {
    let (cache, db) = (scripted_cache(), Db::new(7, 1000));
    let leader = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { read(&cache, &db, 1).await }
    });
    until(|| db.runs() == 1).await;
    let waiter = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { read(&cache, &db, 1).await }
    });
    until(|| cache.in_flight() == 1 && count(&cache, |op| matches!(op, Op::Fetch(_))) == 2).await;
    leader.abort();
    assert_eq!(waiter.await.unwrap(), Ok(7001));
    assert_eq!(db.runs(), 2, "the waiter ran the query itself");
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_is_answered_from_the_database_within_the_timeout() {
    let (cache, db) = (scripted_cache(), Db::new(7, 0));
    store(&cache).script(|op| match op {
        Op::Fetch(_) => Reply::Late(Duration::from_secs(5)),
        _ => Reply::Answer,
    });
    let started = tokio::time::Instant::now();
    assert_eq!(read(&cache, &db, 1).await, Ok(7001));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(cache.stats().errors >= 1, "{:?}", cache.stats());
    // Counters unknown: the result is not stored (it could not be checked later).
    assert_eq!(count(&cache, |op| matches!(op, Op::Set(_))), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stale_entry_is_served_while_one_refresh_runs() {
    let (cache, db) = (scripted_cache(), Db::new(1, 100));
    assert_eq!(swr(&cache, db.clone(), 1).await, Ok(1001));
    db.value.store(2, SeqCst);
    ahead::advance(1500); // past the TTL (1 s ± 10 %), within `stale`
    let stale = futures_util::future::join_all((0..3).map(|_| swr(&cache, db.clone(), 1))).await;
    assert!(stale.iter().all(|r| r == &Ok(1001)), "stale, at once: {stale:?}");
    assert_eq!(cache.stats().stale_served, 3);
    until(|| cache.stats().refreshes == 1).await;
    assert_eq!(swr(&cache, db.clone(), 1).await, Ok(2001));
    assert_eq!(db.runs(), 2, "one query, one refresh");
}

#[tokio::test(start_paused = true)]
async fn fail_safe_keeps_serving_the_stale_value_when_its_refresh_fails() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(swr(&cache, db.clone(), 1).await, Ok(1001));
    db.failing.store(true, SeqCst);
    ahead::advance(1500);
    assert_eq!(swr(&cache, db.clone(), 1).await, Ok(1001));
    until(|| cache.stats().refresh_errors == 1).await;
    assert_eq!(swr(&cache, db.clone(), 1).await, Ok(1001), "still the stale value");
    assert_eq!(count(&cache, |op| matches!(op, Op::Delete(_))), 0);
}

#[tokio::test(start_paused = true)]
async fn without_fail_safe_a_failed_refresh_drops_the_stale_value() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(swr_no_fail_safe(&cache, db.clone(), 1).await, Ok(1001));
    db.failing.store(true, SeqCst);
    ahead::advance(1500);
    assert_eq!(swr_no_fail_safe(&cache, db.clone(), 1).await, Ok(1001));
    until(|| cache.stats().refresh_errors == 1).await;
    assert_eq!(count(&cache, |op| matches!(op, Op::Delete(_))), 1);
    assert!(swr_no_fail_safe(&cache, db.clone(), 1).await.is_err(), "the caller sees the error");
}

/// The stale-set race: an invalidation lands between a query's read of the counters and its
/// store. The stored entry carries the counters read before, so it is never served.
#[tokio::test(start_paused = true)]
async fn a_value_computed_before_an_invalidation_is_not_served_after_it() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    let mut raced = false;
    store(&cache).script(move |op| match op {
        Op::Set(key) if !std::mem::replace(&mut raced, true) => {
            let counter = keyspace::key_counter(key);
            Reply::After(Box::new(move |memory| memory.increment(&[counter], Marks::NONE)))
        }
        _ => Reply::Answer,
    });
    assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    db.value.store(2, SeqCst);
    assert_eq!(read(&cache, &db, 1).await, Ok(2001), "the raced entry is not served");
    assert_eq!(read(&cache, &db, 1).await, Ok(2001));
    assert_eq!(db.runs(), 2, "the second entry is");
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_failures_and_its_probe_closes_it() {
    let (cache, db) = (scripted_cache(), Db::new(1, 0));
    let failing = Arc::new(AtomicBool::new(true));
    store(&cache).script({
        let failing = failing.clone();
        move |_| if failing.load(SeqCst) { Reply::Fail } else { Reply::Answer }
    });
    let engine = cache.engine();
    for _ in 0..TRIP_AFTER {
        assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    }
    assert!(engine.health.is_open(0), "open after {TRIP_AFTER} failed calls");
    let asked = store(&cache).log().len();
    assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    assert_eq!(store(&cache).log().len(), asked, "open: the store is not asked");

    failing.store(false, SeqCst);
    tokio::time::sleep(PROBE_EVERY * 2).await;
    assert!(!engine.health.is_open(0), "the probe closed it");
    assert!(store(&cache).log()[asked..].contains(&Op::Ping));
    assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    let runs = db.runs();
    assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    assert_eq!(db.runs(), runs, "a hit again");
}

#[tokio::test(start_paused = true)]
async fn queued_invalidations_are_delivered_before_a_hit() {
    let (cache, db) = (scripted_cache(), Db::new(1, 0));
    assert_eq!(read(&cache, &db, 1).await, Ok(1001));
    store(&cache).script(|op| match op {
        Op::Increment(_) => Reply::Fail,
        _ => Reply::Answer,
    });
    assert!(read_invalidate(&cache, 1).await.is_err(), "not delivered: the error is returned");
    assert_eq!(cache.stats().invalidations_queued, 1);
    db.value.store(2, SeqCst);
    store(&cache).script(|_| Reply::Answer);
    let before = store(&cache).log().len();
    assert_eq!(read(&cache, &db, 1).await, Ok(2001), "the old entry is not served");
    let log = store(&cache).log();
    let increment = log[before..].iter().position(|op| matches!(op, Op::Increment(_)));
    let fetch = log[before..].iter().position(|op| matches!(op, Op::Fetch(_)));
    assert!(increment.unwrap() < fetch.unwrap(), "delivered first: {:?}", &log[before..]);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_is_never_answered_still_returns_the_value() {
    let (cache, db) = (scripted_cache(), Db::new(7, 0));
    store(&cache).script(|op| match op {
        Op::Set(_) => Reply::Hang,
        _ => Reply::Answer,
    });
    let started = tokio::time::Instant::now();
    assert_eq!(read(&cache, &db, 1).await, Ok(7001));
    assert_eq!(started.elapsed(), Duration::from_millis(50), "the timeout, exactly");
    assert_eq!((cache.stats().errors, cache.stats().writes), (1, 0), "{:?}", cache.stats());
}

/// A change the cache was not told about is found by the next verified hit, and goes.
#[tokio::test(start_paused = true)]
async fn verify_finds_a_missing_invalidation() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(1001));
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(1001), "a hit, verified: the same value");
    until(|| db.runs() == 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.stats().stale_detected, 0);

    db.value.store(2, SeqCst); // and no invalidation
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(1001), "served at once, stale");
    until(|| cache.stats().stale_detected == 1).await;
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(2001), "the stale entry was invalidated");
}

/// A difference that an invalidation explains (a write's, arriving within the grace period)
/// is not reported.
#[tokio::test(start_paused = true)]
async fn verify_does_not_report_a_change_whose_invalidation_arrives() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(1001));
    db.value.store(2, SeqCst);
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(1001));
    until(|| db.runs() == 2).await; // the verifying query read the new value
    verified_invalidate(&cache, 1).await.unwrap(); // the write's invalidation, a moment late
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.stats().stale_detected, 0);
    assert_eq!(verified(&cache, db.clone(), 1).await, Ok(2001));
}

/// Whether a row exists, as the query's start saw it: `Err` when it did not.
#[cached_query(name = "found", ttl = 60, cache = cache, skip(cache, db))]
async fn found(cache: &QueryCache, db: Arc<Db>, id: i64) -> Result<i64, String> {
    let seen = db.value.load(SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    match seen {
        0 => Err("not found".to_owned()),
        value => Ok(value * 1000 + id),
    }
}

/// A shared error is taken on the terms of a value: a caller that began after an invalidation
/// returned does not get the error of a query that began before it.
#[tokio::test(start_paused = true)]
async fn a_shared_error_is_not_given_to_a_caller_that_began_after_an_invalidation() {
    let (cache, db) = (scripted_cache(), Db::new(0, 0));
    let leader = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { found(&cache, db, 1).await }
    });
    until(|| cache.in_flight() == 1).await;
    db.value.store(5, SeqCst); // the row is written...
    found_invalidate(&cache, 1).await.unwrap(); // ...and invalidated
    let late = found(&cache, db.clone(), 1).await;
    assert_eq!(leader.await.unwrap(), Err("not found".to_owned()));
    assert_eq!(late, Ok(5001), "the late caller ran its own query");
}

#[cached_query(name = "verified_map", ttl = 60, verify = 1.0, cache = cache, skip(cache, db))]
async fn verified_map(
    cache: &QueryCache,
    db: Arc<Db>,
    id: i64,
) -> Result<std::collections::HashMap<i64, i64>, String> {
    db.query(id).await.map(|value| (0..16).map(|i| (i, value + i)).collect())
}

/// A `HashMap` encodes in an order of its own: equal values would compare unequal by bytes.
/// Such values are not verified (never reported stale for nothing).
#[tokio::test(start_paused = true)]
async fn verify_leaves_values_whose_encoding_is_not_the_value_alone() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    let first = verified_map(&cache, db.clone(), 1).await.unwrap();
    assert_eq!(verified_map(&cache, db.clone(), 1).await.unwrap(), first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.stats().stale_detected, 0);
    assert_eq!(cache.in_flight(), 0);
}

/// The tag of a value of `read_tagged`: its thousands.
fn thousands(value: &i64) -> [String; 1] {
    [format!("n:{}", value / 1000)]
}

#[cached_query(name = "read_tagged", ttl = 60, cache = cache, skip(cache, db), result_tags = thousands)]
async fn read_tagged(cache: &QueryCache, db: &Db, id: i64) -> Result<i64, String> {
    // Reads, then takes its time: a held reader.
    let value = db.value.load(SeqCst);
    db.query(id).await.map(|_| value * 1000 + id)
}

/// `result_tags`: a tag of the result invalidated while its query ran (after the query read)
/// keeps the result out of the store, and from a caller that began after the invalidation and
/// waited on that query (its counters are those the leader read, but the result's tags are not
/// among them).
#[tokio::test(start_paused = true)]
async fn an_invalidation_of_a_result_tag_during_its_query_is_not_lost() {
    let (cache, db) = (Arc::new(scripted_cache()), Db::new(1, 100));
    let first = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { read_tagged(&cache, &db, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    db.value.store(2, SeqCst);
    cache.invalidate_tags(["n:1"]).await.unwrap();
    let joined = tokio::spawn({
        let (cache, db) = (cache.clone(), db.clone());
        async move { read_tagged(&cache, &db, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(db.runs(), 1, "the second caller waits on the first's query");
    assert_eq!(first.await.unwrap(), Ok(1001), "its own call began before the invalidation");
    assert_eq!(joined.await.unwrap(), Ok(2001), "began after the invalidation returned");
    assert_eq!(db.runs(), 2);
    assert_eq!(cache.stats().skipped_stores, 1);
    assert_eq!(count(&cache, |op| matches!(op, Op::Set(_))), 1, "only the second result stored");
    assert_eq!(read_tagged(&cache, &db, 1).await, Ok(2001));
    assert_eq!(db.runs(), 2, "a hit, checked against the counter of n:2");
    // An invalidation of a tag of the stored result drops it.
    cache.invalidate_tags(["n:2"]).await.unwrap();
    assert_eq!(read_tagged(&cache, &db, 1).await, Ok(2001));
    assert_eq!(db.runs(), 3);
}

/// The tag epoch could not be read before the query: its result is returned, not stored.
#[tokio::test(start_paused = true)]
async fn a_result_whose_tags_cannot_be_checked_is_not_stored() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    store(&cache).script(|op| match op {
        Op::TagEpoch => Reply::Fail,
        _ => Reply::Answer,
    });
    assert_eq!(read_tagged(&cache, &db, 1).await, Ok(1001));
    assert_eq!(count(&cache, |op| matches!(op, Op::Set(_))), 0);
    assert_eq!(cache.stats().errors, 1);
}

fn no_tags(_: &i64) -> Vec<String> {
    Vec::new()
}

#[cached_query(name = "read_no_tags", ttl = 60, cache = cache, skip(cache, db), result_tags = no_tags)]
async fn read_no_tags(cache: &QueryCache, db: &Db, id: i64) -> Result<i64, String> {
    db.query(id).await
}

/// A result with no tags (an empty list) is stored and served like any other: no store
/// operation is made for tags it does not have.
#[tokio::test(start_paused = true)]
async fn a_result_without_tags_is_cached() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(read_no_tags(&cache, &db, 1).await, Ok(1001));
    assert_eq!(read_no_tags(&cache, &db, 1).await, Ok(1001));
    assert_eq!(db.runs(), 1);
    let stats = cache.stats();
    assert_eq!((stats.errors, stats.hits), (0, 1), "{stats:?}");
    assert_eq!(count(&cache, |op| matches!(op, Op::Marked | Op::StampOf)), 0);
}

/// `read_tagged` as it was before it had `result_tags` (the same name: the same keys).
#[cached_query(name = "read_tagged", ttl = 60, cache = cache, skip(cache, db))]
async fn read_tagged_before(cache: &QueryCache, db: &Db, id: i64) -> Result<i64, String> {
    db.query(id).await.map(|_| db.value.load(SeqCst) * 1000 + id)
}

/// An entry without result tags (written before the function had them, or by another
/// release) is not taken by a function with `result_tags`: its tags were never checked.
#[tokio::test(start_paused = true)]
async fn an_entry_without_its_result_tags_is_a_miss() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(read_tagged_before(&cache, &db, 1).await, Ok(1001));
    db.value.store(2, SeqCst);
    cache.invalidate_tags(["n:1"]).await.unwrap();
    assert_eq!(read_tagged(&cache, &db, 1).await, Ok(2001), "not the untagged entry");
    assert_eq!(db.runs(), 2);
    assert_eq!(read_tagged(&cache, &db, 1).await, Ok(2001));
    assert_eq!(db.runs(), 2, "its own entry, tagged, is a hit");
    assert_eq!(cache.stats().errors, 0);
}

/// A refresh whose result's tags cannot be checked leaves the stale value (fail-safe), as a
/// failed refresh does.
#[cached_query(name = "swr_tagged", ttl = 1, stale = 60, cache = cache, skip(cache, db), result_tags = thousands)]
async fn swr_tagged(cache: &QueryCache, db: Arc<Db>, id: i64) -> Result<i64, String> {
    db.query(id).await
}

#[tokio::test(start_paused = true)]
async fn a_refresh_whose_tags_cannot_be_checked_keeps_the_stale_value() {
    let (cache, db) = (scripted_cache(), Db::new(1, 10));
    assert_eq!(swr_tagged(&cache, db.clone(), 1).await, Ok(1001));
    ahead::advance(1500); // past the TTL (1 s ± 10 %), within `stale`
    store(&cache).script(|op| match op {
        Op::TagEpoch => Reply::Fail,
        _ => Reply::Answer,
    });
    assert_eq!(swr_tagged(&cache, db.clone(), 1).await, Ok(1001), "stale, refreshing");
    until(|| db.runs() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count(&cache, |op| matches!(op, Op::Delete(_))), 0, "the stale value stays");
    assert_eq!(swr_tagged(&cache, db.clone(), 1).await, Ok(1001), "still served");
}
