//! What the example programs share: the rows of the benchmark workload (`shared/workload.md`),
//! and the example service (`service`).

pub mod charts;
pub mod service;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A row of `bench.users` as a service reads it with sqlx (`created_at` a `timestamptz`).
#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub score: i32,
    pub created_at: DateTime<Utc>,
}

/// The workload's row `id` as a [`User`] (a fixed `created_at`).
pub fn user(id: i64) -> User {
    let row = user_row(id);
    let created_at = DateTime::from_timestamp_micros(row.created_at_micros).expect("in range");
    User { id, name: row.name, email: row.email, score: row.score, created_at }
}

/// A row of `bench.users`, with `created_at` as microseconds since the epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub score: i32,
    pub created_at_micros: i64,
}

/// The workload's row `id`: `user_{id}`, `user{id}@example.com`, score `(id * 7919) % 1000`.
pub fn user_row(id: i64) -> UserRow {
    UserRow {
        id,
        name: format!("user_{id}"),
        email: format!("user{id}@example.com"),
        score: ((id * 7919) % 1000) as i32,
        created_at_micros: 1_764_000_000_000_000 + id,
    }
}

/// The workload's Q1 (`shared/workload.md`).
pub const Q1: &str = "SELECT id, name, email, score, created_at FROM bench.users WHERE id = $1";

/// Creates the workload's table `bench.users` (100,000 rows) unless it is there already.
pub async fn workload_table(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM bench.users").fetch_one(pool).await.ok();
    if rows != Some(100_000) {
        sqlx::raw_sql(
            "CREATE SCHEMA IF NOT EXISTS bench;
             DROP TABLE IF EXISTS bench.users;
             CREATE TABLE bench.users (id bigint primary key, name text not null, email text not null,
                                       score int not null, created_at timestamptz not null default now());
             INSERT INTO bench.users (id, name, email, score)
               SELECT g, 'user_' || g, 'user' || g || '@example.com', (g * 7919) % 1000
               FROM generate_series(1, 100000) g;
             ANALYZE bench.users;",
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Postgres's and Redis's URLs: `DATABASE_URL` and `REDIS_URL`, or the local defaults.
pub fn urls() -> (String, String) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    (
        var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        var("REDIS_URL", "redis://127.0.0.1:6379"),
    )
}

/// Deletes the keys that match `pattern` in the Redis at `url` (`SCAN` and `UNLINK` in steps):
/// what a benchmark program stored, which would otherwise slow every `SCAN` of a shared Redis
/// until it expires. Returns how many it deleted.
pub async fn delete_matching(url: &str, pattern: &str) -> redis::RedisResult<usize> {
    use redis::AsyncCommands;
    let client = redis::Client::open(url)?;
    let (mut scan, mut unlink) =
        (client.get_multiplexed_async_connection().await?, client.get_multiplexed_async_connection().await?);
    let options = redis::ScanOptions::default().with_pattern(pattern).with_count(10_000);
    let mut keys = scan.scan_options::<String>(options).await?;
    let (mut batch, mut deleted) = (Vec::new(), 0);
    while let Some(key) = keys.next_item().await {
        batch.push(key?);
        if batch.len() == 10_000 {
            deleted += batch.len();
            unlink.unlink::<_, ()>(std::mem::take(&mut batch)).await?;
        }
    }
    deleted += batch.len();
    if !batch.is_empty() {
        unlink.unlink::<_, ()>(batch).await?;
    }
    Ok(deleted)
}
