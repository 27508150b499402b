//! Invalidation counters, and the stamp an entry carries: a hash of the values its counters had
//! when its query began. An entry is valid while its stamp is that of its counters' values now;
//! invalidating is incrementing a counter.

use std::time::Duration;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::CacheError;

/// How long an invalidation counter is kept after its last increment.
pub(crate) const COUNTER_KEEP: Duration = Duration::from_secs(8 * 24 * 3600);

/// How many counters a stamp is computed from without allocating (an entry has two, plus one
/// per tag).
pub(crate) const INLINE_COUNTERS: usize = 8;

/// The stamp of counters with these values: XXH3-64 of their little-endian bytes, one after
/// the other; in one call for up to `INLINE_COUNTERS` values (the streaming hasher costs more
/// than the hash itself), streamed beyond.
pub(crate) fn stamp(values: &[u64]) -> u64 {
    if values.len() > INLINE_COUNTERS {
        let mut hasher = Xxh3::new();
        for value in values {
            hasher.update(&value.to_le_bytes());
        }
        return hasher.digest();
    }
    let mut bytes = [0u8; 8 * INLINE_COUNTERS];
    for (chunk, value) in bytes.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    xxh3_64(&bytes[..8 * values.len()])
}

/// Where an invalidation counter that does not exist starts (it is then incremented): at
/// random, so that a counter that expired or was evicted and is made again never takes a
/// value it had before (a read of a counter that does not exist gives 0; entries computed
/// under its old values must stay invalid). Far from 0 and from `i64::MAX` (`INCR`'s range).
pub(crate) fn counter_start() -> u64 {
    fastrand::u64(1 << 32..1 << 62)
}

/// A counter's value as Redis stores it (`INCR` keeps decimal text).
pub(crate) fn parse_counter(bytes: &[u8]) -> Result<u64, CacheError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| CacheError::Decode("an invalidation counter is not a number".into()))
}

/// The values of counters as `MGET` returns them (0 for an absent one).
pub(crate) fn parse_counters(values: &[Option<Vec<u8>>]) -> Result<Vec<u64>, CacheError> {
    values.iter().map(|v| v.as_deref().map_or(Ok(0), parse_counter)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries store this stamp: it must not change with how it is computed.
    #[test]
    fn the_stamp_is_the_hash_of_the_values_bytes() {
        let bytes: Vec<u8> = [3u64, 0, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(stamp(&[3, 0, 7]), xxh3_64(&bytes));
        assert_eq!(stamp(&[]), xxh3_64(&[]));
        let many: Vec<u64> = (0..20).collect();
        let bytes: Vec<u8> = many.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(stamp(&many), xxh3_64(&bytes), "streamed beyond INLINE_COUNTERS");
        assert_eq!(stamp(&many[..8]), xxh3_64(&bytes[..64]));
        // Bit for bit the streaming hash entries were written with, at every length.
        for n in 0..=12 {
            let mut streamed = Xxh3::new();
            for value in &many[..n] {
                streamed.update(&value.to_le_bytes());
            }
            assert_eq!(stamp(&many[..n]), streamed.digest(), "{n} counters");
        }
    }

    #[test]
    fn counters_parse_as_redis_keeps_them() {
        assert_eq!(parse_counter(b"4294967297").unwrap(), 4_294_967_297);
        assert!(parse_counter(b"x").is_err());
        let start = counter_start();
        assert!((1 << 32..1 << 62).contains(&start));
    }
}
