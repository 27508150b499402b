//! Where entries live: Redis, or an in-process map. Both take a key and opaque bytes; the
//! cache above them does the encoding, the timeouts and the fail-open accounting.

pub(crate) mod memory;
pub(crate) mod redis;
mod tracking;

use std::time::Duration;

use crate::CacheError;

/// The backend behind a [`QueryCache`](crate::QueryCache).
pub(crate) enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
}

impl Store {
    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self {
            Store::Redis(s) => s.get(key).await,
            Store::Memory(s) => Ok(s.get(key)),
        }
    }

    /// The value under `key` and the invalidation counters under `gen_keys` (0 when absent),
    /// read together (one round trip), the counters' stamp (see `stamp`).
    pub async fn fetch(&self, key: &str, gen_keys: &[&str]) -> Result<(Option<Vec<u8>>, u64), CacheError> {
        match self {
            Store::Redis(s) => s.fetch(key, gen_keys).await,
            Store::Memory(s) => Ok(s.fetch(key, gen_keys)),
        }
    }

    /// Increments the counters under `gen_keys`, each kept for `keep` from now, and publishes
    /// `announce` (a channel and a message) with them.
    pub async fn bump(
        &self,
        gen_keys: &[String],
        keep: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.bump(gen_keys, keep, announce).await,
            Store::Memory(s) => {
                s.bump(gen_keys);
                Ok(())
            }
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
        }
    }

    /// Takes the lease `key` for `token` unless someone holds it. In memory there is one
    /// process, whose single-flight already lets one caller through: always granted.
    pub async fn try_lock(&self, key: &str, token: &str, lease: Duration) -> Result<bool, CacheError> {
        match self {
            Store::Redis(s) => s.try_lock(key, token, lease).await,
            Store::Memory(_) => Ok(true),
        }
    }

    /// Releases the lease `key` if `token` still holds it.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.unlock(key, token).await,
            Store::Memory(_) => Ok(()),
        }
    }

    /// Publishes `message` on `channel` (Redis only).
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.publish(channel, message).await,
            Store::Memory(_) => Ok(()),
        }
    }

    /// Whether the store answers for `key`.
    pub async fn ping(&self, key: &str) -> Result<(), CacheError> {
        match self {
            Store::Redis(s) => s.ping(key).await,
            Store::Memory(_) => Ok(()),
        }
    }

    /// Gives up the connections (they stopped answering), to be made again on next use.
    pub fn replace_connections(&self) {
        if let Store::Redis(s) = self {
            s.replace();
        }
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
        }
    }
}
