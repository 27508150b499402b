//! Rate-limited warnings: a Redis outage must not flood the logs with one line per call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// At most one warning per interval; the ones in between are counted and reported with the
/// next one that is let through.
pub(crate) struct WarnLimiter {
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

const INTERVAL: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl WarnLimiter {
    pub const fn new() -> Self {
        WarnLimiter { next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Calls `log` with the number of warnings suppressed since the last one, or counts this
    /// one as suppressed.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let now = now_ms();
        let next = self.next_ms.load(Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + INTERVAL.as_millis() as u64, Relaxed, Relaxed)
                .is_ok()
        {
            log(self.suppressed.swap(0, Relaxed));
        } else {
            self.suppressed.fetch_add(1, Relaxed);
        }
    }
}
