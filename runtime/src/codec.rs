//! The bytes stored under a key: a small envelope around a MessagePack payload.
//!
//! ```text
//! b"CQ" | format (1) | shape fingerprint (8, LE) | fresh until (8, LE) | query time (4, LE)
//!       | generations (8, LE) | payload
//! ```
//!
//! "Fresh until" is the wall-clock time (Unix ms) after which the entry is stale: it may still
//! be served (`stale = ...`) while one caller refreshes it. "Query time" is how long the query
//! that produced it took (ms), which early refresh (`early = true`) weighs. "Generations" is a
//! hash of the invalidation counters (namespace, key, tags) read before its query ran: the
//! entry is valid only while they are unchanged (see `lookup`).
//!
//! The payload is MessagePack with structs as maps (field names included), so a changed
//! field type or a missing required field fails to decode; the fingerprint (see `shape`)
//! catches what serde would accept silently (an added `Option` field). Any mismatch, foreign
//! or corrupt bytes, is a decode error, which the cache treats as a miss and overwrites.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;
use crate::shape::fingerprint;

const MAGIC: &[u8; 2] = b"CQ";
const FORMAT: u8 = 3;
const HEADER: usize = MAGIC.len() + 1 + 8 + 8 + 4 + 8;

/// What the envelope says about its entry, besides the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Unix milliseconds after which the entry is stale.
    pub fresh_until_ms: u64,
    /// How long the query that produced the entry took, in milliseconds.
    pub query_ms: u32,
    /// Hash of the invalidation counters read before the query ran.
    pub gens: u64,
}

/// Why stored bytes were not turned into a value.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not an envelope of this format (foreign, truncated, or written by another release).
    Envelope,
    /// Written for a type of another shape.
    Shape,
    /// The payload does not decode into the type.
    Payload(rmp_serde::decode::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Envelope => f.write_str("not a cached-query entry of this format"),
            DecodeError::Shape => f.write_str("written for a type of another shape"),
            DecodeError::Payload(err) => write!(f, "payload does not decode: {err}"),
        }
    }
}

/// Encodes `value` of type `T` into an envelope.
pub(crate) fn encode<T: Serialize + DeserializeOwned + 'static>(
    value: &T,
    meta: Meta,
) -> Result<Vec<u8>, CacheError> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(MAGIC);
    buf.push(FORMAT);
    buf.extend_from_slice(&fingerprint::<T>().to_le_bytes());
    buf.extend_from_slice(&meta.fresh_until_ms.to_le_bytes());
    buf.extend_from_slice(&meta.query_ms.to_le_bytes());
    buf.extend_from_slice(&meta.gens.to_le_bytes());
    rmp_serde::encode::write_named(&mut buf, value).map_err(|e| CacheError::Encode(e.to_string()))?;
    Ok(buf)
}

/// The envelope's metadata, without decoding the value.
pub(crate) fn meta(bytes: &[u8]) -> Result<Meta, DecodeError> {
    if bytes.len() < HEADER || &bytes[..2] != MAGIC || bytes[2] != FORMAT {
        return Err(DecodeError::Envelope);
    }
    Ok(Meta {
        fresh_until_ms: u64::from_le_bytes(bytes[11..19].try_into().expect("8 bytes")),
        query_ms: u32::from_le_bytes(bytes[19..23].try_into().expect("4 bytes")),
        gens: u64::from_le_bytes(bytes[23..31].try_into().expect("8 bytes")),
    })
}

/// Decodes an envelope written by [`encode`] for the same type.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<(T, Meta), DecodeError> {
    let meta = meta(bytes)?;
    let stored = u64::from_le_bytes(bytes[3..11].try_into().expect("8 bytes"));
    if stored != fingerprint::<T>() {
        return Err(DecodeError::Shape);
    }
    let payload = &bytes[HEADER..];
    // From the slice, not through `Read` (which copies every string once more: 30 % slower
    // for rows). Bytes after the value are not looked at: the header already rejects bytes
    // that are not an entry of this type.
    let value = rmp_serde::from_slice(payload).map_err(DecodeError::Payload)?;
    Ok((value, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Row {
        id: i64,
        name: String,
    }

    const META: Meta = Meta { fresh_until_ms: 1_764_000_000_000, query_ms: 12, gens: 99 };

    #[test]
    fn round_trip() {
        let rows = vec![Row { id: 1, name: "a".into() }, Row { id: 2, name: "b".into() }];
        let bytes = encode(&rows, META).unwrap();
        assert_eq!(decode::<Vec<Row>>(&bytes).unwrap(), (rows, META));
        assert_eq!(meta(&bytes).unwrap(), META);
        let opt = encode(&Some(5i64), META).unwrap();
        assert_eq!(decode::<Option<i64>>(&opt).unwrap().0, Some(5));
    }

    #[test]
    fn foreign_corrupt_and_mistyped_bytes_are_errors() {
        let bytes = encode(&Row { id: 1, name: "a".into() }, META).unwrap();
        assert!(matches!(decode::<Row>(b"hello"), Err(DecodeError::Envelope)));
        assert!(matches!(decode::<Row>(&[]), Err(DecodeError::Envelope)));
        assert!(decode::<Row>(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(matches!(decode::<String>(&bytes), Err(DecodeError::Shape)));
        let mut flipped = bytes;
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let _ = decode::<Row>(&flipped); // must not panic, whatever it returns
    }
}
