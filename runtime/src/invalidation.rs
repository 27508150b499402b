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

use std::future::Future;
use std::sync::Arc;

use crate::CacheError;
use crate::bounded::Settle;
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
                self.health.queue(&counters, self.keyspace.namespace_counter());
                Stats::count(&self.stats.invalidations_queued);
            }
        }
        result
    }

    /// Increments invalidation counters: every entry checked against them is invalid from the
    /// moment this returns. The local tier drops its entries that depend on them in any case
    /// (when Redis was not reached, the invalidation is queued, and older values must not be
    /// served from here meanwhile).
    async fn increment(&self, counters: &[String]) -> Result<(), CacheError> {
        let message = self.invalidation_message(counters);
        let result = self.bounded(self.announced_increment(counters, &message)).await;
        if let Some(local) = &self.local {
            local.invalidated(counters);
        }
        result
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Tells this instance's local tier and the others' that `counters` were incremented
    /// elsewhere than through `increment` (by a change feed).
    pub async fn announce_invalidated(&self, counters: &[String]) {
        if let Some(local) = &self.local {
            local.invalidated(counters);
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

    /// The store operation that increments `counters` and publishes `message` with them.
    fn announced_increment<'a>(
        &'a self,
        counters: &'a [String],
        message: &'a Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), CacheError>> + 'a {
        // The tags' marks (for the queries of `result_tags` that run meanwhile).
        let names = self.keyspace.tag_marks(counters);
        let copies = self.keyspace.copies(counters);
        async move {
            let marks = Marks { epoch: self.keyspace.tag_epoch(), names: &names };
            self.store.increment(&copies, marks, COUNTER_KEEP, self.announce(message)).await
        }
    }

    /// Delivers the queued invalidations, `DELIVER_AT_ONCE` counters per round trip (each
    /// within the timeout: the queue can hold `MAX_PENDING`); `true` if those queued when it began
    /// were delivered (others may have been queued meanwhile). Lookups go through the
    /// breaker (`bounded`: a failure counts towards opening it, and an open breaker fails at
    /// once); the breaker's own probe, which must get through while it is open, does not.
    pub async fn deliver_pending(&self, through_breaker: bool) -> bool {
        // One delivery at a time: every lookup that finds the queue non-empty would send it.
        // The others are not served meanwhile.
        let Some(_delivering) = self.health.delivering() else { return false };
        let since = self.health.queued();
        loop {
            let pending = self.health.pending(DELIVER_AT_ONCE, since);
            if pending.counters.is_empty() {
                return true;
            }
            let message = self.invalidation_message(&pending.counters);
            let increment = self.announced_increment(&pending.counters, &message);
            let delivered = if through_breaker {
                self.bounded(increment).await.is_ok()
            } else {
                matches!(tokio::time::timeout(self.settings.timeout, increment).await, Ok(Ok(())))
            };
            if !delivered {
                return false;
            }
            self.health.delivered(&pending);
            Stats::count(&self.stats.invalidations);
            tracing::info!(counters = pending.counters.len(), "cached_query: queued invalidations delivered");
        }
    }

    /// While the breaker is open: try the store every `PROBE_EVERY`; once it answers,
    /// deliver the queued invalidations, then close the breaker. (Those queued meanwhile,
    /// which fail at once while it is open, are delivered by the next lookups before they
    /// serve anything: waiting for an empty queue could keep it open for as long as
    /// invalidations keep coming.) It holds the engine weakly: a cache dropped during an
    /// outage leaves no probe.
    fn spawn_probe(&self, weak: std::sync::Weak<Engine>) {
        tracing::warn!(
            backend = %self.store.describe(),
            "cached_query: cache unreachable; bypassing it until it answers again"
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(engine) = weak.upgrade() else { return };
                let ping = engine.store.ping(engine.keyspace.namespace_counter());
                let answered =
                    matches!(tokio::time::timeout(engine.settings.timeout, ping).await, Ok(Ok(())));
                if answered && engine.deliver_pending(false).await {
                    engine.health.close();
                    tracing::info!(backend = %engine.store.describe(), "cached_query: cache reachable again");
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

    fn is_open(&self) -> bool {
        self.health.is_open()
    }

    /// Records how a bounded operation ended: failures to reach the store count towards
    /// opening the breaker (replacing the connections, and starting its probe).
    fn settle<T>(&self, result: &Result<T, CacheError>) {
        match result {
            Ok(_) => self.health.succeeded(),
            Err(err) if err.is_unavailable() => {
                if self.health.failure_opens() {
                    // Requests that go unanswered may be stuck on a connection that nothing
                    // reports broken: the probe and what follows use new ones.
                    self.store.replace_connections();
                    self.spawn_probe(self.myself());
                }
            }
            Err(_) => {}
        }
    }
}
