// Several mistakes in one attribute are all reported at once.
use cached_query::cached_query;

#[cached_query(ttl = 0, nope = 1, skip(nope))]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
