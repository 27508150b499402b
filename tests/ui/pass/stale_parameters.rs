// Parameters of a function that refreshes in the background (`stale`, `early`), under
// `#![deny(warnings)]`: an optional borrowed filter (`Option<&str>`, copied for the refresh),
// a `_`-prefixed reference, a `mut` reference that the body reassigns, and an owned receiver.
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

// A skipped callback whose type mentions `&` only in its arguments borrows nothing.
#[cached_query(ttl = 60, stale = 30, skip(check))]
pub async fn checked(check: fn(&str) -> bool, id: i64) -> i64 {
    if check("x") { id } else { 0 }
}

// A pool named with `impl` in its type is an executor (and the probe does not name it).
#[cached_query(ttl = 60)]
pub async fn generic_pool(pool: &sqlx::Pool<impl sqlx::Database>, id: i64) -> i64 {
    let _ = pool;
    id
}

pub struct Repo {
    cache: cached_query::QueryCache,
    pool: PgPool,
}

impl Repo {
    // An owned receiver is moved into the refresh (a borrowed one is an error).
    #[cached_query(ttl = 60, stale = 30, cache = &self.cache)]
    pub async fn name(self: std::sync::Arc<Self>, id: i64) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await
    }
}

pub async fn callers(pool: &PgPool, repo: std::sync::Arc<Repo>) {
    let _ = search(pool, Some("ada")).await;
    let _ = search(pool, None).await;
    let _ = search_invalidate(None).await;
    let _ = count("t", 1).await;
    let _ = normalized(" Ada ").await;
    let _ = repo.name_invalidate(1).await;
    let _ = repo.name(1).await;
}

fn main() {}
