//! The lease (`lock = true`): one process runs a missing entry's query while the others poll
//! for its result, up to `lock_wait`. `SET {key}:lock <token> NX PX <lease>`, released by a
//! compare-and-delete; a lease dropped unreleased is released in the background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::clock::now_ms;
use crate::engine::Engine;
use crate::entry::MAX_KEEP;
use crate::keyspace::{self, Target};
use crate::stats::Stats;
use crate::stored::Read;

/// The time between two looks for another process's result, while it holds the lease.
const LEASE_POLL: Duration = Duration::from_millis(10);

impl Engine {
    /// Takes the lease of the target's key, or waits for the result of the process holding
    /// it, up to the cache's `lock_wait`.
    pub async fn lease_or_result<V: DeserializeOwned + 'static>(&self, target: &Target) -> LeaseWait<V> {
        let deadline = Instant::now() + self.settings.lock_wait.min(MAX_KEEP);
        loop {
            match self.try_lease(target.key()).await {
                Leasing::Taken(lease) => {
                    // The previous holder may have stored its result and released the lease
                    // since this caller last looked: look once more, holding the lease.
                    let Some(result) = self.stored_result(target).await else {
                        return LeaseWait::Lease(lease);
                    };
                    self.release(lease).await;
                    return result;
                }
                // Fail-open: a cache that cannot be reached holds no lease worth waiting for.
                Leasing::Failed => return LeaseWait::GaveUp,
                Leasing::Held => {}
            }
            if Instant::now() >= deadline {
                return LeaseWait::GaveUp;
            }
            tokio::time::sleep(LEASE_POLL).await;
            if let Some(result) = self.stored_result(target).await {
                return result;
            }
        }
    }

    /// The fresh entry of `target` that another process's query stored, if there is one.
    async fn stored_result<V: DeserializeOwned + 'static>(&self, target: &Target) -> Option<LeaseWait<V>> {
        match self.read(target, None).await {
            Read::Valid { value, meta, bytes } if now_ms() < meta.fresh_until_ms => {
                Stats::count(&self.stats.lock_waits);
                Some(LeaseWait::Result(value, bytes.into()))
            }
            _ => None,
        }
    }

    /// `SET {key}:lock <token> NX PX <lease>`.
    pub async fn try_lease(&self, key: &str) -> Leasing {
        let (key, token) = (keyspace::lease(key), format!("{:016x}", fastrand::u64(..)));
        let taken = self.store.try_lock(&key, &token, self.settings.lock_lease);
        match self.bounded_at(&key, taken).await {
            Ok(true) => Leasing::Taken(Lease { key, token, engine: self.myself().upgrade() }),
            Ok(false) => Leasing::Held,
            Err(err) => {
                self.failed("lock", &key, &err);
                Leasing::Failed
            }
        }
    }

    /// Deletes the lease if it is still ours (compare-and-delete).
    pub async fn release(&self, mut lease: Lease) {
        self.unlock(&lease.key, &lease.token).await;
        lease.engine = None; // released: nothing left for its `Drop` (unless dropped above)
    }

    async fn unlock(&self, key: &str, token: &str) {
        if let Err(err) = self.bounded_at(key, self.store.unlock(key, token)).await {
            self.failed("unlock", key, &err);
        }
    }
}

/// A lease this caller holds (`lock = true`).
pub(crate) struct Lease {
    key: String,
    token: String,
    /// Until it is released: a lease dropped unreleased (its caller's future was dropped
    /// during the query) is released in the background, so that the next callers of the key,
    /// here or in other processes, need not wait `lock_wait` for it to expire.
    engine: Option<Arc<Engine>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (key, token) = (std::mem::take(&mut self.key), std::mem::take(&mut self.token));
        runtime.spawn(async move { engine.unlock(&key, &token).await });
    }
}

/// What an attempt to take a lease gave.
pub(crate) enum Leasing {
    Taken(Lease),
    /// Another caller holds it.
    Held,
    /// The cache failed (counted and logged).
    Failed,
}

pub(crate) enum LeaseWait<V> {
    Lease(Lease),
    Result(V, Arc<[u8]>),
    GaveUp,
}
