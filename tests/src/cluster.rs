//! A Redis Cluster of the test's own: `redis-server --cluster-enabled yes` processes on
//! loopback ports, joined with `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::RedisServer;

/// A cluster of `masters` masters with `replicas` replicas each; its processes are killed and
/// its directory removed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

/// A port whose cluster bus port (`port + 10000`) is free too; both below the ephemeral range
/// that `free_port()` and outgoing connections use, and clear of the ports in `taken` and of
/// their bus ports.
fn free_cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = fastrand::u16(10_000..20_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let clash = taken.iter().any(|&t| [t, t + 10_000].contains(&port) || t == port + 10_000);
        if !clash && free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports it `ok`.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::start_with(masters, replicas, |_| Vec::new())
    }

    /// Like [`start`](Self::start), each node with `more(port)` arguments besides (its port is
    /// the plain one, which the test's own `redis-cli` uses).
    pub fn start_with(masters: usize, replicas: usize, more: impl Fn(u16) -> Vec<String>) -> RedisCluster {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("cq-cluster-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            ports.push(free_cluster_port(&ports));
        }
        let nodes = ports
            .iter()
            .map(|&port| {
                let conf = dir.join(format!("nodes-{port}.conf")).to_string_lossy().into_owned();
                let args = ["--cluster-enabled", "yes", "--cluster-config-file", &conf]
                    .into_iter()
                    .chain(["--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"])
                    // Replicas sync at once (the default waits 5 s for more replicas).
                    .chain(["--repl-diskless-sync-delay", "0"])
                    .map(str::to_owned)
                    // The bus on the port kept free for it (with `--tls-cluster yes` it would
                    // follow the TLS port).
                    .chain(["--cluster-port".to_owned(), (port + 10_000).to_string()])
                    .chain(more(port))
                    .collect();
                let mut node = RedisServer::unstarted_with(port, args);
                node.restart();
                node
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli on PATH");
        assert!(status.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// The index of the node that holds `key`, if one does.
    pub fn holder_of(&self, key: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.command(&["EXISTS", key]).is_some_and(|r| r.trim() == "1"))
    }

    /// The index of the node that holds `key`, once a lookup of it (`call`) is one `GET` there
    /// and nothing else (the node's tracked connection up and knowing the counters), within
    /// 10 s.
    pub async fn until_one_get<F: Future>(&self, key: &str, mut call: impl FnMut() -> F) -> usize {
        let owner = self.holder_of(key).unwrap_or_else(|| panic!("no node holds {key}"));
        let node = &self.nodes[owner];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (gets, mgets) = (node.calls("get"), node.calls("mget"));
            call().await;
            if node.calls("get") == gets + 1 && node.calls("mget") == mgets {
                return owner;
            }
            assert!(Instant::now() < deadline, "no tracked hit of {key} within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every running node says `cluster_state:ok` and knows all slots' owners,
    /// and every replica has synced with its master (only a synced replica can take over).
    pub fn wait_until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let info = n.command(&["CLUSTER", "INFO"]).unwrap_or_default();
            let replication = n.command(&["INFO", "replication"]).unwrap_or_default();
            info.contains("cluster_state:ok")
                && info.contains("cluster_slots_ok:16384")
                && (replication.contains("role:master") || replication.contains("master_link_status:up"))
        }) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node that is master of the slot of `key`, as a running node sees it, once that
    /// node names one (after a failover, the news takes a moment to reach every node).
    pub fn master_of(&mut self, key: &str) -> &mut RedisServer {
        self.master_but(key, None)
    }

    /// Like [`master_of`](Self::master_of), once it is another node than the one on `old`.
    pub fn new_master_of(&mut self, key: &str, old: u16) -> &mut RedisServer {
        self.master_but(key, Some(old))
    }

    fn master_but(&mut self, key: &str, old: Option<u16>) -> &mut RedisServer {
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = self.seen_master_of(key).filter(|port| Some(*port) != old) {
                break port;
            }
            assert!(Instant::now() < deadline, "no master (but {old:?}) owns the slot of {key}");
            std::thread::sleep(Duration::from_millis(50));
        };
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// The port of the master of the slot of `key` in a running node's view, if it has one.
    fn seen_master_of(&self, key: &str) -> Option<u16> {
        let asker = self.nodes.iter().find(|n| n.is_running()).expect("a running node");
        let slot: u16 = asker.command(&["CLUSTER", "KEYSLOT", key]).unwrap().trim().parse().unwrap();
        let table = asker.command(&["CLUSTER", "NODES"]).unwrap();
        table.lines().filter(|line| line.contains("master") && !line.contains("fail")).find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // Slot ranges (`0-5460`) or single slots; `[..]` entries are migrations.
            let owns = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => matches!((a.parse(), b.parse()), (Ok(a), Ok(b)) if (a..=b).contains(&slot)),
                None => range.parse() == Ok(slot),
            });
            owns.then(|| fields[1].split(['@', ':']).nth(1).unwrap().parse::<u16>().unwrap())
        })
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
