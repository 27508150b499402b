// `tables = auto` finds the tables of the body's SQL (a join, a subquery, a CTE; a literal
// bound with `let`; a turbofish), `tables = [...]` lists them, and `#[cache_invalidate]`
// finds the tables a write writes.
use cached_query::{cache_invalidate, cached_query};
use sqlx::PgPool;

#[cached_query(ttl = 300, tables = auto)]
async fn team_page(pool: &PgPool, team: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let sql = r#"WITH active AS (SELECT user_id FROM sessions)
                 SELECT u.id, u.name FROM users u JOIN memberships m ON m.user_id = u.id
                 WHERE m.team_id = $1 AND u.id IN (SELECT user_id FROM active)"#;
    sqlx::query_as::<_, (i64, String)>(sql).bind(team).fetch_all(pool).await
}

#[cached_query(tables = ["users", "app.\"Orders\""])]
async fn listed(pool: &PgPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    let _ = pool;
    Ok(Some(id.to_string()))
}

#[cache_invalidate(tables = auto)]
async fn join_team(pool: &PgPool, user: i64, team: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO memberships (user_id, team_id) VALUES ($1, $2)")
        .bind(user)
        .bind(team)
        .execute(pool)
        .await?;
    Ok(())
}

fn main() {
    let _ = (team_page, listed, join_team);
    assert_eq!(cached_query::tables(), ["app.\"Orders\"", "memberships", "sessions", "users"]);
}
