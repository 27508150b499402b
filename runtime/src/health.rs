//! What a cache knows about its store being reachable: the circuit breakers, and the
//! invalidations that could not be delivered.
//!
//! - After `TRIP_AFTER` consecutive failures to reach the store (timeouts, refused or dropped
//!   connections; not errors the server answered with), the breaker opens: operations fail at
//!   once, without paying the timeout, so cached functions cost what their query costs. The
//!   store's connections are replaced (they may be stuck with nothing to say so). One
//!   background probe tries the store every `PROBE_EVERY`; when it answers, the pending
//!   invalidations are applied, then the breaker closes. There is one breaker per keyspace
//!   shard (see `keyspace`; one on a server): on a cluster, a master that fails opens the
//!   breakers of its shards only.
//! - An invalidation that cannot reach the store returns its error *and* is queued (up to
//!   `MAX_PENDING` counters; past that the whole namespace is invalidated instead): the copies
//!   of the counters that were not incremented, by their names in the store. While any is
//!   pending in a shard, lookups in that shard try to deliver them first and serve nothing from
//!   the store until they are delivered: an invalidation is never lost to an outage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::function_stats::metrics;
use crate::streak::Streak;

/// Consecutive failures that open the breaker.
pub(crate) const TRIP_AFTER: u32 = 3;
/// How often the probe tries the store while the breaker is open.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(200);
/// The most invalidation counters kept for delivery; past that, the namespace's.
pub(crate) const MAX_PENDING: usize = 10_000;

/// The counters to deliver, each with the number of the last time it was queued.
#[derive(Default)]
struct Queue {
    counters: BTreeMap<String, u64>,
    queued: u64,
}

/// The queued counters at one moment, to deliver.
pub(crate) struct Pending {
    pub counters: Vec<String>,
    /// Counters queued again after this (while these were being delivered) stay queued.
    upto: u64,
}

/// A delivery of the queue under way; the next may start when this is dropped.
pub(crate) struct Delivering<'a>(&'a AtomicBool);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

pub(crate) struct Health {
    breakers: Box<[Breaker]>,
    pending: Mutex<Queue>,
    /// Set while the queue is being delivered.
    delivering: AtomicBool,
    has_pending: AtomicBool,
}

/// One shard's circuit breaker.
#[derive(Default)]
struct Breaker {
    failures: Streak,
    open: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(1)
    }
}

impl Health {
    /// The health of a store of `shards` keyspace shards.
    pub fn new(shards: usize) -> Health {
        Health {
            breakers: (0..shards.max(1)).map(|_| Breaker::default()).collect(),
            pending: Mutex::default(),
            delivering: AtomicBool::new(false),
            has_pending: AtomicBool::new(false),
        }
    }

    /// Whether operations on `shard`'s names should fail fast.
    pub fn is_open(&self, shard: usize) -> bool {
        self.breakers[shard].open.load(SeqCst)
    }

    pub fn succeeded(&self, shard: usize) {
        self.breakers[shard].failures.reset();
    }

    /// Counts a failure to reach `shard`'s names; `true` if this one opened its breaker (the
    /// caller then starts its probe).
    pub fn failure_opens(&self, shard: usize) -> bool {
        let breaker = &self.breakers[shard];
        let opens = breaker.failures.fail() >= TRIP_AFTER
            && breaker.open.compare_exchange(false, true, SeqCst, SeqCst).is_ok();
        if opens {
            metrics::breaker(true);
        }
        opens
    }

    pub fn close(&self, shard: usize) {
        let breaker = &self.breakers[shard];
        breaker.failures.reset();
        if breaker.open.swap(false, SeqCst) {
            metrics::breaker(self.breakers.iter().any(|breaker| breaker.open.load(SeqCst)));
        }
    }

    /// Queues invalidation counters that could not be incremented. `full` replaces them all
    /// when the queue is full (the namespace's counters).
    pub fn queue(&self, keys: &[String], full: &[String]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.queued += 1;
        let queued = pending.queued;
        pending.counters.extend(keys.iter().map(|key| (key.clone(), queued)));
        if pending.counters.len() > MAX_PENDING {
            pending.counters.clear();
            pending.counters.extend(full.iter().map(|key| (key.clone(), queued)));
        }
        self.has_pending.store(true, SeqCst);
    }

    /// Whether a queued counter is one that `of` picks.
    pub fn pending_where(&self, of: impl Fn(&str) -> bool) -> bool {
        self.has_pending() && {
            let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.counters.keys().any(|key| of(key))
        }
    }

    pub fn has_pending(&self) -> bool {
        self.has_pending.load(SeqCst)
    }

    /// The right to deliver the queue, unless a delivery is under way.
    pub fn delivering(&self) -> Option<Delivering<'_>> {
        // Lazily: a guard made and dropped on the way out would clear the flag it lost to.
        (!self.delivering.swap(true, SeqCst)).then(|| Delivering(&self.delivering))
    }

    /// How many times counters were queued so far (see [`pending`](Self::pending)).
    pub fn queued(&self) -> u64 {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).queued
    }

    /// Up to `at_most` of the counters queued, last, no later than the `since`-th queueing
    /// (`u64::MAX`: all), to deliver.
    pub fn pending(&self, at_most: usize, since: u64) -> Pending {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let counters = pending
            .counters
            .iter()
            .filter(|(_, queued)| **queued <= since)
            .take(at_most)
            .map(|(k, _)| k.clone());
        Pending { counters: counters.collect(), upto: pending.queued }
    }

    /// Forgets counters that were delivered (`delivered`'s, or those of them `only` names),
    /// unless they were queued again since.
    pub fn delivered(&self, delivered: &Pending, only: Option<&[String]>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for key in only.unwrap_or(&delivered.counters) {
            if pending.counters.get(key).is_some_and(|&queued| queued <= delivered.upto) {
                pending.counters.remove(key);
            }
        }
        self.has_pending.store(!pending.counters.is_empty(), SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_once_after_consecutive_failures() {
        let health = Health::default();
        assert!(!health.failure_opens(0) && !health.failure_opens(0));
        health.succeeded(0);
        assert!(!health.failure_opens(0) && !health.failure_opens(0));
        assert!(health.failure_opens(0), "the third in a row opens it");
        assert!(!health.failure_opens(0), "already open: no second probe");
        assert!(health.is_open(0));
        health.close(0);
        assert!(!health.is_open(0));
    }

    #[test]
    fn each_shard_has_its_breaker() {
        let health = Health::new(3);
        for _ in 0..TRIP_AFTER {
            health.failure_opens(1);
        }
        assert!(health.is_open(1) && !health.is_open(0) && !health.is_open(2));
        health.queue(&["a{1}:ns".into()], &[]);
        assert!(health.pending_where(|k| k.contains("{1}")) && !health.pending_where(|k| k.contains("{2}")));
    }

    #[test]
    fn the_queue_is_bounded_by_a_namespace_invalidation() {
        let health = Health::default();
        health.queue(&["a".into(), "b".into()], &["ns".into()]);
        assert!(health.has_pending());
        health.delivered(&Pending { counters: vec!["a".into(), "b".into()], upto: 1 }, Some(&["a".into()]));
        assert_eq!(health.pending(usize::MAX, u64::MAX).counters, ["b"]);
        let many: Vec<String> = (0..=MAX_PENDING).map(|i| i.to_string()).collect();
        health.queue(&many, &["ns".into()]);
        assert_eq!(health.pending(usize::MAX, u64::MAX).counters, ["ns"]);
        health.delivered(&health.pending(usize::MAX, u64::MAX), None);
        assert!(!health.has_pending());
    }

    #[test]
    fn one_delivery_at_a_time() {
        let health = Health::default();
        let first = health.delivering();
        assert!(first.is_some());
        assert!(health.delivering().is_none(), "a second waits");
        assert!(health.delivering().is_none(), "and a third: the second did not clear it");
        drop(first);
        assert!(health.delivering().is_some());
    }

    #[test]
    fn the_queue_is_delivered_in_parts_up_to_what_was_queued_when_it_began() {
        let health = Health::default();
        for n in 0..5 {
            health.queue(&[format!("k{n}")], &["ns".into()]);
        }
        let since = health.queued();
        health.queue(&["later".into()], &["ns".into()]);
        let first = health.pending(3, since);
        assert_eq!(first.counters, ["k0", "k1", "k2"]);
        health.delivered(&first, None);
        assert_eq!(health.pending(3, since).counters, ["k3", "k4"], "not the later one");
        assert_eq!(health.pending(usize::MAX, u64::MAX).counters, ["k3", "k4", "later"]);
    }

    /// An invalidation that fails (and is queued) while the same counter's earlier one is
    /// being delivered must stay queued: the delivery may have incremented it before the
    /// write of the later one committed.
    #[test]
    fn a_counter_queued_again_during_its_delivery_stays_queued() {
        let health = Health::default();
        health.queue(&["k".into()], &["ns".into()]);
        let delivering = health.pending(usize::MAX, u64::MAX);
        health.queue(&["k".into()], &["ns".into()]);
        health.delivered(&delivering, None);
        assert!(health.has_pending());
        assert_eq!(health.pending(usize::MAX, u64::MAX).counters, ["k"]);
        health.delivered(&health.pending(usize::MAX, u64::MAX), None);
        assert!(!health.has_pending());
    }
}
