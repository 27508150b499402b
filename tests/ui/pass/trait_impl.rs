// A method of a trait `impl` (an `async fn` in a trait): `invalidate = false`, since the
// `impl` can hold only the trait's items; its entries are invalidated by tag.
use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;

trait Users {
    async fn name(&self, id: i64) -> Result<Option<String>, sqlx::Error>;
}

struct Repo {
    cache: QueryCache,
    pool: PgPool,
}

impl Users for Repo {
    #[cached_query(ttl = 60, cache = &self.cache, tags = ["user:{id}"], invalidate = false)]
    async fn name(&self, id: i64) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await
    }
}

async fn callers(repo: &Repo) {
    let _: Result<Option<String>, sqlx::Error> = repo.name(1).await;
    let _: Result<(), cached_query::CacheError> = repo.cache.invalidate_tags(["user:1"]).await;
}

fn main() {
    let _ = callers;
}
