// A non-async fn is rejected, pointing at `fn`.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
