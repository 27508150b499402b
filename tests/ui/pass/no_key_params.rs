// A function whose only parameter is the executor: one entry, and `_invalidate()` takes no
// arguments.
use cached_query::cached_query;
use sqlx::PgPool;

#[cached_query(ttl = 60)]
async fn all_names(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users ORDER BY id").fetch_all(pool).await
}

#[cached_query(ttl = 60)]
async fn constant() -> u32 {
    42
}

async fn callers(pool: &PgPool) {
    let _ = all_names(pool).await;
    let _ = all_names_invalidate().await;
    let _ = constant().await;
    let _ = constant_invalidate().await;
}

fn main() {
    let _ = callers;
}
