use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;

pub struct Repo {
    cache: QueryCache,
    pool: PgPool,
}

impl Repo {
    #[cached_query(cache = &self.cache)]
    pub async fn count_active(&self, since_days: i32) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users WHERE seen > now() - make_interval(days => $1)")
            .bind(since_days)
            .fetch_one(&self.pool)
            .await
    }
}

fn main() {}
