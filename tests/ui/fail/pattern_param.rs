// A destructuring pattern in a key parameter has no name to hash: the error points at it.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
async fn sum((a, b): (i64, i64)) -> Result<i64, String> {
    Ok(a + b)
}

fn main() {}
