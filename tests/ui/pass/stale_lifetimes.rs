// A function that refreshes in the background (`stale`, `early`) may take references with
// named lifetimes, and `&'static` ones, which its body can use as `'static`.
use cached_query::cached_query;
use sqlx::PgPool;

fn needs_static(label: &'static str) -> &'static str {
    label
}

#[cached_query(ttl = 60, stale = 30)]
async fn labelled(pool: &PgPool, label: &'static str, id: i64) -> Result<Option<String>, sqlx::Error> {
    let label = needs_static(label);
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1 AND kind = $2")
        .bind(id)
        .bind(label)
        .fetch_optional(pool)
        .await
}

#[cached_query(ttl = 60, early = true)]
async fn named<'a>(pool: &'a PgPool, name: &'a str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(pool).await
}

async fn callers(pool: &PgPool) {
    let _ = labelled(pool, "admin", 1).await;
    let _ = labelled_invalidate("admin", 1).await;
    let name = String::from("Ada");
    let _ = named(pool, &name).await;
    let _ = named_invalidate(&name).await;
}

fn main() {
    let _ = callers;
}
