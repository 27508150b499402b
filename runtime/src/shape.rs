//! The shape fingerprint of a cached type, stored in every entry's envelope.
//!
//! A value cached before a struct changed must never decode into the new struct as a wrong
//! value. MessagePack maps already reject most changes (a new required field, a changed
//! type), but serde fills a missing `Option` field with `None`: adding a nullable column to
//! a row type would silently serve `None` until the entries expire. So each entry records the
//! shape of its type: the names of the structs, their fields, enum variants and the kinds of
//! the primitives, traced once by driving `T::deserialize` with a recording deserializer.
//!
//! Unlike a full schema tracer (serde-reflection), this one accepts that some types refuse
//! the made-up sample values it feeds them (a timestamp parsed from `""`, say): it keeps what
//! it recorded up to that point. Every struct's full list of field names is recorded before
//! any of its fields is visited, so the field names of a row type are always part of it.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use xxhash_rust::xxh3::Xxh3;

/// The fingerprint of `T`'s shape, computed once per type and thread.
pub(crate) fn fingerprint<T: DeserializeOwned + 'static>() -> u64 {
    thread_local! {
        static KNOWN: RefCell<HashMap<TypeId, u64>> = RefCell::new(HashMap::new());
    }
    KNOWN.with(|known| {
        if let Some(fp) = known.borrow().get(&TypeId::of::<T>()) {
            return *fp;
        }
        let fp = trace::<T>();
        known.borrow_mut().insert(TypeId::of::<T>(), fp);
        fp
    })
}

fn trace<T: DeserializeOwned>() -> u64 {
    let mut tracer = Tracer { hash: Xxh3::new(), depth: 0 };
    // An error only means the type refused a sample value; what was recorded stands.
    let _ = T::deserialize(&mut tracer);
    tracer.hash.digest()
}

/// Containers nested deeper than this are not traced (recursive types end here).
const MAX_DEPTH: u32 = 32;

struct Tracer {
    hash: Xxh3,
    depth: u32,
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape tracing stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl Tracer {
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
            return Err(Stop);
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

impl<'de> de::Deserializer<'de> for &mut Tracer {
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
        deserialize_str => visit_str("");
        deserialize_string => visit_str("");
        deserialize_bytes => visit_bytes(&[]);
        deserialize_byte_buf => visit_bytes(&[]);
        deserialize_unit => visit_unit();
        deserialize_identifier => visit_str("");
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        // A self-describing type (`serde_json::Value`, untagged enums): nothing more to learn.
        self.record("any");
        Err(Stop)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("option");
        if self.depth >= MAX_DEPTH {
            return Err(Stop);
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
            return Err(Stop);
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
        let first = variants.first().ok_or(Stop)?;
        visitor.visit_enum(Variant { tracer: self, name: first })
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct (one sample element for a sequence).
struct Elements<'a> {
    tracer: &'a mut Tracer,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
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
struct Entries<'a> {
    tracer: &'a mut Tracer,
    left: usize,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
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
struct Variant<'a> {
    tracer: &'a mut Tracer,
    name: &'static str,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = Stop;
    type Variant = &'a mut Tracer;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), Stop> {
        let value = seed.deserialize(self.name.into_deserializer())?;
        Ok((value, self.tracer))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Tracer {
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
