//! Postgres as the cache's source of truth for what changed (feature `postgres`): triggers
//! that count each table's committed changes and announce them, for `.watch_postgres(pool)`.
//!
//! ```no_run
//! # async fn f(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! cached_query::postgres::install(&pool, &cached_query::tables()).await?; // idempotent DDL
//! let cache = cached_query::QueryCache::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .watch_postgres(pool.clone())
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! On each table, a statement-level `AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE` trigger
//! bumps the table's version in `cached_query.versions` and sends `NOTIFY cached_query`:
//! delivered at commit, nothing on rollback. A version is kept per table and per shard of
//! backends (`pg_backend_pid() % 16`), so that concurrent writers of one table seldom wait for
//! each other's row.
//!
//! Three feeds, one guarantee (docs/guarantees.md, "Freshness from the database"):
//! - `install` + `.watch_postgres(pool)`: triggers that `NOTIFY`; the shortest delay (under a
//!   millisecond), but notifying commits go one at a time.
//! - `install_polled` + `.change_poll_interval(d)`: the triggers without `NOTIFY`, read every
//!   interval.
//! - `.watch_postgres_wal(pool)`: no triggers and no DDL; the write-ahead log read through
//!   logical decoding every interval (`wal_level = logical`): for write-heavy tables.

use sqlx::PgPool;

use crate::keyspace::table_parts;

/// The idempotent DDL that `install` runs, for programs that apply it through their own
/// migrations: the schema `cached_query` with its versions table and trigger function, and a
/// trigger on each of `tables` (names as `cached_query::tables()` gives them; every
/// identifier is quoted, so that tables named like keywords work).
pub fn setup_sql<S: AsRef<str>>(tables: &[S]) -> String {
    setup(tables, true)
}

/// Like [`setup_sql`], for a cache that polls (`.change_poll_interval(d)`): the triggers send
/// no `NOTIFY`, whose lock at commit serialises the commits of notifying transactions (see
/// docs/benchmarks.md for what it costs a write-heavy table).
pub fn setup_sql_polled<S: AsRef<str>>(tables: &[S]) -> String {
    setup(tables, false)
}

fn setup<S: AsRef<str>>(tables: &[S], notify: bool) -> String {
    let notify = match notify {
        true => "PERFORM pg_notify('cached_query', _name || ' ' || _shard || ' ' || _version);",
        false => "",
    };
    let mut sql = String::from(
        r#"CREATE SCHEMA IF NOT EXISTS cached_query;
CREATE TABLE IF NOT EXISTS cached_query.versions (
    table_name text NOT NULL,
    shard int NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (table_name, shard)
);
CREATE OR REPLACE FUNCTION cached_query.changed() RETURNS trigger LANGUAGE plpgsql AS $cq$
DECLARE
    _name text := (CASE WHEN TG_TABLE_SCHEMA <> lower(TG_TABLE_SCHEMA)
                        THEN '"' || TG_TABLE_SCHEMA || '"' ELSE TG_TABLE_SCHEMA END)
               || '.' || (CASE WHEN TG_TABLE_NAME <> lower(TG_TABLE_NAME)
                               THEN '"' || TG_TABLE_NAME || '"' ELSE TG_TABLE_NAME END);
    _shard int := pg_backend_pid() % 16;
    _version bigint;
BEGIN
    INSERT INTO cached_query.versions AS v (table_name, shard, version) VALUES (_name, _shard, 1)
        ON CONFLICT (table_name, shard) DO UPDATE SET version = v.version + 1
        RETURNING v.version INTO _version;
    {notify}
    RETURN NULL;
END
$cq$;
"#,
    )
    .replace("{notify}", notify);
    for table in tables {
        let table = quoted(table.as_ref());
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS cached_query_changed ON {table};\n\
             CREATE TRIGGER cached_query_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}\n    \
             FOR EACH STATEMENT EXECUTE FUNCTION cached_query.changed();\n"
        ));
    }
    sql
}

/// Runs [`setup_sql`] in one transaction (several programs may install at once).
pub async fn install<S: AsRef<str>>(pool: &PgPool, tables: &[S]) -> Result<(), sqlx::Error> {
    run(pool, setup_sql(tables)).await
}

/// Runs [`setup_sql_polled`] in one transaction.
pub async fn install_polled<S: AsRef<str>>(pool: &PgPool, tables: &[S]) -> Result<(), sqlx::Error> {
    run(pool, setup_sql_polled(tables)).await
}

async fn run(pool: &PgPool, sql: String) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('cached_query.install'))").execute(&mut *tx).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
    tx.commit().await
}

/// `app."Orders"` → `"app"."Orders"`: each part of a normalised name quoted.
fn quoted(table: &str) -> String {
    let parts = table_parts(table).into_iter().map(|part| format!("\"{}\"", part.replace('"', "\"\"")));
    parts.collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn every_identifier_is_quoted() {
        assert_eq!(quoted("user"), "\"user\"");
        assert_eq!(quoted("Public.Users"), "\"public\".\"users\"");
        assert_eq!(quoted("app.\"Orders\""), "\"app\".\"Orders\"");
        assert!(super::setup_sql(&["user"]).contains("ON \"user\";"));
        assert!(super::setup_sql(&["t"]).contains("pg_notify"));
        assert!(!super::setup_sql_polled(&["t"]).contains("pg_notify"));
    }
}
