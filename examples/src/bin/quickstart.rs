//! The quickstart: an embedded SQLite database, a cached query, a miss and then hits.
//!
//! ```sh
//! cargo run -p cached-query-examples --bin quickstart
//! ```
//!
//! Uses Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`) or, when none answers, the
//! in-process backend.

use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

#[derive(sqlx::FromRow, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct User {
    id: i64,
    name: String,
    email: String,
}

/// One line turns this query into a cached one.
#[cached_query(ttl = 60)]
async fn user_by_id(pool: &SqlitePool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, email FROM users WHERE id = ?").bind(id).fetch_optional(pool).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = SqlitePool::connect("sqlite::memory:").await?;
    sqlx::raw_sql(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO users SELECT i, 'user_' || i, 'user' || i || '@example.com' FROM n;",
    )
    .execute(&pool)
    .await?;

    let cache = cache().await?;
    cached_query::install(cache.clone());
    // A fresh start each run, so that the first call below is a miss.
    user_by_id_invalidate(42).await?;

    for attempt in 1..=4 {
        let started = Instant::now();
        let user = user_by_id(&pool, 42).await?;
        let took = started.elapsed();
        let what = if attempt == 1 { "miss (ran the query)" } else { "hit" };
        println!("call {attempt}: {what:<20} {took:>10.1?}  {user:?}");
    }
    let key = cache.key("quickstart::user_by_id", 0, &(42i64,))?;
    println!("key:   {key}");
    println!("stats: {:?}", cache.stats());
    Ok(())
}

/// Redis at `REDIS_URL` if it answers, otherwise the in-process backend.
async fn cache() -> Result<QueryCache, cached_query::CacheError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = QueryCache::builder()
        .redis_url(&url)
        .prefix("quickstart")
        .timeout(Duration::from_millis(500))
        .build()
        .await?;
    match redis.set("quickstart:probe", &1u8, Duration::from_secs(1)).await {
        Ok(()) => {
            println!("cache: Redis at {redis:?}");
            Ok(redis)
        }
        Err(err) => {
            println!("cache: no Redis at {url} ({err}); using the in-memory backend");
            Ok(QueryCache::in_memory(10_000))
        }
    }
}
