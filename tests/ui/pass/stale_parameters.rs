// Parameters of a function that refreshes in the background (`stale`, `early`), under
// `#![deny(warnings)]`: an optional borrowed filter (`Option<&str>`, copied for the refresh),
// a `_`-prefixed reference and a `mut` reference that the body reassigns.
#![deny(warnings)]
use cached_query::cached_query;
use sqlx::PgPool;

#[cached_query(ttl = 60, stale = 30)]
pub async fn search(pool: &PgPool, name: Option<&str>) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE ($1::text IS NULL OR name = $1)").bind(name).fetch_all(pool).await
}

#[cached_query(ttl = 60, early = true)]
pub async fn count(_tenant: &str, id: i64) -> i64 {
    id
}

#[cached_query(ttl = 60, stale = 30)]
pub async fn normalized(mut name: &str) -> String {
    name = name.trim();
    name.to_lowercase()
}

pub async fn callers(pool: &PgPool) {
    let _ = search(pool, Some("ada")).await;
    let _ = search(pool, None).await;
    let _ = search_invalidate(None).await;
    let _ = count("t", 1).await;
    let _ = normalized(" Ada ").await;
}

fn main() {}
