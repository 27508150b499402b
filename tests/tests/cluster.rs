//! Redis Cluster: the core matrix on a 3-master cluster the test starts itself, the key layout
//! (a prefix's entries over every master, a lookup's names in one slot), and a master failover
//! under load. The same matrix runs on the shared Redis server too, so the two backends are
//! held to one standard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{CacheError, QueryCache, cached_query};
use cached_query_tests::cluster::RedisCluster;
use cached_query_tests::matrix::{
    self, Backend, Load, until_answer, until_hits_resume, until_local_hit, until_reachable,
};
use cached_query_tests::{pg, redis_url, unique_prefix, user_name, user_name_invalidate, users_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_matrix_on_one_server() {
    let delays = matrix::run(&Backend::Server(redis_url()), "t_matrix_server").await;
    println!("local tier, server: invalidation reached the other instances after {delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_matrix_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let backend = Backend::Cluster(cluster.urls());
    let delays = matrix::run(&backend, "t_matrix_cluster").await;
    println!("local tier, cluster: invalidation reached the other instances after {delays:?}");

    // An entry, its own counter and the copies of the counters a lookup of it reads are in one
    // slot: its shard's hash tag.
    let cache = backend.cache("slots").await;
    let (pool, calls) = (pg().await, AtomicUsize::new(0));
    users_table(&pool, "t_cluster_slots").await;
    user_name(&cache, &pool, "t_cluster_slots", &calls, 1).await.unwrap();
    cache.invalidate_tags(["user:1"]).await.unwrap();
    user_name_invalidate(&cache, 1).await.unwrap();
    user_name(&cache, &pool, "t_cluster_slots", &calls, 1).await.unwrap();
    let key = cache.key("cached_query_tests::user_name", 0, &(1i64,)).unwrap();
    assert!(key.starts_with(&format!("{}{{", cache.prefix())), "{key}");
    let shard = &key[..key.find('}').unwrap() + 1];
    let keys = [key.clone(), format!("{key}:gen"), format!("{shard}:tag:user:1"), format!("{shard}:ns")];
    let mut slots = Vec::new();
    for key in &keys {
        slots.push(backend.query::<u16>(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await);
    }
    for key in &keys[..3] {
        assert_eq!(backend.query::<u8>(redis::cmd("EXISTS").arg(key)).await, 1, "{key} exists");
    }
    assert!(slots.iter().all(|s| *s == slots[0]), "{keys:?} in slots {slots:?}");
    assert_eq!(cache.stats().errors, 0, "no CROSSSLOT or other failure: {:?}", cache.stats());
    // A key of no shard is invalidated as well (its own slot).
    cache.invalidate("elsewhere:key").await.unwrap();
    spread_over_every_master(&cluster, &backend).await;
}

#[cached_query(ttl = 600, tags = ["all"], cache = cache, skip(cache, calls))]
async fn spread(cache: &QueryCache, calls: &AtomicUsize, id: u32) -> u32 {
    calls.fetch_add(1, SeqCst);
    id
}

/// 3,000 entries of one prefix spread over the three masters (each holds 25-42 % of them); a
/// warm hit is one command on one node; one tag invalidation reaches entries on every master.
async fn spread_over_every_master(cluster: &RedisCluster, backend: &Backend) {
    let cache = backend.cache("spread").await;
    let calls = AtomicUsize::new(0);
    const ENTRIES: u32 = 3_000;
    for id in 0..ENTRIES {
        spread(&cache, &calls, id).await;
    }
    assert_eq!(calls.load(SeqCst), ENTRIES as usize);
    let pattern = cache.key_pattern();
    let mut counts = Vec::new();
    for node in &cluster.nodes {
        let keys = node.command(&["--scan", "--pattern", &pattern]).unwrap();
        counts.push(keys.lines().filter(|key| cache.entry_function(key).is_some()).count());
    }
    assert_eq!(counts.iter().sum::<usize>(), ENTRIES as usize, "{counts:?}");
    println!("3,000 entries of one prefix per node: {counts:?}");
    for count in &counts {
        let share = *count as f64 / f64::from(ENTRIES);
        assert!((0.25..=0.42).contains(&share), "each master holds 25-42 %: {counts:?}");
    }

    // Warm hits: one `GET` each, on the entry's node only, once its tracked connection is up
    // and knows the counters.
    let hot = cache.key("cluster::spread", 0, &(7u32,)).unwrap();
    let owner = cluster.until_one_get(&hot, || spread(&cache, &calls, 7)).await;
    let owner_node = &cluster.nodes[owner];
    let gets = owner_node.calls("get");
    let before: Vec<u64> = cluster.nodes.iter().map(total_calls).collect();
    for _ in 0..100 {
        assert_eq!(spread(&cache, &calls, 7).await, 7);
    }
    let after: Vec<u64> = cluster.nodes.iter().map(total_calls).collect();
    assert_eq!(owner_node.calls("get"), gets + 100, "one GET per warm hit");
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        // `INFO` itself counts one on each node.
        let expected = if i == owner { 100 + 1 } else { 1 };
        assert_eq!(after - before, expected, "node {i} (owner {owner}): {before:?} -> {after:?}");
    }

    // One tag over every master, invalidated by another instance: this one's tracked
    // connections (one per master), which know the counters, hear of it, and all of it runs
    // again.
    for id in (0..ENTRIES).step_by(10) {
        spread(&cache, &calls, id).await;
    }
    let other = backend.builder(cache.prefix()).build().await.unwrap();
    until_reachable(&other).await;
    other.invalidate_tags(["all"]).await.unwrap();
    let ran = calls.load(SeqCst);
    for id in (0..ENTRIES).step_by(10) {
        spread(&cache, &calls, id).await;
    }
    assert_eq!(calls.load(SeqCst) - ran, (ENTRIES / 10) as usize, "every entry was invalidated");
}

const IDS: u32 = 60;

/// Stores the entries of `spread` for ids `0..IDS`; the index of the node holding each.
async fn spread_entries(cluster: &RedisCluster, cache: &QueryCache, calls: &AtomicUsize) -> Vec<usize> {
    for id in 0..IDS {
        spread(cache, calls, id).await;
    }
    let holder = |id: u32| cluster.holder_of(&cache.key("cluster::spread", 0, &(id,)).unwrap()).unwrap();
    (0..IDS).map(holder).collect()
}

/// The commands a node has run so far.
fn total_calls(node: &cached_query_tests::RedisServer) -> u64 {
    let stats = node.command(&["INFO", "commandstats"]).unwrap();
    stats
        .lines()
        .filter_map(|line| {
            line.split_once(":calls=")
                .map(|(_, rest)| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        })
        .sum()
}

#[tokio::test]
async fn cluster_configuration_errors_come_from_build() {
    let none: [&str; 0] = [];
    for (builder, expected) in [
        (QueryCache::builder().redis_cluster(none), "at least one node"),
        (QueryCache::builder().redis_cluster(["redis://127.0.0.1:1", "nonsense"]), "invalid Redis URL"),
        (QueryCache::builder().redis_cluster(["redis://127.0.0.1:1"]).prefix("a{b}"), "hash tag"),
        (QueryCache::builder().redis_cluster(["redis://127.0.0.1:1"]).cluster_shards(0), "cluster_shards"),
    ] {
        match builder.build().await {
            Err(CacheError::Config(message)) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected a configuration error about {expected}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_keeps_queries_answering() {
    let mut cluster = RedisCluster::start(3, 1);
    let backend = Backend::Cluster(cluster.urls());
    let (pool, calls, table) = (pg().await, AtomicUsize::new(0), "t_cluster_failover");
    users_table(&pool, table).await;
    let cache = backend.cache("failover").await;
    for id in 1..=3 {
        user_name(&cache, &pool, table, &calls, id).await.unwrap();
    }
    assert_eq!(calls.load(SeqCst), 3);

    // Load alongside, on users 1 and 3 (whose names do not change meanwhile).
    let other = backend.builder(cache.prefix()).build().await.unwrap();
    let load = Load::start(&other, &pool, table, 4);
    // The master of user 2's entry: the write below reaches that entry only through the queue.
    let second = cache.key("cached_query_tests::user_name", 0, &(2i64,)).unwrap();
    let master = cluster.master_of(&second);
    let killed = master.port;
    master.stop();
    // A write during the failover: its invalidation cannot reach the dead master's copies of
    // the tag's counter, so it is queued, and delivered before the cache serves again.
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'roberta' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    assert!(cache.invalidate_tags(["user:2"]).await.is_err(), "a master is down");
    assert_eq!(cache.stats().invalidations_queued, 1);
    // Every call answers, rightly, throughout: from the database while the slot has no
    // master, from the cache again once the replica has taken over.
    let context = || {
        let asker = cluster.nodes.iter().find(|n| n.is_running()).unwrap();
        format!("killed {killed}; {}", asker.command(&["CLUSTER", "NODES"]).unwrap_or_default())
    };
    let names = ["alice", "roberta", "carol"];
    let (answered, took) = until_hits_resume(&cache, (&pool, table, &calls), names, context).await;
    let loaded = load.stop().await;
    println!(
        "failover: {answered} calls answered, {loaded} more by 4 tasks; cache hits again after {took:?}"
    );
    // A replica took over (as every node will soon see).
    cluster.new_master_of(&second, killed);

    // Invalidation works on the new master.
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'carla' WHERE id = 3")))
        .execute(&pool)
        .await
        .unwrap();
    // Once every shard's breaker has closed (their probes close them one by one after the
    // failover; until then an invalidation is queued and returns its error).
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = cache.invalidate_tags(["user:3"]).await {
        assert!(Instant::now() < deadline, "invalidations still fail 10 s after the failover: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(user_name(&cache, &pool, table, &calls, 3).await.unwrap(), "carla");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backplane_node_stops_the_local_tier_serving() {
    let mut cluster = RedisCluster::start(3, 0);
    let (pool, table, prefix) = (pg().await, "t_cluster_heartbeat", unique_prefix("heartbeat"));
    users_table(&pool, table).await;
    // The reader subscribes through the first URL it is given: one that is not the master of
    // the prefix's slot (one shard: one slot), so that invalidations still succeed while it
    // is frozen.
    let master = cluster.master_of(&format!("{prefix}{{0}}:ns")).port;
    let urls = cluster.urls();
    let frozen = urls.iter().position(|url| !url.ends_with(&format!(":{master}"))).unwrap();
    let mut order = urls.clone();
    order.swap(0, frozen);
    let reader = QueryCache::builder()
        .redis_cluster(order)
        .prefix(&prefix)
        .cluster_shards(1)
        .local_cache(100)
        .build()
        .await
        .unwrap();
    let writer =
        QueryCache::builder().redis_cluster(urls).prefix(&prefix).cluster_shards(1).build().await.unwrap();
    until_reachable(&reader).await;
    until_reachable(&writer).await;
    until_local_hit(&reader, &pool, table, 1).await;

    // The subscription's node freezes: its connection stays open, nothing comes through it.
    cluster.nodes[frozen].pause();
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'alicia' WHERE id = 1")))
        .execute(&pool)
        .await
        .unwrap();
    writer.invalidate_tags(["user:1"]).await.unwrap();
    let invalidated = Instant::now();
    // Without the heartbeat, the reader would serve `alice` from its local tier until the TTL
    // (60 s); `until_answer` gives up after 10 s.
    until_answer(&reader, &pool, table, 1, "alicia").await;
    println!("a frozen backplane node was noticed after {:?}", invalidated.elapsed());
    cluster.nodes[frozen].resume();
}

/// A master that stops answering (SIGSTOP: its connections stay open, nothing comes back)
/// holds back its own shards only, also for lookups through the cluster client (no client
/// tracking: entry and counters read with one `MGET`): the cluster client reconnects to a node
/// while holding back every request, so by default it connects within the request's timeout
/// (with the 1 s of the other connections, 28 of 119,000 lookups on the other masters hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_holds_back_its_shards_only() {
    let cluster = RedisCluster::start(3, 0);
    let cache = QueryCache::builder()
        .redis_cluster(cluster.urls())
        .prefix(unique_prefix("paused"))
        .client_tracking(false)
        .build()
        .await
        .unwrap();
    until_reachable(&cache).await;
    let calls = AtomicUsize::new(0);
    let owners = spread_entries(&cluster, &cache, &calls).await;
    let paused = owners[0];
    cluster.nodes[paused].pause();
    let (started, mut others, mut others_hit) = (Instant::now(), 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(3) {
        for id in 0..IDS {
            let hits = cache.stats().hits;
            assert_eq!(spread(&cache, &calls, id).await, id);
            if owners[id as usize] != paused {
                others += 1;
                others_hit += cache.stats().hits - hits;
            }
        }
    }
    cluster.nodes[paused].resume();
    println!(
        "a paused master: {others_hit} of {others} lookups on the other masters hit; {:?}",
        cache.stats()
    );
    assert!(others_hit * 10 >= others * 8, "{others_hit} of {others} hit: {:?}", cache.stats());
}

#[cached_query(ttl = 600, tags = ["row:{id}"], cache = cache, skip(cache, pool, calls))]
async fn versioned(cache: &QueryCache, pool: &sqlx::PgPool, calls: &AtomicUsize, id: i64) -> i64 {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT version FROM t_cluster_reshard WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Slots move between masters (`redis-cli --cluster reshard`) under load: every call answers
/// the latest version written before it began (never a stale value), and hits go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_under_load_serves_no_stale_value() {
    let cluster = RedisCluster::start(3, 0);
    let backend = Backend::Cluster(cluster.urls());
    let pool = pg().await;
    sqlx::query("DROP TABLE IF EXISTS t_cluster_reshard").execute(&pool).await.unwrap();
    sqlx::query("CREATE TABLE t_cluster_reshard (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    const ROWS: i64 = 300;
    sqlx::query("INSERT INTO t_cluster_reshard SELECT g, 0 FROM generate_series(1, $1) g")
        .bind(ROWS)
        .execute(&pool)
        .await
        .unwrap();
    let cache = backend.cache("reshard").await;
    let calls = AtomicUsize::new(0);
    for id in 1..=ROWS {
        versioned(&cache, &pool, &calls, id).await;
    }

    // Move a third of the slots from one master to another, in the background.
    let ids: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.command(&["CLUSTER", "MYID"]).unwrap().trim().to_owned())
        .collect();
    let entry = format!("127.0.0.1:{}", cluster.nodes[0].port);
    let reshard = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &entry, "--cluster-from", &ids[0], "--cluster-to", &ids[1]])
            .args(["--cluster-slots", "2000", "--cluster-yes", "--cluster-pipeline", "10"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
    });
    // Load alongside: readers of the rows that are never written (version 0).
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (cache, pool, done, ran) = (cache.clone(), pool.clone(), done.clone(), AtomicUsize::new(0));
            tokio::spawn(async move {
                let mut answered = 0u64;
                let unwritten = (1..=ROWS).filter(|id| (id - 1) % 7 != 0).skip(reader);
                for id in unwritten.cycle().step_by(3) {
                    if done.load(SeqCst) {
                        break;
                    }
                    assert_eq!(versioned(&cache, &pool, &ran, id).await, 0, "row {id}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let (mut rounds, mut version, before, started) = (0, 0i64, cache.stats(), Instant::now());
    let (mut moved_after, mut failed_invalidations) = (None, Vec::new());
    while !reshard.is_finished() || rounds < 3 {
        version += 1;
        for id in (1..=ROWS).step_by(7) {
            // A write, then its invalidation: every read after it must see it.
            sqlx::query("UPDATE t_cluster_reshard SET version = $1 WHERE id = $2")
                .bind(version)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            if let Err(err) = cache.invalidate_tags([format!("row:{id}")]).await {
                failed_invalidations.push(err.to_string()); // queued: still, none should fail
            }
            assert_eq!(versioned(&cache, &pool, &calls, id).await, version, "row {id}");
            assert_eq!(versioned(&cache, &pool, &calls, id).await, version, "row {id} again");
        }
        for id in 1..=ROWS {
            let expected = if (id - 1) % 7 == 0 { version } else { 0 };
            assert_eq!(versioned(&cache, &pool, &calls, id).await, expected, "row {id}");
        }
        rounds += 1;
        if reshard.is_finished() && moved_after.is_none() {
            moved_after = Some((started.elapsed(), rounds));
        }
    }
    assert!(reshard.join().unwrap().success(), "redis-cli --cluster reshard");
    done.store(true, SeqCst);
    let mut loaded = 0;
    for reader in readers {
        loaded += reader.await.expect("every read of the load answered rightly");
    }
    assert!(failed_invalidations.is_empty(), "invalidations failed: {failed_invalidations:?}");
    let after = cache.stats();
    println!(
        "reshard: done after {moved_after:?} (time, rounds of {rounds}); {loaded} reads by 3 tasks alongside; \
         {} hits, {} errors (answered from the database)",
        after.hits - before.hits,
        after.errors - before.errors
    );
    assert!(after.hits - before.hits > (rounds as u64) * ROWS as u64 / 2, "hits went on: {after:?}");
    // Once it is over, warm hits again.
    let hits = cache.stats().hits;
    for id in 1..=ROWS {
        versioned(&cache, &pool, &calls, id).await;
    }
    assert!(cache.stats().hits - hits > ROWS as u64 * 9 / 10, "{:?}", cache.stats());
    // An entry that moved (its slot was the first master's, its node is now the second) is a
    // warm hit again on its new node: one `GET`, its tracked connection made there.
    let (id, moved) = (1..=ROWS)
        .map(|id| (id, cache.key("cluster::versioned", 0, &(id,)).unwrap()))
        .find(|(_, key)| {
            let slot = cluster.nodes[1].command(&["CLUSTER", "KEYSLOT", key]).unwrap();
            slot.trim().parse::<u16>().unwrap() <= 5460 && cluster.holder_of(key) == Some(1)
        })
        .expect("an entry on a moved slot");
    let owner = cluster.until_one_get(&moved, || versioned(&cache, &pool, &calls, id)).await;
    assert_eq!(owner, 1, "{moved} is on the second master");
}

#[cached_query(ttl = 600, tables = auto, cache = cache, skip(cache, pool, calls))]
async fn fed(cache: &QueryCache, pool: &sqlx::PgPool, calls: &AtomicUsize, id: i64) -> i64 {
    calls.fetch_add(1, SeqCst);
    sqlx::query_scalar("SELECT version FROM t_cluster_feed WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A change feed (`watch_postgres`) on a cluster: one write to the table invalidates its
/// entries on every master (the feed increments the table's counter in every shard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_feed_invalidates_entries_on_every_master() {
    let cluster = RedisCluster::start(3, 0);
    let pool = pg().await;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS t_cluster_feed;
         CREATE TABLE t_cluster_feed (id bigint PRIMARY KEY, version bigint NOT NULL);
         INSERT INTO t_cluster_feed SELECT g, 0 FROM generate_series(1, 60) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    cached_query::postgres::install(&pool, &["t_cluster_feed"]).await.unwrap();
    let cache = QueryCache::builder()
        .redis_cluster(cluster.urls())
        .prefix(cached_query_tests::unique_prefix("cluster_feed"))
        .timeout(Duration::from_millis(500))
        .watch_postgres(pool.clone())
        .build()
        .await
        .unwrap();
    let calls = AtomicUsize::new(0);
    // Until the feed is synchronised the function bypasses the cache; then it hits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for id in 1..=60 {
            fed(&cache, &pool, &calls, id).await;
        }
        let hits = cache.stats().hits;
        for id in 1..=60 {
            fed(&cache, &pool, &calls, id).await;
        }
        if cache.stats().hits - hits == 60 {
            break;
        }
        assert!(Instant::now() < deadline, "never cached: {:?}", cache.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let owners: std::collections::HashSet<usize> = (1..=60i64)
        .map(|id| {
            let key = cache.key("cluster::fed", 0, &(id,)).unwrap();
            cluster.holder_of(&key).unwrap()
        })
        .collect();
    assert_eq!(owners.len(), 3, "entries on every master");

    sqlx::query("UPDATE t_cluster_feed SET version = 1").execute(&pool).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in 1..=60 {
        while fed(&cache, &pool, &calls, id).await != 1 {
            assert!(Instant::now() < deadline, "row {id} still stale");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One master of three dies (no replica): the entries on the other two keep being served from
/// the cache (each shard has its own breaker, and the invalidations queued for the dead one
/// hold back its shards only); once it is back, the queue is delivered and it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_holds_back_its_shards_only() {
    let mut cluster = RedisCluster::start(3, 0);
    let backend = Backend::Cluster(cluster.urls());
    let cache = backend.cache("isolation").await;
    let calls = AtomicUsize::new(0);
    let owners = spread_entries(&cluster, &cache, &calls).await;
    let dead = owners[0];
    let on_dead = owners.iter().filter(|o| **o == dead).count();
    cluster.nodes[dead].stop();
    let stopped = Instant::now();

    // A round over every id: the dead master's entries are answered by the query.
    async fn round(cache: &QueryCache, calls: &AtomicUsize) -> usize {
        let before = calls.load(SeqCst);
        for id in 0..IDS {
            assert_eq!(spread(cache, calls, id).await, id);
        }
        calls.load(SeqCst) - before
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while round(&cache, &calls).await != on_dead {
        assert!(Instant::now() < deadline, "the other masters' entries are not served: {:?}", cache.stats());
    }
    let others_served = stopped.elapsed();
    // An invalidation now reaches two masters of three: queued for the third.
    assert!(cache.invalidate_tags(["all"]).await.is_err());
    assert_eq!(round(&cache, &calls).await, IDS as usize, "every entry invalidated (or bypassed)");
    assert_eq!(round(&cache, &calls).await, on_dead, "the others' entries are cached again");

    // Back (empty): the queued copies are delivered, its entries are computed and cached.
    cluster.nodes[dead].restart();
    cluster.wait_until_ok(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while round(&cache, &calls).await != 0 {
        assert!(
            Instant::now() < deadline,
            "the dead master's shards never served again: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "a dead master: {on_dead} of {IDS} entries on it; the others' served again after {others_served:?}; {:?}",
        cache.stats()
    );
}

#[cached_query(ttl = 600, tags = ["item:{id}"], cache = cache, skip(cache, source))]
async fn item(cache: &QueryCache, source: &AtomicI64, id: i64) -> i64 {
    source.load(SeqCst) * 1000 + id
}

/// With client tracking on each master: an invalidation by another instance that returned
/// before a lookup began is seen by that lookup, for entries on every master (by key, by tag
/// and of the whole namespace), while the warm hits are served from the tracked counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_is_seen_by_the_next_lookup_on_every_master() {
    let cluster = RedisCluster::start(3, 0);
    let backend = Backend::Cluster(cluster.urls());
    let reader = backend.cache("ordering").await;
    let writer = backend.builder(reader.prefix()).build().await.unwrap();
    until_reachable(&writer).await;
    let sources: Vec<AtomicI64> = (0..3).map(|_| AtomicI64::new(0)).collect();
    // One entry on each master.
    let mut ids = [None; 3];
    for id in 1..=60 {
        item(&reader, &sources[0], id).await;
        let key = reader.key("cluster::item", 0, &(id,)).unwrap();
        if let Some(slot) =
            cluster.holder_of(&key).and_then(|owner| ids.get_mut(owner)).filter(|slot| slot.is_none())
        {
            *slot = Some(id);
        }
    }
    let ids: Vec<i64> = ids.iter().map(|id| id.expect("an entry on every master")).collect();
    for (id, source) in ids.iter().zip(&sources) {
        let key = reader.key("cluster::item", 0, &(*id,)).unwrap();
        cluster.until_one_get(&key, || item(&reader, source, *id)).await;
    }
    let gets: u64 = cluster.nodes.iter().map(|n| n.calls("get")).sum();
    const ROUNDS: i64 = 50;
    for round in 1..=ROUNDS {
        for (id, source) in ids.iter().zip(&sources) {
            assert_eq!(item(&reader, source, *id).await, (round - 1) * 1000 + id, "round {round}");
            source.store(round, SeqCst);
            match round % 3 {
                0 => item_invalidate(&writer, *id).await.unwrap(),
                1 => writer.invalidate_tags([format!("item:{id}")]).await.unwrap(),
                _ => writer.invalidate_all().await.unwrap(),
            }
            assert_eq!(item(&reader, source, *id).await, round * 1000 + id, "after invalidation {round}");
        }
    }
    let gets = cluster.nodes.iter().map(|n| n.calls("get")).sum::<u64>() - gets;
    assert!(gets >= ROUNDS as u64 * 3, "the hits went through the tracked connections ({gets} GETs)");
}
