//! The core test matrix: what the cache promises (hits, keys and TTLs in Redis, exact, tag and
//! namespace invalidation, stale-while-revalidate, leases across instances, the local tier's
//! coherence), written once and run against each backend: one Redis server, a Redis Cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, QueryCacheBuilder, cache_invalidate, cached_query};
use sqlx::PgPool;

use crate::{pg, unique_prefix, user_name, user_name_invalidate, users_table};

/// Where the caches of a matrix run keep their entries.
pub enum Backend {
    Server(String),
    Cluster(Vec<String>),
}

impl Backend {
    /// A builder on this backend, under a prefix of its own.
    pub fn builder(&self, prefix: &str) -> QueryCacheBuilder {
        let builder = match self {
            Backend::Server(url) => QueryCache::builder().redis_url(url),
            Backend::Cluster(urls) => QueryCache::builder().redis_cluster(urls.clone()),
        };
        builder.prefix(prefix).timeout(Duration::from_millis(500))
    }

    /// A cache on this backend under a fresh prefix, once it answers.
    pub async fn cache(&self, test: &str) -> QueryCache {
        let cache = self.builder(&unique_prefix(test)).build().await.expect("build cache");
        until_reachable(&cache).await;
        cache
    }

    /// The same backend, reached as the ACL user `user` with `password`.
    pub fn as_user(&self, user: &str, password: &str) -> Backend {
        let with = |url: &String| url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
        match self {
            Backend::Server(url) => Backend::Server(with(url)),
            Backend::Cluster(urls) => Backend::Cluster(urls.iter().map(with).collect()),
        }
    }

    /// Runs `cmd` on every node of this backend (a server: the one).
    pub async fn on_every_node(&self, cmd: &redis::Cmd) {
        let urls = match self {
            Backend::Server(url) => std::slice::from_ref(url),
            Backend::Cluster(urls) => urls.as_slice(),
        };
        for url in urls {
            let () = cmd.query_async(&mut crate::redis_conn(url).await).await.unwrap();
        }
    }

    /// The one key that matches `pattern` (`KEYS`, on every node of a cluster: for small
    /// servers of a test's own, never the shared one, which holds every test's keys).
    pub async fn find(&self, pattern: &str) -> String {
        let urls = match self {
            Backend::Server(url) => std::slice::from_ref(url),
            Backend::Cluster(urls) => urls.as_slice(),
        };
        let mut found = Vec::new();
        for url in urls {
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(pattern).query_async(&mut crate::redis_conn(url).await).await.unwrap();
            found.extend(keys);
        }
        assert_eq!(found.len(), 1, "one key matches {pattern}: {found:?}");
        found.remove(0)
    }

    /// Runs `cmd` on this backend (routed by its key on a cluster).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        match self {
            Backend::Server(url) => cmd.query_async(&mut crate::redis_conn(url).await).await.unwrap(),
            Backend::Cluster(urls) => {
                let client = redis::cluster::ClusterClient::new(urls.clone()).unwrap();
                cmd.query_async(&mut client.get_async_connection().await.unwrap()).await.unwrap()
            }
        }
    }
}

/// Waits (with a deadline) until `cache` reads its store without an error.
pub async fn until_reachable(cache: &QueryCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // A key of the cache's own (on a cluster: in its slot, on the node that matters).
    let key = cache.key("reachable", 0, &()).expect("a key");
    while cache.get::<()>(&key).await.is_err() {
        assert!(Instant::now() < deadline, "the cache never reached its store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every scenario on `backend`; `tables` names this run's tables. Returns how long
/// invalidations took to reach the other instances' local tiers.
pub async fn run(backend: &Backend, tables: &str) -> Vec<Duration> {
    hits_keys_and_ttls(backend, &format!("{tables}_hits")).await;
    tags_invalidate_exactly_their_entries(backend.cache("matrix_tags").await, &format!("{tables}_tags"))
        .await;
    invalidate_all_flushes_one_namespace(backend, &format!("{tables}_all")).await;
    result_tags_invalidate_their_entries(backend, &format!("{tables}_result")).await;
    stale_while_revalidate(backend, &format!("{tables}_swr")).await;
    one_lease_across_instances(backend).await;
    let mut delays = local_tiers_stay_coherent(backend, &format!("{tables}_local")).await;
    delays.extend(
        writers_without_a_local_tier_reach_the_local_tiers(backend, &format!("{tables}_plain")).await,
    );
    delays
}

/// A miss runs the query, a hit does not; the entry sits under the documented key with its
/// TTL; other arguments get other entries; an exact invalidation drops exactly one.
pub async fn hits_keys_and_ttls(backend: &Backend, table: &str) {
    let (pool, cache, calls) = (pg().await, backend.cache("matrix_hits").await, AtomicUsize::new(0));
    users_table(&pool, table).await;
    assert_eq!(user_name(&cache, &pool, table, &calls, 1).await.unwrap(), "alice");
    assert_eq!(user_name(&cache, &pool, table, &calls, 1).await.unwrap(), "alice");
    assert_eq!(user_name(&cache, &pool, table, &calls, 2).await.unwrap(), "bob");
    assert_eq!(calls.load(SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (1, 2, 0), "{stats:?}");

    let key = cache.key("cached_query_tests::user_name", 0, &(1i64,)).unwrap();
    let ttl: i64 = backend.query(redis::cmd("PTTL").arg(&key)).await;
    assert!((54_000..=66_000).contains(&ttl), "TTL 60 s ± 10 % jitter, got {ttl} ms for {key}");

    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'alicia' WHERE id = 1")))
        .execute(&pool)
        .await
        .unwrap();
    user_name_invalidate(&cache, 1).await.unwrap();
    assert_eq!(user_name(&cache, &pool, table, &calls, 1).await.unwrap(), "alicia");
    assert_eq!(user_name(&cache, &pool, table, &calls, 2).await.unwrap(), "bob");
    assert_eq!(calls.load(SeqCst), 3, "only the invalidated entry ran again");
}

/// Renames user `id`, invalidating the tag `user:{id}`.
#[cache_invalidate(cache = cache, tags = ["user:{id}"])]
pub async fn rename(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    id: i64,
    to: &str,
) -> Result<u64, sqlx::Error> {
    let sql = format!("UPDATE {table} SET name = $2 WHERE id = $1");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(to).execute(pool).await?;
    Ok(done.rows_affected())
}

/// Invalidating a tag drops the entries carrying it, and only those.
pub async fn tags_invalidate_exactly_their_entries(cache: QueryCache, table: &str) {
    let (pool, calls) = (pg().await, AtomicUsize::new(0));
    users_table(&pool, table).await;
    let get = |id| user_name(&cache, &pool, table, &calls, id);
    assert_eq!(get(1).await.unwrap(), "alice");
    assert_eq!(get(2).await.unwrap(), "bob");
    assert_eq!(calls.load(SeqCst), 2);

    cache.invalidate_tags(["user:1"]).await.unwrap();
    assert_eq!(get(1).await.unwrap(), "alice");
    assert_eq!(get(2).await.unwrap(), "bob");
    assert_eq!(calls.load(SeqCst), 3, "only user:1 ran again");

    cache.invalidate_tags(["users"]).await.unwrap();
    get(1).await.unwrap();
    get(2).await.unwrap();
    assert_eq!(calls.load(SeqCst), 5, "both carry `users`");

    assert_eq!(rename(&cache, &pool, table, 2, "robert").await.unwrap(), 1);
    assert_eq!(get(2).await.unwrap(), "robert", "the write invalidated user:2");
    assert_eq!(get(1).await.unwrap(), "alice");
    assert_eq!(calls.load(SeqCst), 6);
}

/// The ids of the users `names_of` read: their tags.
fn user_tags(names: &[(i64, String)]) -> impl Iterator<Item = String> + '_ {
    names.iter().map(|(id, _)| format!("user:{id}"))
}

/// The users with ids in `from..=to`, tagged by what they are (`result_tags`).
#[cached_query(cache = cache, skip(cache, table, calls), result_tags = user_tags)]
pub async fn names_of(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    let sql = format!("SELECT id, name FROM {table} WHERE id BETWEEN $1 AND $2 ORDER BY id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from).bind(to).fetch_all(pool).await
}

/// Tags computed from a result drop its entry, and only those that hold it; the mark of an
/// invalidated tag is in Redis for as long as its counter.
pub async fn result_tags_invalidate_their_entries(backend: &Backend, table: &str) {
    let (pool, cache, calls) = (pg().await, backend.cache("matrix_result").await, AtomicUsize::new(0));
    users_table(&pool, table).await;
    let names = |from, to| names_of(&cache, &pool, table, &calls, from, to);
    assert_eq!(names(1, 2).await.unwrap(), [(1, "alice".to_owned()), (2, "bob".to_owned())]);
    names(3, 3).await.unwrap();
    names(1, 2).await.unwrap();
    assert_eq!(calls.load(SeqCst), 2, "a hit");

    assert_eq!(rename(&cache, &pool, table, 2, "robert").await.unwrap(), 1);
    assert_eq!(names(1, 2).await.unwrap()[1].1, "robert", "user:2 is in the result");
    names(3, 3).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3, "only the entry holding user 2 ran again");
    names(1, 2).await.unwrap();
    assert_eq!(calls.load(SeqCst), 3, "stored again");

    // In the keyspace's first shard: on a server the prefix itself; on a cluster (of the test's
    // own, small) found by its pattern.
    let mark = match backend {
        Backend::Server(_) => format!("{}:tagat:user:2", cache.prefix()),
        Backend::Cluster(_) => backend.find(&format!("{}*:tagat:user:2", cache.prefix())).await,
    };
    let ttl: i64 = backend.query(redis::cmd("PTTL").arg(&mark)).await;
    assert!(ttl > 7 * 24 * 3600 * 1000, "the mark is kept as long as a counter: {ttl} ms for {mark}");
    let stats = cache.stats();
    assert_eq!((stats.errors, stats.skipped_stores), (0, 0), "{stats:?}");
}

/// `invalidate_all` drops every entry of its prefix, none of another's.
pub async fn invalidate_all_flushes_one_namespace(backend: &Backend, table: &str) {
    let (pool, calls) = (pg().await, AtomicUsize::new(0));
    users_table(&pool, table).await;
    let (mine, other) = (backend.cache("ns_mine").await, backend.cache("ns_other").await);
    for id in 1..=3 {
        user_name(&mine, &pool, table, &calls, id).await.unwrap();
        user_name(&other, &pool, table, &calls, id).await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 6);
    mine.invalidate_all().await.unwrap();
    for id in 1..=3 {
        user_name(&mine, &pool, table, &calls, id).await.unwrap();
        user_name(&other, &pool, table, &calls, id).await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 9, "all of `mine` ran again, none of `other`");
}

#[cached_query(ttl = 1, stale = 60, jitter = 0, cache = cache, skip(cache, table, calls))]
async fn fresh_name(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: Arc<AtomicUsize>,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(pool)
        .await
}

/// Past its TTL, an entry is served stale while one refresh runs in the background.
pub async fn stale_while_revalidate(backend: &Backend, table: &str) {
    let (pool, cache, calls) = (pg().await, backend.cache("matrix_swr").await, Arc::new(AtomicUsize::new(0)));
    users_table(&pool, table).await;
    let get = || fresh_name(&cache, &pool, table, calls.clone(), 3);
    assert_eq!(get().await.unwrap(), "carol");
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'caroline' WHERE id = 3")))
        .execute(&pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().stale_served == 0 {
        assert!(Instant::now() < deadline, "never served stale: {:?}", cache.stats());
        assert_eq!(get().await.unwrap(), "carol", "fresh, then stale: the old value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while get().await.unwrap() != "caroline" {
        assert!(Instant::now() < deadline, "the refresh never landed: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(SeqCst), 2, "one query, one refresh");
}

#[cached_query(ttl = 60, cache = cache, skip(cache, calls))]
async fn slow_square(
    cache: &QueryCache,
    pool: &PgPool,
    calls: &AtomicUsize,
    n: i64,
) -> Result<i64, sqlx::Error> {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT $1::bigint * $1::bigint FROM pg_sleep(0.3)").bind(n).fetch_one(pool).await
}

/// With `lock`, instances that miss together run the query once: one holds the lease, the
/// others wait for its result.
pub async fn one_lease_across_instances(backend: &Backend) {
    let (pool, calls, prefix) = (pg().await, AtomicUsize::new(0), unique_prefix("matrix_lease"));
    let mut caches = Vec::new();
    for _ in 0..3 {
        let cache =
            backend.builder(&prefix).lock(true).lock_wait(Duration::from_secs(5)).build().await.unwrap();
        until_reachable(&cache).await;
        caches.push(cache);
    }
    let call = |cache| slow_square(cache, &pool, &calls, 7);
    let results = tokio::join!(call(&caches[0]), call(&caches[1]), call(&caches[2]));
    assert_eq!((results.0.unwrap(), results.1.unwrap(), results.2.unwrap()), (49, 49, 49));
    assert_eq!(calls.load(SeqCst), 1, "one instance ran the query");
    assert!(caches.iter().map(|c| c.stats().lock_waits).sum::<u64>() >= 1);
}

/// `n` instances with a local tier, sharing a prefix on `backend`.
pub async fn local_instances(backend: &Backend, test: &str, n: usize) -> Vec<QueryCache> {
    let prefix = unique_prefix(test);
    let mut all = Vec::new();
    for _ in 0..n {
        let cache = backend.builder(&prefix).local_cache(1000).build().await.unwrap();
        until_reachable(&cache).await;
        all.push(cache);
    }
    all
}

/// After a failover began: calls `user_name` of users 1-3, which must answer `names` every
/// time (from the database while the cache cannot), until a round of three is all hits, with a
/// deadline of 30 s (`context` says what the servers say, for the failure). How many calls were
/// answered, and how long it took.
pub async fn until_hits_resume(
    cache: &QueryCache,
    (pool, table, calls): (&PgPool, &str, &AtomicUsize),
    names: [&str; 3],
    context: impl Fn() -> String,
) -> (usize, Duration) {
    let (deadline, started) = (Instant::now() + Duration::from_secs(30), Instant::now());
    let mut answered = 0;
    loop {
        let before = cache.stats();
        for (id, name) in (1..=3).zip(names) {
            assert_eq!(user_name(cache, pool, table, calls, id).await.unwrap(), name);
            answered += 1;
        }
        if cache.stats().hits - before.hits == 3 {
            return (answered, started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "no hits 30 s after the failover began: {:?}\n{}",
            cache.stats(),
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls until `cache` answers `expected`, with a deadline; how long it took.
pub async fn until_answer(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    id: i64,
    expected: &str,
) -> Duration {
    let (started, calls) = (Instant::now(), AtomicUsize::new(0));
    loop {
        if user_name(cache, pool, table, &calls, id).await.unwrap() == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never saw {expected}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Calls until a hit comes from the local tier (its subscription is up), with a deadline.
pub async fn until_local_hit(cache: &QueryCache, pool: &PgPool, table: &str, id: i64) {
    let (deadline, calls) = (Instant::now() + Duration::from_secs(10), AtomicUsize::new(0));
    let before = cache.stats().local_hits;
    while cache.stats().local_hits == before {
        assert!(Instant::now() < deadline, "no local hit: {:?}", cache.stats());
        user_name(cache, pool, table, &calls, id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every instance's local tier serves hits without a query, and drops what another instance
/// invalidated (tag, exact key, namespace) within a bounded delay; returns those delays.
pub async fn local_tiers_stay_coherent(backend: &Backend, table: &str) -> Vec<Duration> {
    let pool = pg().await;
    users_table(&pool, table).await;
    let caches = local_instances(backend, "coherence", 3).await;
    for cache in &caches {
        until_local_hit(cache, &pool, table, 1).await;
        until_local_hit(cache, &pool, table, 2).await;
    }
    let calls = AtomicUsize::new(0);
    let before = caches[0].stats().local_hits;
    for _ in 0..10 {
        assert_eq!(user_name(&caches[0], &pool, table, &calls, 2).await.unwrap(), "bob");
    }
    assert_eq!((caches[0].stats().local_hits - before, calls.load(SeqCst)), (10, 0));

    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'robert' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    caches[0].invalidate_tags(["user:2"]).await.unwrap();
    let invalidated = Instant::now();
    // The invalidating instance: at once. The others: after the backplane's delay, counted
    // from the moment the invalidation returned.
    assert_eq!(user_name(&caches[0], &pool, table, &calls, 2).await.unwrap(), "robert");
    let mut delays = Vec::new();
    for cache in &caches[1..] {
        until_answer(cache, &pool, table, 2, "robert").await;
        delays.push(invalidated.elapsed());
    }
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)), "{delays:?}");

    // A write that another instance recomputes replaces the copies too (exact invalidation).
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'bobby' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    user_name_invalidate(&caches[1], 2).await.unwrap();
    for cache in &caches {
        until_answer(cache, &pool, table, 2, "bobby").await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'al' WHERE id = 1")))
        .execute(&pool)
        .await
        .unwrap();
    caches[2].invalidate_all().await.unwrap();
    for cache in &caches {
        until_answer(cache, &pool, table, 1, "al").await;
    }
    delays
}

/// Sets the name of user `id` in `table` (no invalidation).
async fn set_name(pool: &PgPool, table: &str, id: i64, name: &str) {
    let sql = format!("UPDATE {table} SET name = $2 WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(name).execute(pool).await.unwrap();
}

/// An instance without a local tier (a worker, a tool) announces what it invalidates or
/// writes as one with a local tier does: by exact key, tag, namespace, a raw overwrite, and an
/// invalidation queued while its writes were refused and delivered later, an instance with a
/// local tier drops its copy within the backplane's delay. Returns those delays.
pub async fn writers_without_a_local_tier_reach_the_local_tiers(
    backend: &Backend,
    table: &str,
) -> Vec<Duration> {
    let pool = pg().await;
    users_table(&pool, table).await;
    let prefix = unique_prefix("plain_writer");
    let reader = backend.builder(&prefix).local_cache(1000).build().await.unwrap();
    // An ACL user of its own, so that its writes (and only its) can be refused.
    let (user, password) = (format!("cq_writer_{}", fastrand::u32(..)), "writer-secret");
    let set_user = |rules: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&user).arg(rules);
        cmd
    };
    let all = ["reset", "on", &format!(">{password}")[..], "~*", "&*", "+@all"].map(str::to_owned);
    backend.on_every_node(&set_user(&all.iter().map(String::as_str).collect::<Vec<_>>())).await;
    let writer = backend.as_user(&user, password).builder(&prefix).build().await.unwrap();
    until_reachable(&reader).await;
    until_reachable(&writer).await;

    // Each time: the reader holds user 1 in its local tier, the database changes, the
    // writer invalidates, and the reader must answer the new name.
    let primed = async |name: &str| {
        until_local_hit(&reader, &pool, table, 1).await;
        set_name(&pool, table, 1, name).await;
    };
    let mut delays = Vec::new();
    primed("by-tag").await;
    writer.invalidate_tags(["user:1"]).await.unwrap();
    delays.push(until_answer(&reader, &pool, table, 1, "by-tag").await);

    primed("by-key").await;
    user_name_invalidate(&writer, 1).await.unwrap();
    delays.push(until_answer(&reader, &pool, table, 1, "by-key").await);

    primed("by-namespace").await;
    writer.invalidate_all().await.unwrap();
    delays.push(until_answer(&reader, &pool, table, 1, "by-namespace").await);

    // A raw write of the entry's key (an entry lookups find invalid: the reader runs its query).
    primed("overwritten").await;
    let key = writer.key("cached_query_tests::user_name", 0, &(1i64,)).unwrap();
    writer.set(&key, &"raw".to_owned(), Duration::from_secs(60)).await.unwrap();
    delays.push(until_answer(&reader, &pool, table, 1, "overwritten").await);

    // Queued: the writer's invalidation is refused (no write, no publish), then delivered by
    // its next lookup once its writes are allowed again.
    primed("queued").await;
    backend.on_every_node(&set_user(&["-@write", "-publish"])).await;
    assert!(writer.invalidate_tags(["user:1"]).await.is_err(), "refused");
    assert_eq!(writer.stats().invalidations_queued, 1);
    let queued_for = Instant::now();
    while queued_for.elapsed() < Duration::from_millis(200) {
        assert_eq!(user_name(&reader, &pool, table, &AtomicUsize::new(0), 1).await.unwrap(), "overwritten");
    }
    backend.on_every_node(&set_user(&["+@all"])).await;
    let invalidations = writer.stats().invalidations;
    user_name(&writer, &pool, table, &AtomicUsize::new(0), 2).await.unwrap();
    assert_eq!(writer.stats().invalidations, invalidations + 1, "delivered: {:?}", writer.stats());
    delays.push(until_answer(&reader, &pool, table, 1, "queued").await);

    backend.on_every_node(redis::cmd("ACL").arg("DELUSER").arg(&user)).await;
    delays
}

/// Tasks calling `user_name` of users 1 and 3 (alice and carol, whose names the failover tests
/// leave alone) in a loop, each call checked, until [`Load::stop`]. Give it a cache instance of
/// its own: on the checked one its calls would join that caller's flights and count as hits.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    pub fn start(cache: &QueryCache, pool: &PgPool, table: &'static str, tasks: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|_| {
                let (cache, pool, stop, ran) =
                    (cache.clone(), pool.clone(), stop.clone(), AtomicUsize::new(0));
                tokio::spawn(async move {
                    let mut answered = 0;
                    while !stop.load(SeqCst) {
                        for (id, name) in [(1, "alice"), (3, "carol")] {
                            assert_eq!(user_name(&cache, &pool, table, &ran, id).await.unwrap(), name);
                            answered += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    answered
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the tasks; how many calls they made (each answered rightly, or this panics).
    pub async fn stop(self) -> usize {
        self.stop.store(true, SeqCst);
        let mut answered = 0;
        for task in self.tasks {
            answered += task.await.expect("every call of the load answered rightly");
        }
        answered
    }
}
