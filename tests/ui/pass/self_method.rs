// `&self` methods: the cache comes from `self`, `self` is not part of the key, and
// `<method>_invalidate` is a method too.
use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;

struct Repo {
    cache: QueryCache,
    pool: PgPool,
}

impl Repo {
    #[cached_query(ttl = 60, cache = &self.cache)]
    async fn name(&self, id: i64) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await
    }

    #[cached_query(ttl = 60)]
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&self.pool).await
    }

    async fn callers(&self) {
        let _: Result<Option<String>, sqlx::Error> = self.name(1).await;
        let _: Result<(), cached_query::CacheError> = self.name_invalidate(1).await;
        let _ = self.count().await;
        let _ = self.count_invalidate().await;
    }
}

fn main() {
    let _ = Repo::callers;
}
