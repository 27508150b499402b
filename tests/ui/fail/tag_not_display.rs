// A tag placeholder's value must implement `Display`: the error points at the tag.
use cached_query::cached_query;

#[derive(serde::Serialize)]
struct Filter {
    min: i64,
}

#[cached_query(tags = ["filter:{filter}"])]
async fn count(filter: Filter) -> i64 {
    filter.min
}

fn main() {}
