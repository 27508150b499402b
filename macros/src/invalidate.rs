//! Code generation for `#[cache_invalidate(tags = [...])]`: the write side. The function
//! runs as written; when it returns `Ok` (or any value, for a return type that is not a
//! `Result`), the tags, formatted from its arguments before it ran, are invalidated.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemFn, ReturnType, Type};

use crate::attr::{self, CachedQueryArgs, push};
use crate::expand::{adapter, check_async, handle, private_path, split_attrs, tag_exprs, with_fn};
use crate::params::{borrowed_transaction, contains_impl};
use crate::tables::Access;

/// Entry point (see `expand::with_fn` for the error behaviour).
pub fn cache_invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    with_fn("cache_invalidate", item, |func| expand(args, func))
}

fn expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = None;
    let args = CachedQueryArgs::parse(args, attr::Attribute::CacheInvalidate, &mut errors);
    let ItemFn { attrs, vis, sig, block, .. } = func;
    check_async("cache_invalidate", sig, &mut errors);
    if args.tags.is_empty() && args.tables.is_none() {
        push(
            &mut errors,
            syn::Error::new_spanned(
                &sig.ident,
                "#[cache_invalidate] needs `tags = [...]` or `tables = ...`: what this write invalidates",
            ),
        );
    }
    let tables = match &args.tables {
        Some(tables) => crate::tables::resolve(tables, block, sig, Access::Written).unwrap_or_else(|err| {
            push(&mut errors, err);
            Vec::new()
        }),
        None => Vec::new(),
    };
    if let ReturnType::Type(_, ty) = &sig.output
        && contains_impl(ty)
    {
        push(
            &mut errors,
            syn::Error::new_spanned(
                ty,
                "#[cache_invalidate] needs to name the return type to tell success (`Ok`) from \
                 failure; it cannot be an `impl Trait` (return `Result<T, E>` from a function \
                 that this handler calls, and put the attribute on that one)",
            ),
        );
    }
    if let Some(tx) = borrowed_transaction(sig) {
        push(
            &mut errors,
            syn::Error::new_spanned(
                tx,
                "#[cache_invalidate] invalidates when the function returns, which for a borrowed \
                 transaction is before its caller commits: a read in between would cache the old \
                 value again. Commit first, then invalidate (`QueryCache::invalidate_tags`), or \
                 take the transaction by value and commit it in this function",
            ),
        );
    }
    let tags = tag_exprs(&args, sig, &mut errors);
    if let Some(err) = errors {
        return Err(err);
    }
    let p = private_path(&args);
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => Type::Verbatim(quote!(())),
    };
    let adapter = adapter(&ret, &p);
    let handle = handle(&args, &p);
    let (outer, inner) = split_attrs(attrs);
    let invalidate = match tables.is_empty() {
        true => quote!(#p::invalidate_tags(__cq_handle, __cq_succeeded, &__cq_tags).await;),
        false => quote! {
            #p::invalidate_written(__cq_handle, __cq_succeeded, &__cq_tags, &[#(#tables),*]).await;
        },
    };
    Ok(quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            let __cq_tags = [#(#tags),*];
            let __cq_handle = #handle;
            let __cq_result = async move #block.await;
            let __cq_succeeded = #p::succeeded(&#adapter, &__cq_result);
            #invalidate
            __cq_result
        }
    })
}
