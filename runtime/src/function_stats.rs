//! Counts per cached function: what [`QueryCache::function_stats`](crate::QueryCache) returns,
//! and, with the feature `metrics`, the same as metrics on the `metrics` facade (the application
//! installs the recorder and exporter it wants; without one, each call costs a few loads).
//!
//! Names and labels (a contract, docs/observability.md): `cached_query_calls_total{function,
//! outcome}`, `cached_query_errors_total{function, kind}`,
//! `cached_query_call_duration_seconds{function, outcome}`,
//! `cached_query_query_duration_seconds{function}`, `cached_query_local_hits_total{function}`,
//! `cached_query_invalidations_total{kind}`, `cached_query_breaker_open`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::CacheError;
use crate::keyspace::{self, Keyspace};
use crate::seeded::Seeded;

/// The counts of one cached function in one cache, since the cache was built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's key name: its `name = "..."`, or its path.
    pub name: String,
    /// Calls answered with a fresh value from the cache.
    pub hits: u64,
    /// Calls answered with a stale value (past `ttl`, within `stale`).
    pub stale: u64,
    /// Calls that ran the query because no valid entry existed (or the cache failed).
    pub misses: u64,
    /// Calls that ran the query without consulting the cache: breaker open, the change feed of
    /// a table it depends on down, a passthrough cache, a key not yet admitted (`admit_after`).
    pub bypasses: u64,
    /// Cache-side failures of its calls, each answered by the query.
    pub errors: u64,
    /// Hits answered by the local tier (also in `hits` or `stale`).
    pub local_hits: u64,
}

impl FunctionStats {
    /// Adds `other`'s counts to these (the same function in another instance, say).
    pub fn add(&mut self, other: &FunctionStats) {
        self.hits += other.hits;
        self.stale += other.stale;
        self.misses += other.misses;
        self.bypasses += other.bypasses;
        self.errors += other.errors;
        self.local_hits += other.local_hits;
    }

    /// The share of calls answered from the cache (fresh or stale) among those that consulted
    /// it (hits, stale hits, misses); 0 without any.
    pub fn hit_ratio(&self) -> f64 {
        let served = self.hits + self.stale;
        match served + self.misses {
            0 => 0.0,
            calls => served as f64 / calls as f64,
        }
    }

    /// `counts` added up per function name (functions that share a `name`, or instances of a
    /// service), sorted by name.
    pub fn add_up(counts: impl IntoIterator<Item = FunctionStats>) -> Vec<FunctionStats> {
        let mut all: Vec<FunctionStats> = Vec::new();
        for f in counts {
            match all.iter_mut().find(|a| a.name == f.name) {
                Some(a) => a.add(&f),
                None => all.push(f),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The counts as `.publish_stats(interval)` writes them (a hash field's value per
    /// function): `hits stale misses bypasses errors local_hits`.
    pub fn published(&self) -> String {
        let c = [self.hits, self.stale, self.misses, self.bypasses, self.errors, self.local_hits];
        c.map(|n| n.to_string()).join(" ")
    }

    /// The counts of `name` from their [`published`](Self::published) form; `None` if it is
    /// not that form.
    pub fn from_published(name: &str, counts: &str) -> Option<FunctionStats> {
        let mut n = counts.split(' ').map(|n| n.parse::<u64>().ok());
        let mut next = || n.next().flatten();
        Some(FunctionStats {
            name: name.to_owned(),
            hits: next()?,
            stale: next()?,
            misses: next()?,
            bypasses: next()?,
            errors: next()?,
            local_hits: next()?,
        })
    }
}

/// How a call was answered (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Hit,
    Stale,
    Miss,
    Bypass,
}

impl Answer {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub fn label(self) -> &'static str {
        match self {
            Answer::Hit => "hit",
            Answer::Stale => "stale",
            Answer::Miss => "miss",
            Answer::Bypass => "bypass",
        }
    }
}

/// One function's counts, and its metrics' keys.
struct Counts {
    name: &'static str,
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    errors: AtomicU64,
    local_hits: AtomicU64,
    keys: &'static metrics::Keys,
}

impl Counts {
    fn new(name: &'static str) -> Self {
        let zero = || AtomicU64::new(0);
        let (hits, stale, misses, bypasses, errors, local_hits) =
            (zero(), zero(), zero(), zero(), zero(), zero());
        Counts { name, hits, stale, misses, bypasses, errors, local_hits, keys: metrics::Keys::of(name) }
    }

    fn count(&self, outcome: Answer, local: bool) {
        let counter = match outcome {
            Answer::Hit => &self.hits,
            Answer::Stale => &self.stale,
            Answer::Miss => &self.misses,
            Answer::Bypass => &self.bypasses,
        };
        counter.fetch_add(1, Relaxed);
        if local {
            self.local_hits.fetch_add(1, Relaxed);
        }
    }
}

/// The counts of every function called through one cache. Keyed by the address of the
/// function's name, made once per function (`Spec`), so that a call hashes a number, not a
/// path; functions that share a `name` are added up in [`snapshot`](Self::snapshot). Copied on
/// write: a new function is rare, a call is not.
#[derive(Default)]
pub(crate) struct Functions {
    by_name: ArcSwap<HashMap<usize, Arc<Counts>, Seeded>>,
}

impl Functions {
    /// Counts a call of `function`, answered as `outcome` (by the local tier if `local`) in
    /// `elapsed`.
    pub fn call(&self, function: &'static str, outcome: Answer, local: bool, elapsed: Option<Duration>) {
        self.with(function, |counts| {
            counts.count(outcome, local);
            metrics::call(counts.keys, outcome, local, elapsed);
        });
    }

    /// Records how long a query of `function` took (its metric only).
    pub fn query(&self, function: &'static str, took: Duration) {
        self.with(function, |counts| metrics::query(counts.keys, took));
    }

    /// `f` of `function`'s counts, made on its first call.
    fn with(&self, function: &'static str, f: impl Fn(&Counts)) {
        let id = function.as_ptr() as usize;
        if let Some(counts) = self.by_name.load().get(&id) {
            return f(counts);
        }
        self.by_name.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(id).or_insert_with(|| Arc::new(Counts::new(function)));
            map
        });
        self.with(function, f)
    }

    /// Counts a cache failure on `key`: for the function of the entry it is (or whose counter
    /// or lease it is), if called here; in the metric with `function=""` otherwise (an
    /// invalidation, a change feed's write: no one function's).
    pub fn error(&self, keyspace: &Keyspace, key: &str, err: &CacheError) {
        let map = self.by_name.load();
        let function = keyspace.function_of(keyspace::entry_of(key)).map(|(name, _)| name);
        let counts = function.and_then(|name| map.values().find(|counts| counts.name == name));
        if let Some(counts) = counts {
            counts.errors.fetch_add(1, Relaxed);
        }
        metrics::error(function.unwrap_or_default(), kind(err));
    }

    pub fn snapshot(&self) -> Vec<FunctionStats> {
        let map = self.by_name.load();
        let counts = map.values().map(|c| FunctionStats {
            name: c.name.to_owned(),
            hits: c.hits.load(Relaxed),
            stale: c.stale.load(Relaxed),
            misses: c.misses.load(Relaxed),
            bypasses: c.bypasses.load(Relaxed),
            errors: c.errors.load(Relaxed),
            local_hits: c.local_hits.load(Relaxed),
        });
        FunctionStats::add_up(counts)
    }
}

/// The `kind` label of a cache failure.
fn kind(err: &CacheError) -> &'static str {
    match err {
        CacheError::Timeout(_) => "timeout",
        CacheError::Unavailable => "unavailable",
        CacheError::Decode(_) => "decode",
        CacheError::Oversized { .. } => "oversized",
        CacheError::Encode(_) => "encode",
        CacheError::Config(_) => "config",
        CacheError::Redis(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            "connection"
        }
        CacheError::Redis(_) => "server",
    }
}

/// The metrics, on the `metrics` facade (feature `metrics`); nothing without it.
#[cfg(feature = "metrics")]
pub(crate) mod metrics {
    use std::time::Duration;

    use std::collections::BTreeMap;
    use std::sync::{Mutex, PoisonError};

    use ::metrics::{Key, Label, Level, Metadata};

    use super::Answer;

    const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    const OUTCOMES: [Answer; 4] = [Answer::Hit, Answer::Stale, Answer::Miss, Answer::Bypass];

    /// A function's metric keys, made once per function for the program's life (as its name
    /// is, see `Spec`): a call builds none and allocates nothing, recorder or not.
    pub struct Keys {
        calls: [Key; 4],
        durations: [Key; 4],
        local_hits: Key,
        query: Key,
    }

    impl Keys {
        /// The keys of `function` (a name made once per function), made on first use.
        pub fn of(function: &'static str) -> &'static Keys {
            static ALL: Mutex<BTreeMap<usize, &'static Keys>> = Mutex::new(BTreeMap::new());
            let mut all = ALL.lock().unwrap_or_else(PoisonError::into_inner);
            all.entry(function.as_ptr() as usize).or_insert_with(|| Box::leak(Box::new(Keys::new(function))))
        }

        fn new(function: &'static str) -> Keys {
            let labels = |outcome: Answer| -> &'static [Label] {
                Box::leak(Box::new([
                    Label::from_static_parts("function", function),
                    Label::from_static_parts("outcome", outcome.label()),
                ]))
            };
            let function_only: &'static [Label] =
                Box::leak(Box::new([Label::from_static_parts("function", function)]));
            Keys {
                calls: OUTCOMES.map(|o| Key::from_static_parts("cached_query_calls_total", labels(o))),
                durations: OUTCOMES
                    .map(|o| Key::from_static_parts("cached_query_call_duration_seconds", labels(o))),
                local_hits: Key::from_static_parts("cached_query_local_hits_total", function_only),
                query: Key::from_static_parts("cached_query_query_duration_seconds", function_only),
            }
        }
    }

    fn at(outcome: Answer) -> usize {
        OUTCOMES.iter().position(|o| *o == outcome).expect("every outcome")
    }

    pub fn call(keys: &Keys, outcome: Answer, local: bool, elapsed: Option<Duration>) {
        ::metrics::with_recorder(|recorder| {
            recorder.register_counter(&keys.calls[at(outcome)], &METADATA).increment(1);
            if local {
                recorder.register_counter(&keys.local_hits, &METADATA).increment(1);
            }
            if let Some(elapsed) = elapsed {
                recorder
                    .register_histogram(&keys.durations[at(outcome)], &METADATA)
                    .record(elapsed.as_secs_f64());
            }
        });
    }

    /// A call of a function without a cache (no keys made for it: a rare path).
    pub fn uncached_call(function: &'static str, outcome: Answer, elapsed: Option<Duration>) {
        let outcome = outcome.label();
        ::metrics::counter!("cached_query_calls_total", "function" => function, "outcome" => outcome)
            .increment(1);
        if let Some(elapsed) = elapsed {
            ::metrics::histogram!("cached_query_call_duration_seconds", "function" => function, "outcome" => outcome)
                .record(elapsed.as_secs_f64());
        }
    }

    /// Failures are rare: their label is made when counted.
    pub fn error(function: &str, kind: &'static str) {
        let function = function.to_owned();
        ::metrics::counter!("cached_query_errors_total", "function" => function, "kind" => kind).increment(1);
    }

    pub fn query(keys: &Keys, took: Duration) {
        ::metrics::with_recorder(|recorder| {
            recorder.register_histogram(&keys.query, &METADATA).record(took.as_secs_f64());
        });
    }

    pub fn invalidation(kind: &'static str) {
        ::metrics::counter!("cached_query_invalidations_total", "kind" => kind).increment(1);
    }

    pub fn breaker(open: bool) {
        ::metrics::gauge!("cached_query_breaker_open").set(if open { 1.0 } else { 0.0 });
    }

    /// Whether a call's duration is measured (only for a recorder to receive it).
    pub const TIMED: bool = true;
}

#[cfg(not(feature = "metrics"))]
pub(crate) mod metrics {
    use std::time::Duration;

    use super::Answer;

    pub struct Keys;

    impl Keys {
        pub fn of(_: &'static str) -> &'static Keys {
            &Keys
        }
    }

    pub fn call(_: &Keys, _: Answer, _: bool, _: Option<Duration>) {}
    pub fn uncached_call(_: &'static str, _: Answer, _: Option<Duration>) {}
    pub fn error(_: &str, _: &'static str) {}
    pub fn query(_: &Keys, _: Duration) {}
    pub fn invalidation(_: &'static str) {}
    pub fn breaker(_: bool) {}
    pub const TIMED: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_published_and_read_back() {
        let f = FunctionStats {
            name: "f".into(),
            hits: 3,
            stale: 1,
            misses: 2,
            bypasses: 4,
            errors: 5,
            local_hits: 6,
        };
        assert_eq!(f.published(), "3 1 2 4 5 6");
        assert_eq!(FunctionStats::from_published("f", &f.published()), Some(f.clone()));
        assert_eq!(FunctionStats::from_published("f", "1 2"), None);
        assert_eq!(FunctionStats::add_up([f.clone(), f.clone()])[0].hits, 6);
        assert!((f.hit_ratio() - 4.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn calls_are_counted_per_function() {
        let functions = Functions::default();
        functions.call("a", Answer::Hit, true, None);
        functions.call("a", Answer::Miss, false, None);
        functions.call("b", Answer::Bypass, false, None);
        let keyspace = Keyspace::new("p", None, "public");
        let hash = "0".repeat(32);
        functions.error(&keyspace, &format!("p:a:v0:{hash}"), &CacheError::Unavailable);
        functions.error(&keyspace, &format!("p:unknown:v0:{hash}"), &CacheError::Unavailable);
        functions.error(&keyspace, &format!("p:a:v0:{hash}:gen"), &CacheError::Unavailable);
        functions.error(&keyspace, &format!("p:a:v0:{hash}:lock"), &CacheError::Unavailable);
        functions.error(&keyspace, "p:tag:a", &CacheError::Unavailable);
        let all = functions.snapshot();
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!((a.name.as_str(), a.hits, a.misses, a.local_hits, a.errors), ("a", 1, 1, 1, 3));
        assert_eq!((all[1].name.as_str(), all[1].bypasses), ("b", 1));
    }
}
