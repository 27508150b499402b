//! Decoded values kept for reuse (`.reuse_decoded(bytes)`): a hit whose entry holds the same
//! value bytes as an earlier decode of the same key is answered with a clone of that decode's
//! value instead of being decoded again. A value is kept when this process computed it, or
//! the second time its bytes are decoded (the first time only their identity is kept), so that
//! entries read once cost no clone.
//!
//! Decoding is most of a multi-row hit's CPU (the rows' allocations and parsing, in any serde
//! format); a clone makes the same allocations but parses nothing. An entry holds the same
//! value when its codec, type fingerprint and payload length are equal and its payload has the
//! same 128-bit hash (XXH3, trusted as keys trust it, and seeded per cache so that no one can
//! craft a collision); hashing the entry just read is cheaper than comparing it with kept bytes
//! gone cold in the CPU's caches, and keeps no bytes. Correctness still comes from the store:
//! every hit reads the entry and checks its counters first (a kept value is never served
//! without that check), so invalidation, expiry and coherence are unchanged.
//!
//! Only for types that are `Clone + Send + Sync` (the generated code finds out at compile
//! time, see [`Copier`]), and for payloads of at least [`MIN_PAYLOAD`] bytes: under load,
//! copying a small value out of a kept one is slower than decoding it (likely because the copy
//! reads memory gone cold in the CPU's caches, where the decode reads the reply just received).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use moka::sync::Cache;

use crate::codec::{self, DecodeError, Meta, ValueId};
use crate::outcome::Stores;
use crate::seeded::Seeded;
use crate::stats::Stats;

/// The smallest payload whose decoded value is kept: multi-row results, never a single row.
pub(crate) const MIN_PAYLOAD: usize = 512;

/// How a value of type `V` is kept and copied: exists for `Clone + Send + Sync` types.
pub struct Copier<V> {
    clone: fn(&V) -> V,
    erase: fn(V) -> Arc<dyn Any + Send + Sync>,
}

impl<V> Clone for Copier<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Copier<V> {}

impl<V> Copier<V> {
    /// A copy of `value`.
    pub fn copy(&self, value: &V) -> V {
        (self.clone)(value)
    }

    /// A copy of `value`, type-erased, to keep.
    pub fn keep(&self, value: &V) -> Arc<dyn Any + Send + Sync> {
        (self.erase)((self.clone)(value))
    }
}

fn erase<V: Send + Sync + 'static>(value: V) -> Arc<dyn Any + Send + Sync> {
    Arc::new(value)
}

/// A zero-sized mention of the cached value's type, on which `copy::*`'s method is called.
pub struct Probe<V>(PhantomData<fn() -> V>);

/// The probe of the value type that adapter `A` stores.
pub fn probe<A: Stores>(_adapter: &A) -> Probe<A::Value> {
    Probe(PhantomData)
}

/// Finds a [`Copier`] by method resolution, as `outcome` finds adapters: the generated code
/// calls `(&probe).__cq_copier()`, which takes `__CqByClone` (receiver `&Probe<V>`) when `V`
/// is `Clone + Send + Sync`, and `__CqUncopied` (receiver `&&Probe<V>`) otherwise. Imported
/// with a glob by the generated code (their odd names keep them from shadowing the user's).
pub mod copy {
    use super::{Copier, Probe, erase};

    pub trait __CqByClone<V> {
        fn __cq_copier(&self) -> Option<Copier<V>>;
    }

    impl<V: Clone + Send + Sync + 'static> __CqByClone<V> for Probe<V> {
        fn __cq_copier(&self) -> Option<Copier<V>> {
            Some(Copier { clone: V::clone, erase: erase::<V> })
        }
    }

    pub trait __CqUncopied<V> {
        fn __cq_copier(&self) -> Option<Copier<V>>;
    }

    impl<V> __CqUncopied<V> for &Probe<V> {
        fn __cq_copier(&self) -> Option<Copier<V>> {
            None
        }
    }
}

/// The last entry decoded under a key, and the value it decoded to once it was seen twice.
struct Kept {
    id: ValueId,
    value: Option<Arc<dyn Any + Send + Sync>>,
}

/// The kept decodes of one cache, by key, weighed by their key, plus twice their payload's
/// length when a value is kept (a rough guess at its size: decoded rows take more room than
/// postcard's bytes).
pub(crate) struct Decoded {
    kept: Cache<String, Arc<Kept>, Seeded>,
    /// The payload hashes' seed, this cache's own.
    seed: u64,
}

impl Decoded {
    /// Keeps about `max_bytes` (`0`: nothing, `None` is returned).
    pub fn new(max_bytes: u64) -> Option<Self> {
        (max_bytes > 0).then(|| Decoded {
            kept: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, kept: &Arc<Kept>| {
                    let value = if kept.value.is_some() { 2 * kept.id.len() } else { 0 };
                    (key.len() + size_of::<Kept>() + value).try_into().unwrap_or(u32::MAX)
                })
                .build_with_hasher(Seeded::default()),
            seed: fastrand::u64(..),
        })
    }

    /// The value in `bytes` (the entry under `key`): a copy of the kept one if it holds the
    /// same value bytes, else decoded (and kept when these bytes were decoded before).
    pub fn decode<V: serde::de::DeserializeOwned + 'static>(
        &self,
        key: &str,
        bytes: &[u8],
        copier: Copier<V>,
        reused: &AtomicU64,
    ) -> Result<(V, Meta), DecodeError> {
        let Some(id) = self.id(bytes) else { return codec::decode(bytes) };
        let seen = self.kept.get(key).filter(|kept| kept.id == id);
        if let Some(value) = seen.as_ref().and_then(|kept| kept.value.as_ref()?.downcast_ref::<V>()) {
            let meta = codec::meta(bytes)?;
            Stats::count(reused);
            return Ok(((copier.clone)(value), meta));
        }
        let (value, meta) = codec::decode::<V>(bytes)?;
        let kept = seen.map(|_| (copier.erase)((copier.clone)(&value)));
        self.kept.insert(key.to_owned(), Arc::new(Kept { id, value: kept }));
        Ok((value, meta))
    }

    /// Keeps `value`, which this process computed and stored as `bytes` under `key`.
    pub fn computed<V>(&self, key: &str, bytes: &[u8], value: &V, copier: Copier<V>) {
        if let Some(id) = self.id(bytes) {
            let kept = Kept { id, value: Some((copier.erase)((copier.clone)(value))) };
            self.kept.insert(key.to_owned(), Arc::new(kept));
        }
    }

    /// The id of the value in `bytes`, if its payload is large enough to keep.
    fn id(&self, bytes: &[u8]) -> Option<ValueId> {
        ValueId::of(bytes, self.seed, MIN_PAYLOAD)
    }
}

#[cfg(test)]
#[allow(clippy::needless_borrow)] // `(&probe)` is how the generated code selects a copier
mod tests {
    use std::sync::atomic::Ordering::SeqCst;

    use super::copy::*;
    use super::*;

    fn page(name: &str) -> Vec<(i64, String)> {
        (0..80).map(|id| (id, format!("{name} number {id}"))).collect()
    }

    fn entry(value: &Vec<(i64, String)>, fresh_until_ms: u64) -> Vec<u8> {
        codec::encode(value, Meta { fresh_until_ms, query_ms: 1, stamp: 7, stored_ms: 1 }).unwrap()
    }

    fn copier() -> Copier<Vec<(i64, String)>> {
        (&Probe(PhantomData)).__cq_copier().expect("a Vec of tuples is Clone + Send + Sync")
    }

    #[test]
    fn the_same_value_bytes_are_cloned_and_other_bytes_decoded() {
        let (decoded, reused) = (Decoded::new(1 << 20).unwrap(), AtomicU64::new(0));
        let (a, b) = (page("a"), page("b"));
        let first = entry(&a, 1000);
        assert!(decoded.id(&first).is_some(), "large enough to keep");
        let got = |bytes: &[u8]| decoded.decode("k", bytes, copier(), &reused).unwrap();
        assert_eq!(got(&first), (a.clone(), codec::meta(&first).unwrap()));
        assert_eq!(got(&first).0, a);
        assert_eq!(reused.load(SeqCst), 0, "decoded the first two times, kept the second");
        // Rewritten with the same value (a refresh): another expiry, the same value bytes.
        let again = entry(&a, 2000);
        assert_eq!(got(&again), (a.clone(), codec::meta(&again).unwrap()), "the meta is the entry's own");
        assert_eq!(reused.load(SeqCst), 1);
        // Another value under the same key, of the same length: decoded, never the kept one.
        let other = entry(&b, 2000);
        assert_eq!(other.len(), first.len());
        assert_eq!(got(&other).0, b);
        assert_eq!(got(&other).0, b);
        assert_eq!(reused.load(SeqCst), 1);
        assert_eq!(got(&other).0, b);
        assert_eq!(reused.load(SeqCst), 2);
        // A value computed here is kept at once.
        let computed = entry(&a, 3000);
        decoded.computed("k", &computed, &a, copier());
        assert_eq!(got(&computed).0, a);
        assert_eq!(reused.load(SeqCst), 3);
        // One byte of the payload changed: decoded (here: an error, never the kept value).
        let mut flipped = other.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_ne!(decoded.decode("k", &flipped, copier(), &reused).ok().map(|(v, _)| v), Some(b.clone()));
        // Another key with the same bytes: decoded for itself.
        assert_eq!(decoded.decode("k2", &other, copier(), &reused).unwrap().0, b);
        assert_eq!(reused.load(SeqCst), 3);
    }

    #[test]
    fn small_values_and_other_types_are_decoded() {
        let (decoded, reused) = (Decoded::new(1 << 20).unwrap(), AtomicU64::new(0));
        let small = vec![(1i64, "x".to_owned())];
        let bytes = entry(&small, 1000);
        for _ in 0..3 {
            assert_eq!(decoded.decode("k", &bytes, copier(), &reused).unwrap().0, small);
        }
        assert_eq!(reused.load(SeqCst), 0, "below MIN_PAYLOAD nothing is kept");
        let big = entry(&page("a"), 1000);
        decoded.computed("k", &big, &page("a"), copier());
        // Kept as a `Vec<(i64, String)>`: asked as another type with the same shape, decoded.
        let as_vec: Copier<Vec<(i64, Box<str>)>> = (&Probe(PhantomData)).__cq_copier().unwrap();
        assert!(decoded.decode("k", &big, as_vec, &reused).is_ok());
        assert_eq!(reused.load(SeqCst), 0);
    }

    #[test]
    fn only_clone_send_sync_types_have_a_copier() {
        struct NotClone;
        assert!((&Probe::<NotClone>(PhantomData)).__cq_copier().is_none());
        assert!((&Probe::<std::rc::Rc<u8>>(PhantomData)).__cq_copier().is_none(), "not Send");
        assert!((&Probe::<std::cell::Cell<u8>>(PhantomData)).__cq_copier().is_none(), "not Sync");
        assert!((&Probe::<Option<String>>(PhantomData)).__cq_copier().is_some());
        assert!(Decoded::new(0).is_none(), "0 bytes: off");
    }
}
