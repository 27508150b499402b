//! Which parameters of a function form its cache key.
//!
//! The key is built from every parameter except `self` receivers, the ones named in
//! `skip(...)`, and sqlx executors; a parameter written as a pattern contributes its bindings. The executor rule lives here, in one place, and is
//! documented in docs/usage.md ("How keys are derived").

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{
    Expr, FnArg, GenericParam, Ident, Pat, Receiver, ReceiverKind, Signature, Type, TypeParamBound,
    WherePredicate,
};

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
    // sqlx's aliases, re-exported at its root (`sqlx::PgTransaction<'c>` is
    // `Transaction<'c, Postgres>`).
    "PgTransaction",
    "SqliteTransaction",
    "MySqlTransaction",
];

/// Transactions, under sqlx's own names: reads through them bypass the cache.
const TRANSACTION_TYPES: &[&str] = &["Transaction", "PgTransaction", "SqliteTransaction", "MySqlTransaction"];

/// Smart pointers looked through when telling executors (`Arc<PgPool>`, `&Arc<PgPool>`).
const POINTERS: &[&str] = &["Arc", "Rc", "Box"];

/// Traits whose implementors (`impl Trait`, or a generic bounded by them) are executors.
const EXECUTOR_TRAITS: &[&str] =
    &["Executor", "Acquire", "PgExecutor", "SqliteExecutor", "MySqlExecutor", "AnyExecutor"];

/// A name the generated code refers to: a parameter's, or a binding of a parameter's pattern
/// (`Path(slug): Path<String>` binds `slug`).
pub struct Param<'a> {
    pub ident: &'a Ident,
    /// The type of the parameter it is or belongs to.
    pub ty: &'a Type,
    /// That parameter as declared (`<fn>_invalidate` takes it the same way).
    pub declared: &'a syn::PatType,
    /// Part of the key; otherwise only used by the `cache = ...` expression.
    pub in_key: bool,
}

/// The names that parameters bind, in declaration order: a plain parameter's name, the
/// bindings of a pattern (`Path(slug)`, `Extension(ctx)`, `(a, b)`, `Point { x, y }`).
pub fn bindings(sig: &Signature) -> Vec<(&Ident, &syn::PatType)> {
    let mut found = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input {
            let mut idents = Vec::new();
            pattern_bindings(&arg.pat, &mut idents);
            found.extend(idents.into_iter().map(|ident| (ident, arg)));
        }
    }
    found
}

/// The identifiers a pattern binds (in an or-pattern, those of its first case: all bind the same).
fn pattern_bindings<'a>(pat: &'a Pat, found: &mut Vec<&'a Ident>) {
    match pat {
        Pat::Ident(p) => {
            found.push(&p.ident);
            if let Some((_, sub)) = &p.subpat {
                pattern_bindings(sub, found);
            }
        }
        Pat::Or(p) => p.cases.iter().take(1).for_each(|case| pattern_bindings(case, found)),
        Pat::Paren(p) => pattern_bindings(&p.pat, found),
        Pat::Reference(p) => pattern_bindings(&p.pat, found),
        Pat::Slice(p) => p.elems.iter().for_each(|elem| pattern_bindings(elem, found)),
        Pat::Struct(p) => p.fields.iter().for_each(|field| pattern_bindings(&field.pat, found)),
        Pat::Tuple(p) => p.elems.iter().for_each(|elem| pattern_bindings(elem, found)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|elem| pattern_bindings(elem, found)),
        Pat::Type(p) => pattern_bindings(&p.pat, found),
        _ => {}
    }
}

/// Whether a pattern binds anything by reference (`ref x`, `ref mut x`).
fn binds_by_ref(pat: &Pat) -> bool {
    match pat {
        Pat::Ident(p) => p.by_ref.is_some() || p.subpat.as_ref().is_some_and(|(_, sub)| binds_by_ref(sub)),
        Pat::Or(p) => p.cases.iter().any(binds_by_ref),
        Pat::Paren(p) => binds_by_ref(&p.pat),
        Pat::Reference(p) => binds_by_ref(&p.pat),
        Pat::Slice(p) => p.elems.iter().any(binds_by_ref),
        Pat::Struct(p) => p.fields.iter().any(|field| binds_by_ref(&field.pat)),
        Pat::Tuple(p) => p.elems.iter().any(binds_by_ref),
        Pat::TupleStruct(p) => p.elems.iter().any(binds_by_ref),
        Pat::Type(p) => binds_by_ref(&p.pat),
        _ => false,
    }
}

/// A part of a pattern whose bindings the macro cannot see (a macro, tokens it does not parse).
fn opaque_pattern(pat: &Pat) -> Option<&Pat> {
    match pat {
        Pat::Macro(_) | Pat::Verbatim(_) => Some(pat),
        Pat::Ident(p) => p.subpat.as_ref().and_then(|(_, sub)| opaque_pattern(sub)),
        Pat::Or(p) => p.cases.iter().find_map(opaque_pattern),
        Pat::Paren(p) => opaque_pattern(&p.pat),
        Pat::Reference(p) => opaque_pattern(&p.pat),
        Pat::Slice(p) => p.elems.iter().find_map(opaque_pattern),
        Pat::Struct(p) => p.fields.iter().find_map(|field| opaque_pattern(&field.pat)),
        Pat::Tuple(p) => p.elems.iter().find_map(opaque_pattern),
        Pat::TupleStruct(p) => p.elems.iter().find_map(opaque_pattern),
        Pat::Type(p) => opaque_pattern(&p.pat),
        _ => None,
    }
}

/// The names that are part of the key or that the `cache = ...` expression uses, in
/// declaration order: a parameter with a pattern is keyed by its bindings (a `_` part is one
/// the body does not read). `<fn>_invalidate` takes the parameters they belong to.
pub fn params<'a>(sig: &'a Signature, skip: &[Ident], cache: Option<&Expr>) -> syn::Result<Vec<Param<'a>>> {
    let executors = executor_generics(sig);
    let mut found = Vec::new();
    let mut errors = None;
    for input in &sig.inputs {
        // An executor is never destructured: such a pattern is a type of the user's that only
        // shares a name with one, and would be left out of the key without a word.
        if let FnArg::Typed(arg) = input
            && !matches!(&*arg.pat, Pat::Ident(p) if p.subpat.is_none())
            && is_executor(&arg.ty, &executors)
        {
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(
                    &arg.pat,
                    "this parameter's type is named like an sqlx executor, which is never part of the \
                     key, but it is destructured: bind it to a name (and `skip` it, or import the type \
                     under another name to make it part of the key)",
                ),
            );
        }
        // A macro's bindings are not visible here: the parameter would be left out of the key.
        if let FnArg::Typed(arg) = input
            && let Some(opaque) = opaque_pattern(&arg.pat)
        {
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(
                    opaque,
                    "#[cached_query] cannot see what this pattern binds, so it cannot key the call by it; \
                     bind the parameter to a name and destructure it in the body",
                ),
            );
        }
    }
    for (ident, arg) in bindings(sig) {
        // An executor is never in the key; the `cache = ...` expression may still use it.
        let in_key = !skip.contains(ident) && !is_executor(&arg.ty, &executors);
        if in_key || cache.is_some_and(|c| mentions(c.to_token_stream(), ident)) {
            found.push(Param { ident, ty: &arg.ty, declared: arg, in_key });
        }
    }
    let bound = bindings(sig);
    for name in skip {
        if !bound.iter().any(|(ident, _)| *ident == name) {
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(
                    name,
                    format!(
                        "`skip`: there is no parameter `{name}` (nor a binding of a parameter's pattern)"
                    ),
                ),
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
    sig.inputs.iter().any(|input| matches!(input, FnArg::Typed(arg) if is_transaction(&arg.ty)))
}

/// A `&mut` transaction parameter's type: the caller commits it after the function returns.
pub fn borrowed_transaction(sig: &Signature) -> Option<&Type> {
    sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(arg) => match &*arg.ty {
            Type::Reference(r) if r.mutability.is_some() && is_transaction(&r.elem) => Some(&*arg.ty),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    })
}

/// Whether the type, behind any `&`/`&mut`, has one of `TRANSACTION_TYPES`' names.
fn is_transaction(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|name| TRANSACTION_TYPES.contains(&name.as_str()))
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
/// `&str`) and `Option<&T>` are fine, the generated code runs the query on an owned copy;
/// borrowed `self` receivers (`&self`; `self: Arc<Self>` is fine), `&mut` parameters,
/// `impl Trait`, generic executors and other types that borrow (`(i64, &str)`, `Filter<'a>`,
/// `&[&str]`) are not.
pub fn check_refreshable(sig: &Signature, option: &Ident) -> syn::Result<()> {
    let mut errors = None;
    let does = match option.to_string().as_str() {
        "verify" => "runs the query again in the background",
        _ => "refreshes entries in the background",
    };
    let why = format!(
        "`{option}` {does}, after the caller has its answer, so the query cannot borrow from the caller"
    );
    let executors = executor_generics(sig);
    let owned = "take an owned value or a shared reference (`&PgPool` is fine: it is cloned)";
    for input in &sig.inputs {
        let problem = match input {
            // An owned receiver (`self: Arc<Self>`) is moved into the refresh like any owned value.
            FnArg::Receiver(r) if borrowed_receiver(r) => {
                Some(("a borrowed `self` receiver", "take `self: Arc<Self>` (or an owned `self`)"))
            }
            FnArg::Receiver(_) => None,
            FnArg::Typed(arg) if binds_by_ref(&arg.pat) => Some((
                "a `ref` binding (it borrows from the parameter, which the background query cannot)",
                "bind by value (`Path(slug)`, not `Path(ref slug)`)",
            )),
            FnArg::Typed(arg)
                if !matches!(&*arg.pat, Pat::Ident(p) if p.subpat.is_none()) && lent(&arg.ty).is_some() =>
            {
                Some((
                    "a borrowed parameter with a pattern (its copy is lent back under one name)",
                    "bind it to a name and destructure it in the body",
                ))
            }
            FnArg::Typed(arg) => match &*arg.ty {
                Type::Reference(r) if r.mutability.is_some() => Some(("a `&mut` parameter", owned)),
                Type::ImplTrait(_) => Some(("an `impl Trait` parameter", owned)),
                Type::Path(p) if p.path.get_ident().is_some_and(|i| executors.contains(&i)) => {
                    Some(("a generic executor (it borrows a pool or connection)", "take `&PgPool`"))
                }
                // `&'static T` is moved in as it is.
                Type::Reference(r) if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") => None,
                // `&T` is copied with `ToOwned`; `Option<&T>` too (see `lent`).
                Type::Reference(r) if borrows(&r.elem) => Some((
                    "a reference to a type that borrows (its copy would still borrow)",
                    "take owned elements: `&[String]`, not `&[&str]`",
                )),
                Type::Reference(r) if contains_impl(&r.elem) => Some(("an `impl Trait` parameter", owned)),
                Type::Reference(_) => None,
                ty if lent(ty).is_some() => None,
                ty if borrows(ty) => Some((
                    "a parameter that borrows (a reference or a lifetime inside its type, such as \
                     `(i64, &str)` or `Filter<'a>`)",
                    "take an owned type (`(i64, String)`), or `Option<&T>`, which is copied",
                )),
                _ => None,
            },
        };
        if let Some((problem, help)) = problem {
            crate::attr::push(
                &mut errors,
                syn::Error::new_spanned(input, format!("{why}: it cannot take {problem}; {help}")),
            );
        }
    }
    errors.map_or(Ok(()), Err)
}

/// Whether a receiver borrows (`&self`, `self: &Arc<Self>`); `self` and `self: Arc<Self>` do not.
fn borrowed_receiver(receiver: &Receiver) -> bool {
    match &receiver.kind {
        ReceiverKind::Value => false,
        ReceiverKind::Typed(_, ty) => {
            let ty: &Type = ty;
            matches!(ty, Type::Reference(_))
        }
        _ => true,
    }
}

/// How the body of a function that refreshes in the background gets a parameter that borrows
/// from the caller: a copy it owns (`ToOwned`), lent back under the parameter's name.
pub enum Lent<'a> {
    /// `&T` (not `&'static`): a `T::Owned`, lent back as `&T`.
    Ref(&'a Type),
    /// `Option<&T>`: an `Option<T::Owned>`, lent back as `Option<&T>`.
    OptionRef(&'a Type),
}

/// Whether (and how) a refreshing function's body gets a copy of a parameter of type `ty`;
/// `None`: the parameter is moved in as it is.
pub fn lent(ty: &Type) -> Option<Lent<'_>> {
    match ty {
        Type::Reference(r) if r.lifetime.as_ref().is_none_or(|l| l.ident != "static") => {
            Some(Lent::Ref(&r.elem))
        }
        ty => option_ref(ty).map(Lent::OptionRef),
    }
}

/// `T` of `Option<&T>` (not `&'static`).
fn option_ref(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    match type_argument(p, &["Option"])? {
        Type::Reference(r)
            if r.mutability.is_none()
                && r.lifetime.as_ref().is_none_or(|l| l.ident != "static")
                && !borrows(&r.elem)
                && !contains_impl(&r.elem) =>
        {
            Some(&r.elem)
        }
        _ => None,
    }
}

/// `T` of a path `Name<T>` (one type argument) whose last segment is one of `names`.
fn type_argument<'a>(p: &'a syn::TypePath, names: &[&str]) -> Option<&'a Type> {
    let last = p.path.segments.last()?;
    if !names.contains(&last.ident.to_string().as_str()) {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a type, as written, borrows: a `&` or a lifetime other than `'static` anywhere.
pub fn borrows(ty: &Type) -> bool {
    // `&'static T` and `'static` do not borrow from the caller; any other `&` or lifetime does.
    fn walk(tokens: TokenStream) -> bool {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_static = |i: usize| {
            matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == '\'')
                && matches!(tokens.get(i + 1), Some(TokenTree::Ident(id)) if id == "static")
        };
        // A function type's arguments (`fn(&str)`, `dyn Fn(&str)`) and `for<'a>` borrow
        // nothing from the caller.
        let is_fn = |i: usize| {
            matches!(i.checked_sub(1).and_then(|j| tokens.get(j)), Some(TokenTree::Ident(id))
                if id == "fn" || id == "Fn" || id == "FnMut" || id == "FnOnce")
        };
        let mut in_for = false;
        for (i, tt) in tokens.iter().enumerate() {
            match tt {
                TokenTree::Ident(id) if id == "for" => in_for = true,
                TokenTree::Punct(p) if in_for => in_for = p.as_char() != '>',
                TokenTree::Punct(p) if p.as_char() == '&' && !is_static(i + 1) => return true,
                TokenTree::Punct(p) if p.as_char() == '\'' && !is_static(i) => return true,
                TokenTree::Group(g) if !is_fn(i) && walk(g.stream()) => return true,
                _ => {}
            }
        }
        false
    }
    walk(ty.to_token_stream())
}

/// Whether an `impl Trait` appears anywhere in a type.
pub fn contains_impl(ty: &Type) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tt| match tt {
            TokenTree::Ident(i) => i == "impl",
            TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
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
            p.path.get_ident().is_some_and(|i| executor_generics.contains(&i)) || named_executor(ty).is_some()
        }
        _ => false,
    }
}

/// The type that gives a parameter an executor's name (`PgPool` in `&Arc<PgPool>`): behind
/// any `&`/`&mut` and `Arc`/`Rc`/`Box`, a path whose last segment is one of `EXECUTOR_TYPES`.
fn named_executor(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = unwrapped(ty) else { return None };
    let last = p.path.segments.last().filter(|_| p.qself.is_none())?;
    match type_argument(p, POINTERS) {
        Some(inner) => named_executor(inner),
        None => EXECUTOR_TYPES.contains(&last.ident.to_string().as_str()).then(|| unwrapped(ty)),
    }
}

/// The parameters left out of the key as executors for their type's name alone, unless
/// `skip`ped, each with that named type: the generated code checks that it is not
/// `Serialize`, as no executor is (see `__private::unkeyed_check`).
pub fn named_executors<'a>(sig: &'a Signature, skip: &[Ident]) -> Vec<(&'a Ident, &'a Type)> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => match &*arg.pat {
                // A type with `impl` in it cannot be named in the probe's turbofish.
                Pat::Ident(pat) if !skip.contains(&pat.ident) && !contains_impl(&arg.ty) => {
                    Some((&pat.ident, named_executor(&arg.ty)?))
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
             q: &<T as X>::Pool, a: &Arc<PgPool>, id: i64)",
        )
        .unwrap();
        let names = |skip: &[Ident]| -> Vec<String> {
            named_executors(&sig, skip)
                .iter()
                .map(|(ident, ty)| format!("{ident}: {}", ty.to_token_stream()))
                .collect()
        };
        assert_eq!(names(&[]), ["p: Pool", "c: PgConnection", "a: PgPool"]);
        assert_eq!(names(&[syn::parse_str("p").unwrap()]), ["c: PgConnection", "a: PgPool"]);
    }

    #[test]
    fn mentions_finds_nested_idents() {
        let ty: Type = syn::parse_str("Vec<Option<T>>").unwrap();
        let t: Ident = syn::parse_str("T").unwrap();
        let u: Ident = syn::parse_str("U").unwrap();
        assert!(mentions(quote::quote!(#ty), &t));
        assert!(!mentions(quote::quote!(#ty), &u));
    }

    #[test]
    fn borrowing_types() {
        let b = |s: &str| borrows(&syn::parse_str::<Type>(s).unwrap());
        assert!(b("Option<&str>") && b("(i64, &str)") && b("Filter<'a>") && b("[&str]") && b("Filter<'_>"));
        assert!(!b("Option<&'static str>") && !b("Vec<String>") && !b("Cow<'static, str>") && !b("i64"));
        assert!(!b("fn(&str) -> bool") && !b("Box<dyn Fn(&str) + Send>") && !b("for<'a> fn(&'a str)"));
        assert!(b("Box<dyn Fn(&str) + 'a>"));
        let o = |s: &str| option_ref(&syn::parse_str::<Type>(s).unwrap()).is_some();
        assert!(
            o("Option<&str>")
                && o("Option<&'a [i64]>")
                && !o("Option<&'static str>")
                && !o("Option<&[&str]>")
        );
    }

    #[test]
    fn sqlx_names() {
        assert_eq!(keys("async fn f(e: impl PgExecutor<'_>, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f<'c, E: sqlx::SqliteExecutor<'c>>(e: E, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f(tx: &mut PgTransaction<'_>, id: i64)"), ["id"]);
        assert_eq!(keys("async fn f(p: &Arc<PgPool>, q: Arc<PgPool>, id: i64)"), ["id"]);
        let sig: Signature = syn::parse_str("async fn f(tx: &mut sqlx::SqliteTransaction<'_>)").unwrap();
        assert!(has_transaction(&sig) && borrowed_transaction(&sig).is_some());
        let sig: Signature = syn::parse_str("async fn f(tx: Transaction<'static, Postgres>)").unwrap();
        assert!(has_transaction(&sig) && borrowed_transaction(&sig).is_none());
    }
}
