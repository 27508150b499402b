// `admit_after` is a whole number of calls, at most 100.
use cached_query::cached_query;

#[cached_query(admit_after = "twice")]
async fn not_a_number(id: i64) -> i64 {
    id
}

#[cached_query(admit_after = -1)]
async fn negative(id: i64) -> i64 {
    id
}

#[cached_query(admit_after = 1000)]
async fn too_many(id: i64) -> i64 {
    id
}

fn main() {}
