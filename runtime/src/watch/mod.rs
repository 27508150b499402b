//! Watching a database's change feed: the triggers that `cached_query::postgres` (or
//! `::mysql`) installs bump a table's version at each committed change; this task applies each
//! version to the table's counter once across instances (`Store::follow`).
//!
//! - Postgres, listening (`.watch_postgres(pool)`): the triggers also send `NOTIFY
//!   cached_query`. On every (re)connect the task listens first, then reads every table's
//!   versions and applies those that moved while it was not listening, and only then lets
//!   functions that depend on tables use the cache again (`feed`): a lost connection loses
//!   nothing, and nothing is served that the feed may have missed.
//! - Polling (MySQL, or Postgres with `.change_poll_interval(d)`): the task reads the versions
//!   every interval; the feed is up while the reads succeed.
//! - Postgres's write-ahead log (`.watch_postgres_wal(pool)`, no triggers): see `wal`.

use std::future::Future;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::PgPool;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgListener;

use crate::engine::Engine;
use crate::stamp::COUNTER_KEEP;
use crate::stats::Stats;

#[cfg(feature = "postgres")]
mod wal;

/// The channel the triggers notify on.
#[cfg(feature = "postgres")]
pub(crate) const CHANNEL: &str = "cached_query";

/// Every table's versions: `(table, shard, version)`.
pub(crate) type Versions = Vec<(String, i32, i64)>;

impl Engine {
    /// Reads the versions with `read` every `interval`, and applies those that moved, for as
    /// long as this engine lives.
    pub fn spawn_polling<F, R>(&self, interval: Duration, read: R)
    where
        R: Fn() -> F + Send + 'static,
        F: Future<Output = Result<Versions, sqlx::Error>> + Send,
    {
        self.feed.watch();
        self.feed.polled_every(interval);
        let weak = self.myself();
        tokio::spawn(async move {
            loop {
                let versions = read().await;
                let Some(engine) = weak.upgrade() else { return };
                match versions {
                    Ok(versions) => {
                        for (table, shard, version) in &versions {
                            engine.follow(table, *shard, *version).await;
                        }
                        engine.feed.up();
                    }
                    Err(err) => {
                        engine.feed.down();
                        engine.failed("watch", "versions", &crate::CacheError::Config(err.to_string()));
                    }
                }
                drop(engine);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Starts watching the database behind `pool`, for as long as this engine lives.
    #[cfg(feature = "postgres")]
    pub fn spawn_postgres_watch(&self, pool: PgPool) {
        self.feed.watch();
        let weak = self.myself();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                let Some(engine) = weak.upgrade() else { return };
                match engine.listen_and_sync(&pool).await {
                    Ok(mut listener) => {
                        engine.feed.up();
                        backoff = Duration::from_millis(50);
                        drop(engine);
                        // `Ok(None)`: the connection was lost (sqlx would reconnect inside the
                        // next call, unnoticed: a new listener is made, and synchronised).
                        while let Ok(Some(notification)) = listener.try_recv().await {
                            let Some(engine) = weak.upgrade() else { return };
                            if let Some((table, shard, version)) = parse(notification.payload()) {
                                engine.follow(table, shard, version).await;
                            }
                        }
                        if let Some(engine) = weak.upgrade() {
                            engine.feed.down();
                        }
                    }
                    Err(err) => {
                        engine.feed.down();
                        tracing::warn!(%err, "cached_query: cannot watch Postgres; retrying");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// Listens, then applies every version that the versions table holds.
    #[cfg(feature = "postgres")]
    async fn listen_and_sync(&self, pool: &PgPool) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        let versions: Vec<(String, i32, i64)> =
            sqlx::query_as("SELECT table_name, shard, version FROM cached_query.versions")
                .fetch_all(pool)
                .await?;
        for (table, shard, version) in &versions {
            self.follow(table, *shard, *version).await;
        }
        Ok(listener)
    }

    /// Applies one version of one shard of `table` (`schema.table`, as the trigger names it).
    async fn follow(&self, table: &str, shard: i32, version: i64) {
        let (counter, seen) = (self.keyspace.table_counter(table), self.keyspace.table_seen(table));
        // On a cluster, one copy per keyspace shard (see `keyspace`), each with its own `seen`.
        let copies = self.keyspace.copies(&[counter.clone(), seen]);
        let (counters, seens) = copies.split_at(copies.len() / 2);
        let follows = counters.iter().zip(seens).map(|(counter, seen)| async move {
            let follow = self.store.follow(counter, seen, i64::from(shard), version, COUNTER_KEEP);
            (counter, self.bounded_at(counter, follow).await)
        });
        let (mut applied, mut undelivered, mut failure) = (false, Vec::new(), None);
        for (copy, result) in futures_util::future::join_all(follows).await {
            match result {
                Ok(incremented) => applied |= incremented,
                Err(err) => {
                    undelivered.push(copy.clone());
                    failure.get_or_insert(err);
                }
            }
        }
        if applied {
            Stats::count(&self.stats.invalidations);
            self.announce_invalidated(std::slice::from_ref(&counter)).await;
        }
        if let Some(err) = failure {
            // Delivered before anything is served from the store again (see `health`).
            self.failed("watch", &counter, &err);
            let full = self.keyspace.copies(&[self.keyspace.namespace_counter().to_owned()]);
            self.health.queue(&undelivered, &full);
            Stats::count(&self.stats.invalidations_queued);
        }
    }
}

/// Every table's versions in Postgres.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_versions(pool: &PgPool) -> Result<Versions, sqlx::Error> {
    sqlx::query_as("SELECT table_name, shard, version FROM cached_query.versions").fetch_all(pool).await
}

/// [`postgres_versions`] of a pool it owns (for the polling task).
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_versions_owned(pool: PgPool) -> Result<Versions, sqlx::Error> {
    postgres_versions(&pool).await
}

/// `schema.table shard version`, as the trigger sends it.
#[cfg(feature = "postgres")]
fn parse(payload: &str) -> Option<(&str, i32, i64)> {
    let mut parts = payload.rsplitn(3, ' ');
    let version = parts.next()?.parse().ok()?;
    let shard = parts.next()?.parse().ok()?;
    Some((parts.next()?, shard, version))
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    #[test]
    fn payloads_parse_as_the_trigger_writes_them() {
        assert_eq!(super::parse("public.users 3 17"), Some(("public.users", 3, 17)));
        assert_eq!(super::parse("app.\"My Table\" 0 1"), Some(("app.\"My Table\"", 0, 1)));
        assert_eq!(super::parse("garbage"), None);
    }
}
