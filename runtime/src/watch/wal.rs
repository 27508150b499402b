//! Reading Postgres's write-ahead log (`.watch_postgres_wal(pool)`): one instance per prefix
//! reads it, the others rely on that one.
//!
//! - The reader holds the lease `{prefix}:wal:reader` (token `{id}:starting`, then `{id}:ready`),
//!   renewed after each read. On a connection of its own it creates a temporary logical
//!   replication slot, invalidates every table that the programs on this prefix depend on
//!   (`{prefix}:wal:tables`: what changed before the slot is unknown), marks its lease ready,
//!   and then every interval applies what the slot decoded, each changed table once the
//!   transactions that changed it are visible to other sessions (see `crate::logical`): a
//!   change not yet visible waits for a later read, holding back nothing else.
//! - The others' feed is up while the lease says ready: the counters the reader moves are in
//!   the Redis they share. The reader says ready only while it has delivered every increment
//!   (one it could not send is queued in its own process, which the others cannot see). When
//!   the reader stops, its lease goes (released, or expired), their feed goes down, and one of
//!   them takes over (its own feed down until its lease is ready).
//! - The database decodes the log once per prefix, whatever the number of instances.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

use crate::engine::Engine;
use crate::logical::{CHANGES, Changed, Row, changes, visible};
use crate::stamp::COUNTER_KEEP;
use crate::store::Store;

/// The shard under which the log's versions (change positions) are applied.
const WAL_SHARD: i32 = -1;

/// How long a decoded transaction may stay invisible before reading is given up (and the next
/// reader invalidates every table).
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// How often this instance's tables are added again to `{prefix}:wal:tables` (a set that
/// expires unless renewed).
const REGISTER_EVERY: Duration = Duration::from_secs(60);

/// What the reading task needs besides its engine.
struct Reader {
    pool: PgPool,
    tables: Vec<String>,
    interval: Duration,
    lease: Duration,
    starting: String,
    ready: String,
}

impl Engine {
    /// Starts reading (or relying on the reader of) the write-ahead log of the database behind
    /// `pool` every `interval`, for as long as this engine lives; `tables` are those the
    /// program depends on.
    pub fn spawn_postgres_wal_watch(&self, pool: PgPool, interval: Duration, tables: Vec<String>) {
        self.feed.watch();
        self.feed.polled_every(interval);
        let id = format!("{:016x}", fastrand::u64(..));
        let reader = Reader {
            pool,
            tables,
            interval,
            // Also how long the others may rely on a reader that stopped without a word.
            lease: interval.saturating_mul(5).max(Duration::from_secs(1)),
            starting: format!("{id}:starting"),
            ready: format!("{id}:ready"),
        };
        let (weak, store, key) = (self.myself(), self.store.clone(), self.keyspace.wal_reader());
        tokio::spawn(async move {
            reader.run(&weak).await;
            // The cache is gone: let another instance take over now, not when the lease expires.
            for token in [&reader.starting, &reader.ready] {
                let _ = tokio::time::timeout(Duration::from_secs(1), store.unlock(&key, token)).await;
            }
            drop::<Arc<Store>>(store);
        });
    }

    /// A connection of its own with a temporary slot that decodes from now on, after which every
    /// one of `tables` is invalidated: a change committed before the slot may have gone unheard.
    async fn decode_from_now(
        self: &Arc<Self>,
        reader: &Reader,
    ) -> Result<(PgConnection, String), sqlx::Error> {
        // Detached: the slot lives as long as this session, which must not go back to the pool.
        let mut conn = reader.pool.acquire().await?.detach();
        let slot = format!("cached_query_{:016x}", fastrand::u64(..));
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)")
            .bind(&slot)
            .execute(&mut conn)
            .await?;
        let mut tables = reader.tables.clone();
        match self.bounded(self.store.members(&self.keyspace.wal_tables())).await {
            Ok(others) => tables.extend(others),
            Err(err) => return Err(sqlx::Error::Protocol(format!("the tables to invalidate: {err}"))),
        }
        let counters: Vec<String> = tables.iter().map(|table| self.keyspace.table_counter(table)).collect();
        if !counters.is_empty() {
            // Not reached: queued, and the lease is not ready until it is delivered.
            let _ = self.invalidate("watch", counters).await;
        }
        Ok((conn, slot))
    }

    /// Whether every increment this instance made has reached the store (delivering the queue
    /// of those that could not, if there is one).
    async fn delivered(&self) -> bool {
        !self.health.has_pending() || self.deliver_pending(true).await && !self.health.has_pending()
    }
}

impl Reader {
    /// Takes the lease when it is free and reads the log, or relies on the instance that does,
    /// until the engine is gone.
    async fn run(&self, weak: &Weak<Engine>) {
        let (mut registered, mut backoff) = (None::<Instant>, Duration::from_millis(50));
        loop {
            let Some(engine) = weak.upgrade() else { return };
            if !self.tables.is_empty() && registered.is_none_or(|at| at.elapsed() >= REGISTER_EVERY) {
                let key = engine.keyspace.wal_tables();
                let remember = engine.store.remember(&key, &self.tables, COUNTER_KEEP);
                if engine.bounded(remember).await.is_ok() {
                    registered = Some(Instant::now());
                }
            }
            let key = engine.keyspace.wal_reader();
            let wait = match engine.bounded(engine.store.try_lock(&key, &self.starting, self.lease)).await {
                Ok(true) => {
                    // Not until this instance's own slot and invalidations are in place.
                    engine.feed.down();
                    drop(engine);
                    match self.read(weak, &key).await {
                        None => return,
                        Some(Ok(())) => Duration::ZERO, // the lease went to another
                        Some(Err(err)) => {
                            tracing::warn!(%err, "cached_query: cannot read Postgres's write-ahead log; retrying");
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            backoff
                        }
                    }
                }
                Ok(false) => {
                    match engine.bounded(engine.store.get(&key)).await {
                        Ok(Some(token)) if token.ends_with(b":ready") => engine.feed.up(),
                        _ => engine.feed.down(),
                    }
                    backoff = Duration::from_millis(50);
                    self.interval
                }
                Err(_) => {
                    engine.feed.down();
                    self.interval
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads the log while this instance holds the lease `key`: `None` once the engine is gone,
    /// `Some(Ok(()))` when the lease went to another instance, the error that stopped it.
    async fn read(&self, weak: &Weak<Engine>, key: &str) -> Option<Result<(), String>> {
        let (mut conn, slot) = {
            let engine = weak.upgrade()?;
            match engine.decode_from_now(self).await {
                Ok(started) => started,
                Err(err) => return Some(Err(self.stop(&engine, key, err.to_string()).await)),
            }
        };
        let mut held = self.starting.as_str();
        // Changes decoded but not yet visible to other sessions, since when.
        let mut pending: Vec<(Changed, Instant)> = Vec::new();
        loop {
            let engine = weak.upgrade()?;
            // Ready only with every increment delivered: one queued here is invisible elsewhere.
            let token = if engine.delivered().await { self.ready.as_str() } else { self.starting.as_str() };
            match engine.bounded(engine.store.renew(key, held, token, self.lease)).await {
                Ok(true) => engine.feed.up(),
                Ok(false) => {
                    engine.feed.down();
                    return Some(Ok(()));
                }
                Err(err) => return Some(Err(self.stop(&engine, key, err.to_string()).await)),
            }
            held = token;
            drop(engine);
            tokio::time::sleep(self.interval).await;
            let read = sqlx::query_as::<_, Row>(CHANGES).bind(&slot).fetch_all(&mut conn).await;
            let applied = match read {
                Ok(rows) => {
                    let now = Instant::now();
                    pending.extend(changes(&rows).into_iter().map(|changed| (changed, now)));
                    apply_visible(weak, &mut conn, &mut pending).await?
                }
                Err(err) => Err(err),
            };
            if let Err(err) = applied {
                let engine = weak.upgrade()?;
                return Some(Err(self.stop(&engine, key, err.to_string()).await));
            }
        }
    }

    /// Gives the lease up after `problem` (for another instance, or this one once it can read
    /// again); the feed is down until then.
    async fn stop(&self, engine: &Engine, key: &str, problem: String) -> String {
        engine.feed.down();
        for token in [&self.starting, &self.ready] {
            let _ = engine.bounded(engine.store.unlock(key, token)).await;
        }
        problem
    }
}

/// Applies each pending change whose transactions are visible to other sessions (a commit is
/// in the log a moment before: until then, a query could still read what it changed, and
/// cache it after the invalidation); the others wait for a later read, each only for its own
/// transactions. `None` once the engine is gone.
async fn apply_visible(
    weak: &Weak<Engine>,
    conn: &mut PgConnection,
    pending: &mut Vec<(Changed, Instant)>,
) -> Option<Result<(), sqlx::Error>> {
    if pending.is_empty() {
        return Some(Ok(()));
    }
    let snapshot: String =
        match sqlx::query_scalar("SELECT pg_current_snapshot()::text").fetch_one(&mut *conn).await {
            Ok(snapshot) => snapshot,
            Err(err) => return Some(Err(err)),
        };
    let mut waiting = Vec::new();
    for (changed, since) in pending.drain(..) {
        match visible(&snapshot, changed.xids.iter().copied()) {
            Some(true) => weak.upgrade()?.follow(&changed.table, WAL_SHARD, changed.lsn).await,
            Some(false) if since.elapsed() < VISIBLE_WITHIN => waiting.push((changed, since)),
            Some(false) => {
                return Some(Err(sqlx::Error::Protocol(format!(
                    "commits not visible in snapshot {snapshot}"
                ))));
            }
            None => {
                return Some(Err(sqlx::Error::Protocol(format!(
                    "a snapshot that does not parse: {snapshot}"
                ))));
            }
        }
    }
    *pending = waiting;
    Some(Ok(()))
}
