// The generated code names everything by absolute path (`::core::...`,
// `::cached_query::__private::...`), so the user's own `Result`, `Option`, `core`, `std`,
// `cached_query`, ... do not change its meaning.
#![allow(dead_code, non_camel_case_types)]

use cached_query::cached_query;

// At the crate root: prelude names (`Result`, `Option`, `Some`, `Vec`, `Box`, `Send`, `Sized`)
// replaced by the user's own.
type Result<T> = ::core::result::Result<T, ::std::string::String>;
struct Option;
struct Some;
struct Vec;
struct Box;
struct Send;
trait Sized {}

#[cached_query(ttl = 60)]
async fn at_root(id: i64) -> Result<i64> {
    ::core::result::Result::Ok(id)
}

// In a module, even `core`, `std`, `cached_query`, `serde` and `sqlx` are the user's (the
// crate root cannot hold a `mod std` next to the `std` injected by the compiler).
mod shadowed {
    mod core {}
    mod std {}
    mod alloc {}
    mod cached_query {}
    mod serde {}
    mod sqlx {}
    type Result<T> = ::core::result::Result<T, ::std::string::String>;
    struct Ok;
    struct Err;
    struct String;
    struct Call;
    struct Spec;

    #[::cached_query::cached_query(ttl = 60, stale = 30)]
    pub async fn in_module(name: &str) -> Result<::std::vec::Vec<u8>> {
        ::core::result::Result::Ok(name.as_bytes().to_vec())
    }

    pub async fn callers() {
        let _ = in_module("x").await;
        let _ = in_module_invalidate("x").await;
    }
}

// Primitive type names: the numbers and flags of the options are emitted as suffixed literals,
// and the generated code names `::core::primitive::str`.
mod primitives {
    struct str;
    struct u64;
    struct u32;
    struct f64;
    struct bool;

    #[::cached_query::cached_query(ttl = 60, version = 1, stale = 5, jitter = 0.1, lock = true)]
    pub async fn answer(id: i64) -> ::core::result::Result<i64, ()> {
        ::core::result::Result::Ok(id)
    }
}

fn main() {
    let _ = primitives::answer(1);
    let _ = at_root_invalidate(1);
    let _ = shadowed::callers();
}
