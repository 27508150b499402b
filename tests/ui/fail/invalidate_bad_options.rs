// `#[cache_invalidate]` takes only `tags`, `cache` and `crate`; and works on `async fn` only.
use cached_query::cache_invalidate;

#[cache_invalidate(tags = ["user:{id}"], ttl = 5)]
async fn rename(id: i64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[cache_invalidate(tags = ["users"])]
fn not_async() {}

fn main() {}
