use cached_query::{cache_invalidate, cached_query};
use sqlx::PgPool;

#[cached_query(ttl = 60, tags = ["users", "user:{id}"], none_ttl = 5)]
pub async fn user_name(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

#[cache_invalidate(tags = ["users", "user:{id}"])]
pub async fn rename_user(pool: &PgPool, id: i64, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET name = $2 WHERE id = $1").bind(id).bind(name).execute(pool).await?;
    Ok(())
}

fn main() {}
