// `ttl` must be an integer literal, not a string.
use cached_query::cached_query;

#[cached_query(ttl = "abc")]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
