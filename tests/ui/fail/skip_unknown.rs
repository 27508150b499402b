// `skip` naming no parameter is rejected, pointing at the name.
use cached_query::cached_query;

#[cached_query(skip(nope))]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
