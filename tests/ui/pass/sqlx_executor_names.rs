// sqlx's own names for executors are executors: the `PgExecutor`-style traits (in `impl` and
// generic form), the `PgTransaction`-style aliases, and pools behind an `Arc`. None of them is
// part of the key, so `<fn>_invalidate` takes only `id`.
use std::sync::Arc;

use cached_query::cached_query;
use sqlx::{PgExecutor, PgPool};

#[cached_query(ttl = 60)]
async fn by_impl(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(db).await
}

#[cached_query(ttl = 60)]
async fn by_generic<'c, E: PgExecutor<'c>>(db: E, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(db).await
}

#[cached_query(ttl = 60)]
async fn in_transaction(tx: &mut sqlx::PgTransaction<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&mut **tx).await
}

#[cached_query(ttl = 60)]
async fn behind_arc(pool: &Arc<PgPool>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&**pool).await
}

async fn callers(pool: &PgPool, shared: &Arc<PgPool>) {
    let _ = by_impl(pool, 1).await;
    let _ = by_impl_invalidate(1).await;
    let _ = by_generic(pool, 1).await;
    let _ = by_generic_invalidate(1).await;
    let mut tx = pool.begin().await.unwrap();
    let _ = in_transaction(&mut tx, 1).await;
    let _ = in_transaction_invalidate(1).await;
    let _ = behind_arc(shared, 1).await;
    let _ = behind_arc_invalidate(1).await;
}

fn main() {
    let _ = callers;
}
