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


// An `Option` renders its value: that value must implement `Display`.
#[cached_query(tags = ["filter:{filter}"])]
async fn maybe(filter: Option<Filter>) -> i64 {
    filter.map_or(0, |f| f.min)
}

fn main() {}
