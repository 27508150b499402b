//! Seeded XXH3 as the hasher of the in-process maps keyed by cache keys (the counters known
//! through client tracking, the kept decodes): those keys are long and looked up on every hit,
//! where SipHash costs more than the rest of the lookup. Each map gets a random seed of its
//! own, so that no one can craft keys that collide in it.

use std::hash::{BuildHasher, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Builds [`SeededHasher`]s with one random seed.
#[derive(Clone, Copy)]
pub(crate) struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        Seeded(fastrand::u64(..))
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;

    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// XXH3-64 of each write, seeded with the hash so far.
pub(crate) struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    /// The end mark `str` and slices write after their bytes: mixed in without another XXH3
    /// call (a bijection of the hash so far, so it adds no collisions).
    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
