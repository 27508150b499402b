// A generic key parameter stays generic; a generic executor is left out of the key, so
// `<fn>_invalidate` takes only the key parameters (and no executor type to infer).
use cached_query::cached_query;
use sqlx::{Executor, PgPool, Postgres};

#[cached_query(ttl = 60)]
async fn names<'c, T: serde::Serialize + Send, E: sqlx::Executor<'c, Database = sqlx::Postgres>>(
    ex: E,
    filter: T,
) -> Result<Vec<String>, sqlx::Error> {
    let _ = &filter;
    sqlx::query_scalar("SELECT name FROM users").fetch_all(ex).await
}

#[cached_query(ttl = 60)]
async fn count<'c, E, T>(filter: &[T], ex: E) -> Result<i64, sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
    T: serde::Serialize + Sync,
{
    let _ = filter;
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(ex).await
}

// A generic parameter used only by a skipped parameter is dropped from `_invalidate` too.
#[cached_query(ttl = 60, skip(trace))]
async fn by_name<'a, D: std::fmt::Debug>(
    pool: &sqlx::PgPool,
    name: &'a str,
    trace: D,
) -> Result<i64, sqlx::Error> {
    let _ = (name, trace);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

async fn callers(pool: &PgPool) {
    let _ = names(pool, 7i64).await;
    let _ = names(pool, "seven").await;
    let _ = names_invalidate(7i64).await;
    let _ = names_invalidate::<&str>("seven").await;
    let _ = count(&[1u8, 2], pool).await;
    let _ = count_invalidate(&[1u8, 2]).await;
    let _ = by_name(pool, "x", 5u8).await;
    let _ = by_name_invalidate("x").await;
}

fn main() {
    let _ = callers;
}
