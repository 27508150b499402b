//! Declarative caching of sqlx query results in Redis.
//!
//! Annotate a data-access function once; from then on its result is served from the cache
//! (cache-aside: the key comes from the function's name and arguments; on a miss the query
//! runs and its result is stored with a TTL):
//!
//! ```
//! use cached_query::{cached_query, QueryCache};
//!
//! #[cached_query(ttl = 60)]
//! async fn score(user_id: i64) -> Result<i64, std::io::Error> {
//!     // a sqlx query in real code; `Err` results are never cached
//!     Ok(user_id * 10)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache = QueryCache::in_memory(10_000); // or QueryCache::builder().redis_url(..) (or .redis_cluster(..)).build()
//! cached_query::install(cache.clone());
//!
//! assert_eq!(score(7).await.unwrap(), 70); // miss: runs the body, stores 70
//! assert_eq!(score(7).await.unwrap(), 70); // hit
//! assert_eq!((cache.stats().misses, cache.stats().hits), (1, 1));
//!
//! score_invalidate(7).await.unwrap(); // generated next to `score`: deletes that entry
//! # }
//! ```
//!
//! The cache never makes a query fail: when Redis is down, slow or holds bytes that do not
//! decode, the function runs its query and returns the database's answer, and the failure
//! is counted in [`QueryCache::stats`] and logged with `tracing`. See docs/usage.md for the key
//! format, the codec and the exact rule for which parameters form the key.

mod admission;
mod backplane;
mod bounded;
mod builder;
mod cache;
mod clock;
mod codec;
#[cfg(test)]
mod decisions;
mod decoded;
mod engine;
mod entry;
mod error;
mod feed;
mod flight;
mod function_stats;
mod health;
mod inspect;
mod invalidation;
mod key;
mod keyspace;
mod lease;
mod local;
#[cfg(feature = "postgres")]
mod logical;
mod lookup;
#[cfg(feature = "mysql")]
pub mod mysql;
mod outcome;
#[cfg(feature = "postgres")]
pub mod postgres;
mod publish;
mod result_tags;
mod seeded;
mod settings;
mod shape;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod stamp;
mod stats;
mod store;
mod stored;
mod streak;
mod tag_value;
mod tagged;
mod unkeyed;
mod verify;
mod warn;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod watch;

// Unit tests use the attribute itself, whose code names this crate `::cached_query`.
#[cfg(test)]
extern crate self as cached_query;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

use std::sync::Arc;

use arc_swap::ArcSwapOption;

pub use builder::QueryCacheBuilder;
pub use cache::QueryCache;
pub use error::CacheError;
pub use function_stats::FunctionStats;
pub use inspect::{EntryState, Inspection};
pub use stats::CacheStats;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[doc(no_inline)]
pub use sqlx;

/// Caches the result of an `async fn` (see the [crate docs](crate) for an example).
///
/// ```ignore
/// #[cached_query(ttl = 60, name = "users::by_id", version = 2, skip(trace_id))]
/// async fn user_by_id(pool: &PgPool, id: i64, trace_id: Uuid) -> Result<Option<User>, sqlx::Error>
/// ```
///
/// Options (all optional, each at most once):
/// - `ttl = <seconds>`: how long an entry lives (> 0); default: the cache's `default_ttl`
///   (60 s unless configured).
/// - `name = "<string>"`: the stable name used in the key; default: the function's path
///   (`my_crate::db::user_by_id`, or `my_crate::db::Repo::user_by_id` for a method), so that
///   same-named functions of different modules or types never share entries. Set it to keep
///   keys stable across a move or rename. The default comes from `core::any::type_name`,
///   whose output Rust does not promise to keep from one compiler version to the next:
///   processes that share a Redis and invalidate with `<fn>_invalidate` should be built with
///   the same toolchain, or give `name`. Without `name`, a method's keys also hash its `Self`
///   type's name.
/// - `version = <integer>`: part of the key; bump it when the cached type changes meaning
///   (entries of a changed *shape* are rejected by the codec already).
/// - `skip(a, b, ...)`: parameters left out of the key. Naming a parameter that does not
///   exist is a compile error. A parameter written as a pattern (a handler's
///   `Extension(state): Extension<AppState>`) is named by its bindings (`skip(state)`), and
///   keyed by them (`Path(slug): Path<String>` is keyed by `slug`).
/// - `cache = <expr>`: a `&QueryCache` to use instead of the [installed](install) default,
///   e.g. `cache = &self.cache` or `cache = app::cache()`. It may use the function's
///   parameters, also one that the body then takes by value (`cache = &state.cache` with
///   `state: Arc<AppState>`): the call keeps a clone of the cache, not the borrow.
/// - `crate = "<path>"`: the path of this crate, if the dependency was renamed
///   (`cq = { package = "cached-query", ... }` → `crate = "cq"`).
/// - `stale = <seconds>`: stale-while-revalidate: the entry stays `ttl + stale` in Redis;
///   after `ttl` callers get the stale value at once while one background refresh runs.
/// - `fail_safe = <bool>`: keep serving the stale value when its refresh fails (default
///   `true`), or drop it so that the next caller runs the query and sees the error.
/// - `jitter = <fraction>`: move expiry by up to that fraction of the TTL, both ways
///   (`jitter = 0.1`: ±10 %; default: the cache's, 0.1); `jitter = 0` turns it off.
/// - `early = <bool>`: probabilistic early refresh (XFetch): a hit refreshes in the
///   background before expiry, with a probability that grows as expiry nears and with the
///   measured query time.
/// - `lock = <bool>`: take a Redis lease on a miss, so that one process runs the query
///   while the others wait for its result (default: the cache's, `false`).
/// - `tags = ["users", "user:{id}"]`: tags of the entry, for
///   [`QueryCache::invalidate_tags`] and [`cache_invalidate`]; `{param}` (or
///   `{param.field.field}`, or a binding of a parameter's pattern) is replaced by that value's
///   `Display`; an `Option<T: Display>` by its value, and `None` by nothing (`viewer:`; a
///   `Some` whose value renders as nothing renders as `\0`, so that no `Some` reads as
///   `None`); `{{` and `}}` are braces. A placeholder naming no parameter is a compile error
///   on that tag; so are
///   `{self.field}` and a parameter in `skip(...)`: neither is part of the key, and callers that
///   differ only by it would share one entry.
/// - `result_tags = <path::to_fn>`: tags computed from the value once the query ran: a
///   function taking `&T` (the cached value: the return type, or the `Ok` type of a
///   `Result`), or what `&T` derefs to (`&[Article]` for a `Vec<Article>`), and returning any
///   `IntoIterator` of `Display` items, each a tag (e.g. `fn(&[Article]) -> Vec<String>`
///   giving `author:{id}` for each article). Such tags are
///   invalidated as any other; an invalidation of one of them that lands while the query runs
///   keeps its result from being stored (`stats().skipped_stores`), so that no entry computed
///   before it is served after it. A miss costs one more round trip (the tag epoch, read before
///   the query) and the store one more (the tags' counters); a lookup reads the result tags'
///   counters after the entry (client tracking keeps them in the process, as the others).
/// - `none_ttl = <seconds>`: the TTL of empty results (`None`, an empty `Vec`, also inside
///   `Ok`), usually shorter than `ttl`.
/// - `verify = <probability>`: shadow verification: after that share of hits (e.g. `0.01`), the
///   query runs again in the background, once the caller has its answer, and its value is
///   compared with the one served; a difference that no invalidation explains (within a grace
///   period of 0.5 s) is counted in `stats().stale_detected`, logged at `warn` with the
///   function, key and age, and the entry is invalidated: how a missing invalidation shows.
///   Bare `verify` uses the cache's rate (`.verify(p)` on the builder, which also applies to
///   functions with `stale` or `early`). The body must be able to run in the background, as
///   with `stale`; its result must depend on the database alone (no `now()`, an `ORDER BY`).
/// - `admit_after = <calls>`: admission, for functions whose keys are mostly read once (a
///   long tail of ids): a call uses the cache only if this process called the same key that
///   many times before, the last within `ttl`; the calls before run the query alone, without a
///   lookup or a store (`stats().unadmitted`, a `bypass` in `function_stats()`). `1` stores a
///   key's result on its second call. Default `0`: every call uses the cache. Counted per
///   process, in a table of 262,144 slots per cache (see docs/usage.md, "Keys read once").
/// - `cache_none = <bool>`: `false` never stores empty results.
/// - `reuse = <bool>`: `false` decodes every hit, never clones a value kept from an earlier
///   decode (for types whose `Clone` shares mutable state); default `true`; the cache's
///   `.reuse_decoded(0)` turns it off for all functions.
/// - `invalidate = <bool>`: `false` generates no `<fn>_invalidate` (needed on a method of a
///   trait `impl`, which can hold only the trait's items; invalidate by `tags` or
///   [`QueryCache::invalidate`] there); default `true`.
/// - `tables = auto`: the entry depends on the tables its SQL reads, found at compile time in
///   the string literals the body hands to sqlx (`sqlx::query("...")`, `query_as::<_, T>`,
///   `query_scalar`, their `_with` forms, a `let` of a literal passed on, `query!`,
///   `query_as!`, `query_file!`), parsed in the executor's dialect: `FROM`, joins,
///   subqueries, CTE bodies, set operations; not table-valued functions. `tables = ["users",
///   "app.orders"]` lists them instead (dynamic SQL, views that hide other tables). A table is
///   a counter like a tag: [`QueryCache::invalidate_tables`], `#[cache_invalidate(tables =
///   ...)]`, or the database's own change feed invalidate it. Unquoted names are folded to
///   lower case; `public.users` and `users` are one table (the builder's `default_schema`).
///   `auto` that finds no SQL, or SQL that does not parse, is a compile error.
///
/// A function with a `&mut Transaction<'_, _>` (or `&mut PgTransaction<'_>`, ...) parameter
/// bypasses the cache: uncommitted data is never cached and the transaction reads its own
/// writes. Invalidate after commit (`#[cache_invalidate]` on a function with a `&mut`
/// transaction is a compile error).
///
/// Concurrent callers of one key in a process always share one lookup and one query
/// (single-flight). With `stale` or `early`, the query may run in the background after the
/// caller has its answer: shared-reference and `Option<&T>` parameters are then copied
/// (`ToOwned`) for it (`&'static` ones, and owned receivers like `self: Arc<Self>`, are moved
/// in as they are), and `&self`, `&mut`, `impl Trait`, generic executors and other borrowing
/// parameters are compile errors.
///
/// The key is built from every parameter except `self`, `skip`ped ones and sqlx executors
/// (`&PgPool`, `&Pool<_>`, `&mut PgConnection`, `&mut Transaction<'_, _>`,
/// `impl Executor<'_>`, `impl PgExecutor<'_>`, `impl Acquire<'_>`, a generic bounded by one of
/// those, ...). Key parameters must implement `serde::Serialize`. A parameter taken for an
/// executor by its type's name, or a receiver, whose type is `Serialize` gets a warning: it is
/// likely a value that the key needs.
///
/// A `Result<T, E>` return caches only `Ok(T)`; any other return type is cached as it is.
/// The cached value must be `Serialize + DeserializeOwned + Send + 'static`.
///
/// Next to the function, the attribute generates `<fn>_invalidate(<key parameters>)`, an
/// `async fn` with the same visibility that deletes that entry.
#[doc(inline)]
pub use cached_query_macros::cached_query;

/// Invalidates tags after a write: on an `async fn` that returns a `Result`, the tags are
/// invalidated when it returns `Ok` (never on `Err`); on any other return type, whenever it
/// returns. Options: `tags = [...]` (templates as in [`cached_query`]) and/or `tables = auto`
/// (the tables its SQL writes: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, also in a
/// CTE) or `tables = ["users"]`; `cache = <expr>` and `crate = "<path>"` as in
/// [`cached_query`].
///
/// ```ignore
/// #[cache_invalidate(tags = ["users", "user:{id}"])]
/// async fn rename_user(pool: &PgPool, id: i64, name: &str) -> Result<(), sqlx::Error> {
///     sqlx::query("UPDATE users SET name = $2 WHERE id = $1").bind(id).bind(name).execute(pool).await?;
///     Ok(())
/// }
/// ```
///
/// The invalidation runs after the body, so inside a transaction that commits later it runs
/// too early: there, commit first and call [`QueryCache::invalidate_tags`] after.
#[doc(inline)]
pub use cached_query_macros::cache_invalidate;

static INSTALLED: ArcSwapOption<QueryCache> = ArcSwapOption::const_empty();

/// Makes `cache` the process-wide default of functions that name no `cache = ...`.
/// A second call replaces the first.
pub fn install(cache: QueryCache) {
    INSTALLED.store(Some(Arc::new(cache)));
}

/// Every table that a `#[cached_query(tables = ...)]` function of this program depends on,
/// sorted, each once (collected at link time): what a change feed must watch, e.g.
/// `cached_query::postgres::install(&pool, &cached_query::tables())`.
pub fn tables() -> Vec<String> {
    let all: std::collections::BTreeSet<String> = inventory::iter::<__private::Tables>
        .into_iter()
        .flat_map(|tables| tables.0.iter().map(|table| (*table).to_owned()))
        .collect();
    all.into_iter().collect()
}

/// The cache [`install`]ed last, if any.
pub fn installed() -> Option<QueryCache> {
    INSTALLED.load().as_deref().cloned()
}
