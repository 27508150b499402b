// A tag that names a skipped parameter: the parameter is not in the key, so callers that
// differ only by it would share one entry (one viewer served another's `favorited`).
use cached_query::cached_query;

#[cached_query(skip(viewer), tags = ["article:{slug}", "viewer:{viewer}"])]
async fn article(slug: String, viewer: Option<i64>) -> Result<String, String> {
    let _ = viewer;
    Ok(slug)
}

fn main() {}
