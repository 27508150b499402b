// An `impl Trait` return type cannot be stored or rebuilt.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
async fn names(id: i64) -> impl serde::Serialize {
    vec![id]
}

fn main() {}
