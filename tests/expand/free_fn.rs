use cached_query::cached_query;
use sqlx::PgPool;

// (Derives of FromRow, Serialize and Deserialize left out of this snapshot: they are noise.)
pub struct User {
    id: i64,
    name: String,
}

#[cached_query(ttl = 60)]
pub async fn user_by_id(pool: &PgPool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

fn main() {}
