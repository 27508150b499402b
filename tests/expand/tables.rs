use cached_query::{cache_invalidate, cached_query};
use sqlx::PgPool;

#[cached_query(ttl = 300, tables = auto)]
async fn team_names(pool: &PgPool, team: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u.name FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.team_id = $1",
    )
    .bind(team)
    .fetch_all(pool)
    .await
}

#[cache_invalidate(tables = auto)]
async fn leave_team(pool: &PgPool, user: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM memberships WHERE user_id = $1").bind(user).execute(pool).await?;
    Ok(())
}

fn main() {}
