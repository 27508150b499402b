//! An entry in the store: read together with its counters (and checked against them),
//! decoded, written and deleted, each write announced on the backplane in the same round trip.
//! Every failure is counted and logged, and reads as a miss.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::codec::{self, Meta, ResultTags};
use crate::decoded::Copier;
use crate::engine::Engine;
use crate::entry::Envelope;
use crate::keyspace::Target;
use crate::stats::Stats;

/// The stamp of the counters read for a call (see `stamp`); `None` when they could not be
/// read (the cache failed).
pub(crate) type Stamp = Option<u64>;

/// What one read of an entry gave.
pub(crate) enum Read<V> {
    /// A valid entry (its counters unchanged).
    Valid { value: V, meta: Meta, bytes: Vec<u8> },
    /// None, or one that was invalidated, or one that does not decode.
    Unusable { stamp: Stamp },
}

impl Engine {
    /// Decodes the entry under `key`, reusing a kept decode of the same bytes when it can
    /// (see `decoded`).
    pub fn decode<V: DeserializeOwned + 'static>(
        &self,
        key: &str,
        bytes: &[u8],
        copier: Option<Copier<V>>,
    ) -> Result<(V, Meta), codec::DecodeError> {
        match (&self.decoded, copier) {
            (Some(decoded), Some(copier)) => decoded.decode(key, bytes, copier, &self.stats.reused_decodes),
            _ => codec::decode(bytes),
        }
    }

    /// Reads the entry and its counters; failures are counted and logged.
    pub async fn read<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        copier: Option<Copier<V>>,
    ) -> Read<V> {
        self.read_counted(target, copier, true).await
    }

    pub async fn read_counted<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        copier: Option<Copier<V>>,
        count: bool,
    ) -> Read<V> {
        // Invalidations lost to an outage are delivered before anything is served again.
        // (Boxed: inline, this rare path would bloat the lookup's future, which each call moves.)
        // On a cluster, those of the entry's shard (see `keyspace`): the others do not concern it.
        if self.health.has_pending() && Box::pin(self.pending_for(target.key())).await {
            return Read::Unusable { stamp: None };
        }
        let names = target.counters(&self.keyspace);
        let fetch = self.store.fetch(target.key(), &names);
        let (bytes, stamp) = match self.bounded_at(target.key(), fetch).await {
            Ok(found) => found,
            Err(err) => {
                if count {
                    self.failed("get", target.key(), &err);
                }
                return Read::Unusable { stamp: None };
            }
        };
        let Some(bytes) = bytes else { return Read::Unusable { stamp: Some(stamp) } };
        match codec::meta(&bytes) {
            // Invalidated since it was computed: not decoded.
            Ok(meta) if meta.stamp != stamp => return Read::Unusable { stamp: Some(stamp) },
            // Not an envelope: the decode below says so, and counts it.
            Err(_) => {}
            // Result tags are checked where an entry has them (boxed, as the queue's delivery
            // above: the lookups of other functions stay small). A function with `result_tags`
            // takes no entry without them (written before it had them, or by another release),
            // nor one whose section does not parse.
            Ok(_) => {
                let usable = match codec::result_tags(&bytes) {
                    Ok(Some(result)) => Box::pin(self.result_valid(target.key(), &result, count)).await,
                    Ok(None) => !target.result_tagged,
                    Err(_) => false,
                };
                if !usable {
                    return Read::Unusable { stamp: Some(stamp) };
                }
            }
        }
        match self.decode(target.key(), &bytes, copier) {
            Ok((value, meta)) => Read::Valid { value, meta, bytes },
            Err(err) => {
                if count {
                    Stats::count(&self.stats.decode_errors);
                    self.failed("decode", target.key(), &CacheError::Decode(err.to_string()));
                }
                Read::Unusable { stamp: Some(stamp) }
            }
        }
    }

    /// Whether the counters of an entry's result tags are those it was stored with (read after
    /// the entry: see `Store::stamp_of`); `false` too when they could not be read.
    async fn result_valid(&self, key: &str, result: &ResultTags<'_>, count: bool) -> bool {
        let names = self.keyspace.tag_counters_near(key, &result.tags);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match self.bounded_at(key, self.store.stamp_of(&names)).await {
            Ok(stamp) => stamp == result.stamp,
            Err(err) => {
                if count {
                    self.failed("get", key, &err);
                }
                false
            }
        }
    }

    /// The tag epoch, read before the query of a function with `result_tags` runs (see
    /// [`tag_result`](Self::tag_result)); `None` when it could not be read.
    pub async fn tag_epoch(&self, key: &str) -> Option<u64> {
        match self.bounded(self.store.tag_epoch(self.keyspace.tag_epoch())).await {
            Ok(epoch) => Some(epoch),
            Err(err) => {
                self.failed("get", key, &err);
                None
            }
        }
    }

    /// Gives `envelope` the tags computed from its value, with their counters' stamp, if none
    /// of them was invalidated since `since` (the tag epoch read before the query ran): one
    /// that was may have been invalidated after the query read the database, and its entry
    /// would then be served although stale. Not stored otherwise (counted), nor when the
    /// counters could not be read: `false` then.
    pub async fn tag_result(
        &self,
        key: &str,
        envelope: &mut Envelope,
        tags: &[String],
        since: Option<u64>,
    ) -> bool {
        envelope.storable = false;
        let Some(since) = since else { return false };
        let counters = self.keyspace.tag_counters_near(key, tags);
        let marks = self.keyspace.tag_marks(&counters);
        let counters: Vec<&str> = counters.iter().map(String::as_str).collect();
        let stamp = match self.bounded_at(key, self.store.marked(&counters, &marks)).await {
            Ok((_, latest)) if latest > since => {
                Stats::count(&self.stats.skipped_stores);
                return false;
            }
            Ok((stamp, _)) => stamp,
            Err(err) => {
                self.failed("get", key, &err);
                return false;
            }
        };
        match codec::with_result_tags(&envelope.bytes, tags, stamp) {
            Ok(bytes) => {
                envelope.bytes = bytes.into();
                envelope.storable = true;
            }
            Err(err) => self.failed("encode", key, &err),
        }
        envelope.storable
    }

    /// Whether invalidations of `key`'s shard are still queued after an attempt to deliver the
    /// queue (or while another caller delivers it; those queued meanwhile count too).
    async fn pending_for(&self, key: &str) -> bool {
        self.deliver_pending(true).await;
        let shard = self.keyspace.shard_of(key);
        self.health.pending_where(|name| self.keyspace.in_shard(name, shard))
    }

    /// Stores an envelope, and with `overwrite` tells the other instances to drop their copies
    /// (in the same round trip); failures are counted and logged. (The store of a miss does not
    /// tell: no instance holds a copy that a valid entry of the key's counters would replace;
    /// one made invalid by an invalidation was dropped when it was announced.)
    pub async fn write(&self, key: &str, bytes: &[u8], keep: Duration, overwrite: bool) -> bool {
        let message = if overwrite { self.written_message(key) } else { None };
        match self.bounded_at(key, self.store.set(key, bytes, keep, self.announce(&message))).await {
            Ok(()) => {
                Stats::count(&self.stats.writes);
                true
            }
            Err(err) => {
                self.failed("set", key, &err);
                false
            }
        }
    }
    /// Deletes an entry, telling the other instances to drop their copies. (A failure leaves
    /// an entry its counters still allow: nothing to count.)
    pub async fn remove(&self, key: &str) {
        let message = self.written_message(key);
        let _ = self.bounded_at(key, self.store.delete(key, self.announce(&message))).await;
    }
}

#[cfg(test)]
mod tests {
    /// A lookup's future is moved a few times on each call, and each move copies all of it:
    /// the in-memory store is synchronous and the rare path (queued invalidations) boxed, so
    /// that it stays small.
    #[tokio::test]
    async fn a_lookups_future_stays_small() {
        let cache = crate::QueryCache::in_memory(10);
        let target = cache.engine().keyspace.target("f:v0:", 1, &[], &[]);
        let read = cache.engine().read_counted::<Option<String>>(&target, None, true);
        assert!(size_of_val(&read) <= 1024, "{} bytes", size_of_val(&read));
    }
}
