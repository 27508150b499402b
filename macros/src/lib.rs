//! Procedural macros of [`cached-query`](https://docs.rs/cached-query).
//!
//! Depend on `cached-query`, which re-exports these macros with their full documentation;
//! this crate holds no runtime logic, only parsing (`attr`, `params`) and code generation
//! (`expand`).

mod attr;
mod expand;
mod params;

use proc_macro::TokenStream;

/// Caches an `async fn`'s result. See the documentation of `cached_query::cached_query`.
#[proc_macro_attribute]
pub fn cached_query(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached_query(args.into(), item.into()).into()
}
