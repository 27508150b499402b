//! Lookups whose invalidation counters are known in this process, kept exact by Redis:
//! server-assisted client-side caching (`CLIENT TRACKING`, Redis 6+, RESP3), for the counters
//! only. A warm hit is then one `GET` of the entry instead of an `MGET` of the entry and its
//! counters.
//!
//! Why it is exact, not eventually consistent: the counters are read (`CLIENT CACHING YES` +
//! `MGET`) on a connection of their own that has tracking on, and the entries are read with
//! `GET` on that same connection. When a counter changes, Redis queues the invalidation on that
//! connection at once, so it arrives *before* the reply of any `GET` that Redis ran after the
//! change; the connection's driver hands it to [`KnownCounters::apply`] synchronously, before it
//! hands over later replies. A lookup reads the counters from this process only after its
//! `GET` has answered: every increment that completed before the `GET` ran has removed its
//! counter by then, and a removed counter is read from Redis again. (The manager connection's
//! push forwarding goes through a task of its own, which would lose this ordering: hence the
//! dedicated connection.)
//!
//! A counter value read from Redis is kept only if no invalidation arrived while it was read
//! (one could be about it). On a lost connection (the driver's disconnection message, a
//! request that finds it broken: a driver dropped with its runtime says nothing, or requests
//! that go unanswered: see [`Answer`]) the known counters are dropped, the lookups go back to
//! the `MGET` path, and the connection is made again in the background. A server that refuses
//! RESP3, `CLIENT TRACKING` or `CLIENT CACHING` turns this off for good (logged once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, RedisError, Value};

use crate::CacheError;
use crate::clock::now_ms;
use crate::seeded::Seeded;
use crate::stamp::{INLINE_COUNTERS, parse_counters, stamp};
use crate::streak::Streak;

/// The most counters kept; past that they are dropped and read again as needed.
const MAX_COUNTERS: usize = 100_000;
/// Requests abandoned in a row after which the connection is given up (see [`Answer`]).
const ABANDONED_MAX: u32 = 3;
/// The longest wait between two attempts to make the connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The tracked connection of one cache, made on first use and again after it is lost.
pub(crate) struct Tracking {
    /// A RESP3 client of the cache's server.
    client: redis::Client,
    /// The longest a connection attempt may take.
    connect_timeout: Duration,
    session: ArcSwapOption<Session>,
    connecting: AtomicBool,
    /// Set when the server cannot track (no RESP3, no `CLIENT TRACKING`, not allowed).
    off: AtomicBool,
    /// Unix ms before which no new attempt is made, and the wait after the next failure.
    retry_at: AtomicU64,
    backoff_ms: AtomicU64,
}

/// One tracked connection and the counters known through it.
pub(crate) struct Session {
    conn: MultiplexedConnection,
    counters: Arc<KnownCounters>,
}

/// Counter values, kept exact by the connection's invalidation messages.
#[derive(Default)]
struct KnownCounters {
    values: RwLock<HashMap<String, u64, Seeded>>,
    /// Counts the invalidations applied (a value read meanwhile is not kept).
    invalidations: AtomicU64,
    /// False once the connection is lost: the values are dropped, and no more are kept.
    alive: AtomicBool,
    /// Requests given up in a row before their answer came (see [`Answer`]).
    abandoned: Streak,
}

impl KnownCounters {
    /// What the connection's driver calls for each message the server pushes, before it
    /// passes on the replies that follow it.
    fn apply(&self, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => {
                let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
                match info.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Value::BulkString(key) = key {
                                values.remove(String::from_utf8_lossy(key).as_ref());
                            }
                        }
                    }
                    // `FLUSHALL` / `FLUSHDB`, or a message this code does not know: forget all.
                    _ => values.clear(),
                }
                // Under the lock, so that `keep` and the lookups see the count with the values.
                self.invalidations.fetch_add(1, SeqCst);
            }
            PushKind::Disconnection => self.lose(),
            _ => {}
        }
    }

    /// The connection is lost (or broken): nothing known is trusted, and nothing more is kept.
    fn lose(&self) {
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        self.alive.store(false, SeqCst);
        values.clear();
        self.invalidations.fetch_add(1, SeqCst);
    }

    /// The values of all `keys`, if all are known.
    fn get(&self, keys: &[&str]) -> Option<u64> {
        let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
        if keys.len() > INLINE_COUNTERS {
            return keys
                .iter()
                .map(|key| values.get(*key).copied())
                .collect::<Option<Vec<_>>>()
                .map(|v| stamp(&v));
        }
        let mut found = [0; INLINE_COUNTERS];
        for (slot, key) in found.iter_mut().zip(keys) {
            *slot = *values.get(*key)?;
        }
        Some(stamp(&found[..keys.len()]))
    }

    /// Keeps values read from Redis, unless an invalidation arrived since `seen`.
    fn keep(&self, seen: u64, keys: &[&str], read: &[u64]) {
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        if self.invalidations.load(SeqCst) != seen || !self.alive.load(SeqCst) {
            return;
        }
        if values.len() + keys.len() > MAX_COUNTERS {
            values.clear();
        }
        for (key, value) in keys.iter().zip(read) {
            values.insert((*key).to_owned(), *value);
        }
    }
}

/// A request on the session's connection, until its answer comes. Dropped before it (the
/// cache's timeout, or a caller that dropped its call), it counts as abandoned: a connection
/// that answers none of `ABANDONED_MAX` requests in a row is given up, as it may be stuck
/// with nothing to say it is broken (a stuck proxy, a server gone without a reset). Three
/// callers in a row that drop their calls, with no answer between, cost a new connection.
struct Answer<'a> {
    counters: &'a KnownCounters,
    came: bool,
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        if self.came {
            self.counters.abandoned.reset();
        } else if self.counters.abandoned.fail() == ABANDONED_MAX {
            self.counters.lose();
        }
    }
}

impl Session {
    /// The entry under `key` and the counters under `counters`, as `RedisStore::fetch` returns
    /// them: the counters are at least as recent as the entry (see the module docs).
    pub async fn fetch(&self, key: &str, counters: &[&str]) -> Result<(Option<Vec<u8>>, u64), CacheError> {
        let mut conn = self.conn.clone();
        let seen = self.counters.invalidations.load(SeqCst);
        if let Some(gens) = self.counters.get(counters) {
            let entry: Option<Vec<u8>> = self.ask(redis::cmd("GET").arg(key).query_async(&mut conn)).await?;
            // The counters must be those after the reply (the invalidations sent before it have
            // been applied by now): the ones read before it, if no invalidation came meanwhile.
            if self.counters.invalidations.load(SeqCst) == seen {
                return Ok((entry, gens));
            }
            if let Some(gens) = self.counters.get(counters) {
                return Ok((entry, gens));
            }
        }
        // Boxed: the rare path would otherwise make every lookup's future (moved on each call)
        // as large as its own.
        Box::pin(self.read_counters(key, counters)).await
    }

    /// The stamp of `counters`, read after a [`fetch`](Self::fetch) on this session: known
    /// ones are as recent as that fetch's reply; the others are read and kept.
    pub async fn stamp_of(&self, counters: &[&str]) -> Result<u64, CacheError> {
        if let Some(stamp) = self.counters.get(counters) {
            return Ok(stamp);
        }
        let mut conn = self.conn.clone();
        let seen = self.counters.invalidations.load(SeqCst);
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore().cmd("MGET").arg(counters);
        let (values,): (Vec<Option<Vec<u8>>>,) = self.ask(pipe.query_async(&mut conn)).await?;
        let gens = parse_counters(&values)?;
        self.counters.keep(seen, counters, &gens);
        Ok(stamp(&gens))
    }

    /// The answer to `request`, made on this session's connection (see [`Answer`]).
    async fn ask<T>(&self, request: impl Future<Output = Result<T, RedisError>>) -> Result<T, CacheError> {
        let mut answer = Answer { counters: &self.counters, came: false };
        let result = request.await;
        answer.came = true;
        result.map_err(|e| self.failed(e))
    }

    /// A request failed: if the connection is broken (which its driver does not always
    /// announce, e.g. when the runtime it ran on is gone), the session is given up.
    fn failed(&self, err: RedisError) -> CacheError {
        if err.is_unrecoverable_error() || err.is_io_error() || err.is_connection_dropped() {
            self.counters.lose();
        }
        err.into()
    }

    /// The entry and its counters read from Redis, the counters kept for the next lookups.
    async fn read_counters(
        &self,
        key: &str,
        counters: &[&str],
    ) -> Result<(Option<Vec<u8>>, u64), CacheError> {
        let mut conn = self.conn.clone();
        let seen = self.counters.invalidations.load(SeqCst);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("CLIENT").arg("CACHING").arg("YES").ignore().cmd("MGET").arg(counters);
        let (entry, values): (Option<Vec<u8>>, Vec<Option<Vec<u8>>>) =
            self.ask(pipe.query_async(&mut conn)).await?;
        let gens = parse_counters(&values)?;
        self.counters.keep(seen, counters, &gens);
        Ok((entry, stamp(&gens)))
    }
}

impl Tracking {
    /// Tracking for the server of `client` (its own RESP3 connection, made on first use).
    pub fn new(client: &redis::Client, connect_timeout: Duration) -> Result<Arc<Self>, RedisError> {
        let info = client.get_connection_info().clone();
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        Ok(Arc::new(Tracking {
            client: redis::Client::open(info.set_redis_settings(settings))?,
            connect_timeout,
            session: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            off: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(50),
        }))
    }

    /// Gives up the session if requests on it have gone unanswered since its last answer
    /// (a session that answers, or a new one, is kept); lookups read the counters with each
    /// entry until a new one is made.
    pub fn give_up(&self) {
        if let Some(session) = &*self.session.load()
            && session.counters.abandoned.started()
        {
            session.counters.lose();
        }
    }

    /// The live session, if there is one; otherwise starts making one (in the background, at
    /// most one attempt at a time, with a growing wait between failed ones).
    pub fn session(self: &Arc<Self>) -> Option<Arc<Session>> {
        if let Some(session) = &*self.session.load()
            && session.counters.alive.load(SeqCst)
        {
            return Some(session.clone());
        }
        if self.off.load(SeqCst)
            || now_ms() < self.retry_at.load(SeqCst)
            || self.connecting.swap(true, SeqCst)
        {
            return None;
        }
        let attempt = Attempt(self.clone());
        tokio::spawn(async move {
            let tracking = &attempt.0;
            // The connection, then its `CLIENT TRACKING` round trip.
            let within = tracking.connect_timeout.saturating_mul(2);
            let result = tokio::time::timeout(within, tracking.connect()).await;
            match result {
                Ok(Ok(session)) => {
                    tracking.session.store(Some(Arc::new(session)));
                    tracking.backoff_ms.store(50, SeqCst);
                }
                Ok(Err(err)) if !transient(&err) => {
                    tracking.off.store(true, SeqCst);
                    tracing::warn!(%err, "cached_query: Redis cannot track keys (RESP3 CLIENT TRACKING); lookups read the counters with each entry");
                }
                _ => {
                    let backoff = tracking.backoff_ms.load(SeqCst);
                    tracking.retry_at.store(now_ms() + backoff, SeqCst);
                    tracking.backoff_ms.store((backoff * 2).min(MAX_BACKOFF.as_millis() as u64), SeqCst);
                }
            }
        });
        None
    }

    async fn connect(&self) -> Result<Session, RedisError> {
        let counters = Arc::new(KnownCounters { alive: AtomicBool::new(true), ..KnownCounters::default() });
        let pushes = counters.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None) // the cache's own timer bounds every request
            .set_push_sender(move |info| {
                pushes.apply(info);
                Ok::<(), std::convert::Infallible>(())
            });
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        // `CLIENT CACHING` is checked too (an ACL may allow one and not the other); `PING`
        // takes the flag it sets without tracking anything.
        redis::pipe()
            .cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("OPTIN")
            .cmd("CLIENT")
            .arg("CACHING")
            .arg("YES")
            .cmd("PING")
            .exec_async(&mut conn)
            .await?;
        Ok(Session { conn, counters })
    }
}

/// An attempt to connect under way; lets the next one start however this one ends (even if
/// its task is dropped with its runtime).
struct Attempt(Arc<Tracking>);

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.connecting.store(false, SeqCst);
    }
}

/// Whether a failure to make the connection may pass (the server unreachable, loading, busy:
/// tried again later), as opposed to the server refusing what tracking needs: RESP3
/// (`NOPROTO`, or no `HELLO` at all), `CLIENT TRACKING` (unknown, or denied by an ACL).
fn transient(err: &RedisError) -> bool {
    if err.kind() == redis::ErrorKind::RESP3NotSupported {
        return false;
    }
    let refused = match err.code() {
        Some("NOPERM" | "NOPROTO") => true,
        Some("ERR") => err.detail().is_some_and(|detail| detail.to_ascii_lowercase().contains("unknown")),
        _ => false,
    };
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalidate(keys: &[&str]) -> PushInfo {
        let keys = keys.iter().map(|k| Value::BulkString(k.as_bytes().to_vec())).collect();
        PushInfo { kind: PushKind::Invalidate, data: vec![Value::Array(keys)] }
    }

    fn counters<'a>(keys: &[&'a str]) -> (KnownCounters, Vec<&'a str>) {
        let counters = KnownCounters { alive: AtomicBool::new(true), ..KnownCounters::default() };
        counters.keep(0, keys, &[1, 2]);
        (counters, keys.to_vec())
    }

    #[test]
    fn invalidations_drop_their_counters_and_a_lost_connection_all() {
        let (counters, keys) = counters(&["ns", "k:gen"]);
        assert_eq!(counters.get(&keys), Some(stamp(&[1, 2])));
        counters.apply(invalidate(&["k:gen", "other"]));
        assert_eq!(counters.get(&keys), None);
        assert_eq!(counters.get(&keys[..1]), Some(stamp(&[1])));
        counters.apply(PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        assert_eq!(counters.get(&keys[..1]), None, "FLUSHALL forgets all");
        counters.keep(counters.invalidations.load(SeqCst), &keys, &[1, 2]);
        counters.apply(PushInfo { kind: PushKind::Disconnection, data: vec![] });
        assert_eq!(counters.get(&keys[..1]), None);
        counters.keep(counters.invalidations.load(SeqCst), &keys, &[1, 2]);
        assert_eq!(counters.get(&keys[..1]), None, "nothing is kept once the connection is lost");
    }

    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(reply.as_bytes()).unwrap().extract_error().unwrap_err()
    }

    #[test]
    fn only_a_refusal_turns_tracking_off() {
        for refused in [
            "-NOPERM User default has no permissions to run the 'client|tracking' command\r\n",
            "-NOPROTO unsupported protocol version\r\n",
            "-ERR unknown subcommand 'TRACKING'. Try CLIENT HELP.\r\n",
        ] {
            assert!(!transient(&server_error(refused)), "{refused}");
        }
        for passing in ["-LOADING Redis is loading the dataset in memory\r\n", "-BUSY a script runs\r\n"] {
            assert!(transient(&server_error(passing)), "{passing}");
        }
        let refused = redis::RedisError::from((redis::ErrorKind::RESP3NotSupported, "no HELLO"));
        assert!(!transient(&refused));
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(transient(&io));
    }

    #[test]
    fn a_value_read_while_an_invalidation_arrived_is_not_kept() {
        let (counters, keys) = counters(&["ns", "k:gen"]);
        counters.apply(invalidate(&["ns"]));
        let seen = counters.invalidations.load(SeqCst);
        counters.apply(invalidate(&["unrelated"])); // arrives while `ns` is read again
        counters.keep(seen, &keys[..1], &[5]);
        assert_eq!(counters.get(&keys[..1]), None);
        counters.keep(counters.invalidations.load(SeqCst), &keys[..1], &[5]);
        assert_eq!(counters.get(&keys[..1]), Some(stamp(&[5])));
    }
}
