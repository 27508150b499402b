//! Admission (`admit_after = n`): a function whose keys are mostly read once would pay a lookup
//! and a store on every call for hits that never come. Its calls use the cache only for keys
//! this process has seen `n` times before within the function's TTL; the others run their query
//! alone, which is always correct (nothing is read from or written to the cache).
//!
//! The calls are counted in a fixed table of atomic slots, one word per slot: a fingerprint of
//! the key, when it was last called, and its calls. A call that is not admitted costs a hash and
//! two atomic operations, no allocation (a map with per-key expiry cost the cold workload of
//! docs/benchmarks.md a tenth of its throughput). Two keys that share a slot take turns, except
//! that a key already admitted keeps its slot while it is called: the keys called often stay.
//! A key is forgotten after a TTL without a call: a key called less often than its entry would
//! live gains nothing from being stored.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

/// Slots per cache (all functions together): 2 MiB, made on the first call that needs them.
const SLOTS: usize = 1 << 18;
/// The clock's unit, in milliseconds: a slot keeps 32 bits of it (two years).
const TICK_MS: u128 = 16;

/// The counts of calls per key, made on the first call of a function with `admit_after`.
pub(crate) struct Admission {
    slots: OnceLock<Box<[AtomicU64]>>,
    started: Instant,
}

impl Default for Admission {
    fn default() -> Self {
        Admission { slots: OnceLock::new(), started: Instant::now() }
    }
}

/// A slot's word: the key's fingerprint (24 bits), its last call (32 bits of ticks), its calls (8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Slot {
    fingerprint: u32,
    seen: u32,
    calls: u8,
}

impl Slot {
    fn pack(self) -> u64 {
        (u64::from(self.fingerprint) << 40) | (u64::from(self.seen) << 8) | u64::from(self.calls)
    }

    fn unpack(word: u64) -> Self {
        Slot { fingerprint: (word >> 40) as u32, seen: (word >> 8) as u32, calls: word as u8 }
    }
}

impl Admission {
    /// Whether a call of `key` may use the cache: `key` was called at least `after` times before
    /// (each call that was not admitted counts one), the last within `window`.
    pub fn admits(&self, key: &str, after: u32, window: Duration) -> bool {
        after == 0 || self.admits_hash(xxh3_64(key.as_bytes()), after, window)
    }

    fn admits_hash(&self, hash: u64, after: u32, window: Duration) -> bool {
        let slots = self.slots.get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        let slot = &slots[hash as usize % SLOTS];
        let (fingerprint, now) = ((hash >> 40) as u32, self.now());
        let window = u32::try_from(window.as_millis() / TICK_MS).unwrap_or(u32::MAX).max(1);
        let held = Slot::unpack(slot.load(Relaxed));
        let recent = now.wrapping_sub(held.seen) <= window && held.seen != 0;
        let after = u8::try_from(after).unwrap_or(u8::MAX);
        let calls = match (held.fingerprint == fingerprint, recent) {
            (true, true) if held.calls >= after => {
                if held.seen != now {
                    slot.store(Slot { seen: now, ..held }.pack(), Relaxed);
                }
                return true;
            }
            (true, true) => held.calls + 1,
            // Another key, admitted and called within its window, keeps the slot.
            (false, true) if held.calls >= after => return false,
            _ => 1,
        };
        slot.store(Slot { fingerprint, seen: now, calls }.pack(), Relaxed);
        false
    }

    /// Ticks since this cache was built, from 1 (0 marks a slot never used).
    fn now(&self) -> u32 {
        (self.started.elapsed().as_millis() / TICK_MS) as u32 | 1
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
            std::thread::sleep(window * 3);
            forgotten = !admission.admits("k", 1, window);
        }
        assert!(forgotten, "the key was still admitted after its window");
        assert!(admission.admits("k", 1, window), "counted again from the call that was not admitted");
    }

    /// Two keys of one slot (same low bits, other fingerprints): an admitted key keeps its slot
    /// from the other; keys not admitted take turns, each counting from one again.
    #[test]
    fn an_admitted_key_keeps_its_slot() {
        let admission = Admission::default();
        let (hot, cold, other) = (7u64 | (1 << 40), 7u64 | (2 << 40), 7u64 | (3 << 40));
        assert!(!admission.admits_hash(hot, 1, MINUTE));
        assert!(admission.admits_hash(hot, 1, MINUTE));
        for _ in 0..3 {
            assert!(!admission.admits_hash(cold, 1, MINUTE), "the slot is the admitted key's");
        }
        assert!(admission.admits_hash(hot, 1, MINUTE), "still admitted");
        let (cold, other) = (cold | (1 << 10), other | (1 << 10)); // another slot
        assert!(!admission.admits_hash(cold, 2, MINUTE));
        assert!(!admission.admits_hash(other, 2, MINUTE), "takes the slot over");
        assert!(!admission.admits_hash(cold, 2, MINUTE), "counts from one again");
        assert!(!admission.admits_hash(cold, 2, MINUTE));
        assert!(admission.admits_hash(cold, 2, MINUTE));
    }

    #[test]
    fn slots_pack_and_unpack() {
        let slot = Slot { fingerprint: 0xFF_FFFF, seen: u32::MAX, calls: 255 };
        assert_eq!(Slot::unpack(slot.pack()), slot);
        let slot = Slot { fingerprint: 0xAB_CDEF, seen: 12_345, calls: 3 };
        assert_eq!(Slot::unpack(slot.pack()), slot);
    }
}
