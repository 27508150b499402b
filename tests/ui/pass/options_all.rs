// Every option at once.
use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;

#[cached_query(
    ttl = 60,
    name = "users::name",
    version = 2,
    skip(cache, trace_id),
    cache = cache,
    crate = "cached_query",
    stale = 30,
    fail_safe = false,
    jitter = 0.1,
    early = true,
    lock = true,
    reuse = false,
    invalidate = true,
)]
async fn name(
    cache: &QueryCache,
    pool: &PgPool,
    id: i64,
    trace_id: u64,
) -> Result<Option<String>, sqlx::Error> {
    let _ = trace_id;
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

async fn callers(cache: &QueryCache, pool: &PgPool) {
    let _ = name(cache, pool, 1, 99).await;
    let _ = name_invalidate(cache, 1).await;
}

fn main() {
    let _ = callers;
}
