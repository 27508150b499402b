//! Invalidation: incrementing counters (announced on the backplane, applied to this instance's
//! local tier before it returns), the queue of those that could not be delivered, and its
//! delivery, by the lookups and by the breaker's probe. How a store operation ended is settled
//! here too: failures open the breaker, whose probe delivers the queue before it closes.
//!
//! - An invalidation runs in a task of its own, awaited: it usually follows a committed write,
//!   and must not be lost half-way (neither sent nor queued) because its caller's future was
//!   dropped (a request's timeout, a client gone).
//! - When the store cannot be reached, the error is returned and the counters are queued (see
//!   `health`): they are delivered before this cache serves anything from the store again.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use crate::CacheError;
use crate::bounded::{Bounded, Settle};
use crate::engine::Engine;
use crate::health::PROBE_EVERY;
use crate::stamp::COUNTER_KEEP;
use crate::stats::Stats;
use crate::store::Marks;

/// Queued invalidation counters delivered per round trip.
const DELIVER_AT_ONCE: usize = 100;

impl Engine {
    /// Increments `counters` (`op` names the caller in logs); see the module docs.
    pub async fn invalidate(
        self: &Arc<Self>,
        op: &'static str,
        counters: Vec<String>,
    ) -> Result<(), CacheError> {
        let engine = Arc::clone(self);
        match tokio::spawn(async move { engine.invalidate_now(op, counters).await }).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(CacheError::Unavailable), // cancelled: its runtime is shutting down
        }
    }

    async fn invalidate_now(&self, op: &str, counters: Vec<String>) -> Result<(), CacheError> {
        let result = self.increment(&counters).await;
        match &result {
            Ok(()) => Stats::count(&self.stats.invalidations),
            Err(err) => {
                self.failed(op, &counters.join(" "), err);
                Stats::count(&self.stats.invalidations_queued);
            }
        }
        result
    }

    /// Increments invalidation counters (their logical names, see `keyspace`): every entry
    /// checked against them is invalid from the moment this returns. The copies that could not
    /// be incremented are queued. The local tier drops its entries that depend on them in any
    /// case (when Redis was not reached, the invalidation is queued, and older values must not
    /// be served from here meanwhile).
    async fn increment(&self, counters: &[String]) -> Result<(), CacheError> {
        let message = self.invalidation_message(counters);
        let copies = self.keyspace.copies(counters);
        let result = self.increment_copies(&copies, &message, true).await;
        if let Some(local) = &self.local {
            local.invalidated(counters).await;
        }
        result.map_err(|(err, undelivered)| {
            let full = self.keyspace.copies(&[self.keyspace.namespace_counter().to_owned()]);
            self.health.queue(&undelivered, &full);
            err
        })
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Tells this instance's local tier and the others' that `counters` were incremented
    /// elsewhere than through `increment` (by a change feed).
    pub async fn announce_invalidated(&self, counters: &[String]) {
        if let Some(local) = &self.local {
            local.invalidated(counters).await;
        }
        if let (Some(backplane), Some(message)) = (&self.backplane, self.invalidation_message(counters))
            && let Err(err) = self.bounded(self.store.publish(backplane.channel(), &message)).await
        {
            self.failed("publish", &counters.join(" "), &err);
        }
    }

    /// The backplane's message for an invalidation of `counters` (Redis only), sent by every
    /// instance: the others' local tiers depend on it, whether or not this one has one.
    fn invalidation_message(&self, counters: &[String]) -> Option<Vec<u8>> {
        self.backplane.as_ref().map(|backplane| backplane.invalidated(counters))
    }

    /// The backplane's message for a write or delete of `key` (Redis only).
    pub fn written_message(&self, key: &str) -> Option<Vec<u8>> {
        self.backplane.as_ref().map(|backplane| backplane.written(key))
    }

    /// The backplane's channel and `message`, for the store to publish with its write.
    pub fn announce<'a>(&'a self, message: &'a Option<Vec<u8>>) -> Option<(&'a str, &'a [u8])> {
        self.backplane.as_ref().zip(message.as_deref()).map(|(b, m)| (b.channel(), m))
    }

    /// Increments `copies` (counters by their names in the store) and publishes `message`:
    /// on one shard, in one pipeline; on several, the tag marks first (in the first shard: a
    /// read that sees an increment must see its mark), then each shard's copies, at once, each
    /// under its shard's breaker (or, not `through_breaker`, the timeout alone: the probe's),
    /// then the message, once any copy was incremented (after them: an instance that read
    /// between the message and an increment would keep the old value). The error and the
    /// copies not incremented, if any.
    async fn increment_copies(
        &self,
        copies: &[String],
        message: &Option<Vec<u8>>,
        through_breaker: bool,
    ) -> Result<(), (CacheError, Vec<String>)> {
        // The tags' marks (for the queries of `result_tags` that run meanwhile).
        let mut names = self.keyspace.tag_marks(copies);
        names.sort_unstable();
        names.dedup();
        let marks = Marks { epoch: self.keyspace.tag_epoch(), names: &names };
        let announce = self.announce(message);
        if self.keyspace.shards() == 1 {
            let increment = self.store.increment(copies, marks, COUNTER_KEEP, announce);
            return self.run(0, increment, through_breaker).await.map_err(|e| (e, copies.to_vec()));
        }
        if !names.is_empty() {
            let mark = self.store.increment(&[], marks, COUNTER_KEEP, None);
            self.run(0, mark, through_breaker).await.map_err(|e| (e, copies.to_vec()))?;
        }
        let mut shards: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for copy in copies {
            shards.entry(self.keyspace.shard_of(copy)).or_default().push(copy.clone());
        }
        let sent = shards.iter().map(|(shard, copies)| {
            let increment = self.store.increment(copies, Marks::NONE, COUNTER_KEEP, None);
            async move { (copies, self.run(*shard, increment, through_breaker).await) }
        });
        let mut failure = None;
        let mut undelivered = Vec::new();
        for (copies, result) in futures_util::future::join_all(sent).await {
            if let Err(err) = result {
                undelivered.extend(copies.iter().cloned());
                failure.get_or_insert(err);
            }
        }
        if let Some((channel, message)) = announce
            && undelivered.len() < copies.len()
            && let Err(err) = self.run(0, self.store.publish(channel, message), through_breaker).await
        {
            return Err((err, copies.to_vec())); // delivered again, with its message
        }
        failure.map_or(Ok(()), |err| Err((err, undelivered)))
    }

    /// `op` under `shard`'s breaker, or (not `through_breaker`) within the timeout alone.
    async fn run(
        &self,
        shard: usize,
        op: impl Future<Output = Result<(), CacheError>>,
        through_breaker: bool,
    ) -> Result<(), CacheError> {
        if through_breaker {
            Bounded::new(self, shard, op).await
        } else {
            tokio::time::timeout(self.settings.timeout, op)
                .await
                .unwrap_or(Err(CacheError::Timeout(self.settings.timeout)))
        }
    }

    /// Delivers the queued invalidations, `DELIVER_AT_ONCE` counters per round trip (each
    /// within the timeout: the queue can hold `MAX_PENDING`); `true` if those queued when it
    /// began were all delivered (others may have been queued meanwhile). Those of shards that
    /// cannot be reached stay queued while the others are delivered. Lookups go through the
    /// breakers (`bounded`: a failure counts towards opening them, and an open one fails at
    /// once); the breakers' own probes, which must get through while they are open, do not.
    pub async fn deliver_pending(&self, through_breaker: bool) -> bool {
        self.deliver(through_breaker).await.is_some_and(|failed| failed.is_empty())
    }

    /// [`deliver_pending`](Self::deliver_pending), saying which shards kept copies queued
    /// (`None`: another caller is delivering).
    async fn deliver(&self, through_breaker: bool) -> Option<BTreeSet<usize>> {
        // One delivery at a time: every lookup that finds the queue non-empty would send it.
        // The others are not served meanwhile.
        let _delivering = self.health.delivering()?;
        let pending = self.health.pending(usize::MAX, self.health.queued());
        let mut failed = BTreeSet::new();
        for part in pending.counters.chunks(DELIVER_AT_ONCE) {
            let mut logical: Vec<String> =
                part.iter().map(|c| self.keyspace.logical(c).into_owned()).collect();
            logical.sort_unstable();
            logical.dedup();
            let message = self.invalidation_message(&logical);
            let delivered: Vec<String> = match self.increment_copies(part, &message, through_breaker).await {
                Ok(()) => part.to_vec(),
                Err((_, undelivered)) => {
                    failed.extend(undelivered.iter().map(|c| self.keyspace.shard_of(c)));
                    part.iter().filter(|c| !undelivered.contains(c)).cloned().collect()
                }
            };
            if !delivered.is_empty() {
                self.health.delivered(&pending, Some(&delivered));
                Stats::count(&self.stats.invalidations);
                tracing::info!(counters = delivered.len(), "cached_query: queued invalidations delivered");
            }
        }
        Some(failed)
    }

    /// While `shard`'s breaker is open: try its node every `PROBE_EVERY`; once it answers,
    /// deliver the queued invalidations, then close the breaker if those of its shard were.
    /// (Those queued meanwhile, which fail at once while it is open, are delivered by the next
    /// lookups before they serve anything.) It holds the engine weakly: a cache dropped during
    /// an outage leaves no probe.
    fn spawn_probe(&self, shard: usize, weak: std::sync::Weak<Engine>) {
        tracing::warn!(
            backend = %self.store.describe(),
            shard,
            "cached_query: cache unreachable; bypassing it until it answers again"
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(engine) = weak.upgrade() else { return };
                let ping = engine.store.ping(engine.keyspace.namespace_counter_in(shard));
                let answered =
                    matches!(tokio::time::timeout(engine.settings.timeout, ping).await, Ok(Ok(())));
                if !answered {
                    continue;
                }
                // Not until the queue is empty: that could keep it open for as long as
                // invalidations keep coming.
                if engine.deliver(false).await.is_some_and(|failed| !failed.contains(&shard)) {
                    engine.health.close(shard);
                    tracing::info!(backend = %engine.store.describe(), shard, "cached_query: cache reachable again");
                    return;
                }
            }
        });
    }
}

impl Settle for Engine {
    fn timeout(&self) -> std::time::Duration {
        self.settings.timeout
    }

    fn is_open(&self, shard: usize) -> bool {
        self.health.is_open(shard)
    }

    /// Records how a bounded operation ended: failures to reach the store count towards
    /// opening the breaker (replacing the connections, and starting its probe).
    fn settle<T>(&self, shard: usize, result: &Result<T, CacheError>) {
        match result {
            Ok(_) => self.health.succeeded(shard),
            Err(err) if err.is_unavailable() => {
                if self.health.failure_opens(shard) {
                    // Requests that go unanswered may be stuck on a connection that nothing
                    // reports broken: the probe and what follows use new ones.
                    self.store.replace_connections();
                    self.spawn_probe(shard, self.myself());
                }
            }
            Err(_) => {}
        }
    }
}
