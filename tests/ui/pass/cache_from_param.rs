// `cache = ...` may borrow from a parameter that the body then takes by value (here an
// `Arc` of the application's state, moved into the body): the call keeps its own handle
// to the cache, not the borrow. Also with `stale` and on the write side.
use std::sync::Arc;

use cached_query::{QueryCache, cache_invalidate, cached_query};
use sqlx::PgPool;

struct AppState {
    cache: QueryCache,
    pool: PgPool,
}

#[cached_query(ttl = 60, cache = &state.cache, skip(state))]
async fn name(state: Arc<AppState>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&state.pool).await
}

#[cached_query(ttl = 60, stale = 30, cache = &state.cache, skip(state))]
async fn email(state: Arc<AppState>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(id).fetch_optional(&state.pool).await
}

#[cache_invalidate(tags = ["user:{id}"], cache = &state.cache)]
async fn rename(state: Arc<AppState>, id: i64, name: String) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET name = $1 WHERE id = $2").bind(name).bind(id).execute(&state.pool).await?;
    Ok(())
}

async fn callers(state: Arc<AppState>) {
    let _ = name(state.clone(), 1).await;
    let _ = name_invalidate(state.clone(), 1).await;
    let _ = email(state.clone(), 1).await;
    let _ = rename(state, 1, "Ada".to_owned()).await;
}

fn main() {
    let _ = callers;
}
