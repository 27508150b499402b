// An `Option<T: Display>` in a tag template: `Some(v)` renders as `v`, `None` as nothing.
use cached_query::cached_query;

#[cached_query(ttl = 60, tags = ["viewer:{viewer}", "article:{id}"])]
async fn favorited(viewer: Option<u64>, id: i64) -> Result<bool, String> {
    Ok(viewer.is_some() && id > 0)
}

#[cached_query(ttl = 60, tags = ["viewer:{viewer}"])]
async fn by_ref(viewer: &Option<String>) -> Result<bool, String> {
    Ok(viewer.is_some())
}

#[cached_query(ttl = 60, tags = ["viewer:{viewer}"])]
async fn inner_ref(viewer: Option<&str>) -> Result<bool, String> {
    Ok(viewer.is_some())
}

fn main() {
    let _ = (favorited(None, 1), by_ref(&None), inner_ref(Some("x")));
}
