//! Stable, unambiguous cache keys: `{prefix}:{name}:v{version}:{hash}`.
//!
//! `hash` is the 128-bit XXH3 of the key arguments in the tagged encoding of [`tagged`]
//! (every value's kind, every name, every length). Both are specified byte for byte and
//! independent of the platform, the process and the Rust version, unlike `std`'s `Hasher`s.
//! Two argument tuples hash alike only if they serialize alike, so `("a:b", "c")` and
//! `("a", "b:c")`, or two structs that skip different fields, hash differently. Argument
//! values never appear in the key itself, so they cannot inject Redis syntax into it.
//!
//! [`tagged`]: crate::tagged

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::tagged::{self, Encoder, Sink};

/// Collects key arguments one after the other, then hashes them: adding `a` then `b` hashes
/// exactly what [`hash_args`] of `(a, b)` does.
///
/// The encoding goes into a small buffer hashed at the end, rather than through a streaming
/// hasher (a call moves this along with it, and a streaming XXH3 state is large); the
/// buffer is inline up to `INLINE` bytes, which holds the usual keys without allocating.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    inline: [u8; INLINE],
    len: usize,
    /// Everything, once it outgrew `inline`.
    spilled: Vec<u8>,
}

const INLINE: usize = 48;

impl KeyHasher {
    pub fn new() -> Self {
        KeyHasher { inline: [0; INLINE], len: 0, spilled: Vec::new() }
    }

    pub fn add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), tagged::Error> {
        value.serialize(&mut Encoder::element(self))
    }

    pub fn finish(&self) -> u128 {
        xxh3_128(self.bytes())
    }

    fn bytes(&self) -> &[u8] {
        if self.spilled.is_empty() { &self.inline[..self.len] } else { &self.spilled }
    }
}

impl Sink for KeyHasher {
    fn put(&mut self, data: &[u8]) {
        if self.spilled.is_empty() && self.len + data.len() <= INLINE {
            self.inline[self.len..self.len + data.len()].copy_from_slice(data);
            self.len += data.len();
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.extend_from_slice(data);
        }
    }
}

/// The 128-bit hash of the key arguments (a tuple of the key parameters, in order).
/// With `method_of`, a method's: its `Self` type's name (see [`method_digest`]) comes first.
pub(crate) fn hash_args<A: Serialize + ?Sized>(
    method_of: Option<&str>,
    args: &A,
) -> Result<u128, tagged::Error> {
    let mut hasher = KeyHasher::new();
    if let Some(self_type) = method_of {
        hasher.add(&method_digest(self_type))?;
    }
    args.serialize(&mut Encoder::top(&mut hasher))?;
    Ok(hasher.finish())
}

/// What a method's key hashes of its `Self` type's name: 64 bits of it, so that a long name
/// does not push the usual keys out of the hasher's inline buffer.
pub(crate) fn method_digest(self_type: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(self_type.as_bytes())
}

/// `{name}:v{version}:`, the part of a key that is fixed per function.
pub(crate) fn head(name: &str, version: u32) -> String {
    format!("{name}:v{version}:")
}

/// Joins the parts into the key, with the hash in 32 lowercase hex digits, followed by
/// `suffix` (a counter's name is its key's, then `:gen`).
pub(crate) fn join(prefix: &str, head: &str, hash: u128, suffix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(hash.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let mut key = String::with_capacity(prefix.len() + 1 + head.len() + hex.len() + suffix.len());
    key.push_str(prefix);
    key.push(':');
    key.push_str(head);
    key.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
    key.push_str(suffix);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<A: Serialize>(args: &A) -> String {
        join("cq", &head("app::user_by_id", 0), hash_args(None, args).unwrap(), "")
    }

    /// Pins the exact keys: changing them would orphan every entry users have cached.
    #[test]
    fn golden_keys() {
        assert_eq!(key(&(7i64,)), "cq:app::user_by_id:v0:3567f290ab40eb55c424528f7738b28d");
        // The tag of an `i64`, then its little-endian bytes.
        let mut bytes = Vec::new();
        (7i64,).serialize(&mut Encoder::top(&mut bytes)).unwrap();
        assert_eq!(bytes, [5, 7, 0, 0, 0, 0, 0, 0, 0]);
        // XXH3-128 of no bytes at all: a function without key parameters.
        assert_eq!(key(&()), "cq:app::user_by_id:v0:99aa06d3014798d86001c324468d497f");
        assert_eq!(
            key(&("alice", Some(3u32), vec![1u8, 2])),
            "cq:app::user_by_id:v0:d07dd695cb2d198acca7546c5ed79822"
        );
    }

    #[test]
    fn arguments_added_one_by_one_hash_as_their_tuple() {
        let mut hasher = KeyHasher::new();
        hasher.add(&"alice").unwrap();
        hasher.add(&Some(3u32)).unwrap();
        hasher.add(&vec![1u8, 2]).unwrap();
        assert_eq!(hasher.finish(), hash_args(None, &("alice", Some(3u32), vec![1u8, 2])).unwrap());
    }

    #[test]
    fn long_arguments_hash_as_short_ones_would() {
        let long = "x".repeat(200);
        let mut hasher = KeyHasher::new();
        hasher.add(&7i64).unwrap();
        hasher.add(&long).unwrap();
        let mut bytes = Vec::new();
        (7i64, &long).serialize(&mut Encoder::top(&mut bytes)).unwrap();
        assert!(bytes.len() > INLINE);
        assert_eq!(hasher.finish(), xxh3_128(&bytes));
    }

    #[test]
    fn separators_inside_values_cannot_collide() {
        assert_ne!(key(&("a:b", "c")), key(&("a", "b:c")));
        assert_ne!(key(&("ab", "")), key(&("a", "b")));
        assert_ne!(key(&(None::<u8>, 0u8)), key(&(Some(0u8), ())));
        assert_eq!(key(&("x", 1i64)), key(&(&"x", &1i64)), "references hash as their values");
    }
}
