// A key parameter whose type is not `Serialize`: the error points at that parameter's type.
use cached_query::cached_query;

struct Filter {
    min: i64,
}

#[cached_query(ttl = 60)]
async fn count(id: i64, filter: Filter) -> Result<i64, String> {
    Ok(id + filter.min)
}

fn main() {}
