// `?` and early `return` in the body, and a `Result` alias as the return type: the alias is
// recognised as a `Result` (only `Ok` is cached), or this would not compile, since
// `sqlx::Error` is not `Serialize`.
use cached_query::cached_query;
use sqlx::PgPool;

type DbResult<T> = Result<T, sqlx::Error>;

#[cached_query(ttl = 60)]
async fn count_from(pool: &PgPool, min_id: i64) -> DbResult<i64> {
    if min_id < 0 {
        return Ok(0);
    }
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE id >= $1").bind(min_id).fetch_one(pool).await?;
    Ok(n)
}

#[cached_query(ttl = 60, stale = 30)]
async fn count_from_refreshable(pool: &PgPool, min_id: i64) -> DbResult<i64> {
    if min_id < 0 {
        return Ok(0);
    }
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE id >= $1").bind(min_id).fetch_one(pool).await?;
    Ok(n)
}

async fn callers(pool: &PgPool) -> DbResult<i64> {
    Ok(count_from(pool, 1).await? + count_from_refreshable(pool, 1).await?)
}

fn main() {
    let _ = callers;
}
