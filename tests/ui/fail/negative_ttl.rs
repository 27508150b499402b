// Durations and versions are whole numbers: a negative one says so.
use cached_query::cached_query;

#[cached_query(ttl = -1, version = -2)]
async fn value(id: i64) -> i64 {
    id
}

fn main() {}
