//! Where entries live: Redis, or an in-process map. Both take a key and opaque bytes; the
//! cache above them does the encoding, the timeouts and the fail-open accounting.

pub(crate) mod memory;
pub(crate) mod redis;
#[cfg(test)]
pub(crate) mod scripted;
mod slots;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use crate::CacheError;
use crate::stamp::stamp;
#[cfg(test)]
use scripted::Op;

/// How long the check of Redis's eviction policy may take (connecting included).
const EVICTION_CHECK_WITHIN: Duration = Duration::from_secs(5);

/// The tag epoch and the marks an increment moves on (see `Keyspace::tag_epoch`).
#[derive(Clone, Copy)]
pub(crate) struct Marks<'a> {
    pub epoch: &'a str,
    pub names: &'a [String],
}

impl Marks<'_> {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// For an increment of counters that are not tags'.
    pub const NONE: Marks<'static> = Marks { epoch: "", names: &[] };
}

/// The backend behind a [`QueryCache`](crate::QueryCache).
pub(crate) enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
    /// A store whose replies a unit test scripts.
    #[cfg(test)]
    Scripted(scripted::ScriptedStore),
}

impl Store {
    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self {
            Store::Redis(s) => s.get(key).await,
            Store::Memory(s) => Ok(s.get(key)),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Get(key.into())).await.map(|()| s.memory().get(key)),
        }
    }

    /// The value under `key` and the invalidation counters under `counters` (0 when absent),
    /// read together (one round trip), the counters' stamp (see `stamp`).
    pub async fn fetch(&self, key: &str, counters: &[&str]) -> Result<(Option<Vec<u8>>, u64), CacheError> {
        match self {
            Store::Redis(s) => s.fetch(key, counters).await,
            Store::Memory(s) => Ok(s.fetch(key, counters)),
            #[cfg(test)]
            Store::Scripted(s) => {
                s.ask(Op::Fetch(key.into())).await.map(|()| s.memory().fetch(key, counters))
            }
        }
    }

    /// Increments the counters under `counters`, each kept for `keep` from now, and publishes
    /// `announce` (a channel and a message) with them. Before them, moves the tag epoch on and
    /// sets `marks` to it (see `Keyspace::tag_epoch`): a query that read the epoch before one of
    /// these increments sees the mark once it sees the increment.
    pub async fn increment(
        &self,
        counters: &[String],
        marks: Marks<'_>,
        keep: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.increment(counters, marks, keep, announce).await,
            Store::Memory(s) => {
                s.increment(counters, marks);
                Ok(())
            }
            #[cfg(test)]
            Store::Scripted(s) => {
                s.ask(Op::Increment(counters.to_vec())).await.map(|()| s.memory().increment(counters, marks))
            }
        }
    }

    /// The tag epoch under `epoch` (0 when absent; see `Keyspace::tag_epoch`).
    pub async fn tag_epoch(&self, epoch: &str) -> Result<u64, CacheError> {
        match self {
            Store::Redis(s) => s.tag_epoch(epoch).await,
            Store::Memory(s) => Ok(s.tag_epoch()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::TagEpoch).await.map(|()| s.memory().tag_epoch()),
        }
    }

    /// The stamp of `counters` and the latest of `marks` (0 when none is set), read together:
    /// the counters first, so that a mark set before an increment seen is seen too.
    pub async fn marked(&self, counters: &[&str], marks: &[String]) -> Result<(u64, u64), CacheError> {
        if counters.is_empty() && marks.is_empty() {
            return Ok((stamp(&[]), 0)); // nothing to read (Redis refuses an `MGET` of no key)
        }
        match self {
            Store::Redis(s) => s.marked(counters, marks).await,
            Store::Memory(s) => Ok(s.marked(counters, marks)),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Marked).await.map(|()| s.memory().marked(counters, marks)),
        }
    }

    /// The stamp of `counters` (kept in this process by client tracking when it can be), read
    /// after a `fetch`: as recent as that fetch's entry, at least.
    pub async fn stamp_of(&self, counters: &[&str]) -> Result<u64, CacheError> {
        if counters.is_empty() {
            return Ok(stamp(&[]));
        }
        match self {
            Store::Redis(s) => s.stamp_of(counters).await,
            Store::Memory(s) => Ok(s.marked(counters, &[]).0),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::StampOf).await.map(|()| s.memory().marked(counters, &[]).0),
        }
    }

    /// The values of `counters` (0 when absent), for tools (see `QueryCache::inspect`).
    pub async fn counter_values(&self, counters: &[&str]) -> Result<Vec<u64>, CacheError> {
        match self {
            Store::Redis(s) => s.counter_values(counters).await,
            Store::Memory(s) => Ok(s.counter_values(counters)),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Marked).await.map(|()| s.memory().counter_values(counters)),
        }
    }

    /// Sets `key` to `value` unless it holds one; what it holds then (Redis only; `value`
    /// otherwise).
    pub async fn claim(&self, key: &str, value: &str) -> Result<String, CacheError> {
        match self {
            Store::Redis(s) => s.claim(key, value).await,
            _ => Ok(value.to_owned()),
        }
    }

    /// How long `key` is kept still, if the store says (Redis: `PTTL`; memory: unknown).
    pub async fn remaining(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        match self {
            Store::Redis(s) => s.remaining(key).await,
            _ => Ok(None),
        }
    }

    /// Replaces the hash `key` with `fields`, kept `keep` (Redis only: see `publish`).
    pub async fn replace_hash(
        &self,
        key: &str,
        fields: &[(String, String)],
        keep: Duration,
    ) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.replace_hash(key, fields, keep).await,
            _ => Ok(()),
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Increments `counter` for a change feed's `version` of a table's `shard`, unless `seen`
    /// shows that version applied already (by this instance or another); `true` if it did.
    pub async fn follow(
        &self,
        counter: &str,
        seen: &str,
        shard: i64,
        version: i64,
        keep: Duration,
    ) -> Result<bool, CacheError> {
        match self {
            Store::Redis(s) => s.follow(counter, seen, shard, version, keep).await,
            // One process: every change it hears is new to it.
            Store::Memory(s) => {
                s.increment(&[counter.to_owned()], Marks::NONE);
                Ok(true)
            }
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Increment(vec![counter.to_owned()])).await.map(|()| {
                s.memory().increment(&[counter.to_owned()], Marks::NONE);
                true
            }),
        }
    }

    /// Stores `value` under `key` for `ttl`, and publishes `announce` (a channel and a
    /// message) with it.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.set(key, value, ttl, announce).await,
            Store::Memory(s) => {
                s.set(key, value, ttl);
                Ok(())
            }
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Set(key.into())).await.map(|()| s.memory().set(key, value, ttl)),
        }
    }

    /// Deletes `key`, and publishes `announce` with it.
    pub async fn delete(&self, key: &str, announce: Option<(&str, &[u8])>) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.delete(key, announce).await,
            Store::Memory(s) => {
                s.delete(key);
                Ok(())
            }
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Delete(key.into())).await.map(|()| s.memory().delete(key)),
        }
    }

    /// Takes the lease `key` for `token` unless someone holds it. In memory there is one
    /// process, whose single-flight already lets one caller through: always granted.
    pub async fn try_lock(&self, key: &str, token: &str, lease: Duration) -> Result<bool, CacheError> {
        match self {
            Store::Redis(s) => s.try_lock(key, token, lease).await,
            Store::Memory(_) => Ok(true),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::TryLock(key.into())).await.map(|()| true),
        }
    }

    /// Extends the lease `key` by `lease` and makes its token `now`, if `held` (or `now`) is
    /// its token or it expired; `false` if someone else holds it. In memory: always held.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub async fn renew(&self, key: &str, held: &str, now: &str, lease: Duration) -> Result<bool, CacheError> {
        match self {
            Store::Redis(s) => s.renew(key, held, now, lease).await,
            Store::Memory(_) => Ok(true),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Renew(key.into())).await.map(|()| true),
        }
    }

    /// Adds `members` to the set `key`, kept `keep` from now (Redis only: in memory there is
    /// one process, which knows its own).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub async fn remember(&self, key: &str, members: &[String], keep: Duration) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.remember(key, members, keep).await,
            Store::Memory(_) => Ok(()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Remember(key.into())).await,
        }
    }

    /// The members of the set `key` (see [`remember`](Self::remember)).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub async fn members(&self, key: &str) -> Result<Vec<String>, CacheError> {
        match self {
            Store::Redis(s) => s.members(key).await,
            Store::Memory(_) => Ok(Vec::new()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Members(key.into())).await.map(|()| Vec::new()),
        }
    }

    /// Releases the lease `key` if `token` still holds it.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.unlock(key, token).await,
            Store::Memory(_) => Ok(()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Unlock(key.into())).await,
        }
    }

    /// Publishes `message` on `channel` (Redis only).
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.publish(channel, message).await,
            Store::Memory(_) => Ok(()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Publish).await,
        }
    }

    /// Whether the store answers for `key`.
    pub async fn ping(&self, key: &str) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.ping(key).await,
            Store::Memory(_) => Ok(()),
            #[cfg(test)]
            Store::Scripted(s) => s.ask(Op::Ping).await,
        }
    }

    /// Gives up the connections (they stopped answering), to be made again on next use.
    pub fn replace_connections(&self) {
        if let Store::Redis(s) = self {
            s.replace();
        }
    }

    /// Whether this is Redis (a server or a cluster), whose other clients share its entries.
    pub fn is_redis(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Clients for connections of the backplane's own (none in memory).
    pub fn backplane_clients(&self) -> Vec<::redis::Client> {
        match self {
            Store::Redis(s) => s.clients().to_vec(),
            _ => Vec::new(),
        }
    }

    /// Warns once if Redis may evict keys (`maxmemory` set, a policy other than
    /// `noeviction`): an evicted invalidation counter lets entries computed before its first
    /// increment be served again (docs/guarantees.md, "Invalidation"). Quietly nothing when
    /// Redis does not answer or does not allow `CONFIG GET`, or when the store is gone.
    pub fn spawn_eviction_check(store: &Arc<Store>) {
        let weak = Arc::downgrade(store);
        tokio::spawn(async move {
            let Some(store) = weak.upgrade() else { return };
            let Store::Redis(store) = &*store else { return };
            let policy = tokio::time::timeout(EVICTION_CHECK_WITHIN, store.eviction_policy()).await;
            match policy {
                Ok(Ok(Some(policy))) => tracing::warn!(
                    backend = %store.describe(),
                    policy,
                    "cached_query: Redis may evict keys at its maxmemory; an evicted invalidation \
                     counter can let an entry computed before its first increment be served again \
                     (give Redis the memory its entries need, or use maxmemory-policy noeviction)"
                ),
                Ok(Ok(None)) => {
                    tracing::debug!(backend = %store.describe(), "cached_query: Redis evicts no keys")
                }
                _ => {
                    tracing::debug!(backend = %store.describe(), "cached_query: Redis's eviction policy unknown")
                }
            }
        });
    }

    /// Whether this is a Redis Cluster (whose keys of one prefix share a hash tag).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Store::Redis(s) if s.is_cluster())
    }

    /// A description for `Debug`, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Store::Redis(s) => s.describe().to_owned(),
            Store::Memory(s) => s.describe(),
            #[cfg(test)]
            Store::Scripted(_) => "scripted".to_owned(),
        }
    }
}
