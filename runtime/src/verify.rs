//! Shadow verification (`verify = p` on a function, `.verify(p)` on the builder): a share of
//! hits runs the query again in the background, after the caller has its answer, and compares
//! the database's value with the one served, by their encodings. A difference that no
//! invalidation explains (the entry's counters unchanged, also after a grace period for an
//! invalidation on its way) is a missing invalidation: counted (`stale_detected`), logged at
//! `warn` (rate-limited) and invalidated.
//!
//! Bounded: at most one verification of a key in flight in this process (a flight of its
//! own), none while the breaker is open. Values whose encoding is not a function of the value
//! (a `HashMap`, whose order changes from one copy to the next) are not verified.

use std::future::Future;
use std::time::Duration;

use crate::clock::now_ms;
use crate::codec::{self, Meta};
use crate::engine::Engine;
use crate::entry::Policy;
use crate::flight::Role;
use crate::keyspace::{Target, key_counter};
use crate::outcome::Adapter;
use crate::stats::Stats;
use crate::stored::Read;
use crate::warn::WarnLimiter;

/// How long a difference waits for an invalidation on its way (a write committed just before
/// the verifying query read) before it counts; at least twice a polled feed's interval.
const GRACE: Duration = Duration::from_millis(500);

/// Stale entries found, apart from the cache's failures: neither hides the other.
static DETECTED: WarnLimiter = WarnLimiter::new();

impl Engine {
    /// Whether this hit is verified (at the policy's rate; never while its shard's breaker is
    /// open).
    pub fn verify_due(&self, policy: &Policy, target: &Target) -> bool {
        policy.verify > 0.0
            && fastrand::f64() < policy.verify
            && !self.health.is_open(self.keyspace.shard_of(target.key()))
    }

    /// Runs `body` in the background and compares its value with `served`, the value of the
    /// entry whose metadata is `meta` (see the module docs).
    pub fn spawn_verify<R, A, F>(
        &self,
        target: &Target,
        policy: &Policy,
        served: &A::Value,
        meta: Meta,
        body: F,
    ) where
        A: Adapter<R>,
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        // Compared without what differs between two writes of one value (expiry, counters).
        let bare = Meta { fresh_until_ms: 0, query_ms: 0, stamp: 0, stored_ms: 0 };
        let Ok(served) = codec::encode(served, bare) else { return };
        // A value whose encoding depends on more than the value (a `HashMap`'s order) cannot
        // be compared by bytes: its copy encodes differently. Not verified.
        let again =
            codec::decode::<A::Value>(&served).ok().and_then(|(copy, _)| codec::encode(&copy, bare).ok());
        if again.as_ref() != Some(&served) {
            return;
        }
        let (Role::Leader(verifying), _) = self.flights.join(&format!("{}\0verify", target.key())) else {
            return;
        };
        let (Some(engine), target) = (self.myself().upgrade(), target.clone()) else { return };
        let function = policy.function;
        tokio::spawn(async move {
            let _verifying = verifying; // leaves the flight however the task ends
            let result = body.await;
            let Some(fresh) = A::value(&result) else { return }; // failed: nothing to compare
            if codec::encode(fresh, bare).is_ok_and(|fresh| fresh == served) {
                return;
            }
            tokio::time::sleep(GRACE.max(engine.feed.delay().saturating_mul(2))).await;
            // With `result_tags`, only the entry served, still valid, says that none of its
            // tags was invalidated (their counters are not among those a miss reads).
            match engine.read_counted::<A::Value>(&target, None, false).await {
                Read::Valid { meta: now, .. } if now.stamp == meta.stamp && !target.result_tagged => {}
                Read::Valid { meta: now, .. } if now == meta => {}
                Read::Unusable { stamp: Some(stamp) } if stamp == meta.stamp && !target.result_tagged => {}
                _ => return, // invalidated meanwhile, or the counters could not be read
            }
            Stats::count(&engine.stats.stale_detected);
            let age_ms = now_ms().saturating_sub(meta.stored_ms);
            DETECTED.warn(|suppressed| {
                tracing::warn!(
                    function,
                    key = target.key(),
                    age_ms,
                    suppressed,
                    "cached_query: verify found a cached value that differs from the database's, with no \
                     invalidation since it was computed (a missing invalidation?); invalidated"
                );
            });
            let _ = engine.invalidate("verify", vec![key_counter(target.key())]).await;
        });
    }
}
