//! Redis Cluster: the core matrix on a 3-master cluster the test starts itself, the key layout
//! (a prefix's entries over every master, a lookup's names in one slot), and a master failover
//! under load. The same matrix runs on the shared Redis server too, so the two backends are
//! held to one standard.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{CacheError, QueryCache, cached_query};
use cached_query_tests::cluster::RedisCluster;
use cached_query_tests::matrix::{
    self, Backend, until_answer, until_hits_resume, until_local_hit, until_reachable,
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
    let owner = cluster
        .nodes
        .iter()
        .position(|node| node.command(&["EXISTS", &hot]).is_some_and(|r| r.trim() == "1"));
    let owner_node = &cluster.nodes[owner.expect("a node holds the entry")];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (gets, mgets) = (owner_node.calls("get"), owner_node.calls("mget"));
        spread(&cache, &calls, 7).await;
        if owner_node.calls("get") == gets + 1 && owner_node.calls("mget") == mgets {
            break;
        }
        assert!(Instant::now() < deadline, "no tracked hit within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gets = owner_node.calls("get");
    let before: Vec<u64> = cluster.nodes.iter().map(total_calls).collect();
    for _ in 0..100 {
        assert_eq!(spread(&cache, &calls, 7).await, 7);
    }
    let after: Vec<u64> = cluster.nodes.iter().map(total_calls).collect();
    assert_eq!(owner_node.calls("get"), gets + 100, "one GET per warm hit");
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        // `INFO` itself counts one on each node.
        let expected = if Some(i) == owner { 100 + 1 } else { 1 };
        assert_eq!(after - before, expected, "node {i} (owner {owner:?}): {before:?} -> {after:?}");
    }

    // One tag over every master: all of it runs again.
    cache.invalidate_tags(["all"]).await.unwrap();
    let ran = calls.load(SeqCst);
    for id in (0..ENTRIES).step_by(10) {
        spread(&cache, &calls, id).await;
    }
    assert_eq!(calls.load(SeqCst) - ran, (ENTRIES / 10) as usize, "every entry was invalidated");
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

    // The master of the first entry (the others may be on other masters).
    let first = cache.key("cached_query_tests::user_name", 0, &(1i64,)).unwrap();
    let master = cluster.master_of(&first);
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
    println!("failover: {answered} calls answered; cache hits again after {took:?}");
    // A replica took over (as every node will soon see).
    cluster.new_master_of(&first, killed);

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
    let (mut rounds, mut version, before, started) = (0, 0i64, cache.stats(), Instant::now());
    let mut moved_after = None;
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
            let _ = cache.invalidate_tags([format!("row:{id}")]).await; // queued if it fails
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
    let after = cache.stats();
    println!(
        "reshard: done after {moved_after:?} (time, rounds of {rounds}); {} hits, {} errors (answered from the database)",
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
    let owners: std::collections::HashSet<u16> = (1..=60i64)
        .map(|id| {
            let key = cache.key("cluster::fed", 0, &(id,)).unwrap();
            cluster
                .nodes
                .iter()
                .find(|n| n.command(&["EXISTS", &key]).is_some_and(|r| r.trim() == "1"))
                .unwrap()
                .port
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
    const IDS: u32 = 60;
    for id in 0..IDS {
        spread(&cache, &calls, id).await;
    }
    let owner = |id: u32| {
        let key = cache.key("cluster::spread", 0, &(id,)).unwrap();
        cluster
            .nodes
            .iter()
            .position(|n| n.command(&["EXISTS", &key]).is_some_and(|r| r.trim() == "1"))
            .unwrap()
    };
    let owners: Vec<usize> = (0..IDS).map(owner).collect();
    let dead = owners[0];
    let on_dead = owners.iter().filter(|o| **o == dead).count();
    cluster.nodes[dead].stop();

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
    println!("a dead master: {on_dead} of {IDS} entries on it; {:?}", cache.stats());
}
