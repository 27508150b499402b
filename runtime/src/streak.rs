//! A run of consecutive failures.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// Consecutive failures: counted up by each, reset by any success.
#[derive(Default)]
pub(crate) struct Streak(AtomicU32);

impl Streak {
    /// Ends the streak.
    pub fn reset(&self) {
        // Read first: every hit passes here, and a store would bounce the line between cores.
        if self.0.load(SeqCst) != 0 {
            self.0.store(0, SeqCst);
        }
    }

    /// Counts one more failure; returns the streak's length.
    pub fn fail(&self) -> u32 {
        self.0.fetch_add(1, SeqCst) + 1
    }

    /// Whether a failure came since the last success.
    pub fn started(&self) -> bool {
        self.0.load(SeqCst) != 0
    }
}
