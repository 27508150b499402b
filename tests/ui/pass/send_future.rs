// The futures of cached functions (and of their `_invalidate`) are `Send`: they can be
// spawned on a multi-threaded runtime.
use cached_query::{QueryCache, cached_query};
use sqlx::PgPool;

fn assert_send<T: Send>(_: T) {}

#[cached_query(ttl = 60)]
async fn name(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

#[cached_query(ttl = 60, stale = 30, early = true, lock = true, cache = cache, skip(cache))]
async fn refreshable(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

struct Repo {
    cache: QueryCache,
    pool: PgPool,
}

impl Repo {
    #[cached_query(cache = &self.cache)]
    async fn name(&self, id: i64) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await
    }
}

fn check(pool: &PgPool, cache: &QueryCache, repo: &Repo) {
    assert_send(name(pool, 1));
    assert_send(name_invalidate(1));
    assert_send(refreshable(cache, pool, 1));
    assert_send(refreshable_invalidate(cache, 1));
    assert_send(repo.name(1));
    assert_send(repo.name_invalidate(1));
}

fn main() {
    let _ = check;
}
