//! Admission (`admit_after = n`): a function whose keys are mostly read once would pay a lookup
//! and a store on every call for hits that never come. Its calls use the cache only for keys
//! this process has seen `n` times before within the function's TTL; the others run their query
//! alone, which is always correct (nothing is read from or written to the cache).
//!
//! The keys seen are counted in a bounded in-process map (moka's, whose frequency sketch keeps
//! the keys called often when the map is full of keys called once). Each key is forgotten after
//! a TTL without a call: a key called less often than its entry would live gains nothing from
//! being stored.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use xxhash_rust::xxh3::xxh3_64;

/// Keys counted per cache (all functions together): about 100 bytes each at most.
const KEYS_COUNTED: u64 = 100_000;

/// How often a key was called, and how long it is remembered without a call.
#[derive(Clone, Copy)]
struct Seen {
    calls: u32,
    window: Duration,
}

struct UntilIdle;

impl Expiry<u64, Seen> for UntilIdle {
    fn expire_after_create(&self, _: &u64, seen: &Seen, _: Instant) -> Option<Duration> {
        Some(seen.window)
    }

    fn expire_after_read(
        &self,
        _: &u64,
        seen: &Seen,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(seen.window)
    }

    fn expire_after_update(&self, _: &u64, seen: &Seen, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(seen.window)
    }
}

/// The calls seen per key, made on the first call of a function with `admit_after`.
#[derive(Default)]
pub(crate) struct Admission {
    seen: OnceLock<Cache<u64, Seen>>,
}

impl Admission {
    /// Whether a call of `key` may use the cache: `key` was called at least `after` times before
    /// (each call that was not admitted counts one), the last within `window`.
    pub fn admits(&self, key: &str, after: u32, window: Duration) -> bool {
        if after == 0 {
            return true;
        }
        let seen = self
            .seen
            .get_or_init(|| Cache::builder().max_capacity(KEYS_COUNTED).expire_after(UntilIdle).build());
        let hash = xxh3_64(key.as_bytes());
        let calls = seen.get(&hash).map_or(0, |s| s.calls);
        if calls >= after {
            return true;
        }
        seen.insert(hash, Seen { calls: calls + 1, window });
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_key_is_admitted_from_its_call_after_the_nth() {
        let admission = Admission::default();
        assert!(admission.admits("k", 0, MINUTE), "0: every call");
        for _ in 0..2 {
            assert!(!admission.admits("a", 2, MINUTE));
        }
        assert!(admission.admits("a", 2, MINUTE));
        assert!(admission.admits("a", 2, MINUTE), "admitted keys stay admitted");
        assert!(!admission.admits("b", 1, MINUTE), "keys are counted apart");
        assert!(admission.admits("b", 1, MINUTE));
    }

    #[test]
    fn a_key_is_forgotten_after_its_window_without_a_call() {
        let admission = Admission::default();
        let window = Duration::from_millis(30);
        assert!(!admission.admits("k", 1, window));
        assert!(admission.admits("k", 1, window));
        let deadline = Instant::now() + Duration::from_secs(10);
        // Each admitted call renews the window; the key is forgotten once a window passes
        // without one, and counts from zero again.
        let mut forgotten = false;
        while !forgotten && Instant::now() < deadline {
            std::thread::sleep(window * 2);
            forgotten = !admission.admits("k", 1, window);
        }
        assert!(forgotten, "the key was still admitted after its window");
        assert!(admission.admits("k", 1, window), "counted again from the call that was not admitted");
    }
}
