// Patterns the macro refuses: a `ref` binding in a function that runs in the background (it
// borrows from the parameter), and a destructured type named like an sqlx executor (never in
// the key: it would be left out without a word).
use cached_query::cached_query;

pub struct Path<T>(pub T);

#[cached_query(ttl = 60, stale = 5)]
async fn by_ref(Path(ref slug): Path<String>) -> Result<String, String> {
    Ok(slug.clone())
}

#[derive(serde::Serialize)]
pub struct Pool {
    pub id: i64,
}

#[cached_query(ttl = 60)]
async fn reserves(Pool { id }: Pool) -> i64 {
    id * 100
}

fn main() {}
