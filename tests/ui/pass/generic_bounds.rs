// A key parameter bound by a lifetime it shares with the executor (`T: Encode<'c, _>`, the
// way to `.bind` a generic key): `<fn>_invalidate` keeps `T`'s bounds and that lifetime, and
// leaves out the executor's.
use cached_query::cached_query;
use sqlx::{Encode, Executor, PgPool, Postgres, Type};

#[cached_query(ttl = 60)]
async fn name_by<'c, E, T>(db: E, id: T) -> Result<Option<String>, sqlx::Error>
where
    E: Executor<'c, Database = Postgres>,
    T: serde::Serialize + Encode<'c, Postgres> + Type<Postgres> + Send + 'c,
{
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(db).await
}

#[cached_query(ttl = 60)]
async fn name_inline<'c, E: Executor<'c, Database = Postgres>, T: serde::Serialize + Encode<'c, Postgres> + Type<Postgres> + Send + 'c>(
    db: E,
    id: T,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(db).await
}

// Generic over the database too: `T`'s bounds name the executor's type, which
// `<fn>_invalidate` leaves out (with those bounds; `Serialize` is all the key needs).
#[cached_query(ttl = 60)]
async fn name_any<'c, E, T>(db: E, id: T) -> Result<Option<String>, sqlx::Error>
where
    E: Executor<'c>,
    T: serde::Serialize + Encode<'c, E::Database> + Type<E::Database> + Send + 'c,
{
    let _ = (db, id);
    Ok(None)
}

async fn callers(pool: &PgPool) {
    let _ = name_any(pool, 7i64).await;
    let _ = name_any_invalidate(7i64).await;
    let _ = name_by(pool, 7i64).await;
    let _ = name_by_invalidate(7i64).await;
    let _ = name_inline(pool, 7i64).await;
    let _ = name_inline_invalidate(7i64).await;
}

fn main() {
    let _ = callers;
}
