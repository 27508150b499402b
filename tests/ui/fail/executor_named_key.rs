// A parameter whose type is named like an sqlx executor is left out of the key; when that
// type is `Serialize` (no executor is), it is likely the user's own type of that name, and a
// warning says so at the parameter (made an error here to be seen). Real executors, and a
// `skip`ped parameter, get no warning.
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

#[cached_query(ttl = 60, skip(pool))]
async fn skipped(db: &PgPool, pool: &Pool) -> i64 {
    let _ = (db, pool);
    1
}

fn main() {}
