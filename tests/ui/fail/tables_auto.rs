// `tables = auto` needs SQL it can read: none in the body, SQL that does not parse, a write
// function whose SQL writes nothing, and a value that is neither `auto` nor a list.
use cached_query::{cache_invalidate, cached_query};
use sqlx::PgPool;

#[cached_query(tables = auto)]
async fn no_sql(pool: &PgPool, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(pool).await
}

#[cached_query(tables = auto)]
async fn bad_sql(pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELEC id FROM users WHERE id = $1").bind(id).fetch_one(pool).await
}

#[cache_invalidate(tables = auto)]
async fn writes_nothing(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}

#[cached_query(tables = users)]
async fn neither(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
