// `ttl = 0` is rejected, pointing at the `0`.
use cached_query::cached_query;

#[cached_query(ttl = 0)]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
