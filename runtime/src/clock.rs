//! The wall clock, in milliseconds: entries carry their expiry as wall-clock time, which every
//! process that shares them reads alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    #[cfg(test)]
    let now = now + ahead::by();
    now
}

/// Unit tests move this thread's wall clock forward (tokio's paused clock does not move it).
#[cfg(test)]
pub(crate) mod ahead {
    use std::cell::Cell;

    thread_local! {
        static AHEAD_MS: Cell<u64> = const { Cell::new(0) };
    }

    /// Moves this thread's clock `ms` forward.
    pub fn advance(ms: u64) {
        AHEAD_MS.with(|ahead| ahead.set(ahead.get() + ms));
    }

    pub(super) fn by() -> u64 {
        AHEAD_MS.with(Cell::get)
    }
}
