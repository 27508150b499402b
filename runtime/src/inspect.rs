//! What an entry says of itself, for tools (the `cached-query` command-line tool):
//! [`QueryCache::inspect`](crate::QueryCache::inspect).

use std::time::Duration;

use crate::CacheError;
use crate::cache::QueryCache;
use crate::clock::now_ms;
use crate::codec;
use crate::keyspace;
use crate::stamp::stamp;

/// One entry, taken apart: what wrote it, how, until when it is fresh, and whether the
/// invalidation counters it depends on still allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    pub key: String,
    /// The function's key name (its `name`, or its path), and its `version`.
    pub function: String,
    pub version: u32,
    /// `postcard` or `msgpack`.
    pub codec: &'static str,
    /// The fingerprint of the cached type's shape.
    pub shape: u64,
    /// The entry's bytes.
    pub size: usize,
    /// Whether its value is stored compressed (`compress_above`).
    pub compressed: bool,
    /// How long the store keeps it still, if it says.
    pub ttl: Option<Duration>,
    /// Unix milliseconds after which it is stale.
    pub fresh_until_ms: u64,
    /// Unix milliseconds at which it was written.
    pub stored_ms: u64,
    /// How long ago it was written (by this machine's clock against the writer's).
    pub age: Duration,
    /// How long the query that computed it took, in milliseconds.
    pub query_ms: u32,
    pub state: EntryState,
    /// The counters it depends on (namespace, key, tags, tables, result tags), with their
    /// values now.
    pub counters: Vec<(String, u64)>,
    /// The tags computed from its value (`result_tags`).
    pub result_tags: Vec<String>,
    /// Whether its counters still allow it: a lookup would serve it (while fresh, or stale
    /// for a function with `stale`).
    pub valid: bool,
    /// The encoded value.
    payload: Vec<u8>,
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Before its TTL.
    Fresh,
    /// Past its TTL, still kept: served by a function with `stale` while it refreshes.
    Stale,
    /// Past its TTL, and its store keeps it no longer.
    Expired,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Fresh => "fresh",
            EntryState::Stale => "stale",
            EntryState::Expired => "expired",
        }
    }
}

impl Inspection {
    /// The value's MessagePack bytes (structs as maps), when its codec is MessagePack: a tool
    /// can show it as JSON. (Postcard carries no field names: it is shown by its type only.)
    pub fn msgpack(&self) -> Option<&[u8]> {
        (self.codec == "msgpack").then_some(&self.payload)
    }
}

impl QueryCache {
    /// The entry under `key`, taken apart (see [`Inspection`]); `None` if there is none. An
    /// error if the store fails, if `key` is not an entry of this cache, or if its bytes are
    /// not an entry of this release's format.
    pub async fn inspect(&self, key: &str) -> Result<Option<Inspection>, CacheError> {
        let engine = self.engine();
        let keyspace = &engine.keyspace;
        let (function, version) = keyspace.function_of(key).ok_or_else(|| {
            CacheError::Config(format!("`{key}` is not an entry of the prefix `{}`", self.prefix()))
        })?;
        let Some(bytes) = engine.bounded_at(key, engine.store.get(key)).await? else { return Ok(None) };
        let ttl = engine.bounded_at(key, engine.store.remaining(key)).await?;
        let parts = codec::parts(&bytes).map_err(|e| CacheError::Decode(e.to_string()))?;
        let key_counter = keyspace::key_counter(key);
        let namespace = keyspace.near(key, "ns");
        let mut names = vec![namespace.as_str(), &key_counter];
        let depends: Vec<String> = parts.depends.iter().map(|name| keyspace.near(key, name)).collect();
        names.extend(depends.iter().map(String::as_str));
        let known = names.len();
        let result_tags: Vec<String> =
            parts.result.iter().flat_map(|r| r.tags.iter().map(|t| t.to_string())).collect();
        let result_counters = keyspace.tag_counters_near(key, &result_tags);
        names.extend(result_counters.iter().map(String::as_str));
        let values = engine.bounded_at(key, engine.store.counter_values(&names)).await?;
        let valid = stamp(&values[..known]) == parts.meta.stamp
            && parts.result.as_ref().is_none_or(|result| stamp(&values[known..]) == result.stamp);
        let now = now_ms();
        let state = match (now < parts.meta.fresh_until_ms, ttl) {
            (true, _) => EntryState::Fresh,
            (false, Some(Duration::ZERO)) => EntryState::Expired,
            (false, _) => EntryState::Stale,
        };
        Ok(Some(Inspection {
            key: key.to_owned(),
            function: function.to_owned(),
            version,
            codec: parts.codec,
            shape: parts.shape,
            size: bytes.len(),
            compressed: parts.compressed,
            ttl,
            fresh_until_ms: parts.meta.fresh_until_ms,
            stored_ms: parts.meta.stored_ms,
            age: Duration::from_millis(now.saturating_sub(parts.meta.stored_ms)),
            query_ms: parts.meta.query_ms,
            state,
            counters: names.iter().map(|name| name.to_string()).zip(values).collect(),
            result_tags,
            valid,
            payload: parts.payload.to_vec(),
        }))
    }

    /// The `SCAN` pattern that matches this cache's names (its prefix's glob characters
    /// escaped); [`entry_function`](Self::entry_function) tells its entries apart.
    pub fn key_pattern(&self) -> String {
        self.engine().keyspace.pattern()
    }

    /// The function (its key name) and version of the entry `key`, if `key` is one of this
    /// cache's entries (not a counter, lease or other name).
    pub fn entry_function<'a>(&self, key: &'a str) -> Option<(&'a str, u32)> {
        self.engine().keyspace.function_of(key)
    }
}
