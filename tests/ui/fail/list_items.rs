// A `skip(...)` or `tags = [...]` item of the wrong kind is reported once, at that item.
use cached_query::cached_query;

#[cached_query(skip(pool, 1))]
async fn skips(pool: i64, id: i64) -> i64 {
    pool + id
}

#[cached_query(tags = ["users", user])]
async fn tagged(id: i64) -> i64 {
    id
}

fn main() {}
