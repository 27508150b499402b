//! The bytes that key arguments hash to: serde's data model written out with a tag before
//! every value, the names of structs, fields and enum variants, and the length of every
//! string. Decodable back into the sequence of serde calls that made it, so that two values
//! hash alike only if they serialize alike, whatever their `Serialize` leaves out: fields
//! that `skip_serializing_if` omits (the names of the others are there), which variant of an
//! untagged enum (the kinds of their contents differ), the types in a `serde_json::Value`
//! (`0`, `false`, `""`, `[]` are four tags), or newtypes of different names (`UserId(5)`,
//! `OrgId(5)`). A compact format with no names or kinds (postcard, say) encodes each of those
//! pairs to the same bytes.
//!
//! The top level is a tuple of the key arguments written one after the other, so adding them
//! one by one ([`Encoder::element`]) writes what encoding their tuple ([`Encoder::top`]) does.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant};
use serde::ser::{SerializeTuple, SerializeTupleStruct, SerializeTupleVariant};

/// Where the bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

#[cfg(test)]
impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Why a value could not be encoded (its `Serialize` failed).
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// The tag before each value; `END` closes sequences, maps, and the fields of structs,
/// tuples and variants; `FIELD` comes before each field's name.
mod tag {
    pub const BOOL: u8 = 1;
    pub const I8: u8 = 2;
    pub const I16: u8 = 3;
    pub const I32: u8 = 4;
    pub const I64: u8 = 5;
    pub const I128: u8 = 6;
    pub const U8: u8 = 7;
    pub const U16: u8 = 8;
    pub const U32: u8 = 9;
    pub const U64: u8 = 10;
    pub const U128: u8 = 11;
    pub const F32: u8 = 12;
    pub const F64: u8 = 13;
    pub const CHAR: u8 = 14;
    pub const STR: u8 = 15;
    pub const BYTES: u8 = 16;
    pub const NONE: u8 = 17;
    pub const SOME: u8 = 18;
    pub const UNIT: u8 = 19;
    pub const UNIT_STRUCT: u8 = 20;
    pub const UNIT_VARIANT: u8 = 21;
    pub const NEWTYPE_STRUCT: u8 = 22;
    pub const NEWTYPE_VARIANT: u8 = 23;
    pub const SEQ: u8 = 24;
    pub const TUPLE: u8 = 25;
    pub const TUPLE_STRUCT: u8 = 26;
    pub const TUPLE_VARIANT: u8 = 27;
    pub const MAP: u8 = 28;
    pub const STRUCT: u8 = 29;
    pub const STRUCT_VARIANT: u8 = 30;
    pub const END: u8 = 31;
    pub const FIELD: u8 = 32;
}

/// Writes values to a [`Sink`].
pub(crate) struct Encoder<'a, S> {
    sink: &'a mut S,
    /// At the top: a tuple is the key arguments, written one after the other, untagged.
    top: bool,
}

impl<'a, S: Sink> Encoder<'a, S> {
    /// For the tuple of all the key arguments (or a single one).
    pub fn top(sink: &'a mut S) -> Self {
        Encoder { sink, top: true }
    }

    /// For one key argument, to follow the others.
    pub fn element(sink: &'a mut S) -> Self {
        Encoder { sink, top: false }
    }

    fn nested(&mut self) -> Encoder<'_, S> {
        Encoder { sink: self.sink, top: false }
    }

    fn tagged(&mut self, tag: u8, bytes: &[u8]) {
        self.sink.put(&[tag]);
        self.sink.put(bytes);
    }

    /// A length (LEB128), then the bytes.
    fn text(&mut self, bytes: &[u8]) {
        let mut len = bytes.len() as u64;
        let mut buf = [0u8; 10];
        let mut n = 0;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            buf[n] = if len == 0 { byte } else { byte | 0x80 };
            n += 1;
            if len == 0 {
                break;
            }
        }
        self.sink.put(&buf[..n]);
        self.sink.put(bytes);
    }

    fn named(&mut self, tag: u8, names: &[&str]) {
        self.sink.put(&[tag]);
        for name in names {
            self.text(name.as_bytes());
        }
    }

    fn end(&mut self) {
        self.sink.put(&[tag::END]);
    }
}

/// The serializers of values of a fixed size: the tag, then the bytes (little-endian).
macro_rules! fixed {
    ($($method:ident($ty:ty) => $tag:ident, |$v:ident| $bytes:expr;)*) => {$(
        fn $method(self, $v: $ty) -> Result<(), Error> {
            self.tagged(tag::$tag, &$bytes);
            Ok(())
        }
    )*};
}

impl<'a, 'b, S: Sink> ser::Serializer for &'b mut Encoder<'a, S> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    fixed! {
        serialize_bool(bool) => BOOL, |v| [u8::from(v)];
        serialize_i8(i8) => I8, |v| v.to_le_bytes();
        serialize_i16(i16) => I16, |v| v.to_le_bytes();
        serialize_i32(i32) => I32, |v| v.to_le_bytes();
        serialize_i64(i64) => I64, |v| v.to_le_bytes();
        serialize_i128(i128) => I128, |v| v.to_le_bytes();
        serialize_u8(u8) => U8, |v| [v];
        serialize_u16(u16) => U16, |v| v.to_le_bytes();
        serialize_u32(u32) => U32, |v| v.to_le_bytes();
        serialize_u64(u64) => U64, |v| v.to_le_bytes();
        serialize_u128(u128) => U128, |v| v.to_le_bytes();
        serialize_f32(f32) => F32, |v| v.to_bits().to_le_bytes();
        serialize_f64(f64) => F64, |v| v.to_bits().to_le_bytes();
        serialize_char(char) => CHAR, |v| u32::from(v).to_le_bytes();
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.sink.put(&[tag::STR]);
        self.text(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.sink.put(&[tag::BYTES]);
        self.text(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.sink.put(&[tag::NONE]);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.sink.put(&[tag::SOME]);
        value.serialize(&mut self.nested())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        // At the top, `()` is a call without key arguments: nothing, as for no `element`.
        if !self.top {
            self.sink.put(&[tag::UNIT]);
        }
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Error> {
        self.named(tag::UNIT_STRUCT, &[name]);
        Ok(())
    }
    fn serialize_unit_variant(self, name: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        self.named(tag::UNIT_VARIANT, &[name, variant]);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.named(tag::NEWTYPE_STRUCT, &[name]);
        value.serialize(&mut self.nested())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.named(tag::NEWTYPE_VARIANT, &[name, variant]);
        value.serialize(&mut self.nested())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Error> {
        self.top = false; // only a tuple is the key arguments
        self.sink.put(&[tag::SEQ]);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        if !self.top {
            self.sink.put(&[tag::TUPLE]);
        }
        Ok(self)
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Self, Error> {
        self.top = false;
        self.named(tag::TUPLE_STRUCT, &[name]);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.top = false;
        self.named(tag::TUPLE_VARIANT, &[name, variant]);
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Error> {
        self.sink.put(&[tag::MAP]);
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, Error> {
        self.named(tag::STRUCT, &[name]);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.named(tag::STRUCT_VARIANT, &[name, variant]);
        Ok(self)
    }
}

/// Elements one after the other, then `END` (but not after the top level's arguments).
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<S: Sink> $trait for &mut Encoder<'_, S> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                value.serialize(&mut self.nested())
            }

            fn end(self) -> Result<(), Error> {
                if !self.top {
                    Encoder::end(self);
                }
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<S: Sink> SerializeMap for &mut Encoder<'_, S> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(&mut self.nested())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut self.nested())
    }

    fn end(self) -> Result<(), Error> {
        Encoder::end(self);
        Ok(())
    }
}

/// Each field's name, then its value; skipped fields leave no trace but their absence.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl<S: Sink> $trait for &mut Encoder<'_, S> {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), Error> {
                self.named(tag::FIELD, &[name]);
                value.serialize(&mut self.nested())
            }

            fn end(self) -> Result<(), Error> {
                Encoder::end(self);
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    fn bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value.serialize(&mut Encoder::element(&mut out)).unwrap();
        out
    }

    #[derive(Serialize)]
    struct Filter {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<i64>,
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Either {
        Num(i64),
        Name(String),
    }

    #[derive(Serialize)]
    struct UserId(i64);

    #[derive(Serialize)]
    struct OrgId(i64);

    #[test]
    fn what_serde_leaves_out_still_tells_values_apart() {
        assert_ne!(bytes(&Filter { a: Some(5), b: None }), bytes(&Filter { a: None, b: Some(5) }));
        assert_ne!(bytes(&Either::Num(0)), bytes(&Either::Name(String::new())));
        assert_ne!(bytes(&UserId(5)), bytes(&OrgId(5)));
        // What a `serde_json::Value` serializes as, kind by kind.
        let unit = bytes(&());
        let kinds = [
            bytes(&0u64),
            bytes(&false),
            bytes(""),
            bytes(&Vec::<u8>::new()),
            bytes(&BTreeMap::<String, u8>::new()),
            unit,
        ];
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn nesting_and_lengths_are_unambiguous() {
        assert_ne!(bytes(&(("a", "b"), "c")), bytes(&("a", ("b", "c"))));
        assert_ne!(bytes(&vec![vec![1u8], vec![]]), bytes(&vec![vec![], vec![1u8]]));
        assert_ne!(bytes(&("ab", "")), bytes(&("a", "b")));
        assert_ne!(bytes(&None::<u8>), bytes(&Some(())));
    }

    #[derive(Serialize)]
    struct Odd {
        /// A name whose length (31) is the byte that ends a struct.
        #[serde(rename = "\u{f}#aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", skip_serializing_if = "Option::is_none")]
        field: Option<u8>,
    }

    /// After a struct's name comes either the end or a field: told apart by a tag of its own,
    /// not by a field name's length.
    #[test]
    fn a_field_is_never_mistaken_for_the_end() {
        let tail = format!("{}\u{12}\u{7}\u{5}\u{1f}\u{f}\u{0}", "a".repeat(29));
        let mut one = bytes(&Odd { field: None });
        one.extend(bytes(tail.as_str()));
        let mut other = bytes(&Odd { field: Some(5) });
        other.extend(bytes(""));
        assert_ne!(one, other);
    }

    #[test]
    fn the_top_tuple_is_its_arguments_one_after_the_other() {
        let mut top = Vec::new();
        ("alice", 3i64).serialize(&mut Encoder::top(&mut top)).unwrap();
        let mut one_by_one = Vec::new();
        "alice".serialize(&mut Encoder::element(&mut one_by_one)).unwrap();
        3i64.serialize(&mut Encoder::element(&mut one_by_one)).unwrap();
        assert_eq!(top, one_by_one);
        let mut none = Vec::new();
        ().serialize(&mut Encoder::top(&mut none)).unwrap();
        assert!(none.is_empty(), "no key arguments");
    }
}
