//! MySQL and MariaDB as the cache's source of truth for what changed (feature `mysql`): they
//! have no `NOTIFY`, so row-level triggers count each table's committed changes in a versions
//! table, and `.watch_mysql(pool)` reads it every `change_poll_interval` (default 100 ms: one
//! small query per interval per instance).
//!
//! ```no_run
//! # async fn f(pool: sqlx::MySqlPool) -> Result<(), Box<dyn std::error::Error>> {
//! cached_query::mysql::install(&pool, &cached_query::tables()).await?; // idempotent DDL
//! let cache = cached_query::QueryCache::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .default_schema("mydb") // the database: `mydb.users` and `users` are one table
//!     .watch_mysql(pool.clone())
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! `TRUNCATE` fires no trigger in MySQL: invalidate after it (`invalidate_tables`).

use sqlx::MySqlPool;

use crate::keyspace::{table_name, table_parts};

/// The idempotent DDL that `install` runs, one statement each: the versions table
/// `cached_query_versions` in the current database, and on each of `tables` (names as
/// `cached_query::tables()` gives them) an `AFTER INSERT`, `UPDATE` and `DELETE` trigger.
pub fn setup_sql<S: AsRef<str>>(tables: &[S]) -> Vec<String> {
    let mut statements = vec![
        "CREATE TABLE IF NOT EXISTS cached_query_versions (\
             table_name VARCHAR(255) NOT NULL, shard INT NOT NULL, version BIGINT NOT NULL, \
             PRIMARY KEY (table_name, shard))"
            .to_owned(),
    ];
    for table in tables {
        let name = table_name(table.as_ref());
        let target = quoted(&name);
        let digest = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
        for (event, letter) in [("INSERT", 'i'), ("UPDATE", 'u'), ("DELETE", 'd')] {
            let trigger = format!("`cached_query_{letter}_{digest:016x}`");
            statements.push(format!("DROP TRIGGER IF EXISTS {trigger}"));
            statements.push(format!(
                "CREATE TRIGGER {trigger} AFTER {event} ON {target} FOR EACH ROW \
                 INSERT INTO cached_query_versions (table_name, shard, version) \
                 VALUES ('{}', CONNECTION_ID() % 16, 1) ON DUPLICATE KEY UPDATE version = version + 1",
                name.replace('\\', "\\\\").replace('\'', "''")
            ));
        }
    }
    statements
}

/// Runs [`setup_sql`] (under a named lock: several programs may install at once).
pub async fn install<S: AsRef<str>>(pool: &MySqlPool, tables: &[S]) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT GET_LOCK('cached_query.install', 30)").execute(&mut *conn).await?;
    let mut result = Ok(());
    for statement in setup_sql(tables) {
        if let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *conn).await {
            result = Err(err);
            break;
        }
    }
    sqlx::query("SELECT RELEASE_LOCK('cached_query.install')").execute(&mut *conn).await?;
    result
}

/// Every table's versions.
pub(crate) async fn versions(pool: &MySqlPool) -> Result<crate::watch::Versions, sqlx::Error> {
    sqlx::query_as("SELECT table_name, shard, version FROM cached_query_versions").fetch_all(pool).await
}

/// `app."Orders"` → `` `app`.`Orders` ``.
fn quoted(name: &str) -> String {
    table_parts(name)
        .into_iter()
        .map(|part| format!("`{}`", part.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_quoted_and_triggers_named_within_limits() {
        assert_eq!(super::quoted("app.\"Orders\""), "`app`.`Orders`");
        let sql = super::setup_sql(&["user"]);
        assert_eq!(sql.len(), 1 + 3 * 2);
        assert!(sql[2].contains("AFTER INSERT ON `user` FOR EACH ROW"), "{}", sql[2]);
        assert!(sql.iter().all(|s| s.split('`').nth(1).is_none_or(|name| name.len() <= 64)));
    }
}
