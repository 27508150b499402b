//! The Redis nodes a prefix's names live on: the server, or every master of a cluster (a
//! `SCAN` reads one node), and a connection that routes a key to its node.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, RedisResult};

/// Keys asked per `SCAN` call, and the pause between two calls (so that a large keyspace is
/// read without holding up the server).
const SCAN_COUNT: usize = 500;
const SCAN_PAUSE: Duration = Duration::from_millis(2);
/// Entries whose `MEMORY USAGE` is read to estimate the prefix's memory.
const MEMORY_SAMPLE: usize = 100;

pub struct Nodes {
    /// One connection per node to scan.
    scanned: Vec<MultiplexedConnection>,
    /// Routes a key's command to its node.
    router: Router,
}

enum Router {
    Server(MultiplexedConnection),
    Cluster(Box<ClusterConnection>),
}

/// What the prefix's entries take in Redis, estimated.
pub struct Memory {
    pub entries: u64,
    pub bytes: u64,
    pub sampled: usize,
}

impl Nodes {
    /// Connects to `url`, or to every master of the cluster of `cluster`; an error that says
    /// which could not be reached.
    pub async fn connect(url: &str, cluster: &[String]) -> Result<Nodes, String> {
        let unreachable = |err: redis::RedisError| format!("cannot reach Redis: {err}");
        let invalid = |err: redis::RedisError| format!("invalid Redis URL: {err}");
        if cluster.is_empty() {
            let client = redis::Client::open(url).map_err(invalid)?;
            let conn = server(client).await.map_err(unreachable)?;
            return Ok(Nodes { scanned: vec![conn.clone()], router: Router::Server(conn) });
        }
        let client = redis::cluster::ClusterClient::new(cluster.to_vec()).map_err(invalid)?;
        let mut router = client.get_async_connection().await.map_err(unreachable)?;
        let shards: redis::Value =
            redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut router).await.map_err(unreachable)?;
        let first = redis::Client::open(cluster[0].as_str()).map_err(|e| e.to_string())?;
        let mut scanned = Vec::new();
        for (host, port) in masters(&shards) {
            let info = first.get_connection_info().clone().set_addr(ConnectionAddr::Tcp(host, port));
            let client = redis::Client::open(info).map_err(|e| e.to_string())?;
            scanned.push(client.get_multiplexed_async_connection().await.map_err(unreachable)?);
        }
        Ok(Nodes { scanned, router: Router::Cluster(Box::new(router)) })
    }

    /// Scans `pattern` on every node, handing each key to `keep` (`true`: one more kept),
    /// until `limit` were kept or every key was seen.
    pub async fn scan(
        &self,
        pattern: &str,
        mut keep: impl FnMut(&str) -> bool,
        limit: usize,
    ) -> Result<(), String> {
        let mut kept = 0;
        for conn in &self.scanned {
            let mut conn = conn.clone();
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                for key in keys {
                    if kept < limit && keep(&key) {
                        kept += 1;
                    }
                }
                if next == 0 || kept >= limit {
                    break;
                }
                cursor = next;
                tokio::time::sleep(SCAN_PAUSE).await;
            }
        }
        Ok(())
    }

    /// Each key's value bytes, the memory Redis uses for it (`MEMORY USAGE`; 0: gone) and its
    /// remaining TTL in milliseconds (-1: none, -2: gone).
    pub async fn sizes(&self, keys: &[String]) -> Result<Vec<(u64, u64, i64)>, String> {
        let mut sizes = Vec::with_capacity(keys.len());
        for key in keys {
            let size: u64 = self.query(redis::cmd("STRLEN").arg(key)).await?;
            let memory: Option<u64> = self.query(redis::cmd("MEMORY").arg("USAGE").arg(key)).await?;
            let ttl: i64 = self.query(redis::cmd("PTTL").arg(key)).await?;
            sizes.push((size, memory.unwrap_or(0), ttl));
        }
        Ok(sizes)
    }

    /// Every field of every hash that matches `pattern`: the counts instances published.
    pub async fn published_stats(&self, pattern: &str) -> Result<Vec<(String, String)>, String> {
        let mut keys = Vec::new();
        self.scan(
            pattern,
            |key| {
                keys.push(key.to_owned());
                true
            },
            usize::MAX,
        )
        .await?;
        let mut fields = Vec::new();
        for key in keys {
            let hash: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(&key)).await?;
            fields.extend(hash);
        }
        Ok(fields)
    }

    /// How many entries match (`is_entry`), and their memory estimated from a sample.
    pub async fn sampled_memory(
        &self,
        pattern: &str,
        is_entry: impl Fn(&str) -> bool,
    ) -> Result<Memory, String> {
        let (mut entries, mut sample) = (0u64, Vec::new());
        self.scan(
            pattern,
            |key| {
                if is_entry(key) {
                    entries += 1;
                    if sample.len() < MEMORY_SAMPLE {
                        sample.push(key.to_owned());
                    }
                }
                false
            },
            usize::MAX,
        )
        .await?;
        let mut sampled_bytes = 0u64;
        for key in &sample {
            let bytes: Option<u64> = self.query(redis::cmd("MEMORY").arg("USAGE").arg(key)).await?;
            sampled_bytes += bytes.unwrap_or(0);
        }
        let bytes = match sample.len() {
            0 => 0,
            n => sampled_bytes * entries / n as u64,
        };
        Ok(Memory { entries, bytes, sampled: sample.len() })
    }

    /// The string value of `key`, if it has one.
    pub async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let result: RedisResult<T> = match &self.router {
            Router::Server(conn) => cmd.query_async(&mut conn.clone()).await,
            Router::Cluster(conn) => {
                let mut conn = (**conn).clone();
                cmd.query_async(&mut conn).await
            }
        };
        result.map_err(|e| e.to_string())
    }
}

async fn server(client: redis::Client) -> RedisResult<MultiplexedConnection> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// The masters' addresses in a `CLUSTER SLOTS` reply (each slot range's first node).
fn masters(slots: &redis::Value) -> Vec<(String, u16)> {
    let mut masters = Vec::new();
    let redis::Value::Array(ranges) = slots else { return masters };
    for range in ranges {
        let redis::Value::Array(parts) = range else { continue };
        let Some(redis::Value::Array(node)) = parts.get(2) else { continue };
        let host = match node.first() {
            Some(redis::Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(redis::Value::SimpleString(host)) => host.clone(),
            _ => continue,
        };
        let Some(redis::Value::Int(port)) = node.get(1) else { continue };
        let address = (host, *port as u16);
        if !masters.contains(&address) {
            masters.push(address);
        }
    }
    masters
}
