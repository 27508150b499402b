//! The bytes stored under a key: a small envelope around the encoded value.
//!
//! ```text
//! b"CQ" | format (1) | codec (1) | shape fingerprint (8, LE) | generations (8, LE)
//!       | fresh until, lifetime, query time (varints) | [dependencies] | [result tags] | payload
//! ```
//!
//! "Fresh until" is the wall-clock time (Unix ms) after which the entry is stale: it may still
//! be served (`stale = ...`) while one caller refreshes it. "Lifetime" is how long before that
//! it was written (ms; "stored at" is their difference), for tools that show an entry's age.
//! "Query time" is how long the query that produced it took (ms), which early refresh
//! (`early = true`) weighs. The three are postcard's varints (LEB128): 10 bytes for a one-minute
//! entry, against 20 as fixed-width numbers. "Generations" is a hash of the invalidation
//! counters (namespace, key, tags) read before its query ran: the entry is valid only while they
//! are unchanged (see `lookup`).
//!
//! A payload of at least the cache's `compress_above` bytes is stored compressed (LZ4, its
//! length first) when that makes it shorter, flagged by `0x20` in the codec byte: entries
//! written without it, or by a release before it, read as they are.
//!
//! Two optional sections sit between the header and the payload, each flagged by a bit of the
//! codec byte (entries without them keep the plain layout):
//! - dependencies (`0x40`): the counters the stamp covers besides the namespace's and the
//!   key's, named without the keyspace (`tag:user:7`, `table:users`), so that a tool can tell
//!   whether an entry is still valid: their number (2, LE), then each name's length (2, LE)
//!   and UTF-8 bytes;
//! - result tags (`0x80`), for a function with `result_tags`: the stamp of those tags'
//!   counters (8, LE), then the tags as the names above.
//!
//! The payload is in one of two codecs, chosen per entry when it is written:
//! - **postcard**, compact and the fastest to decode, but without field names or types: a
//!   reader trusts it only because the shape fingerprint is that of a *complete* shape (every
//!   value's kind, in order; see `shape`) equal to its own. It is used for types whose shape is
//!   complete, and only for a value whose postcard bytes decode back to the same value (checked
//!   when writing, on a miss: this catches `skip_serializing_if` and other asymmetric serde
//!   attributes, which a trace of `Deserialize` cannot see).
//! - **MessagePack** with structs as maps (field names included) otherwise: self-describing, so
//!   a changed field type or a missing required field fails to decode, and the fingerprint
//!   catches what serde would accept silently (an added `Option` field).
//!
//! Any mismatch, foreign or corrupt bytes, is a decode error, which the cache treats as a miss
//! and overwrites.

use serde::Serialize;
use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::CacheError;
use crate::shape::shape;

const MAGIC: &[u8; 2] = b"CQ";
const FORMAT: u8 = 6;
/// Where the fields that decide the value (magic, format, codec, shape fingerprint) end.
const VALUE_HEAD: usize = 12;
/// Where the fixed-width fields end (the generations' stamp last); the varints follow.
const FIXED: usize = VALUE_HEAD + 8;
const MSGPACK: u8 = 0;
const POSTCARD: u8 = 1;
/// The codec byte's flag of an envelope with a result-tags section.
const RESULT_TAGS: u8 = 0x80;
/// The codec byte's flag of an envelope with a dependencies section.
const DEPENDS: u8 = 0x40;
/// The codec byte's flag of a compressed payload.
const COMPRESSED: u8 = 0x20;
/// The codec byte's bits that name the codec.
const CODEC: u8 = !(RESULT_TAGS | DEPENDS | COMPRESSED);
/// The longest payload a compressed one may claim to decompress to (a corrupt length must not
/// make the reader allocate gigabytes).
const MAX_DECOMPRESSED: usize = 512 << 20;
/// Where the codec byte is.
const CODEC_AT: usize = MAGIC.len() + 1;

/// What the envelope says about its entry, besides the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Unix milliseconds after which the entry is stale.
    pub fresh_until_ms: u64,
    /// How long the query that produced the entry took, in milliseconds.
    pub query_ms: u32,
    /// Hash of the invalidation counters read before the query ran.
    pub stamp: u64,
    /// Unix milliseconds at which it was written.
    pub stored_ms: u64,
}

/// Why stored bytes were not turned into a value.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not an envelope of this format (foreign, truncated, or written by another release).
    Envelope,
    /// Written for a type of another shape.
    Shape,
    /// The payload does not decode into the type.
    Payload(String),
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
    encode_with(value, meta, &[], usize::MAX)
}

/// Encodes `value` of type `T` into an envelope that names the counters it `depends` on (see
/// the module docs), its payload compressed if it has at least `compress_above` bytes and
/// that makes it shorter.
pub(crate) fn encode_with<T: Serialize + DeserializeOwned + 'static>(
    value: &T,
    meta: Meta,
    depends: &[&str],
    compress_above: usize,
) -> Result<Vec<u8>, CacheError> {
    let (mut buf, payload_at) = encode_plain(value, meta, depends)?;
    if buf.len() - payload_at >= compress_above {
        let compressed = lz4_flex::compress_prepend_size(&buf[payload_at..]);
        if compressed.len() < buf.len() - payload_at {
            buf.truncate(payload_at);
            buf[CODEC_AT] |= COMPRESSED;
            buf.extend_from_slice(&compressed);
        }
    }
    Ok(buf)
}

/// The envelope of `value` with its payload as encoded, and where that payload starts.
fn encode_plain<T: Serialize + DeserializeOwned + 'static>(
    value: &T,
    meta: Meta,
    depends: &[&str],
) -> Result<(Vec<u8>, usize), CacheError> {
    let shape = shape::<T>();
    let flags = if depends.is_empty() { 0 } else { DEPENDS };
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&[FORMAT, POSTCARD | flags]);
    debug_assert_eq!(buf.len(), CODEC_AT + 1);
    buf.extend_from_slice(&shape.fingerprint.to_le_bytes());
    buf.extend_from_slice(&meta.stamp.to_le_bytes());
    let lifetime = meta.fresh_until_ms.saturating_sub(meta.stored_ms);
    buf = postcard::to_extend(&(meta.fresh_until_ms, lifetime, meta.query_ms), buf)
        .map_err(|e| CacheError::Encode(e.to_string()))?;
    if !depends.is_empty() {
        write_names(&mut buf, depends)?;
    }
    let payload_at = buf.len();
    if shape.complete {
        let mut named = None;
        // A value postcard refuses (a sequence of unknown length) goes as MessagePack too.
        if let Ok(postcard) = postcard::to_extend(value, buf.clone())
            && survives(value, &postcard[payload_at..], &mut named)
        {
            return Ok((postcard, payload_at));
        }
        if let Some(Ok(named)) = named {
            buf[CODEC_AT] = MSGPACK | flags;
            buf.extend_from_slice(&named);
            return Ok((buf, payload_at));
        }
    }
    buf[CODEC_AT] = MSGPACK | flags;
    rmp_serde::encode::write_named(&mut buf, value).map_err(|e| CacheError::Encode(e.to_string()))?;
    Ok((buf, payload_at))
}

/// The payload of an envelope, which begins at `at`, as encoded: decompressed if it was stored
/// compressed.
fn payload(bytes: &[u8], at: usize) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    let payload = &bytes[at..];
    if bytes[CODEC_AT] & COMPRESSED == 0 {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    let claimed = payload.get(..4).map(|len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize);
    if claimed.is_none_or(|len| len > MAX_DECOMPRESSED) {
        return Err(DecodeError::Envelope);
    }
    lz4_flex::decompress_size_prepended(payload)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| DecodeError::Payload(e.to_string()))
}

/// Whether `payload` (the postcard bytes of `value`) decodes to the same value: compared by
/// their MessagePack encodings, which carry every field name and value. Leaves the value's
/// MessagePack encoding in `named`, for the caller to store instead.
fn survives<T: Serialize + DeserializeOwned>(
    value: &T,
    payload: &[u8],
    named: &mut Option<Result<Vec<u8>, rmp_serde::encode::Error>>,
) -> bool {
    let Ok(back) = postcard::from_bytes::<T>(payload) else { return false };
    let original = named.insert(rmp_serde::to_vec_named(value));
    matches!((original, rmp_serde::to_vec_named(&back)), (Ok(a), Ok(b)) if *a == b)
}

/// What decides the value an envelope decodes to (its expiry and counters aside): its format,
/// codec and shape fingerprint, and its payload, by length and 128-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueId {
    head: [u8; VALUE_HEAD],
    len: usize,
    payload: u128,
}

impl ValueId {
    /// The id of the value in `bytes` (an envelope), if its payload has at least `min_payload`
    /// bytes (shorter ones are not hashed); the payload is hashed with `seed` (XXH3-128, as
    /// keys are; seeded, so that no one can craft two payloads of the same hash).
    pub fn of(bytes: &[u8], seed: u64, min_payload: usize) -> Option<Self> {
        let mut head: [u8; VALUE_HEAD] = bytes.get(..VALUE_HEAD)?.try_into().ok()?;
        head[CODEC_AT] &= CODEC; // the value's id, whatever sections it carries
        let payload = bytes.get(payload_at(bytes)?..).filter(|payload| payload.len() >= min_payload)?;
        Some(ValueId { head, len: payload.len(), payload: xxh3_128_with_seed(payload, seed) })
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// The envelope's metadata, without decoding the value.
pub(crate) fn meta(bytes: &[u8]) -> Result<Meta, DecodeError> {
    header(bytes).map(|(meta, _)| meta).ok_or(DecodeError::Envelope)
}

/// The envelope's metadata and where its header ends, if it is an envelope of this format.
fn header(bytes: &[u8]) -> Option<(Meta, usize)> {
    if bytes.len() < FIXED || &bytes[..2] != MAGIC || bytes[2] != FORMAT {
        return None;
    }
    let stamp = u64::from_le_bytes(bytes[VALUE_HEAD..FIXED].try_into().expect("8 bytes"));
    let ((fresh_until_ms, lifetime, query_ms), rest) =
        postcard::take_from_bytes::<(u64, u64, u32)>(&bytes[FIXED..]).ok()?;
    let meta = Meta { fresh_until_ms, query_ms, stamp, stored_ms: fresh_until_ms.saturating_sub(lifetime) };
    Some((meta, bytes.len() - rest.len()))
}

/// Decodes an envelope written by [`encode`] for the same type.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<(T, Meta), DecodeError> {
    let (meta, header_end) = header(bytes).ok_or(DecodeError::Envelope)?;
    let shape = shape::<T>();
    if u64::from_le_bytes(bytes[4..VALUE_HEAD].try_into().expect("8 bytes")) != shape.fingerprint {
        return Err(DecodeError::Shape);
    }
    // From the slice, not through `Read`, which copies every string once more. Bytes after
    // the value are not looked at: the header already rejects bytes that are not an entry of
    // this type.
    let at = layout_after(bytes, header_end).ok_or(DecodeError::Envelope)?.payload_at;
    let payload = payload(bytes, at)?;
    let value = match bytes[CODEC_AT] & CODEC {
        POSTCARD if shape.complete => {
            postcard::from_bytes(&payload).map_err(|e| DecodeError::Payload(e.to_string()))
        }
        MSGPACK => rmp_serde::from_slice(&payload).map_err(|e| DecodeError::Payload(e.to_string())),
        _ => Err(DecodeError::Envelope),
    }?;
    Ok((value, meta))
}

/// The tags an entry carries from its value (`result_tags`), and the stamp of their counters
/// when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultTags<'a> {
    pub stamp: u64,
    pub tags: Vec<&'a str>,
}

/// `envelope` (from [`encode`]) carrying `tags`, whose counters' stamp is `stamp`.
pub(crate) fn with_result_tags(envelope: &[u8], tags: &[String], stamp: u64) -> Result<Vec<u8>, CacheError> {
    let at = layout(envelope).ok_or_else(|| CacheError::Encode("not an envelope".into()))?.result_at;
    let section = 8 + 2 + tags.iter().map(|tag| 2 + tag.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(envelope.len() + section);
    buf.extend_from_slice(&envelope[..at]);
    buf[CODEC_AT] |= RESULT_TAGS;
    buf.extend_from_slice(&stamp.to_le_bytes());
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    write_names(&mut buf, &tags)?;
    buf.extend_from_slice(&envelope[at..]);
    Ok(buf)
}

/// Writes a list of names: their number, then each one's length and bytes.
fn write_names(buf: &mut Vec<u8>, names: &[&str]) -> Result<(), CacheError> {
    let too_many = || CacheError::Encode("more than 65535 tags, or one longer than 65535 bytes".into());
    buf.extend_from_slice(&u16::try_from(names.len()).map_err(|_| too_many())?.to_le_bytes());
    for name in names {
        buf.extend_from_slice(&u16::try_from(name.len()).map_err(|_| too_many())?.to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
    }
    Ok(())
}

/// The result tags an envelope carries (`None` when it carries none); an error when it is not
/// an envelope, or its sections do not parse.
pub(crate) fn result_tags(bytes: &[u8]) -> Result<Option<ResultTags<'_>>, DecodeError> {
    meta(bytes)?;
    if bytes[CODEC_AT] & RESULT_TAGS == 0 {
        return Ok(None);
    }
    let at = layout(bytes).ok_or(DecodeError::Envelope)?.result_at;
    let stamp = bytes.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
    let tags = names(&bytes[(at + 8).min(bytes.len())..]);
    match (stamp, tags) {
        (Some(stamp), Some(tags)) => Ok(Some(ResultTags { stamp, tags })),
        _ => Err(DecodeError::Envelope),
    }
}

/// An envelope taken apart, for tools (see `QueryCache::inspect`).
pub(crate) struct Parts<'a> {
    pub meta: Meta,
    /// `postcard` or `msgpack`.
    pub codec: &'static str,
    pub shape: u64,
    pub depends: Vec<&'a str>,
    pub result: Option<ResultTags<'a>>,
    /// The payload, decompressed.
    pub payload: std::borrow::Cow<'a, [u8]>,
    /// Whether it is stored compressed.
    pub compressed: bool,
}

pub(crate) fn parts(bytes: &[u8]) -> Result<Parts<'_>, DecodeError> {
    let meta = meta(bytes)?;
    let codec = match bytes[CODEC_AT] & CODEC {
        POSTCARD => "postcard",
        MSGPACK => "msgpack",
        _ => return Err(DecodeError::Envelope),
    };
    let shape = u64::from_le_bytes(bytes[4..VALUE_HEAD].try_into().expect("8 bytes"));
    let compressed = bytes[CODEC_AT] & COMPRESSED != 0;
    let at = payload_at(bytes).ok_or(DecodeError::Envelope)?;
    let (depends, result, payload) = (depends(bytes)?, result_tags(bytes)?, payload(bytes, at)?);
    Ok(Parts { meta, codec, shape, depends, result, payload, compressed })
}

/// The counters an envelope names as its dependencies (see the module docs), without the
/// keyspace; empty when it names none.
fn depends(bytes: &[u8]) -> Result<Vec<&str>, DecodeError> {
    meta(bytes)?;
    if bytes[CODEC_AT] & DEPENDS == 0 {
        return Ok(Vec::new());
    }
    let (_, at) = header(bytes).ok_or(DecodeError::Envelope)?;
    names(&bytes[at..]).ok_or(DecodeError::Envelope)
}

/// The names of a list (see [`write_names`]) at the start of `rest`, if it parses.
fn names(rest: &[u8]) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    let mut utf8 = true;
    walk(rest, |name| match std::str::from_utf8(name) {
        Ok(name) => names.push(name),
        Err(_) => utf8 = false,
    })?;
    utf8.then_some(names)
}

/// Walks a list of names at the start of `rest`, handing each one's bytes to `name`: the
/// list's length in bytes.
fn walk<'a>(mut rest: &'a [u8], mut name: impl FnMut(&'a [u8])) -> Option<usize> {
    let whole = rest.len();
    let mut take = |n: usize| {
        let (taken, after) = rest.split_at_checked(n)?;
        rest = after;
        Some(taken)
    };
    let count = u16::from_le_bytes(take(2)?.try_into().ok()?);
    for _ in 0..count {
        let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
        name(take(len.into())?);
    }
    Some(whole - rest.len())
}

/// Where an envelope's sections end.
struct Layout {
    /// Where its result tags are, or would be.
    result_at: usize,
    payload_at: usize,
}

fn layout(bytes: &[u8]) -> Option<Layout> {
    layout_after(bytes, header(bytes)?.1)
}

/// The layout of an envelope whose header ends at `at` (a decode reads the header once).
fn layout_after(bytes: &[u8], mut at: usize) -> Option<Layout> {
    let flags = bytes[CODEC_AT];
    if flags & DEPENDS != 0 {
        at += walk(&bytes[at..], |_| {})?;
    }
    let result_at = at;
    if flags & RESULT_TAGS != 0 {
        at += 8 + walk(bytes.get(at + 8..)?, |_| {})?;
    }
    Some(Layout { result_at, payload_at: at })
}

/// Where an envelope's payload begins (after its sections).
fn payload_at(bytes: &[u8]) -> Option<usize> {
    layout(bytes).map(|layout| layout.payload_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Row {
        id: i64,
        name: String,
    }

    /// Where the header of `bytes` (an envelope) ends.
    fn header_len(bytes: &[u8]) -> usize {
        header(bytes).unwrap().1
    }

    const META: Meta =
        Meta { fresh_until_ms: 1_764_000_000_000, query_ms: 12, stamp: 99, stored_ms: 1_763_999_000_000 };

    #[test]
    fn round_trip() {
        let rows = vec![Row { id: 1, name: "a".into() }, Row { id: 2, name: "b".into() }];
        let bytes = encode(&rows, META).unwrap();
        assert_eq!(decode::<Vec<Row>>(&bytes).unwrap(), (rows, META));
        assert_eq!(meta(&bytes).unwrap(), META);
        let opt = encode(&Some(5i64), META).unwrap();
        assert_eq!(decode::<Option<i64>>(&opt).unwrap().0, Some(5));
    }

    /// Format 6's header: 30 bytes for an entry of a minute (its varints 10), every field read
    /// back; an entry of another format is not an envelope (a miss, overwritten).
    #[test]
    fn the_header_is_thirty_bytes_for_an_entry_of_a_minute() {
        let now = 1_765_000_000_000u64;
        let minute = Meta { fresh_until_ms: now + 60_000, query_ms: 3, stamp: u64::MAX, stored_ms: now };
        let bytes = encode(&1i64, minute).unwrap();
        assert_eq!(header_len(&bytes), 30);
        assert_eq!(meta(&bytes).unwrap(), minute);
        let slow = Meta { query_ms: u32::MAX, stored_ms: 0, ..minute };
        assert_eq!(meta(&encode(&1i64, slow).unwrap()).unwrap(), slow, "the widest values");
        let mut older = bytes.clone();
        older[2] = 5;
        assert!(matches!(decode::<i64>(&older), Err(DecodeError::Envelope)));
    }

    /// A payload of `compress_above` bytes or more is stored compressed when that makes it
    /// shorter; it reads back the same, with result tags too; a corrupt length is an error.
    #[test]
    fn large_payloads_are_stored_compressed() {
        let rows: Vec<Row> = (0..200).map(|id| Row { id, name: format!("user_{id}@example.com") }).collect();
        let plain = encode(&rows, META).unwrap();
        let packed = encode_with(&rows, META, &[], 1024).unwrap();
        assert!(packed.len() < plain.len() / 2, "{} against {}", packed.len(), plain.len());
        assert_eq!(packed[CODEC_AT] & COMPRESSED, COMPRESSED);
        assert_eq!(decode::<Vec<Row>>(&packed).unwrap(), (rows.clone(), META));
        let tagged = with_result_tags(&packed, &["t".to_owned()], 5).unwrap();
        assert_eq!(decode::<Vec<Row>>(&tagged).unwrap().0, rows);
        assert_eq!(result_tags(&tagged).unwrap().unwrap().tags, ["t"]);
        let parts = parts(&tagged).unwrap();
        assert!(
            parts.compressed && *parts.payload == plain[header_len(&plain)..],
            "inspect sees the payload"
        );
        assert_eq!(encode_with(&rows, META, &[], plain.len()).unwrap(), plain, "below the threshold");
        // Incompressible: stored as it is.
        let noise: Vec<u8> =
            (0..4096u32).map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) as u8).collect();
        let noise_bytes = encode_with(&noise, META, &[], 1024).unwrap();
        assert_eq!(noise_bytes[CODEC_AT] & COMPRESSED, 0);
        // A length that claims gigabytes, or a cut payload: errors, not allocations or panics.
        let mut huge = packed.clone();
        let at = header_len(&huge);
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode::<Vec<Row>>(&huge), Err(DecodeError::Envelope)));
        assert!(decode::<Vec<Row>>(&packed[..packed.len() - 3]).is_err());
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

    #[test]
    fn value_ids_tell_values_apart_whatever_the_envelope_says_besides() {
        let rows = vec![Row { id: 1, name: "a".into() }, Row { id: 2, name: "b".into() }];
        let bytes = encode(&rows, META).unwrap();
        let id = |bytes: &[u8]| ValueId::of(bytes, 7, 0).unwrap();
        let later = Meta { fresh_until_ms: META.fresh_until_ms + 1000, query_ms: 3, stamp: 5, stored_ms: 7 };
        assert_eq!(id(&bytes), id(&encode(&rows, later).unwrap()), "expiry and counters aside");
        let other = vec![Row { id: 1, name: "a".into() }, Row { id: 2, name: "c".into() }];
        assert_ne!(id(&bytes), id(&encode(&other, META).unwrap()), "same length, other payload");
        let mut other_shape = bytes.clone();
        other_shape[5] ^= 1;
        assert_ne!(id(&bytes), id(&other_shape), "another type's fingerprint");
        assert_ne!(id(&bytes), ValueId::of(&bytes, 8, 0).unwrap(), "seeded");
        assert_eq!(ValueId::of(b"CQ", 7, 0), None, "not an envelope");
        let payload = bytes.len() - header_len(&bytes);
        assert_eq!(ValueId::of(&bytes, 7, payload), Some(id(&bytes)), "a payload of the least length");
        assert_eq!(ValueId::of(&bytes, 7, payload + 1), None, "a shorter payload");
    }

    #[test]
    fn result_tags_ride_between_header_and_payload() {
        let rows = vec![Row { id: 1, name: "a".into() }, Row { id: 2, name: "b".into() }];
        let plain = encode(&rows, META).unwrap();
        assert_eq!(result_tags(&plain).unwrap(), None, "an entry without result tags");
        let tags = vec!["author:7".to_owned(), String::new(), "é".to_owned()];
        let tagged = with_result_tags(&plain, &tags, 42).unwrap();
        let read = result_tags(&tagged).unwrap().unwrap();
        assert_eq!(read, ResultTags { stamp: 42, tags: vec!["author:7", "", "é"] });
        assert_eq!(decode::<Vec<Row>>(&tagged).unwrap(), (rows, META), "the value and meta unchanged");
        assert_eq!(meta(&tagged).unwrap(), META);
        let id = |bytes: &[u8]| ValueId::of(bytes, 7, 0).unwrap();
        assert_eq!(id(&tagged), id(&plain), "the value's id, whatever tags it carries");
        let none = with_result_tags(&plain, &[], 9).unwrap();
        assert_eq!(result_tags(&none).unwrap(), Some(ResultTags { stamp: 9, tags: vec![] }));
        // A section that does not parse (a tag that is not UTF-8) is an error, not "no tags".
        let mut bad = with_result_tags(&plain, &["ab".to_owned()], 9).unwrap();
        let at = header_len(&bad);
        bad[at + 12] = 0xff;
        assert!(result_tags(&bad).is_err());
        assert!(result_tags(b"not an envelope at all, long enough for a header").is_err());
        // A truncated section is not an envelope, and never a panic.
        let at = header_len(&tagged);
        for cut in at..at + 20 {
            assert!(decode::<Vec<Row>>(&tagged[..cut]).is_err(), "cut at {cut}");
            let _ = result_tags(&tagged[..cut]);
            let _ = ValueId::of(&tagged[..cut], 7, 0);
        }
        assert!(with_result_tags(&plain, &["x".repeat(70_000)], 1).is_err(), "a tag too long");
    }

    #[test]
    fn dependencies_ride_before_the_result_tags() {
        let rows = vec![Row { id: 1, name: "a".into() }];
        let plain = encode(&rows, META).unwrap();
        assert!(depends(&plain).unwrap().is_empty());
        let named = encode_with(&rows, META, &["tag:user:7", "table:users"], usize::MAX).unwrap();
        assert_eq!(depends(&named).unwrap(), ["tag:user:7", "table:users"]);
        assert_eq!(decode::<Vec<Row>>(&named).unwrap().0, rows);
        let id = |bytes: &[u8]| ValueId::of(bytes, 7, 0).unwrap();
        assert_eq!(id(&named), id(&plain), "the value's id, whatever it depends on");
        let both = with_result_tags(&named, &["author:1".to_owned()], 5).unwrap();
        assert_eq!(depends(&both).unwrap(), ["tag:user:7", "table:users"]);
        assert_eq!(result_tags(&both).unwrap().unwrap(), ResultTags { stamp: 5, tags: vec!["author:1"] });
        assert_eq!(decode::<Vec<Row>>(&both).unwrap(), (rows, META));
        // Truncated anywhere: never a panic, never a value.
        for cut in 0..both.len() {
            let _ = (depends(&both[..cut]), result_tags(&both[..cut]), ValueId::of(&both[..cut], 7, 0));
            assert!(decode::<Vec<Row>>(&both[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// A timestamp-like type: parses its string, refusing `""`.
    #[derive(Debug, PartialEq)]
    struct Stamp(String);

    impl Serialize for Stamp {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Stamp {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            if text.contains('T') {
                Ok(Stamp(text))
            } else {
                Err(serde::de::Error::custom("not a timestamp"))
            }
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Stamped {
        id: i64,
        at: Stamp,
        note: Option<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sparse {
        id: i64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
        score: u8,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Status {
        Active { since: i64 },
        Gone,
    }

    fn codec_of(bytes: &[u8]) -> u8 {
        bytes[MAGIC.len() + 1]
    }

    #[test]
    fn complete_shapes_are_stored_with_postcard() {
        let rows = vec![Row { id: 1, name: "a".into() }];
        assert_eq!(codec_of(&encode(&rows, META).unwrap()), POSTCARD);
        // A field that refuses `""` is traced with another sample: still complete.
        let stamped = Stamped { id: 1, at: Stamp("2026-11-24T00:00:00Z".into()), note: None };
        let bytes = encode(&stamped, META).unwrap();
        assert_eq!(codec_of(&bytes), POSTCARD);
        assert_eq!(decode::<Stamped>(&bytes).unwrap().0, stamped);
    }

    #[test]
    fn what_postcard_cannot_carry_safely_goes_as_messagepack() {
        // `skip_serializing_if`: the postcard bytes would not decode back; checked per value.
        let sparse = Sparse { id: 1, note: None, score: 3 };
        let bytes = encode(&sparse, META).unwrap();
        assert_eq!(codec_of(&bytes), MSGPACK);
        assert_eq!(decode::<Sparse>(&bytes).unwrap().0, sparse);
        let full = Sparse { id: 1, note: Some("n".into()), score: 3 };
        assert_eq!(decode::<Sparse>(&encode(&full, META).unwrap()).unwrap().0, full);
        // Enums of several variants: only one is traced, the shape is incomplete.
        let status = vec![Status::Gone, Status::Active { since: 5 }];
        let bytes = encode(&status, META).unwrap();
        assert_eq!(codec_of(&bytes), MSGPACK);
        assert_eq!(decode::<Vec<Status>>(&bytes).unwrap().0, status);
        // A sequence of unknown length, which postcard refuses to write.
        let evens = Evens(vec![1, 2, 3, 4]);
        let bytes = encode(&evens, META).unwrap();
        assert_eq!(codec_of(&bytes), MSGPACK);
        assert_eq!(decode::<Evens>(&bytes).unwrap().0, Evens(vec![2, 4]));
    }

    /// Serializes only its even numbers, through an iterator of unknown length.
    #[derive(Deserialize, Debug, PartialEq)]
    struct Evens(Vec<i64>);

    impl Serialize for Evens {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().filter(|n| *n % 2 == 0))
        }
    }
}
