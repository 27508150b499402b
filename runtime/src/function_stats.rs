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
use crate::keyspace::Keyspace;

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
    /// a table it depends on down, a passthrough cache.
    pub bypasses: u64,
    /// Cache-side failures of its calls, each answered by the query.
    pub errors: u64,
    /// Hits answered by the local tier (also in `hits` or `stale`).
    pub local_hits: u64,
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

#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    errors: AtomicU64,
    local_hits: AtomicU64,
}

impl Counts {
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

/// The counts of every function called through one cache, by name. Copied on write: a new
/// function is rare, a call is not.
#[derive(Default)]
pub(crate) struct Functions {
    by_name: ArcSwap<HashMap<&'static str, Arc<Counts>>>,
}

impl Functions {
    /// Counts a call of `function`, answered as `outcome` (by the local tier if `local`) in
    /// `elapsed`.
    pub fn call(&self, function: &'static str, outcome: Answer, local: bool, elapsed: Option<Duration>) {
        let map = self.by_name.load();
        match map.get(function) {
            Some(counts) => counts.count(outcome, local),
            None => {
                drop(map);
                self.by_name.rcu(|map| {
                    let mut map = HashMap::clone(map);
                    map.entry(function).or_default();
                    map
                });
                if let Some(counts) = self.by_name.load().get(function) {
                    counts.count(outcome, local);
                }
            }
        }
        metrics::call(function, outcome, local, elapsed);
    }

    /// Counts a cache failure of the entry `key` (of the function it names, if called here).
    pub fn error(&self, keyspace: &Keyspace, key: &str, err: &CacheError) {
        let Some((name, _)) = keyspace.function_of(key) else { return };
        let map = self.by_name.load();
        let Some((function, counts)) = map.get_key_value(name) else { return };
        counts.errors.fetch_add(1, Relaxed);
        metrics::error(function, kind(err));
    }

    pub fn snapshot(&self) -> Vec<FunctionStats> {
        let mut all: Vec<FunctionStats> = self
            .by_name
            .load()
            .iter()
            .map(|(name, c)| FunctionStats {
                name: (*name).to_owned(),
                hits: c.hits.load(Relaxed),
                stale: c.stale.load(Relaxed),
                misses: c.misses.load(Relaxed),
                bypasses: c.bypasses.load(Relaxed),
                errors: c.errors.load(Relaxed),
                local_hits: c.local_hits.load(Relaxed),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// The `kind` label of a cache failure.
fn kind(err: &CacheError) -> &'static str {
    match err {
        CacheError::Timeout(_) => "timeout",
        CacheError::Unavailable => "unavailable",
        CacheError::Decode(_) => "decode",
        CacheError::Encode(text) if text.contains("max_value_bytes") => "oversized",
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

    use super::Answer;

    pub fn call(function: &'static str, outcome: Answer, local: bool, elapsed: Option<Duration>) {
        let outcome = outcome.label();
        ::metrics::counter!("cached_query_calls_total", "function" => function, "outcome" => outcome)
            .increment(1);
        if local {
            ::metrics::counter!("cached_query_local_hits_total", "function" => function).increment(1);
        }
        if let Some(elapsed) = elapsed {
            ::metrics::histogram!("cached_query_call_duration_seconds", "function" => function, "outcome" => outcome)
                .record(elapsed.as_secs_f64());
        }
    }

    pub fn error(function: &'static str, kind: &'static str) {
        ::metrics::counter!("cached_query_errors_total", "function" => function, "kind" => kind).increment(1);
    }

    pub fn query(function: &'static str, took: Duration) {
        ::metrics::histogram!("cached_query_query_duration_seconds", "function" => function)
            .record(took.as_secs_f64());
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

    pub fn call(_: &'static str, _: Answer, _: bool, _: Option<Duration>) {}
    pub fn error(_: &'static str, _: &'static str) {}
    pub fn query(_: &'static str, _: Duration) {}
    pub fn invalidation(_: &'static str) {}
    pub fn breaker(_: bool) {}
    pub const TIMED: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_function() {
        let functions = Functions::default();
        functions.call("a", Answer::Hit, true, None);
        functions.call("a", Answer::Miss, false, None);
        functions.call("b", Answer::Bypass, false, None);
        let keyspace = Keyspace::new("p", false, "public");
        let hash = "0".repeat(32);
        functions.error(&keyspace, &format!("p:a:v0:{hash}"), &CacheError::Unavailable);
        functions.error(&keyspace, &format!("p:unknown:v0:{hash}"), &CacheError::Unavailable);
        functions.error(&keyspace, &format!("p:a:v0:{hash}:gen"), &CacheError::Unavailable);
        let all = functions.snapshot();
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!((a.name.as_str(), a.hits, a.misses, a.local_hits, a.errors), ("a", 1, 1, 1, 1));
        assert_eq!((all[1].name.as_str(), all[1].bypasses), ("b", 1));
    }
}
