//! Reading Postgres's write-ahead log (`.watch_postgres_wal(pool)`): one instance per prefix
//! reads it, the others rely on that one.
//!
//! - The reader holds the lease `{prefix}:wal:reader` (token `{id}:starting`, then `{id}:ready`),
//!   renewed after each read. On a connection of its own it creates a temporary logical
//!   replication slot, invalidates every table that the programs on this prefix depend on
//!   (`{prefix}:wal:tables`: what changed before the slot is unknown), marks its lease ready,
//!   and then every interval applies what the slot decoded, each changed table once, when the
//!   transactions that changed it are visible to other sessions (see `crate::logical`).
//! - The others' feed is up while the lease says ready: the counters the reader moves are in
//!   the Redis they share. When the reader stops, its lease expires, their feed goes down, and
//!   one of them takes over (invalidating again before its lease is ready).
//! - The database decodes the log once per prefix, whatever the number of instances.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

use crate::engine::Engine;
use crate::logical::{CHANGES, Changes, Row, changes, visible};
use crate::stamp::COUNTER_KEEP;

/// The shard under which the log's versions (commit positions) are applied.
const WAL_SHARD: i32 = -1;

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
        let id = format!("{:016x}", fastrand::u64(..));
        let reader = Reader {
            pool,
            tables,
            interval,
            // Also how long the others may rely on a reader that stopped without a word.
            lease: (interval * 5).max(Duration::from_secs(1)),
            starting: format!("{id}:starting"),
            ready: format!("{id}:ready"),
        };
        let weak = self.myself();
        tokio::spawn(async move {
            let (mut registered, mut backoff) = (reader.tables.is_empty(), Duration::from_millis(50));
            loop {
                let Some(engine) = weak.upgrade() else { return };
                if !registered {
                    let key = engine.keyspace.wal_tables();
                    let remember = engine.store.remember(&key, &reader.tables, COUNTER_KEEP);
                    registered = engine.bounded(remember).await.is_ok();
                }
                let key = engine.keyspace.wal_reader();
                let wait = match engine
                    .bounded(engine.store.try_lock(&key, &reader.starting, reader.lease))
                    .await
                {
                    Ok(true) => {
                        drop(engine);
                        match reader.read(&weak).await {
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
                        let ready = engine.bounded(engine.store.get(&key)).await;
                        match ready {
                            Ok(Some(token)) if token.ends_with(b":ready") => engine.feed.up(),
                            _ => engine.feed.down(),
                        }
                        backoff = Duration::from_millis(50);
                        reader.interval
                    }
                    Err(_) => {
                        engine.feed.down();
                        reader.interval
                    }
                };
                tokio::time::sleep(wait).await;
            }
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
            // Not reached: queued, and delivered before anything is served from the store.
            let _ = self.invalidate("watch", counters).await;
        }
        Ok((conn, slot))
    }
}

impl Reader {
    /// Reads the log while this instance holds the lease: `None` once the engine is gone,
    /// `Some(Ok(()))` when the lease went to another instance, the error that stopped it.
    async fn read(&self, weak: &Weak<Engine>) -> Option<Result<(), String>> {
        let key = weak.upgrade()?.keyspace.wal_reader();
        let (mut conn, slot) = {
            let engine = weak.upgrade()?;
            match engine.decode_from_now(self).await {
                Ok(started) => started,
                Err(err) => return Some(Err(self.stop(&engine, &key, err.to_string()).await)),
            }
        };
        let mut held = self.starting.as_str();
        loop {
            let engine = weak.upgrade()?;
            match engine.bounded(engine.store.renew(&key, held, &self.ready, self.lease)).await {
                Ok(true) => engine.feed.up(),
                Ok(false) => {
                    engine.feed.down();
                    return Some(Ok(()));
                }
                Err(err) => return Some(Err(self.stop(&engine, &key, err.to_string()).await)),
            }
            held = &self.ready;
            drop(engine);
            tokio::time::sleep(self.interval).await;
            let decoded = decoded(&mut conn, &slot).await;
            let engine = weak.upgrade()?;
            match decoded {
                Ok(changes) => {
                    for (table, lsn) in &changes.tables {
                        engine.follow(table, WAL_SHARD, *lsn).await;
                    }
                }
                Err(err) => return Some(Err(self.stop(&engine, &key, err.to_string()).await)),
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

/// What committed since the last read of `slot`, once the transactions that made it are
/// visible to other sessions (a commit is in the log a moment before: until then, a query
/// could still read what it changed, and cache it after the invalidation).
async fn decoded(conn: &mut PgConnection, slot: &str) -> Result<Changes, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(CHANGES).bind(slot).fetch_all(&mut *conn).await?;
    let changes = changes(&rows);
    if changes.tables.is_empty() {
        return Ok(changes);
    }
    let started = Instant::now();
    loop {
        let snapshot: String =
            sqlx::query_scalar("SELECT pg_current_snapshot()::text").fetch_one(&mut *conn).await?;
        match visible(&snapshot, changes.xids.iter().copied()) {
            Some(true) => return Ok(changes),
            Some(false) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            _ => return Err(sqlx::Error::Protocol(format!("commits not visible in snapshot {snapshot}"))),
        }
    }
}
