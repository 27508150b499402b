//! Which parameters of a function form its cache key.
//!
//! The key is built from every parameter except `self` receivers, the ones named in
//! `skip(...)`, and sqlx executors. The executor rule lives here, in one place, and is
//! documented in the README ("How keys are derived").

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Expr, FnArg, GenericParam, Ident, Pat, Signature, Type, TypeParamBound, WherePredicate};

/// Type names (last path segment, behind any `&`/`&mut`) that are sqlx executors or pools.
const EXECUTOR_TYPES: &[&str] = &[
    "Pool",
    "PgPool",
    "MySqlPool",
    "SqlitePool",
    "AnyPool",
    "PoolConnection",
    "Transaction",
    "PgConnection",
    "MySqlConnection",
    "SqliteConnection",
    "AnyConnection",
];

/// Traits whose implementors (`impl Trait`, or a generic bounded by them) are executors.
const EXECUTOR_TRAITS: &[&str] = &["Executor", "Acquire"];

/// A parameter the generated code refers to by name.
pub struct Param<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    /// Part of the key; otherwise only used by the `cache = ...` expression.
    pub in_key: bool,
}

/// The parameters that are part of the key or that the `cache = ...` expression uses, in
/// declaration order: the parameters of `<fn>_invalidate`.
pub fn params<'a>(sig: &'a Signature, skip: &[Ident], cache: Option<&Expr>) -> syn::Result<Vec<Param<'a>>> {
    let executors = executor_generics(sig);
    let mut found = Vec::new();
    let mut errors = None;
    for input in &sig.inputs {
        let FnArg::Typed(arg) = input else { continue };
        let executor = is_executor(&arg.ty, &executors);
        match &*arg.pat {
            Pat::Ident(pat) if pat.subpat.is_none() => {
                let ident = &pat.ident;
                let in_key = !executor && !skip.contains(ident);
                if in_key || cache.is_some_and(|c| mentions(c.to_token_stream(), ident)) {
                    found.push(Param { ident, ty: &arg.ty, in_key });
                }
            }
            _ if executor => {}
            other => crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(
                    other,
                    "#[cached_query] needs a plain name for every parameter that is part of \
                     the cache key; bind this one to a name (or it cannot be hashed)",
                ),
            ),
        }
    }
    for name in skip {
        if !sig.inputs.iter().any(|input| {
            matches!(input, FnArg::Typed(arg)
            if matches!(&*arg.pat, Pat::Ident(p) if p.ident == *name))
        }) {
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(name, format!("`skip`: there is no parameter `{name}`")),
            );
        }
    }
    match errors {
        Some(err) => Err(err),
        None => Ok(found),
    }
}

/// Whether a parameter is a transaction (`&mut Transaction<'_, _>`): such reads bypass the
/// cache, so that uncommitted data is never cached and the transaction reads its own writes.
pub fn has_transaction(sig: &Signature) -> bool {
    sig.inputs.iter().any(
        |input| matches!(input, FnArg::Typed(arg) if last_segment(&arg.ty).as_deref() == Some("Transaction")),
    )
}

fn last_segment(ty: &Type) -> Option<String> {
    match unwrapped(ty) {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// The type behind any `&`/`&mut`, parentheses and invisible groups.
fn unwrapped(ty: &Type) -> &Type {
    match ty {
        Type::Reference(r) => unwrapped(&r.elem),
        Type::Paren(p) => unwrapped(&p.elem),
        Type::Group(g) => unwrapped(&g.elem),
        ty => ty,
    }
}

/// Functions with `stale` or `early` run their query in the background, after the caller got
/// its answer: their query cannot borrow from the caller. Shared references (`&PgPool`,
/// `&str`) are fine, the generated code runs the query on an owned copy; `self` receivers,
/// `&mut` parameters and `impl Trait` parameters are not.
pub fn check_refreshable(sig: &Signature, option: &Ident) -> syn::Result<()> {
    let mut errors = None;
    let why = format!(
        "`{option}` refreshes entries in the background, after the caller has its answer, so the \
         query cannot borrow from the caller"
    );
    for input in &sig.inputs {
        let problem = match input {
            FnArg::Receiver(_) => Some("a `self` receiver"),
            FnArg::Typed(arg) => match &*arg.ty {
                Type::Reference(r) if r.mutability.is_some() => Some("a `&mut` parameter"),
                Type::ImplTrait(_) => Some("an `impl Trait` parameter"),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            let help = "take an owned value or a shared reference (`&PgPool` is fine: it is cloned)";
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(input, format!("{why}: it cannot take {problem}; {help}")),
            );
        }
    }
    errors.map_or(Ok(()), Err)
}

/// Generic type parameters bounded by an executor trait, in `<..>` or in the `where` clause.
fn executor_generics(sig: &Signature) -> Vec<&Ident> {
    let in_params = sig.generics.params.iter().filter_map(|param| match param {
        GenericParam::Type(tp) if tp.bounds.iter().any(is_executor_bound) => Some(&tp.ident),
        _ => None,
    });
    let in_where =
        sig.generics.where_clause.iter().flat_map(|w| &w.predicates).filter_map(|pred| match pred {
            WherePredicate::Type(pt) if pt.bounds.iter().any(is_executor_bound) => match &pt.bounded_ty {
                Type::Path(p) => p.path.get_ident(),
                _ => None,
            },
            _ => None,
        });
    in_params.chain(in_where).collect()
}

fn is_executor_bound(bound: &TypeParamBound) -> bool {
    matches!(bound, TypeParamBound::Trait(t)
        if t.path.segments.last().is_some_and(|s| EXECUTOR_TRAITS.contains(&s.ident.to_string().as_str())))
}

fn is_executor(ty: &Type, executor_generics: &[&Ident]) -> bool {
    match unwrapped(ty) {
        Type::ImplTrait(i) => i.bounds.iter().any(is_executor_bound),
        Type::Path(p) if p.qself.is_none() => {
            p.path.get_ident().is_some_and(|i| executor_generics.contains(&i)) || has_executor_name(ty)
        }
        _ => false,
    }
}

/// Whether the type's last path segment, behind any `&`/`&mut`, is one of `EXECUTOR_TYPES`.
fn has_executor_name(ty: &Type) -> bool {
    matches!(unwrapped(ty), Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| EXECUTOR_TYPES.contains(&s.ident.to_string().as_str())))
}

/// The parameters left out of the key as executors for their type's name alone, unless
/// `skip`ped: the generated code checks that their types are not `Serialize`, as no executor
/// is (see `__private::executor_check`).
pub fn named_executors<'a>(sig: &'a Signature, skip: &[Ident]) -> Vec<&'a Ident> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => match &*arg.pat {
                Pat::Ident(pat) if has_executor_name(&arg.ty) && !skip.contains(&pat.ident) => {
                    Some(&pat.ident)
                }
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Whether `ident` appears anywhere in `tokens` (used to keep only the generics that the
/// key parameters mention).
pub fn mentions(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == *ident,
        TokenTree::Group(g) => mentions(g.stream(), ident),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(sig: &str) -> Vec<String> {
        let sig: Signature = syn::parse_str(sig).unwrap();
        params(&sig, &[], None).unwrap().iter().map(|k| k.ident.to_string()).collect()
    }

    #[test]
    fn executors_are_not_part_of_the_key() {
        assert_eq!(keys("async fn f(pool: &PgPool, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f(c: &mut PgConnection, a: String, b: u8)"), ["a", "b"]);
        assert_eq!(keys("async fn f(tx: &mut Transaction<'_, Postgres>, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f(p: &sqlx::Pool<Sqlite>, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f(e: impl Executor<'_, Database = Postgres>, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f<'c, E: Executor<'c>>(e: E, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f<A>(a: A, id: i64) where A: Acquire<'static>"), ["id"]);
        assert_eq!(keys("async fn f(&self, id: i64)"), ["id"]);
    }

    #[test]
    fn only_executors_by_name_are_checked_and_not_when_skipped() {
        let sig: Signature = syn::parse_str(
            "async fn f<E: Executor<'static>>(e: E, x: impl Acquire<'static>, p: &Pool, c: &mut PgConnection, \
             q: &<T as X>::Pool, id: i64)",
        )
        .unwrap();
        let names = |skip: &[Ident]| -> Vec<String> {
            named_executors(&sig, skip).iter().map(|ident| ident.to_string()).collect()
        };
        assert_eq!(names(&[]), ["p", "c"]);
        assert_eq!(names(&[syn::parse_str("p").unwrap()]), ["c"]);
    }

    #[test]
    fn mentions_finds_nested_idents() {
        let ty: Type = syn::parse_str("Vec<Option<T>>").unwrap();
        let t: Ident = syn::parse_str("T").unwrap();
        let u: Ident = syn::parse_str("U").unwrap();
        assert!(mentions(quote::quote!(#ty), &t));
        assert!(!mentions(quote::quote!(#ty), &u));
    }
}
