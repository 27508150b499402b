//! Whether the database's change feed can be trusted: while a cache watches a database
//! (`watch_postgres`) and its feed is down (not yet synchronised, connection lost), functions
//! that depend on a table do not use the cache at all: a change may have gone unheard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Feed {
    watching: AtomicBool,
    up: AtomicBool,
    /// How long a committed change may take to be applied (a polled feed's interval), in ms.
    delay_ms: AtomicU64,
}

// Without a database feature nothing watches: only `trusted` is called.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
impl Feed {
    /// From now on, a feed is watched (down until it first synchronises).
    pub fn watch(&self) {
        self.watching.store(true, SeqCst);
    }

    /// A feed read every `interval`: a change may take that long to be applied.
    pub fn polled_every(&self, interval: Duration) {
        self.delay_ms.store(interval.as_millis().try_into().unwrap_or(u64::MAX), SeqCst);
    }

    /// How long a committed change may take to be applied (zero for `LISTEN`, or no feed).
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(SeqCst))
    }

    /// Whether entries that depend on tables may be used: no feed is watched, or it is up.
    pub fn trusted(&self) -> bool {
        !self.watching.load(SeqCst) || self.up.load(SeqCst)
    }

    /// Synchronised and listening.
    pub fn up(&self) {
        self.up.store(true, SeqCst);
    }

    /// Lost, or not yet synchronised.
    pub fn down(&self) {
        if self.up.swap(false, SeqCst) {
            tracing::warn!(
                "cached_query: database change feed lost; functions that depend on tables bypass the cache until it is back"
            );
        }
    }
}
