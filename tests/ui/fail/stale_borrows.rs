// `stale` refreshes in the background: no borrowed `self` receiver (`&self`), `&mut` or `impl Trait` parameter.
use cached_query::cached_query;

struct Repo;

impl Repo {
    #[cached_query(stale = 30)]
    async fn count(&self, id: i64) -> i64 {
        id
    }
}

#[cached_query(early = true, skip(buf))]
async fn with_buffer(buf: &mut Vec<u8>, id: i64) -> i64 {
    buf.push(1);
    id
}

fn main() {}
