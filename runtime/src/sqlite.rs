//! SQLite as the cache's source of truth for what changed (feature `sqlite`): hooks on every
//! connection of a pool record the tables each transaction changes and invalidate them once it
//! has committed (nothing on rollback).
//!
//! ```no_run
//! # async fn f(cache: cached_query::QueryCache) -> Result<(), sqlx::Error> {
//! let options = sqlx::sqlite::SqlitePoolOptions::new();
//! let pool = cached_query::sqlite::watch(options, &cache).connect("sqlite://app.db").await?;
//! # Ok(()) }
//! ```
//!
//! SQLite's commit hook runs before the commit is visible to other connections: invalidating
//! there would let a reader that starts in between cache the old rows under the new counters.
//! So the invalidation first takes the database's write lock on a connection of its own
//! (`BEGIN IMMEDIATE`, then `ROLLBACK`), which the committing connection holds until its
//! commit is done. What is not seen: writes of other processes to the same file, and changes
//! SQLite reports to no update hook (`DELETE` without `WHERE` on a table without triggers, the
//! truncate optimisation; `WITHOUT ROWID` tables): invalidate those by hand.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::QueryCache;

/// `options` with hooks that keep `cache`'s entries of this database's tables fresh (see the
/// module docs). Connections made before this call are not watched.
pub fn watch(options: SqlitePoolOptions, cache: &QueryCache) -> SqlitePoolOptions {
    let cache = cache.clone();
    options.after_connect(move |conn, _| {
        let cache = cache.clone();
        Box::pin(async move {
            let file: Option<String> =
                sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_optional(&mut *conn)
                    .await?;
            let file = file.filter(|file| !file.is_empty());
            let changed: Arc<Mutex<BTreeSet<String>>> = Arc::default();
            let runtime = tokio::runtime::Handle::current();
            let mut handle = conn.lock_handle().await?;
            handle.set_update_hook({
                let changed = changed.clone();
                move |update| {
                    changed.lock().unwrap_or_else(PoisonError::into_inner).insert(update.table.to_owned());
                }
            });
            handle.set_rollback_hook({
                let changed = changed.clone();
                move || changed.lock().unwrap_or_else(PoisonError::into_inner).clear()
            });
            handle.set_commit_hook(move || {
                let tables = std::mem::take(&mut *changed.lock().unwrap_or_else(PoisonError::into_inner));
                if !tables.is_empty() {
                    let (cache, file) = (cache.clone(), file.clone());
                    runtime.spawn(async move { committed(&cache, file.as_deref(), tables).await });
                }
                true
            });
            Ok(())
        })
    })
}

/// Invalidates `tables` once the transaction that changed them has committed.
async fn committed(cache: &QueryCache, file: Option<&str>, tables: BTreeSet<String>) {
    if let Some(file) = file
        && let Err(err) = after_the_writer(file).await
    {
        tracing::warn!(%err, "cached_query: could not wait for a SQLite commit; invalidating now");
    }
    // Failures are counted, logged and queued by the cache.
    let _ = cache.invalidate_tables(tables).await;
}

/// Returns once no connection holds `file`'s write lock that was taken before this call.
async fn after_the_writer(file: &str) -> Result<(), sqlx::Error> {
    let options = SqliteConnectOptions::new().filename(file).busy_timeout(std::time::Duration::from_secs(10));
    let mut observer: SqliteConnection = options.connect().await?;
    sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK;").execute(&mut observer).await?;
    observer.close().await
}
