// A function without a return type has nothing to cache.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
async fn touch(id: i64) {
    let _ = id;
}

fn main() {}
