// Values out of range: `jitter` is a fraction in [0, 1); `stale` and `none_ttl` are > 0;
// `lock`, `reuse` and `invalidate` are booleans.
use cached_query::cached_query;

#[cached_query(jitter = 1.5, stale = 0, none_ttl = 0, lock = "yes")]
async fn value(id: i64) -> i64 {
    id
}

#[cached_query(reuse = 1)]
async fn other(id: i64) -> i64 {
    id
}

fn main() {}

#[cached_query(invalidate = "no")]
async fn third(id: i64) -> i64 {
    id
}
