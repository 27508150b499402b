// The attribute on something that is not a function.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
struct User {
    id: i64,
}

fn main() {}
