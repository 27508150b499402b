use cached_query::cached_query;
use sqlx::{Executor, Postgres};

#[cached_query(ttl = 300, name = "reports::top", version = 2, skip(request_id))]
async fn top_names<'c, E>(db: E, limit: i64, request_id: u128) -> Vec<String>
where
    E: Executor<'c, Database = Postgres>,
{
    let _ = request_id;
    sqlx::query_scalar("SELECT name FROM users ORDER BY score DESC LIMIT $1")
        .bind(limit)
        .fetch_all(db)
        .await
        .unwrap_or_default()
}

fn main() {}
