//! Code generation for `#[cached_query]`: checks the function, then rewrites it.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Token;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    AttrStyle, Attribute, FnArg, GenericParam, Generics, Ident, ItemFn, Pat, ReturnType, Signature, Type,
    TypeParamBound, WherePredicate,
};

use crate::attr::{self, CachedQueryArgs, push};
use crate::params::{
    Lent, Param, bindings, borrows, check_refreshable, has_transaction, lent, mentions, named_executors,
    params,
};
use crate::tables::Access;
use crate::tags;

/// Entry point: on any error the original item is emitted unchanged next to the errors, so
/// that the rest of the crate (and the IDE) still sees the function.
pub fn cached_query(args: TokenStream, item: TokenStream) -> TokenStream {
    with_fn("cached_query", item, |func| expand(args, func))
}

/// Parses `item` as a function and expands it with `expand`; on any error, emits the item
/// unchanged next to the errors.
pub fn with_fn(
    attr: &str,
    item: TokenStream,
    expand: impl FnOnce(&ItemFn) -> syn::Result<TokenStream>,
) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err =
                syn::Error::new_spanned(&item, format!("#[{attr}] can only be applied to an `async fn`"));
            return with_error(item, err);
        }
    };
    match expand(&func) {
        Ok(tokens) => tokens,
        Err(err) => with_error(func.into_token_stream(), err),
    }
}

/// A function's outer attributes (`#[...]`, before it) and inner ones (`#![...]`, which syn
/// keeps with them but which must stay at the start of its body).
pub fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    attrs.iter().partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

fn with_error(mut item: TokenStream, err: syn::Error) -> TokenStream {
    item.extend(err.into_compile_error());
    item
}

/// Rejects `const fn` and non-`async` functions.
pub fn check_async(attr: &str, sig: &Signature, errors: &mut Option<syn::Error>) {
    if let Some(constness) = &sig.constness {
        push(errors, syn::Error::new_spanned(constness, format!("#[{attr}] cannot be used on a `const fn`")));
    }
    if sig.asyncness.is_none() {
        push(
            errors,
            syn::Error::new_spanned(
                sig.fn_token,
                format!("#[{attr}] works on `async fn` only; make this function `async`"),
            ),
        );
    }
}

/// A web framework's response type in `ty`, or in its `Result`'s `Ok`: what a first try of the
/// attribute on a handler returns.
fn web_response(ty: &Type) -> Option<&Type> {
    // Not `Response`: an API client's own `Response` struct is a fine value to cache.
    const RESPONSES: &[&str] = &["Json", "Html", "Redirect", "HttpResponse", "Sse"];
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if RESPONSES.contains(&last.ident.to_string().as_str()) {
        return Some(ty);
    }
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => web_response(ok),
        _ => None,
    }
}

/// The expressions that format the tags, from the function's parameters.
pub fn tag_exprs(
    args: &CachedQueryArgs,
    sig: &Signature,
    errors: &mut Option<syn::Error>,
) -> Vec<TokenStream> {
    let names: Vec<&Ident> = bindings(sig).into_iter().map(|(ident, _)| ident).collect();
    // A tag of a skipped parameter would tell apart entries that share one key: one caller
    // would be served another's entry.
    for tag in &args.tags {
        let template = tag.value();
        for skipped in &args.skip {
            let name = skipped.to_string();
            // `{name}`, `{ name }`, `{name.field}` (as the template parser reads them).
            let named = |at: usize| {
                let rest = template[at + 1..].trim_start();
                rest.strip_prefix(name.as_str()).is_some_and(|r| {
                    let r = r.trim_start();
                    r.starts_with('}') || r.starts_with('.')
                }) && !template[..at].ends_with('{')
            };
            if template.match_indices('{').any(|(at, _)| named(at)) {
                push(
                    errors,
                    syn::Error::new_spanned(
                        tag,
                        format!(
                            "tag template: `{name}` is in `skip(...)`, so it is not part of the key, and \
                             callers that differ only by it share one entry: one would be served \
                             another's; make `{name}` a key parameter (remove it from `skip`)"
                        ),
                    ),
                );
            }
        }
    }
    args.tags
        .iter()
        .filter_map(|tag| {
            tags::format(tag, &names, &private_path(args)).map_err(|err| push(errors, err)).ok()
        })
        .collect()
}

/// `::cached_query::__private`, or the `crate = "..."` path's.
pub fn private_path(args: &CachedQueryArgs) -> TokenStream {
    match &args.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cached_query::__private),
    }
}

/// The cache a call uses: `cache = ...`, or the installed one.
pub fn handle(args: &CachedQueryArgs, p: &TokenStream) -> TokenStream {
    match &args.cache {
        Some(expr) => quote_spanned!(expr.span()=> #p::Handle::given(#expr)),
        None => quote!(#p::Handle::installed()),
    }
}

/// Selects how a return type is cached (see `__private::Outcome`), spanned at the type.
pub fn adapter(ret: &Type, p: &TokenStream) -> TokenStream {
    quote_spanned! {ret.span()=>
        { use #p::select::*; (&&#p::Outcome::<#ret>::NEW).__cq_adapter() }
    }
}

/// How the value that `__cq_adapter` stores is copied out of kept decodes, if it can be (see
/// `__private::copy`); never with `reuse = false`.
fn copier(args: &CachedQueryArgs, ret: &Type, p: &TokenStream) -> TokenStream {
    if args.reuse == Some(false) {
        return quote!(::core::option::Option::None);
    }
    quote_spanned! {ret.span()=>
        { use #p::copy::*; (&#p::probe(&__cq_adapter)).__cq_copier() }
    }
}

fn expand(args: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let mut errors = None;
    let args = CachedQueryArgs::parse(args, attr::Attribute::CachedQuery, &mut errors);
    let sig = &func.sig;
    check_async("cached_query", sig, &mut errors);
    let ret = match &sig.output {
        ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)) => {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    ty,
                    "#[cached_query] cannot cache an `impl Trait` return type; name the type",
                ),
            );
            None
        }
        ReturnType::Type(_, ty) => {
            if let Some(response) = web_response(ty) {
                push(
                    &mut errors,
                    syn::Error::new_spanned(
                        response,
                        "#[cached_query] caches a function's data, not a web handler's response: \
                         `Json<T>`, `Html<T>`, `Redirect` and the like are not `Serialize + \
                         DeserializeOwned`. Put the attribute on the data-access function that the \
                         handler calls, and build the response from its value",
                    ),
                );
            }
            Some(&**ty)
        }
        ReturnType::Default => {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    &sig.ident,
                    "#[cached_query] needs a return type: the value to cache",
                ),
            );
            None
        }
    };
    if let Some(option) = &args.refresh
        && let Err(err) = check_refreshable(sig, option)
    {
        push(&mut errors, err);
    }
    let params = params(sig, &args.skip, args.cache.as_ref()).unwrap_or_else(|err| {
        push(&mut errors, err);
        Vec::new()
    });
    let tags = tag_exprs(&args, sig, &mut errors);
    let tables = match &args.tables {
        Some(tables) => {
            crate::tables::resolve(tables, &func.block, sig, Access::Read).unwrap_or_else(|err| {
                push(&mut errors, err);
                Vec::new()
            })
        }
        None => Vec::new(),
    };
    if let Some(err) = errors {
        return Err(err);
    }
    let ret = ret.expect("a missing return type is reported above");
    let generator = Gen {
        private: private_path(&args),
        args: &args,
        func,
        params: &params,
        tags: &tags,
        tables: &tables,
    };
    let cached = generator.cached_fn(ret);
    let invalidate = (args.invalidate != Some(false)).then(|| generator.invalidate_fn());
    Ok(quote!(#cached #invalidate))
}

/// What both generated functions share.
struct Gen<'a> {
    args: &'a CachedQueryArgs,
    func: &'a ItemFn,
    /// The key parameters, and those the `cache = ...` expression uses.
    params: &'a [Param<'a>],
    /// `::cached_query::__private`, or the `crate = "..."` path's.
    private: TokenStream,
    /// The expressions of the tags.
    tags: &'a [TokenStream],
    /// The tables the entry depends on (`tables = ...`), normalised.
    tables: &'a [String],
}

impl Gen<'_> {
    /// The user's function, its body run by the cache on a miss.
    fn cached_fn(&self, ret: &Type) -> TokenStream {
        let ItemFn { attrs, vis, sig, block, .. } = self.func;
        let (outer, inner) = split_attrs(attrs);
        let p = &self.private;
        let call = self.call(true);
        let adapter = adapter(ret, p);
        let copier = copier(self.args, ret, p);
        // Whether a failed query's error is handed to its waiters (a `Clone` error type). Not
        // for a type that borrows: the selection ignores lifetimes, and would ask `'static`.
        let errors = match borrows(ret) {
            true => quote!(::core::option::Option::None),
            false => quote_spanned! {ret.span()=>
                { use #p::share::*; (&&#p::Outcome::<#ret>::NEW).__cq_errors() }
            },
        };
        // Spanned at the return type: that is where a value that cannot be cached is reported.
        let run = match &self.args.refresh {
            None => quote_spanned! {ret.span()=>
                __cq_call.run(__cq_adapter, __cq_copier, __cq_errors, async move #block).await
            },
            Some(_) => {
                let body = self.owned_body(block);
                quote_spanned! {ret.span()=>
                    __cq_call.run_refreshable(__cq_adapter, __cq_copier, __cq_errors, #body).await
                }
            }
        };
        // With a refresh, the body sees re-borrows of the copies (which keep the `mut`), not
        // the parameters: a `mut` left on those would be an `unused_mut` warning.
        let mut sig = sig.clone();
        if self.args.refresh.is_some() {
            for input in &mut sig.inputs {
                if let FnArg::Typed(arg) = input
                    && let Pat::Ident(pat) = &mut *arg.pat
                    && lent(&arg.ty).is_some()
                {
                    pat.mutability = None;
                }
            }
        }
        // Warnings on what the key leaves out although its type is `Serialize` (no executor or
        // repository is): a parameter taken for an executor by its type's name, the receiver.
        let probe = |span: proc_macro2::Span, ty: TokenStream, check: &str| {
            // The method's name carries the span: the warning is reported there.
            let check = Ident::new(check, span);
            quote_spanned! {span=>
                { use #p::unkeyed_check::*; (&#p::unkeyed_probe::<#ty>()).#check(); }
            }
        };
        let executors = named_executors(&sig, &self.args.skip)
            .into_iter()
            .map(|(ident, ty)| probe(ident.span(), ty.to_token_stream(), "__cq_executor"));
        let receiver = sig.receiver().map(|r| probe(r.self_token.span, quote!(Self), "__cq_receiver"));
        let checks = executors.chain(receiver);
        // Located at the user's path, so that a function of the wrong type is reported there,
        // with the call site's hygiene (a path from a `macro_rules!` keeps its own).
        let result_tags = self.args.result_tags.as_ref().map(|path| {
            let span = proc_macro2::Span::call_site().located_at(path.span());
            quote_spanned! {span=>
                let __cq_call = __cq_call.result_tags(#p::result_tags_of(&__cq_adapter, |__cq_value| {
                    #p::render_result_tags(#path(__cq_value))
                }));
            }
        });
        // Listed for `cached_query::tables()` (collected at link time).
        let tables = self.tables;
        let registered = (!tables.is_empty()).then(|| {
            quote! { #p::inventory::submit! { #p::Tables(&[#(#tables),*]) } }
        });
        quote! {
            #(#outer)*
            #vis #sig {
                #(#inner)*
                #(#checks)*
                #registered
                #call
                let __cq_adapter = #adapter;
                #result_tags
                let __cq_copier = #copier;
                let __cq_errors = #errors;
                #run
            }
        }
    }

    /// The body of a function that refreshes in the background: a `'static` future that owns
    /// a copy of each shared-reference (or `Option<&T>`) parameter and re-borrows it under the
    /// parameter's name, so that the user's block reads exactly as written (see `params::lent`).
    /// A `&'static` parameter is moved in as it is (a copy could not be borrowed for `'static`).
    fn owned_body(&self, block: &syn::Block) -> TokenStream {
        let mut owned = Vec::new();
        let mut reborrow = Vec::new();
        for (index, input) in self.func.sig.inputs.iter().enumerate() {
            let FnArg::Typed(arg) = input else { continue };
            let Pat::Ident(pat) = &*arg.pat else { continue };
            let (ident, mutability) = (&pat.ident, &pat.mutability);
            // Named by position: `__cq_own__x` (from `_x`) would trip `non_snake_case`.
            let copy = format_ident!("__cq_own_{}", index);
            let span = arg.ty.span();
            // Spanned at the type: a missing `Clone` (`ToOwned`) is reported on this parameter.
            // Lent back as `&T`, not the parameter's `&'a T`: the copy is borrowed for as long
            // as the body runs, not for the caller's `'a`. Unused when only the key or the
            // `cache` expression needed it; keeps the binding's `mut`.
            let allow = quote!(#[allow(unused_variables, unused_mut)]);
            match lent(&arg.ty) {
                Some(Lent::Ref(elem)) => {
                    owned.push(quote_spanned!(span=>
                        let #copy = <#elem as ::std::borrow::ToOwned>::to_owned(#ident);));
                    reborrow.push(quote!(#allow
                        let #mutability #ident: &#elem = ::core::borrow::Borrow::borrow(&#copy);));
                }
                Some(Lent::OptionRef(elem)) => {
                    owned.push(quote_spanned!(span=>
                        let #copy = ::core::option::Option::map(#ident, <#elem as ::std::borrow::ToOwned>::to_owned);));
                    reborrow.push(quote!(#allow
                        let #mutability #ident: ::core::option::Option<&#elem> =
                            ::core::option::Option::map(::core::option::Option::as_ref(&#copy), ::core::borrow::Borrow::borrow);));
                }
                None => {}
            }
        }
        // The block's statements, not the block: `{ { id } }` would be `unused_braces`.
        let stmts = &block.stmts;
        quote! {{
            #(#owned)*
            async move {
                #(#reborrow)*
                #(#stmts)*
            }
        }}
    }

    /// `<fn>_invalidate(<key parameters>)`: deletes the entry those arguments cached. It also
    /// takes the parameters that the `cache = ...` expression uses.
    fn invalidate_fn(&self) -> TokenStream {
        let ItemFn { attrs, vis, sig, .. } = self.func;
        let p = &self.private;
        let name = format_ident!("{}_invalidate", sig.ident);
        let doc = format!(
            " Deletes the entry that `{}` cached for these arguments (generated by `#[cached_query]`).",
            sig.ident
        );
        let cfgs = split_attrs(attrs).0.into_iter().filter(|a| a.path().is_ident("cfg"));
        let receiver = sig.receiver().map(|_| quote!(&self,));
        // Each parameter once, as declared when it has a pattern (its bindings make the key).
        let mut declared: Vec<&syn::PatType> = Vec::new();
        for k in self.params {
            if !declared.iter().any(|d| std::ptr::eq(*d, k.declared)) {
                declared.push(k.declared);
            }
        }
        let patterns = declared.iter().any(|d| !matches!(&*d.pat, Pat::Ident(p) if p.subpat.is_none()));
        let params = declared.iter().map(|d| match &*d.pat {
            Pat::Ident(pat) if pat.subpat.is_none() => {
                let (ident, ty) = (&pat.ident, &d.ty);
                quote!(#ident: #ty)
            }
            pat => {
                let ty = &d.ty;
                quote!(#pat: #ty)
            }
        });
        // A pattern's bindings that are skipped are not used here.
        let allow = patterns.then(|| quote!(#[allow(unused_variables, unused_mut)]));
        let generics = self.invalidate_generics();
        let where_clause = &generics.where_clause;
        let call = self.call(false);
        quote! {
            #[doc = #doc]
            #(#cfgs)*
            #[allow(dead_code)]
            #allow
            #vis async fn #name #generics (#receiver #(#params),*)
                -> ::core::result::Result<(), #p::CacheError> #where_clause
            {
                #call
                __cq_call.invalidate().await
            }
        }
    }

    /// The statements that locate the function and hash its key: `__cq_call`. The cached
    /// function's also format its tags, and skip the cache inside a transaction.
    fn call(&self, cached: bool) -> TokenStream {
        let p = &self.private;
        let fn_name = self.func.sig.ident.to_string();
        let name = match &self.args.name {
            Some(lit) => quote!(#p::Name::Given(#lit)),
            None => quote!(#p::Name::Here(__cq_here, #fn_name)),
        };
        let here = self.args.name.is_none().then(|| {
            quote!(
                fn __cq_here() -> &'static ::core::primitive::str {
                    ::core::any::type_name_of_val(&__cq_here)
                }
            )
        });
        let version = (self.args.version != 0).then(|| {
            let v = self.args.version;
            quote!(.version(#v))
        });
        // How to cache: the cached function's business; `<fn>_invalidate` needs the key only.
        let options = cached.then(|| self.spec_options());

        let mut handle = handle(self.args, p);
        if cached && has_transaction(&self.func.sig) {
            // Uncommitted data is never cached, and a transaction reads its own writes.
            handle = quote!(#handle.bypassed());
        }
        let tags = self.tags.iter().filter(|_| cached).map(|tag| quote!(.tag(#tag)));
        // One `.key(..)` per key parameter, with its span: a missing `Serialize` is reported
        // once, on that parameter.
        let parts = self.params.iter().filter(|k| k.in_key).map(|k| {
            let ident = k.ident;
            let span = match &*k.declared.pat {
                Pat::Ident(_) => k.ty.span(),
                _ => ident.span(),
            };
            quote_spanned!(span=> .key(&#ident))
        });
        // A method's type is part of its key: the instantiations of a generic `impl` (and the
        // types that share a trait's default method) share the function's name, and often
        // differ by nothing else (`impl<T: Table> Repo<T>`, `&self` not a key parameter).
        // Not with a `name`, which pins the key whatever the type's path.
        let self_type = (self.func.sig.receiver().is_some() && self.args.name.is_none())
            .then(|| quote!(.method_of(::core::any::type_name::<Self>())));
        quote! {
            #here
            static __CQ_SPEC: #p::Spec =
                #p::Spec::new(#name)#version #options;
            let __cq_call = #p::Call::new(&__CQ_SPEC, #handle)#(#tags)*#self_type #(#parts)*.keyed();
        }
    }

    /// The `Spec` builder calls for the options that say how to cache.
    fn spec_options(&self) -> TokenStream {
        let a = self.args;
        let ttl = a.ttl.map(|secs| quote!(.ttl(#secs)));
        let stale = a.stale.map(|secs| quote!(.stale(#secs)));
        let fail_safe = (a.fail_safe == Some(false)).then(|| quote!(.fail_safe(false)));
        let jitter = a.jitter.map(|fraction| quote!(.jitter(#fraction)));
        let early = a.early.then(|| quote!(.early(true)));
        let lock = a.lock.map(|lock| quote!(.lock(#lock)));
        let none_ttl = a.none_ttl.map(|secs| quote!(.none_ttl(#secs)));
        let cache_none = (a.cache_none == Some(false)).then(|| quote!(.cache_none(false)));
        // Bare `verify` only asks for a body that can run in the background: the cache's
        // probability applies, as it does with `stale` and `early`.
        let verify = a.verify.flatten().map(|p| quote!(.verify(#p)));
        let admit_after = a.admit_after.filter(|calls| *calls > 0).map(|calls| quote!(.admit_after(#calls)));
        let tables = self.tables;
        let tables = (!tables.is_empty()).then(|| quote!(.tables(&[#(#tables),*])));
        quote!(#ttl #stale #fail_safe #jitter #early #lock #none_ttl #cache_none #verify #admit_after #tables)
    }

    /// The function's generics, less those no key parameter mentions (an executor's `E`,
    /// say), which the invalidate function could not infer.
    fn invalidate_generics(&self) -> Generics {
        let mut generics = self.func.sig.generics.clone();
        let (kept, dropped): (Vec<_>, Vec<_>) = generics.params.into_iter().partition(|param| {
            let ident = param_ident(param);
            self.params.iter().any(|k| mentions(k.ty.to_token_stream(), ident))
        });
        let names_dropped =
            |tokens: TokenStream| dropped.iter().any(|d| mentions(tokens.clone(), param_ident(d)));
        // A kept parameter keeps its bounds but those that name a dropped one
        // (`T: Serialize + Encode<'c, E::Database>` keeps `T: Serialize`, all the key needs).
        let keep_bounds = |bounds: &mut Punctuated<TypeParamBound, Token![+]>| retain(bounds, &names_dropped);
        generics.params = kept
            .into_iter()
            .map(|mut param| {
                match &mut param {
                    GenericParam::Type(t) => keep_bounds(&mut t.bounds),
                    GenericParam::Lifetime(l) => retain(&mut l.bounds, &names_dropped),
                    GenericParam::Const(_) => {}
                }
                param
            })
            .collect();
        if let Some(where_clause) = &mut generics.where_clause {
            let predicates = std::mem::take(&mut where_clause.predicates);
            where_clause.predicates = predicates
                .into_iter()
                .filter_map(|pred| match pred {
                    WherePredicate::Type(mut t) if !names_dropped(t.bounded_ty.to_token_stream()) => {
                        keep_bounds(&mut t.bounds);
                        Some(WherePredicate::Type(t))
                    }
                    pred if names_dropped(pred.to_token_stream()) => None,
                    pred => Some(pred),
                })
                .collect();
        }
        generics
    }
}

/// `items` without those whose tokens `drop` says to leave out.
fn retain<T: ToTokens, P: Default>(items: &mut Punctuated<T, P>, drop: &impl Fn(TokenStream) -> bool) {
    *items = std::mem::take(items).into_iter().filter(|item| !drop(item.to_token_stream())).collect();
}

fn param_ident(param: &GenericParam) -> &syn::Ident {
    match param {
        GenericParam::Lifetime(l) => &l.lifetime.ident,
        GenericParam::Type(t) => &t.ident,
        GenericParam::Const(c) => &c.ident,
    }
}
