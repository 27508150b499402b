//! The path of a cached call, top to bottom.
//!
//! 1. `find`: one round trip reads the entry and the invalidation counters it depends on (the
//!    namespace's, the key's, its tags'; on a single server, once known, they are kept in the
//!    process by client tracking and a warm hit is one `GET`: see `store::tracking`). An entry
//!    is valid only if it was computed from a read that began after the last increment of
//!    each: this is what makes an invalidation final (no stale set, see docs/guarantees.md). A
//!    fresh entry is returned; a stale one (past its TTL, within `stale`) is returned too and
//!    refreshed once in the background.
//! 2. On a miss, the key's flight: the first caller leads, checks the entry once more (a flight
//!    may have just ended) and runs the query; the others wait and take its result if it was
//!    computed from the same counters they read, or if its leader joined after they first
//!    did (it read the counters after they began), and go round again otherwise.
//! 3. `compute`: optionally take a Redis lease (`lock = true`) so that one process runs the query
//!    while the others poll for its result; run the query; store the result with its TTL
//!    (± jitter) + `stale` and the counters read before it ran; hand it to the waiters.
//! 4. `spawn_refresh`: one background refresh per key and process (and, with `lock`, across
//!    processes). When it fails, the stale value stays and is served (fail-safe), or is deleted
//!    so that the next caller sees the error (`fail_safe = false`).
//!
//! Every cache failure on the way is counted and turns into "run the query".

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::decoded::{Copier, MIN_PAYLOAD};
use crate::engine::Engine;
use crate::entry::{Envelope, Policy, early_refresh_due};
use crate::flight::{self, Leader, Role, Shared};
use crate::keyspace::Target;
use crate::lease::{LeaseWait, Leasing};
use crate::local::{Local, LocalEntry};
use crate::outcome::{Adapter, ErrorShare, SharedError};
use crate::result_tags::ResultTags;
use crate::stats::Stats;
use crate::stored::{Read, Stamp};

/// What `find` found.
pub(crate) enum Found<V> {
    /// A value to return, with its entry's metadata; `refresh` asks for a background refresh
    /// of it, with the freshness it had (a refresh that finds another one landed will skip);
    /// `stale` if past its TTL; `local` if the local tier answered; `size`, the entry's bytes.
    Value { value: V, meta: Meta, refresh: Option<u64>, stale: bool, local: bool, size: usize },
    /// Nothing usable: the caller runs the query.
    Compute(Duty),
    /// The query this caller waited for failed with this error (see `outcome::ErrorShare`).
    Failed(SharedError),
}

/// What a caller that must run the query carries to `compute`.
pub(crate) struct Duty {
    /// The key's flight, if this caller leads one.
    leader: Option<Leader>,
    /// The counters read before the query.
    stamp: Stamp,
    /// The local tier's epoch before the read (see `local`).
    epoch: Option<u64>,
}

/// Failed queries of a key that its waiters wait for, one after the other, before each runs
/// its own.
const MAX_HANDOVERS: u32 = 2;

impl Engine {
    /// Steps 1 and 2: the entry of `target`, or the duty to compute it.
    pub async fn find<V: DeserializeOwned + 'static>(
        &self,
        target: &Target,
        policy: &Policy,
        copier: Option<Copier<V>>,
    ) -> Found<V> {
        let stats = &self.stats;
        let local = self.local.as_deref();
        let epoch = local.map(Local::epoch);
        if let Some(entry) = self.local_get(target).await
            && let Ok((value, meta)) = self.local_value(target.key(), &entry, copier)
        {
            Stats::count(&stats.hits);
            Stats::count(&stats.local_hits);
            let refresh = (policy.early && early_refresh_due(now_ms(), meta)).then_some(meta.fresh_until_ms);
            return Found::Value { value, meta, refresh, stale: false, local: true, size: entry.bytes.len() };
        }
        let ended = self.flights.ended(target.key());
        let stamp = match self.read(target, copier).await {
            Read::Valid { value, meta, bytes } => {
                let size = bytes.len();
                if let (Some(local), Some(epoch)) = (local, epoch) {
                    local.put(epoch, target.key(), self.local_entry(target, bytes.into(), meta, None)).await;
                }
                match self.serve(value, meta, policy, size) {
                    Ok(found) => return found,
                    Err(()) => Some(meta.stamp), // stale, and nobody can refresh it: a miss
                }
            }
            Read::Unusable { stamp } => stamp,
        };
        if !policy.single_flight {
            Stats::count(&stats.misses);
            return Found::Compute(Duty { leader: None, stamp, epoch });
        }
        let (mut first_ticket, mut failures) = (None, 0);
        loop {
            let (role, ticket) = self.flights.join(target.key());
            let first_ticket = *first_ticket.get_or_insert(ticket);
            match role {
                Role::Waiter(rx) => {
                    // The leader's result, if computed from the counters this caller read, or
                    // by a leader that joined after this caller first did: it read the
                    // counters after this call began, so its result reflects every
                    // invalidation that had returned by then. (Not a leader that came
                    // earlier with other counters, nor one whose counters this caller could
                    // not compare, having failed to read its own.)
                    let (bytes, leader_ticket) = match flight::wait(rx).await {
                        Shared::Done(bytes, ticket) => (bytes, ticket),
                        Shared::Abandoned => continue,
                        // One waiter runs a failed query again; if that fails too, each caller
                        // runs its own rather than wait for as many failures as callers.
                        // An error, on the terms of a value (below): not one of a query that
                        // began before an invalidation that returned before this call began.
                        Shared::Failed(Some(failed))
                            if (stamp.is_some() && stamp == failed.stamp) || failed.ticket > first_ticket =>
                        {
                            Stats::count(&stats.misses);
                            Stats::count(&stats.coalesced);
                            return Found::Failed(failed.error);
                        }
                        Shared::Failed(_) => {
                            failures += 1;
                            if failures < MAX_HANDOVERS {
                                continue;
                            }
                            Stats::count(&stats.misses);
                            return Found::Compute(Duty { leader: None, stamp, epoch });
                        }
                    };
                    // (Not by the counters alone for `result_tags`: the tags of a result its
                    // leader did not store, or that were invalidated since, are not among them.
                    // Such a waiter goes round and reads the stored entry, checked in full.)
                    if let Ok((value, meta)) = self.decode(target.key(), &bytes, copier)
                        && ((stamp == Some(meta.stamp) && !target.result_tagged)
                            || leader_ticket > first_ticket)
                    {
                        Stats::count(&stats.hits);
                        Stats::count(&stats.coalesced);
                        return Found::Value {
                            value,
                            meta,
                            refresh: None,
                            stale: false,
                            local: false,
                            size: bytes.len(),
                        };
                    }
                }
                Role::Leader(leader) => {
                    // A flight may have ended between this caller's read and its joining: then
                    // read again (quietly: a bad entry was counted by the first read). If none
                    // did, that read is as recent as this one would be.
                    if self.flights.ended(target.key()) == ended {
                        Stats::count(&stats.misses);
                        return Found::Compute(Duty { leader: Some(leader), stamp, epoch });
                    }
                    return match self.read_counted(target, copier, false).await {
                        Read::Valid { value, meta, bytes } if now_ms() < meta.fresh_until_ms => {
                            let size = bytes.len();
                            leader.finish(Some(bytes.into()));
                            Stats::count(&stats.hits);
                            Found::Value { value, meta, refresh: None, stale: false, local: false, size }
                        }
                        Read::Valid { meta, .. } => {
                            Stats::count(&stats.misses);
                            Found::Compute(Duty { leader: Some(leader), stamp: Some(meta.stamp), epoch })
                        }
                        Read::Unusable { stamp } => {
                            Stats::count(&stats.misses);
                            Found::Compute(Duty { leader: Some(leader), stamp, epoch })
                        }
                    };
                }
            }
        }
    }

    /// A valid entry: fresh, or stale and refreshable (`Err` otherwise).
    fn serve<V>(&self, value: V, meta: Meta, policy: &Policy, size: usize) -> Result<Found<V>, ()> {
        let stats = &self.stats;
        let now = now_ms();
        let stale = now >= meta.fresh_until_ms;
        if stale && !policy.refreshable {
            return Err(());
        }
        Stats::count(&stats.hits);
        if stale {
            Stats::count(&stats.stale_served);
        }
        let refresh =
            (stale || (policy.early && early_refresh_due(now, meta))).then_some(meta.fresh_until_ms);
        Ok(Found::Value { value, meta, refresh, stale, local: false, size })
    }

    /// Step 3: runs the query for a missing entry, stores and shares its result.
    #[allow(clippy::too_many_arguments)] // the generated call's parts, passed on as they are
    pub async fn compute<R, A, F, G>(
        &self,
        target: &Target,
        policy: &Policy,
        Duty { leader, stamp, epoch }: Duty,
        body: F,
        copier: Option<Copier<A::Value>>,
        errors: Option<ErrorShare<R>>,
        result_tags: &G,
    ) -> R
    where
        A: Adapter<R>,
        F: Future<Output = R>,
        G: ResultTags<A::Value>,
    {
        let mut lease = None;
        if policy.lock {
            match self.lease_or_result::<A::Value>(target).await {
                LeaseWait::Lease(held) => lease = Some(held),
                LeaseWait::Result(value, bytes) => {
                    if let Some(leader) = leader {
                        leader.finish(Some(bytes));
                    }
                    return A::wrap(value);
                }
                LeaseWait::GaveUp => {}
            }
        }
        let since = self.since(target, stamp).await;
        let started = Instant::now();
        let result = body.instrument(tracing::debug_span!("cache.query", function = policy.function)).await;
        let took = started.elapsed();
        self.functions.query(policy.function, took);
        let mut envelope = self.prepare::<R, A>(target, &result, policy, stamp, took, copier);
        let tags = A::value(&result).and_then(|value| result_tags.of(value));
        self.tag(target, &mut envelope, tags, since).await;
        if let Some(envelope) = &envelope
            && envelope.storable
        {
            let size = envelope.bytes.len();
            let set = tracing::debug_span!("cache.set", cache.key = target.key(), cache.item_size = size);
            if self.write(target.key(), &envelope.bytes, envelope.keep, false).instrument(set).await {
                self.written(target, envelope, epoch).await;
            }
        }
        if let Some(leader) = leader {
            // The waiters get the value even if it was not stored; or else the error.
            let error = errors.and_then(|errors| errors.keep(&result));
            leader.finish_or_fail(envelope.map(|envelope| envelope.bytes), error, stamp);
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
        result
    }

    /// Step 4: refreshes `target` in the background, unless a refresh of it is under way here.
    pub fn spawn_refresh<R, A, F, G>(
        &self,
        target: &Target,
        policy: Policy,
        seen_fresh_until: u64,
        body: F,
        copier: Option<Copier<A::Value>>,
        result_tags: G,
    ) where
        A: Adapter<R>,
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
        G: ResultTags<A::Value> + 'static,
    {
        // A flight of its own: at most one refresh per key in this process.
        let (Role::Leader(refreshing), _) = self.flights.join(&format!("{}\0refresh", target.key())) else {
            return;
        };
        let (Some(engine), target) = (self.myself().upgrade(), target.clone()) else { return };
        tokio::spawn(async move {
            let _refreshing = refreshing; // leaves the flight however the task ends
            engine
                .refresh::<R, A, F, G>(&target, &policy, seen_fresh_until, body, copier, &result_tags)
                .await;
        });
    }

    async fn refresh<R, A, F, G>(
        &self,
        target: &Target,
        policy: &Policy,
        seen_fresh_until: u64,
        body: F,
        copier: Option<Copier<A::Value>>,
        result_tags: &G,
    ) where
        A: Adapter<R>,
        F: Future<Output = R>,
        G: ResultTags<A::Value>,
    {
        let epoch = self.local.as_deref().map(Local::epoch);
        // The counters to store with the new value, read before its query runs; and another
        // refresh (here or in another process) may have landed meanwhile.
        let stamp = match self.read::<A::Value>(target, None).await {
            Read::Valid { meta, .. } if meta.fresh_until_ms != seen_fresh_until => return,
            Read::Valid { meta, .. } => meta.stamp,
            Read::Unusable { stamp: Some(stamp) } => stamp,
            // The cache failed (counted): no refresh now, and the stale value stays.
            Read::Unusable { stamp: None } => return,
        };
        let lease = if policy.lock {
            match self.try_lease(target.key()).await {
                // Another process may have refreshed it, and released the lease, since this
                // one looked: look once more, holding the lease.
                Leasing::Taken(lease) => match self.read::<A::Value>(target, None).await {
                    Read::Valid { meta, .. } if meta.fresh_until_ms != seen_fresh_until => {
                        self.release(lease).await;
                        return;
                    }
                    _ => Some(lease),
                },
                // Another process refreshes it, or the cache failed (counted): no refresh.
                Leasing::Held | Leasing::Failed => return,
            }
        } else {
            None
        };
        let since = self.since(target, Some(stamp)).await;
        let started = Instant::now();
        let result = body.await;
        let took = started.elapsed();
        self.functions.query(policy.function, took);
        let stats = &self.stats;
        let mut envelope = self.prepare::<R, A>(target, &result, policy, Some(stamp), took, copier);
        let tags = A::value(&result).and_then(|value| result_tags.of(value));
        let trusted = self.tag(target, &mut envelope, tags, since).await;
        match envelope {
            // Its tags could not be checked (or one was invalidated meanwhile): the stale value
            // stays, as after a failed refresh (fail-safe); the next refresh tries again.
            Some(_) if !trusted => {}
            Some(envelope) if !envelope.storable => {
                // Now empty, with `cache_none = false`: the old value must not stay.
                self.remove(target.key()).await;
            }
            Some(envelope) => {
                if self.write(target.key(), &envelope.bytes, envelope.keep, true).await {
                    Stats::count(&stats.refreshes);
                    self.written(target, &envelope, epoch).await;
                }
            }
            None => {
                Stats::count(&stats.refresh_errors);
                let then =
                    if policy.fail_safe { "serving the stale value" } else { "dropping the stale value" };
                self.refresh_warnings.warn(|suppressed| {
                    tracing::warn!(key = %target.key(), suppressed, "cached_query: background refresh failed; {then}");
                });
                if !policy.fail_safe {
                    self.remove(target.key()).await;
                }
            }
        }
        if let Some(lease) = lease {
            self.release(lease).await;
        }
    }

    /// The tag epoch before a query of a function with `result_tags` (see `tag_result`); not
    /// read when the counters could not be (`stamp`): its result will not be stored anyway.
    async fn since(&self, target: &Target, stamp: Option<u64>) -> Option<u64> {
        match target.result_tagged && stamp.is_some() {
            true => self.tag_epoch(target.key()).await,
            false => None,
        }
    }

    /// Gives a result's envelope the tags computed from its value (`result_tags`); `false`
    /// when they cannot be trusted (see `tag_result`): the envelope is then not storable.
    async fn tag(
        &self,
        target: &Target,
        envelope: &mut Option<Envelope>,
        tags: Option<Vec<String>>,
        since: Option<u64>,
    ) -> bool {
        match (envelope, tags) {
            (Some(envelope), Some(tags)) if envelope.storable => {
                self.tag_result(target.key(), envelope, &tags, since).await
            }
            _ => true,
        }
    }

    /// What the local tier keeps of an entry: dropped when a counter it depends on is
    /// invalidated, its result tags' included.
    fn local_entry(
        &self,
        target: &Target,
        bytes: Arc<[u8]>,
        meta: Meta,
        kept: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> LocalEntry {
        let mut counters: Vec<String> = target
            .counters(&self.keyspace)
            .iter()
            .map(|name| self.keyspace.logical(name).into_owned())
            .collect();
        if let Ok(Some(result)) = codec::result_tags(&bytes) {
            counters.extend(self.keyspace.tag_counters(&result.tags));
        }
        let decoded = Arc::new(kept.map_or_else(OnceLock::new, OnceLock::from));
        LocalEntry { bytes, fresh_until_ms: meta.fresh_until_ms, counters: counters.into(), decoded, id: 0 }
    }

    /// The value of a local entry. For a type that can be copied (`Clone + Send + Sync`), a copy
    /// of the value it was decoded to before (an `Arc<T>`: the same allocation), kept in the
    /// entry once its payload is of a multi-row size (see `decoded::MIN_PAYLOAD`); otherwise
    /// decoded. The kept value leaves with its entry: on invalidation, expiry or eviction.
    fn local_value<V: DeserializeOwned + 'static>(
        &self,
        key: &str,
        entry: &LocalEntry,
        copier: Option<Copier<V>>,
    ) -> Result<(V, Meta), codec::DecodeError> {
        let Some(copier) = copier else { return self.decode(key, &entry.bytes, None) };
        if let Some(value) = entry.decoded.get().and_then(|kept| kept.downcast_ref::<V>()) {
            Stats::count(&self.stats.reused_decodes);
            return Ok((copier.copy(value), codec::meta(&entry.bytes)?));
        }
        let (value, meta) = codec::decode::<V>(&entry.bytes)?;
        if entry.bytes.len() >= MIN_PAYLOAD {
            let _ = entry.decoded.set(copier.keep(&value));
        }
        Ok((value, meta))
    }

    /// A fresh entry of the local tier, if it has one and may serve.
    async fn local_get(&self, target: &Target) -> Option<LocalEntry> {
        self.local.as_ref()?.get(target.key()).await
    }

    /// After this instance stored an entry (and announced it, see `store`): keep it locally.
    async fn written(&self, target: &Target, envelope: &Envelope, epoch: Option<u64>) {
        let (Some(local), Some(epoch)) = (self.local.as_deref(), epoch) else { return };
        let Ok(meta) = codec::meta(&envelope.bytes) else { return };
        let entry = self.local_entry(target, envelope.bytes.clone(), meta, envelope.kept.clone());
        local.put(epoch, target.key(), entry).await;
    }
}
