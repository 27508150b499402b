//! What the example programs share: the rows of the benchmark workload (`shared/workload.md`).

use serde::{Deserialize, Serialize};

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
