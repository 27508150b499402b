// `#[cache_invalidate]` without `tags`: nothing to invalidate.
use cached_query::cache_invalidate;

#[cache_invalidate]
async fn touch(id: i64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
