//! Procedural macros of [`cached-query`](https://docs.rs/cached-query).
//!
//! Depend on `cached-query`, which re-exports these macros with their full documentation;
//! this crate holds no runtime logic, only parsing (`attr`, `params`) and code generation
//! (`expand`).

mod attr;
mod expand;
mod invalidate;
mod params;
mod tables;
mod tags;

use proc_macro::TokenStream;

/// Caches an `async fn`'s result. See the documentation of `cached_query::cached_query`.
#[proc_macro_attribute]
pub fn cached_query(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached_query(args.into(), item.into()).into()
}

/// Invalidates tags after a write succeeds. See the documentation of
/// `cached_query::cache_invalidate`.
#[proc_macro_attribute]
pub fn cache_invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidate::cache_invalidate(args.into(), item.into()).into()
}
