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
