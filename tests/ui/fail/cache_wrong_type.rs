// `cache = ...` must be a `&QueryCache`: the error points at the expression.
use cached_query::cached_query;

#[cached_query(cache = 5)]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
