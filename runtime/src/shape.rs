//! The shape fingerprint of a cached type, stored in every entry's envelope.
//!
//! A value cached before a struct changed must never decode into the new struct as a wrong
//! value. MessagePack maps already reject most changes (a new required field, a changed
//! type), but serde fills a missing `Option` field with `None`: adding a nullable column to
//! a row type would silently serve `None` until the entries expire. So each entry records the
//! shape of its type: the names of the structs, their fields, enum variants and the kinds of
//! the primitives, traced once by driving `T::deserialize` with a recording deserializer.
//!
//! Some types refuse the sample values the tracer feeds them (a timestamp parsed from `""`):
//! the tracer then tries again with other samples for that string or byte string (a date, a
//! time, a UUID...). A type that refuses them all, or reads itself with `deserialize_any`
//! (`serde_json::Value`, untagged enums), or has enums with more than one variant (only one
//! is traced), or nests deeper than `MAX_DEPTH`, gets an *incomplete* shape: what was recorded
//! up to there. Every struct's full list of field names is recorded before any of its fields
//! is visited, so the field names of a row type are always part of it.
//!
//! A *complete* shape records the kind of every value in the order serde reads it: enough to
//! trust a format without field names or types (postcard, see `codec`).

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use xxhash_rust::xxh3::Xxh3;

/// What the tracer learnt of a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// A hash of the recorded shape (completeness included).
    pub fingerprint: u64,
    /// Whether every value of the type was traced (see the module docs).
    pub complete: bool,
}

/// The shape of `T`, traced once per type and thread.
pub(crate) fn shape<T: DeserializeOwned + 'static>() -> Shape {
    thread_local! {
        static KNOWN: RefCell<HashMap<TypeId, Shape>> = RefCell::new(HashMap::new());
    }
    KNOWN.with(|known| {
        if let Some(shape) = known.borrow().get(&TypeId::of::<T>()) {
            return *shape;
        }
        let shape = trace::<T>();
        known.borrow_mut().insert(TypeId::of::<T>(), shape);
        shape
    })
}

/// The fingerprint of `T`'s shape.
#[cfg(test)]
fn fingerprint<T: DeserializeOwned + 'static>() -> u64 {
    shape::<T>().fingerprint
}

/// Strings that types which parse their string accept: a timestamp, a date, a time, a UUID,
/// a number.
const STR_SAMPLES: [&str; 7] = [
    "",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00",
    "1970-01-01",
    "00:00:00",
    "00000000-0000-0000-0000-000000000000",
    "0",
];
/// Byte strings likewise: empty, then a UUID's 16 bytes.
const BYTES_SAMPLES: [&[u8]; 2] = [&[], &[0; 16]];
/// How many traces a type may take (each retry tries one more sample at one leaf).
const MAX_TRACES: usize = 256;

fn trace<T: DeserializeOwned>() -> Shape {
    // The sample chosen at each string leaf, in the order the leaves are visited.
    let mut choices: Vec<usize> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tracer =
            Tracer { hash: Xxh3::new(), depth: 0, complete: true, choices: &choices, leaf: 0, last: None };
        let retry = match T::deserialize(&mut tracer) {
            Ok(_) => None,
            Err(Stop::Incomplete) => None,
            // The type refused a sample: try the next one at the last string leaf visited, if
            // it has one and tries are left; otherwise the shape stays incomplete.
            Err(Stop::Refused) => match tracer.last {
                Some((leaf, samples))
                    if attempt < MAX_TRACES && choices.get(leaf).copied().unwrap_or(0) + 1 < samples =>
                {
                    Some(leaf)
                }
                _ => {
                    tracer.complete = false;
                    None
                }
            },
        };
        let Some(leaf) = retry else { return tracer.finish() };
        if choices.len() <= leaf {
            choices.resize(leaf + 1, 0);
        }
        choices[leaf] += 1;
    }
}

/// Containers nested deeper than this are not traced (recursive types end here).
const MAX_DEPTH: u32 = 32;

struct Tracer<'c> {
    hash: Xxh3,
    depth: u32,
    complete: bool,
    /// The sample to use at each string leaf (index into its samples; 0 when absent).
    choices: &'c [usize],
    /// String leaves visited so far.
    leaf: usize,
    /// The last string leaf visited: its index and how many samples it has.
    last: Option<(usize, usize)>,
}

/// Why a trace ended early.
#[derive(Debug)]
enum Stop {
    /// The type refused a sample value (its `Visitor` failed).
    Refused,
    /// Nothing more can be learnt (`deserialize_any`, depth, an empty enum).
    Incomplete,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape tracing stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop::Refused
    }
}

impl Tracer<'_> {
    fn finish(mut self) -> Shape {
        self.hash.update(&[self.complete as u8]);
        Shape { fingerprint: self.hash.digest(), complete: self.complete }
    }

    /// Marks the shape incomplete (also when the type swallows the error that follows).
    fn incomplete(&mut self) -> Stop {
        self.complete = false;
        Stop::Incomplete
    }

    /// The sample for the next string leaf out of `samples`.
    fn sample<S: Copy>(&mut self, samples: &[S]) -> S {
        let choice = self.choices.get(self.leaf).copied().unwrap_or(0).min(samples.len() - 1);
        self.last = Some((self.leaf, samples.len()));
        self.leaf += 1;
        samples[choice]
    }

    fn record(&mut self, kind: &str) {
        self.hash.update(kind.as_bytes());
        self.hash.update(&[0]);
    }

    fn record_names(&mut self, names: &[&str]) {
        self.hash.update(&(names.len() as u64).to_le_bytes());
        for name in names {
            self.record(name);
        }
    }

    /// Visits one nested level (a field, an element), refusing to go deeper than `MAX_DEPTH`.
    fn nested<'de, S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Stop> {
        if self.depth >= MAX_DEPTH {
            return Err(self.incomplete());
        }
        self.depth += 1;
        let result = seed.deserialize(&mut *self);
        self.depth -= 1;
        result
    }
}

macro_rules! primitive {
    ($($method:ident => $visit:ident($($value:expr)?);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            self.record(stringify!($method));
            visitor.$visit($($value)?)
        }
    )*};
}

/// Strings and byte strings: visited with the sample chosen for that leaf (see `trace`).
macro_rules! leaf {
    ($($method:ident => $visit:ident($samples:expr);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            self.record(stringify!($method));
            visitor.$visit(self.sample(&$samples))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Tracer<'_> {
    type Error = Stop;

    primitive! {
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_i8(0);
        deserialize_i16 => visit_i16(0);
        deserialize_i32 => visit_i32(0);
        deserialize_i64 => visit_i64(0);
        deserialize_i128 => visit_i128(0);
        deserialize_u8 => visit_u8(0);
        deserialize_u16 => visit_u16(0);
        deserialize_u32 => visit_u32(0);
        deserialize_u64 => visit_u64(0);
        deserialize_u128 => visit_u128(0);
        deserialize_f32 => visit_f32(0.0);
        deserialize_f64 => visit_f64(0.0);
        deserialize_char => visit_char('a');
        deserialize_unit => visit_unit();
        deserialize_identifier => visit_str("");
    }

    leaf! {
        deserialize_str => visit_str(STR_SAMPLES);
        deserialize_string => visit_str(STR_SAMPLES);
        deserialize_bytes => visit_bytes(BYTES_SAMPLES);
        deserialize_byte_buf => visit_bytes(BYTES_SAMPLES);
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        // A self-describing type (`serde_json::Value`, untagged enums): nothing more to learn.
        self.record("any");
        Err(self.incomplete())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        // Something read and thrown away: its kind is not known.
        self.complete = false;
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("option");
        if self.depth >= MAX_DEPTH {
            return Err(self.incomplete());
        }
        self.depth += 1;
        let result = visitor.visit_some(&mut *self);
        self.depth -= 1;
        result
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        if self.depth >= MAX_DEPTH {
            return Err(self.incomplete());
        }
        self.depth += 1;
        let result = visitor.visit_newtype_struct(&mut *self);
        self.depth -= 1;
        result
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("seq");
        visitor.visit_seq(Elements { tracer: self, left: 1 })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        self.record("tuple");
        self.hash.update(&(len as u64).to_le_bytes());
        visitor.visit_seq(Elements { tracer: self, left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("map");
        visitor.visit_map(Entries { tracer: self, left: 1 })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        self.record_names(fields);
        visitor.visit_seq(Elements { tracer: self, left: fields.len() })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        self.record_names(variants);
        if variants.len() != 1 {
            // Only the first variant would be traced: the others' contents stay unknown.
            self.complete = false;
        }
        let Some(first) = variants.first() else { return Err(self.incomplete()) };
        visitor.visit_enum(Variant { tracer: self, name: first })
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct (one sample element for a sequence).
struct Elements<'a, 'c> {
    tracer: &'a mut Tracer<'c>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, '_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.tracer.nested(seed).map(Some)
    }
}

/// One sample entry of a map.
struct Entries<'a, 'c> {
    tracer: &'a mut Tracer<'c>,
    left: usize,
}

impl<'de> de::MapAccess<'de> for Entries<'_, '_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.tracer.nested(seed).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        self.tracer.nested(seed)
    }
}

/// The first variant of an enum, traced as a sample.
struct Variant<'a, 'c> {
    tracer: &'a mut Tracer<'c>,
    name: &'static str,
}

impl<'de, 'a, 'c> de::EnumAccess<'de> for Variant<'a, 'c> {
    type Error = Stop;
    type Variant = &'a mut Tracer<'c>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), Stop> {
        let value = seed.deserialize(self.name.into_deserializer())?;
        Ok((value, self.tracer))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Tracer<'_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        self.nested(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

#[cfg(test)]
#[allow(dead_code)] // the test types are only ever traced, never read
mod tests {
    use super::*;
    use serde::Deserialize;

    mod v1 {
        #[derive(serde::Deserialize)]
        pub struct User {
            pub id: i64,
            pub name: String,
        }
    }
    mod v2 {
        #[derive(serde::Deserialize)]
        pub struct User {
            pub id: i64,
            pub name: String,
            pub email: Option<String>,
        }
    }
    mod v3 {
        #[derive(serde::Deserialize)]
        pub struct User {
            pub id: i64,
            pub full_name: String,
        }
    }

    /// Refuses every sample value, like a timestamp parsed from a string.
    #[derive(Debug)]
    struct Picky;
    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            Err(de::Error::custom(format!("bad {s}")))
        }
    }
    mod a {
        #[derive(serde::Deserialize)]
        pub struct WithPicky {
            _at: super::Picky,
            _a: i64,
        }
    }
    mod b {
        #[derive(serde::Deserialize)]
        pub struct WithPicky {
            _at: super::Picky,
            _b: i64,
        }
    }

    #[test]
    fn shape_changes_change_the_fingerprint() {
        let v1 = fingerprint::<v1::User>();
        assert_eq!(v1, fingerprint::<v1::User>());
        assert_ne!(v1, fingerprint::<v2::User>(), "an added Option field");
        assert_ne!(v1, fingerprint::<v3::User>(), "a renamed field");
        assert_ne!(fingerprint::<Vec<v1::User>>(), fingerprint::<Option<v1::User>>());
        assert_ne!(fingerprint::<i64>(), fingerprint::<String>());
        assert_ne!(fingerprint::<(i64, String)>(), fingerprint::<(String, i64)>());
    }

    #[test]
    fn fields_after_a_refusing_field_still_count() {
        assert_ne!(fingerprint::<a::WithPicky>(), fingerprint::<b::WithPicky>());
        assert!(!shape::<a::WithPicky>().complete, "refuses every sample");
    }

    /// Accepts only a timestamp, like `chrono::DateTime` does.
    struct Stamp;
    impl<'de> Deserialize<'de> for Stamp {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            if s.ends_with('Z') { Ok(Stamp) } else { Err(de::Error::custom(format!("bad {s}"))) }
        }
    }
    mod c {
        #[derive(serde::Deserialize)]
        pub struct Row {
            _at: super::Stamp,
            _inner: Inner,
        }
        #[derive(serde::Deserialize)]
        pub struct Inner {
            _score: i32,
        }
    }
    mod d {
        #[derive(serde::Deserialize)]
        pub struct Row {
            _at: super::Stamp,
            _inner: Inner,
        }
        #[derive(serde::Deserialize)]
        pub struct Inner {
            _score: i64,
        }
    }

    #[test]
    fn a_timestamp_field_does_not_hide_what_follows_it() {
        assert!(shape::<c::Row>().complete, "the timestamp accepted a later sample");
        assert_ne!(fingerprint::<c::Row>(), fingerprint::<d::Row>(), "a retyped field after it");
    }

    #[test]
    fn what_can_be_traced_whole_is_complete() {
        assert!(shape::<v2::User>().complete);
        assert!(shape::<Vec<(i64, Option<String>, Vec<u8>)>>().complete);
        assert!(shape::<std::collections::BTreeMap<String, v1::User>>().complete);
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Untagged {
            _A(i64),
            _B(String),
        }
        assert!(!shape::<Untagged>().complete, "deserialize_any");
        #[derive(Deserialize)]
        enum Two {
            _A,
            _B(String),
        }
        assert!(!shape::<Two>().complete, "one variant of two traced");
        assert_ne!(fingerprint::<i32>(), fingerprint::<i64>());
    }

    #[test]
    fn recursive_types_terminate() {
        #[derive(Deserialize)]
        struct Tree {
            _children: Vec<Tree>,
            _label: Option<Box<Tree>>,
        }
        fingerprint::<Tree>();
    }
}
