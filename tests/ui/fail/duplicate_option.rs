// An option given twice is rejected, pointing at the second one.
use cached_query::cached_query;

#[cached_query(ttl = 60, ttl = 30)]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
