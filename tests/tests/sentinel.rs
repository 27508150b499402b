//! Redis Sentinel (`.redis_sentinel(master, urls)`): a master, a replica and three sentinels of
//! the test's own; the master killed under load: every call answered, the invalidation made
//! meanwhile delivered, hits again from the promoted replica.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cached_query::{CacheError, QueryCache};
use cached_query_tests::matrix::{Load, until_hits_resume, until_reachable};
use cached_query_tests::{RedisServer, free_port, pg, user_name, users_table};

const MASTER: &str = "cq-master";

/// A sentinel process on a free port, watching `MASTER`; killed on drop.
struct Sentinel {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cq-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let sentinel = Sentinel { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sentinel.knows_master() {
            assert!(Instant::now() < deadline, "sentinel on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        sentinel
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port of the master this sentinel names, if it names one.
    fn master_port(&self) -> Option<u16> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "SENTINEL", "get-master-addr-by-name", MASTER])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout).lines().nth(1)?.trim().parse().ok()
    }

    fn knows_master(&self) -> bool {
        self.master_port().is_some()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_moves_the_cache_to_the_new_master() {
    let mut master = RedisServer::start();
    let replica = RedisServer::unstarted_with(
        free_port(),
        vec!["--replicaof".into(), "127.0.0.1".into(), master.port.to_string()],
    );
    let mut replica = replica;
    replica.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica.command(&["INFO", "replication"]).unwrap_or_default().contains("master_link_status:up") {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
    let urls: Vec<String> = sentinels.iter().map(Sentinel::url).collect();

    let (pool, calls, table) = (pg().await, AtomicUsize::new(0), "t_sentinel");
    users_table(&pool, table).await;
    let instance = || QueryCache::builder().redis_sentinel(MASTER, urls.clone()).prefix("sentinel").build();
    let (cache, other) = (instance().await.unwrap(), instance().await.unwrap());
    until_reachable(&cache).await;
    for id in 1..=3 {
        user_name(&cache, &pool, table, &calls, id).await.unwrap();
        user_name(&cache, &pool, table, &calls, id).await.unwrap();
    }
    assert_eq!((calls.load(SeqCst), cache.stats().hits), (3, 3), "{:?}", cache.stats());
    assert!(master.command(&["DBSIZE"]).is_some_and(|n| n.trim() != "0"), "entries on the master");

    let load = Load::start(&other, &pool, table, 4);
    master.stop();
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET name = 'roberta' WHERE id = 2")))
        .execute(&pool)
        .await
        .unwrap();
    assert!(cache.invalidate_tags(["user:2"]).await.is_err(), "the master is gone: queued");
    let context = || format!("the sentinel says the master is on {:?}", sentinels[0].master_port());
    let names = ["alice", "roberta", "carol"];
    let (answered, took) = until_hits_resume(&cache, (&pool, table, &calls), names, context).await;
    let loaded = load.stop().await;
    println!(
        "sentinel failover: {answered} calls answered, {loaded} more by 4 tasks; hits again after {took:?}"
    );
    assert_eq!(sentinels[0].master_port(), Some(replica.port), "the replica was promoted");
    assert!(replica.command(&["DBSIZE"]).is_some_and(|n| n.trim() != "0"), "entries on the new master");
}

#[tokio::test]
async fn sentinel_configuration_errors_come_from_build() {
    let none: [&str; 0] = [];
    for (builder, expected) in [
        (QueryCache::builder().redis_sentinel(MASTER, none), "at least one sentinel"),
        (QueryCache::builder().redis_sentinel(MASTER, ["nonsense"]), "invalid Redis URL"),
        (
            QueryCache::builder().redis_sentinel(MASTER, ["redis://127.0.0.1:1"]).local_cache(10),
            "local_cache",
        ),
    ] {
        match builder.build().await {
            Err(CacheError::Config(message)) => assert!(message.contains(expected), "{message}"),
            other => panic!("expected a configuration error about {expected}, got {other:?}"),
        }
    }
}
