//! Client tracking on a Redis Cluster: one tracked connection per master (see `tracking`), and
//! the slot map that says which master a key's slot is on.
//!
//! An entry and the counters a lookup of it reads share one slot (see `keyspace`), so the
//! lookup reads both on one node, through that node's tracked connection, where the ordering
//! argument of `tracking` holds as on a single server: a warm hit is one `GET`.
//!
//! The map is read with `CLUSTER SLOTS` (through the cluster connection) when first needed and
//! again after a lookup on a node failed (`MOVED`, `ASK`, a node gone): such a lookup is made
//! again through the cluster connection, which follows redirections, so no value is served
//! through a node that no longer owns its slot. A slot migrated away deletes its keys on the
//! old node, which sends their invalidations: the counters known there are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::{ConnectionAddr, ConnectionInfo, RedisError, Value};

use super::tracking::{Session, Tracking};
use crate::clock::now_ms;

const SLOTS: u16 = 16_384;
/// The shortest wait between two readings of the slot map.
const REFRESH_EVERY_MS: u64 = 100;

/// The masters' tracked connections, by the slots they own.
pub(crate) struct SlotTracking {
    /// What a connection to a node is made from (credentials, TLS, protocol), its address
    /// replaced.
    base: ConnectionInfo,
    connect_timeout: Duration,
    /// Each slot range's last slot and its master's address, in slot order.
    map: ArcSwap<Vec<(u16, String)>>,
    nodes: RwLock<HashMap<String, Arc<Tracking>>>,
    refreshing: AtomicBool,
    refreshed_ms: AtomicU64,
}

impl SlotTracking {
    /// Tracking for the cluster one of whose nodes `base` reaches (its credentials and TLS
    /// settings are used for every node).
    pub fn new(base: ConnectionInfo, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(SlotTracking {
            base,
            connect_timeout,
            map: ArcSwap::from_pointee(Vec::new()),
            nodes: RwLock::default(),
            refreshing: AtomicBool::new(false),
            refreshed_ms: AtomicU64::new(0),
        })
    }

    /// The live tracked session of the master of `key`'s slot, if the map names one and its
    /// session is up (otherwise one is being made: this lookup goes without).
    pub fn session(&self, key: &str) -> Option<Arc<Session>> {
        let map = self.map.load();
        let slot = slot(key);
        let at = map.partition_point(|(last, _)| *last < slot);
        let (_, node) = map.get(at)?;
        let known = self.nodes.read().unwrap_or_else(PoisonError::into_inner).get(node).cloned();
        let tracking = match known {
            Some(tracking) => tracking,
            None => self.add(node).ok()?,
        };
        tracking.session()
    }

    fn add(&self, node: &str) -> Result<Arc<Tracking>, RedisError> {
        let (host, port) =
            node.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))).ok_or_else(|| {
                RedisError::from((redis::ErrorKind::Client, "a node address without a port", node.to_owned()))
            })?;
        let addr = match self.base.addr() {
            ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let client = redis::Client::open(self.base.clone().set_addr(addr))?;
        let tracking = Tracking::new(&client, self.connect_timeout)?;
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        Ok(nodes.entry(node.to_owned()).or_insert(tracking).clone())
    }

    /// Whether the map should be read (again): never read, or a lookup on a node failed; at
    /// most once per `REFRESH_EVERY_MS`, one reading at a time. The caller reads it and
    /// [`install`](Self::install)s it.
    pub fn refresh_due(&self, failed: bool) -> bool {
        let due = failed || self.map.load().is_empty();
        due && now_ms() >= self.refreshed_ms.load(SeqCst) + REFRESH_EVERY_MS
            && !self.refreshing.swap(true, SeqCst)
    }

    /// Takes the reply of `CLUSTER SLOTS` (or a failure to read it) as the map; nodes that are
    /// no longer masters lose their connections.
    pub fn install(&self, reply: Result<Value, RedisError>) {
        if let Ok(reply) = reply {
            let map = masters(&reply);
            if !map.is_empty() {
                let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
                nodes.retain(|node, _| map.iter().any(|(_, master)| master == node));
                self.map.store(Arc::new(map));
            }
        }
        self.refreshed_ms.store(now_ms(), SeqCst);
        self.refreshing.store(false, SeqCst);
    }

    /// Gives up the sessions that stopped answering (see `Tracking::give_up`).
    pub fn give_up(&self) {
        for tracking in self.nodes.read().unwrap_or_else(PoisonError::into_inner).values() {
            tracking.give_up();
        }
    }
}

/// The slot of `key`: CRC16 of its hash tag (the first `{...}` with something inside), or of
/// the whole key.
fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % SLOTS
}

/// The slot ranges of a `CLUSTER SLOTS` reply, as (last slot, master's `host:port`), in slot
/// order.
fn masters(reply: &Value) -> Vec<(u16, String)> {
    let Value::Array(ranges) = reply else { return Vec::new() };
    let mut map: Vec<(u16, u16, String)> = ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else { return None };
            let number = |v: &Value| match v {
                Value::Int(n) => u16::try_from(*n).ok(),
                _ => None,
            };
            let (first, last) = (number(fields.first()?)?, number(fields.get(1)?)?);
            let Value::Array(master) = fields.get(2)? else { return None };
            let host = match master.first()? {
                Value::BulkString(host) => String::from_utf8_lossy(host).into_owned(),
                Value::SimpleString(host) => host.clone(),
                _ => return None,
            };
            let port = number(master.get(1)?)?;
            Some((first, last, format!("{host}:{port}")))
        })
        .collect();
    map.sort();
    map.into_iter().map(|(_, last, node)| (last, node)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_hash_tags() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("a{}b"), slot("a{}b"));
        assert_ne!(slot("a{}b"), slot(""));
        assert_eq!(slot("app{3}:f:v0:x"), slot("3"));
    }

    #[test]
    fn the_map_is_read_from_cluster_slots() {
        let node = |host: &str, port| Value::Array(vec![Value::BulkString(host.into()), Value::Int(port)]);
        let range = |a, b, host, port| Value::Array(vec![Value::Int(a), Value::Int(b), node(host, port)]);
        let reply =
            Value::Array(vec![range(5461, 16383, "10.0.0.2", 7001), range(0, 5460, "10.0.0.1", 7000)]);
        assert_eq!(
            masters(&reply),
            [(5460, "10.0.0.1:7000".to_owned()), (16383, "10.0.0.2:7001".to_owned())]
        );
        let base = redis::IntoConnectionInfo::into_connection_info("redis://u:p@10.0.0.1:7000").unwrap();
        let tracking = SlotTracking::new(base, Duration::from_secs(1));
        assert!(tracking.refresh_due(false));
        assert!(!tracking.refresh_due(true), "one reading at a time");
        tracking.install(Ok(reply));
        assert!(!tracking.refresh_due(false), "read, and no lookup failed");
    }
}
