// What the key leaves out although its type is `Serialize` gets a warning (made an error here
// to be seen): a parameter whose type is named like an sqlx executor, also behind an `Arc` (no
// executor is `Serialize`: likely the user's own type of that name), and a `Serialize`
// receiver (likely a value, whose calls would share an entry). Real executors, a `skip`ped
// parameter and a receiver that is not `Serialize` (a repository) get no warning.
#![deny(deprecated)]
use cached_query::cached_query;
use sqlx::PgPool;

#[derive(serde::Serialize)]
struct Pool {
    token: String,
}

#[cached_query(ttl = 60)]
async fn liquidity(db: &PgPool, pool: &Pool) -> i64 {
    let _ = (db, pool);
    1
}

#[cached_query(ttl = 60)]
async fn shared(db: &PgPool, pool: &std::sync::Arc<Pool>) -> i64 {
    let _ = (db, pool);
    1
}

#[cached_query(ttl = 60, skip(pool))]
async fn skipped(db: &PgPool, pool: &Pool) -> i64 {
    let _ = (db, pool);
    1
}

#[derive(serde::Serialize)]
struct UserId(i64);

impl UserId {
    #[cached_query(ttl = 60)]
    async fn name(&self, db: &PgPool) -> i64 {
        let _ = db;
        self.0
    }
}

struct Repo {
    pool: PgPool,
}

impl Repo {
    #[cached_query(ttl = 60)]
    async fn count(&self, id: i64) -> i64 {
        let _ = &self.pool;
        id
    }
}

fn main() {}
