// `impl Trait` parameters: `impl Serialize` is part of the key, `impl Executor` is not.
use cached_query::cached_query;
use sqlx::PgPool;

#[cached_query(ttl = 60)]
async fn name(
    id: impl serde::Serialize + Send,
    ex: impl sqlx::Executor<'_, Database = sqlx::Postgres>,
) -> Result<Option<String>, sqlx::Error> {
    let _ = &id;
    sqlx::query_scalar("SELECT name FROM users WHERE id = 1").fetch_optional(ex).await
}

async fn callers(pool: &PgPool) {
    let _ = name(1i64, pool).await;
    let _ = name_invalidate(1i64).await;
    let mut conn = pool.acquire().await.unwrap();
    let _ = name("one", &mut *conn).await;
}

fn main() {
    let _ = callers;
}
