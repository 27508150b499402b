//! The options of `#[cached_query(...)]` and `#[cache_invalidate(...)]`, parsed with their
//! spans.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitBool, LitInt, LitStr, Path, Token};

/// One option of the attributes, declared once: the parser takes the names of this table (see
/// `CachedQueryArgs::parse_option`), and the option lists of the rustdoc of `cached_query`
/// (the reference) and of the README are checked against it (`tests` below).
pub struct Opt {
    pub name: &'static str,
    /// How it is written, as the docs show it.
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests of the docs
    pub syntax: &'static str,
    /// Whether `#[cache_invalidate]` takes it too (and needs it).
    pub invalidate: Taken,
    /// What it does, in one line (the README's table).
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests of the docs
    pub summary: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    No,
    Optional,
    Required,
}

/// Every option, in the order the docs list them.
pub const OPTIONS: &[Opt] = &[
    opt(
        "ttl",
        "ttl = <seconds>",
        Taken::No,
        "How long an entry lives (> 0). Default: the cache's `default_ttl` (60 s).",
    ),
    opt(
        "name",
        "name = \"<string>\"",
        Taken::No,
        "The stable name used in the key. Default: the function's path.",
    ),
    opt(
        "version",
        "version = <integer>",
        Taken::No,
        "Part of the key: bump it when the cached type changes meaning.",
    ),
    opt(
        "skip",
        "skip(a, b, ...)",
        Taken::No,
        "Parameters left out of the key (a pattern's bindings too: `skip(state)` for `Extension(state)`).",
    ),
    opt(
        "cache",
        "cache = <expr>",
        Taken::Optional,
        "A `&QueryCache` to use instead of the installed default (`cache = &self.cache`).",
    ),
    opt("crate", "crate = \"<path>\"", Taken::Optional, "This crate's path, if you renamed the dependency."),
    opt(
        "stale",
        "stale = <seconds>",
        Taken::No,
        "Stale-while-revalidate: serve the stale value that long after `ttl` while one refresh runs.",
    ),
    opt(
        "fail_safe",
        "fail_safe = <bool>",
        Taken::No,
        "When a refresh fails, keep serving the stale value (`true`, default) or drop it.",
    ),
    opt(
        "jitter",
        "jitter = <fraction>",
        Taken::No,
        "Move expiry by up to that fraction of the TTL, both ways (default: the cache's, 0.1); `0`: off.",
    ),
    opt("early", "early = <bool>", Taken::No, "Probabilistic early refresh (XFetch) before expiry."),
    opt(
        "lock",
        "lock = <bool>",
        Taken::No,
        "On a miss, take a Redis lease so that one process runs the query (default: the cache's, `false`).",
    ),
    opt(
        "tags",
        "tags = [\"users\", \"user:{id}\"]",
        Taken::Required,
        "Tags for `invalidate_tags` and `#[cache_invalidate]`; `{param}` is the parameter's `Display` (`Option`: its value, `None` as nothing).",
    ),
    opt(
        "result_tags",
        "result_tags = <path::to_fn>",
        Taken::No,
        "Tags computed from the value: a `fn(&T) -> impl IntoIterator<Item: Display>` (`T` the cached value).",
    ),
    opt("none_ttl", "none_ttl = <seconds>", Taken::No, "The TTL of empty results (`None`, an empty `Vec`)."),
    opt(
        "verify",
        "verify = <probability>",
        Taken::No,
        "Shadow verification: that share of hits runs the query again in the background and reports a stale entry (`verify`: the cache's).",
    ),
    opt(
        "admit_after",
        "admit_after = <calls>",
        Taken::No,
        "Use the cache for a key only once this process called it that many times within `ttl` (for keys mostly read once).",
    ),
    opt("cache_none", "cache_none = <bool>", Taken::No, "`false`: empty results are never stored."),
    opt(
        "reuse",
        "reuse = <bool>",
        Taken::No,
        "`false`: every hit decodes, never clones a value kept from an earlier decode.",
    ),
    opt(
        "invalidate",
        "invalidate = <bool>",
        Taken::No,
        "`false`: no `<fn>_invalidate` is generated (needed in a trait `impl`).",
    ),
    opt(
        "tables",
        "tables = auto",
        Taken::Optional,
        "The tables the entry depends on, read from the body's SQL (`auto`) or listed (`[\"users\"]`).",
    ),
];

const fn opt(name: &'static str, syntax: &'static str, invalidate: Taken, summary: &'static str) -> Opt {
    Opt { name, syntax, invalidate, summary }
}

/// Which attribute is parsed.
#[derive(Clone, Copy)]
pub enum Attribute {
    CachedQuery,
    CacheInvalidate,
}

impl Attribute {
    /// The options it takes, in the order its errors list them (required ones first).
    pub fn options(self) -> Vec<&'static str> {
        match self {
            Attribute::CachedQuery => OPTIONS.iter().map(|o| o.name).collect(),
            Attribute::CacheInvalidate => [Taken::Required, Taken::Optional]
                .iter()
                .flat_map(|taken| OPTIONS.iter().filter(move |o| o.invalidate == *taken))
                .map(|o| o.name)
                .collect(),
        }
    }
}

/// The parsed arguments of one `#[cached_query(...)]` (or, with fewer options allowed,
/// `#[cache_invalidate(...)]`).
#[derive(Default)]
pub struct CachedQueryArgs {
    /// Seconds; `None` means the cache's default TTL.
    pub ttl: Option<u64>,
    /// The stable name used in keys; `None` means the function's path.
    pub name: Option<LitStr>,
    /// Bumped when the cached type changes shape.
    pub version: u32,
    /// Parameters left out of the key.
    pub skip: Vec<Ident>,
    /// An expression of type `&QueryCache` used instead of the installed default.
    pub cache: Option<Expr>,
    /// Path of the runtime crate (`crate = "..."`), for renamed dependencies.
    pub krate: Option<Path>,
    /// Seconds an entry may be served stale while it is refreshed in the background.
    pub stale: Option<u64>,
    /// `fail_safe = false`: a failed refresh drops the stale value instead of serving it.
    pub fail_safe: Option<bool>,
    /// Fraction of the TTL by which expiry is moved at random.
    pub jitter: Option<f64>,
    /// Probabilistic early refresh.
    pub early: bool,
    /// `verify = p` (`Some(Some(p))`) or bare `verify` (`Some(None)`: the cache's).
    pub verify: Option<Option<f64>>,
    /// Take a Redis lease before running the query on a miss.
    pub lock: Option<bool>,
    /// The `stale`/`early`/`verify` option, when given: such functions run their query in the
    /// background, which limits their parameters (see `params::check_refreshable`).
    pub refresh: Option<Ident>,
    /// Tag templates (`tags = ["users", "user:{id}"]`).
    pub tags: Vec<LitStr>,
    /// `result_tags = path::to_fn`: tags computed from the cached value.
    pub result_tags: Option<Path>,
    /// Seconds that empty results (`None`, an empty `Vec`) are kept, if not `ttl`.
    pub none_ttl: Option<u64>,
    /// `admit_after = n`: a key uses the cache from its call after the `n`-th.
    pub admit_after: Option<u32>,
    /// `cache_none = false`: empty results are not stored.
    pub cache_none: Option<bool>,
    /// `reuse = false`: hits always decode, never clone a kept value.
    pub reuse: Option<bool>,
    /// `invalidate = false`: no `<fn>_invalidate` is generated (a trait `impl` cannot have it).
    pub invalidate: Option<bool>,
    /// `tables = auto` or `tables = ["users", ...]`.
    pub tables: Option<Tables>,
}

/// The tables an entry depends on (or a write invalidates).
pub enum Tables {
    /// Read from the body's SQL; the `auto` token, where a failure is reported.
    Auto(Ident),
    /// Listed by hand.
    Listed(Vec<LitStr>),
}

impl CachedQueryArgs {
    /// Parses the attribute's arguments. Mistakes are added to `errors`, all of them, and
    /// the options that did parse are returned anyway, so that later checks (`skip` names,
    /// say) still run and the user sees every error at once.
    pub fn parse(args: TokenStream, attribute: Attribute, errors: &mut Option<syn::Error>) -> Self {
        let keys = &attribute.options()[..];
        let mut parsed = Self::default();
        let mut seen: Vec<String> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(Ident::to_string);
            let result = match key.as_deref().filter(|k| keys.contains(k)) {
                Some(key) if seen.iter().any(|s| s == key) => {
                    Err(syn::Error::new_spanned(&meta.path, format!("`{key}` is given more than once")))
                }
                Some(key) => {
                    seen.push(key.to_owned());
                    parsed.parse_option(key, &meta)
                }
                None => Err(unknown(&meta.path, keys)),
            };
            // Report the mistake, skip the rest of this option and go on with the next one,
            // so that the user sees every error at once.
            if let Err(err) = result {
                push(errors, err);
                while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                    meta.input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(args) {
            push(errors, err);
        }
        parsed
    }

    fn parse_option(&mut self, key: &str, meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
        match key {
            "ttl" => {
                let lit: LitInt = meta.value()?.parse().map_err(|e| expected(e, "seconds"))?;
                let secs: u64 = whole(&lit, key)?;
                if secs == 0 {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "`ttl` must be greater than 0 seconds (leave it out to use the cache's default)",
                    ));
                }
                self.ttl = Some(secs);
            }
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(&lit, "`name` must not be empty"));
                }
                self.name = Some(lit);
            }
            "version" => {
                let lit: LitInt = meta.value()?.parse().map_err(|e| expected(e, "a version"))?;
                self.version = whole(&lit, key)?;
            }
            "skip" => {
                let content;
                syn::parenthesized!(content in meta.input);
                self.skip.extend(list::<Ident>(&content)?);
            }
            "cache" => self.cache = Some(meta.value()?.parse()?),
            "stale" => {
                let lit: LitInt = meta.value()?.parse().map_err(|e| expected(e, "seconds"))?;
                let secs: u64 = whole(&lit, key)?;
                if secs == 0 {
                    return Err(syn::Error::new_spanned(&lit, "`stale` must be greater than 0 seconds"));
                }
                self.stale = Some(secs);
                self.refresh = meta.path.get_ident().cloned();
            }
            "fail_safe" => self.fail_safe = Some(meta.value()?.parse::<LitBool>()?.value),
            "jitter" => {
                let lit: Lit = meta.value()?.parse()?;
                let fraction = match &lit {
                    Lit::Float(f) => f.base10_parse::<f64>().ok(),
                    Lit::Int(i) => i.base10_parse::<u8>().ok().filter(|v| *v == 0).map(f64::from),
                    _ => None,
                };
                match fraction.filter(|f| (0.0..1.0).contains(f)) {
                    Some(f) => self.jitter = Some(f),
                    None => {
                        return Err(syn::Error::new_spanned(
                            &lit,
                            "`jitter` is a fraction of the TTL in [0, 1): e.g. `jitter = 0.1` for ±10 %, \
                             `jitter = 0` for none",
                        ));
                    }
                }
            }
            "early" => {
                self.early = meta.value()?.parse::<LitBool>()?.value;
                if self.early && self.refresh.is_none() {
                    self.refresh = meta.path.get_ident().cloned();
                }
            }
            "verify" => {
                // Bare `verify`: the cache's probability (`.verify(p)` on the builder).
                if meta.input.peek(Token![=]) {
                    let lit: Lit = meta.value()?.parse()?;
                    let probability = match &lit {
                        Lit::Float(f) => f.base10_parse::<f64>().ok(),
                        Lit::Int(i) => i.base10_parse::<u8>().ok().filter(|v| *v <= 1).map(f64::from),
                        _ => None,
                    };
                    match probability.filter(|p| (0.0..=1.0).contains(p)) {
                        Some(p) => self.verify = Some(Some(p)),
                        None => {
                            return Err(syn::Error::new_spanned(
                                &lit,
                                "`verify` is the share of hits verified, in [0, 1]: e.g. `verify = 0.01` for 1 % \
                                 (or `verify` alone for the cache's, `.verify(p)` on the builder)",
                            ));
                        }
                    }
                } else {
                    self.verify = Some(None);
                }
                if self.refresh.is_none() {
                    self.refresh = meta.path.get_ident().cloned();
                }
            }
            "lock" => self.lock = Some(meta.value()?.parse::<LitBool>()?.value),
            "tags" => {
                let value = meta.value()?;
                let content;
                syn::bracketed!(content in value);
                self.tags.extend(list::<LitStr>(&content)?);
            }
            "result_tags" => {
                let path = meta.value()?.parse::<Path>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the path of a function: `result_tags = author_tags`, where \
                         `fn author_tags(articles: &[Article]) -> Vec<String>`",
                    )
                })?;
                self.result_tags = Some(path);
            }
            "none_ttl" => {
                let lit: LitInt = meta.value()?.parse().map_err(|e| expected(e, "seconds"))?;
                let secs: u64 = whole(&lit, key)?;
                if secs == 0 {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "`none_ttl` must be greater than 0 seconds (`cache_none = false` turns negative caching off)",
                    ));
                }
                self.none_ttl = Some(secs);
            }
            "admit_after" => {
                let lit: LitInt = meta.value()?.parse().map_err(|e| expected(e, "a number of calls"))?;
                let calls: u32 = whole(&lit, key)?;
                if calls > MAX_ADMIT_AFTER {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        format!(
                            "`admit_after` is the number of calls of a key before it uses the cache, at most \
                             {MAX_ADMIT_AFTER}: e.g. `admit_after = 1` to store a key's result on its second call"
                        ),
                    ));
                }
                self.admit_after = Some(calls);
            }
            "cache_none" => self.cache_none = Some(meta.value()?.parse::<LitBool>()?.value),
            "reuse" => self.reuse = Some(meta.value()?.parse::<LitBool>()?.value),
            "invalidate" => self.invalidate = Some(meta.value()?.parse::<LitBool>()?.value),
            "tables" => {
                let value = meta.value()?;
                if value.peek(syn::token::Bracket) {
                    let content;
                    syn::bracketed!(content in value);
                    self.tables = Some(Tables::Listed(list::<LitStr>(&content)?.into_iter().collect()));
                } else {
                    let auto: Ident = value.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "expected `auto` or a list of tables: `tables = [\"users\"]`",
                        )
                    })?;
                    if auto != "auto" {
                        return Err(syn::Error::new_spanned(
                            &auto,
                            "expected `auto` (the tables of the body's SQL) or a list: `tables = [\"users\"]`",
                        ));
                    }
                    self.tables = Some(Tables::Auto(auto));
                }
            }
            "crate" => {
                let lit: LitStr = meta.value()?.parse()?;
                self.krate = Some(lit.parse_with(|input: ParseStream| Path::parse_mod_style(input))?);
            }
            _ => unreachable!("keys are checked against the allowed ones before parsing"),
        }
        Ok(())
    }
}

/// More calls before admission would keep almost any key out: a sign of a misunderstanding.
const MAX_ADMIT_AFTER: u32 = 100;

/// A comma-separated list filling `content` (the inside of `skip(...)` or `tags = [...]`).
/// On a mistake the rest of the list is dropped: syn would report it once more, as an
/// unexpected token.
fn list<T: Parse>(content: ParseStream) -> syn::Result<Punctuated<T, Token![,]>> {
    Punctuated::parse_terminated(content).inspect_err(|_| {
        let _ = content.parse::<TokenStream>();
    })
}

fn unknown(path: &Path, keys: &[&str]) -> syn::Error {
    let name = quote::ToTokens::to_token_stream(path).to_string().replace(' ', "");
    syn::Error::new(
        path.span(),
        format!(
            "unknown option `{name}`; expected one of: {}",
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The value of an option that takes a whole number (`ttl`, `stale`, `none_ttl`, `version`,
/// `admit_after`).
fn whole<T: std::str::FromStr>(lit: &LitInt, key: &str) -> syn::Result<T>
where
    T::Err: std::fmt::Display,
{
    lit.base10_parse().map_err(|err| {
        syn::Error::new_spanned(lit, format!("`{key}` takes a whole number, 0 or more: {err}"))
    })
}

fn expected(err: syn::Error, what: &str) -> syn::Error {
    syn::Error::new(err.span(), format!("expected an integer literal ({what})"))
}

/// Adds `err` to the errors collected so far.
pub fn push(errors: &mut Option<syn::Error>, err: syn::Error) {
    match errors {
        Some(all) => all.combine(err),
        None => *errors = Some(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
    }

    /// Every option of the table parses, written as the docs show it.
    #[test]
    fn every_option_parses_as_the_docs_write_it() {
        for option in OPTIONS {
            let example = option
                .syntax
                .replace("<seconds>", "5")
                .replace("<string>", "x")
                .replace("<integer>", "2")
                .replace("<expr>", "c")
                .replace("<path::to_fn>", "articles::author_tags")
                .replace("<path>", "cq")
                .replace("<bool>", "true")
                .replace("<fraction>", "0.1")
                .replace("<probability>", "0.01")
                .replace("<calls>", "1")
                .replace(", ...", "");
            let mut errors = None;
            CachedQueryArgs::parse(example.parse().unwrap(), Attribute::CachedQuery, &mut errors);
            assert!(errors.is_none(), "{example}: {:?}", errors.map(|e| e.to_string()));
        }
        assert_eq!(Attribute::CacheInvalidate.options(), ["tags", "cache", "crate", "tables"]);
    }

    /// The rustdoc of `cached_query` (the reference) has one item per option, in the table's
    /// order, each starting with the option as the table writes it.
    #[test]
    fn the_rustdoc_documents_every_option() {
        let lib = read("../runtime/src/lib.rs");
        let start = lib.find("/// Options (all optional, each at most once):").expect("the option list");
        let items: Vec<&str> = lib[start..]
            .lines()
            .skip(1)
            .take_while(|line| *line != "///")
            .filter_map(|line| line.strip_prefix("/// - `"))
            .map(|item| item.split("`: ").next().unwrap())
            .collect();
        let table: Vec<&str> = OPTIONS.iter().map(|o| o.syntax).collect();
        assert_eq!(items, table);
    }

    /// The README's option table is this table, row for row.
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = read("../README.md");
        let start = readme.find("| option | what it does |").expect("the README's option table");
        let rows: Vec<&str> = readme[start..].lines().skip(2).take_while(|l| l.starts_with('|')).collect();
        let expected: Vec<String> =
            OPTIONS.iter().map(|o| format!("| `{}` | {} |", o.syntax, o.summary)).collect();
        assert_eq!(rows, expected, "the README's table, as it should read:\n{}", expected.join("\n"));
    }
}
