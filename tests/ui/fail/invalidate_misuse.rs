// `#[cache_invalidate]` must name its return type (to tell `Ok` from an error), and cannot take
// a borrowed transaction: it would invalidate before the caller commits.
use cached_query::cache_invalidate;

#[cache_invalidate(tags = ["user:{id}"])]
async fn handler(id: i64) -> impl std::fmt::Debug {
    id
}

#[cache_invalidate(tags = ["user:{id}"])]
async fn rename(tx: &mut sqlx::PgTransaction<'_>, id: i64, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET name = $2 WHERE id = $1").bind(id).bind(name).execute(&mut **tx).await?;
    Ok(())
}

fn main() {}
