// `stale`/`early` cannot take parameters whose copy would still borrow from the caller, nor a
// generic executor or `&impl Trait`: each is reported at the parameter.
use cached_query::cached_query;
use sqlx::{Executor, Postgres};

#[derive(serde::Serialize)]
struct Filter<'a> {
    name: &'a str,
}

#[cached_query(stale = 30)]
async fn tuple(p: (i64, &str)) -> i64 {
    p.0
}

#[cached_query(stale = 30)]
async fn slice(names: &[&str]) -> usize {
    names.len()
}

#[cached_query(early = true)]
async fn filtered(filter: Filter<'_>) -> usize {
    filter.name.len()
}

#[cached_query(stale = 30)]
async fn generic<'c, E: Executor<'c, Database = Postgres>>(db: E, id: i64) -> i64 {
    let _ = db;
    id
}

#[cached_query(stale = 30)]
async fn opaque(filter: &(impl serde::Serialize + Sync)) -> i64 {
    let _ = filter;
    1
}

fn main() {}
