// A tag that names a skipped parameter: the parameter is not in the key, so callers that
// differ only by it would share one entry (one viewer served another's `favorited`).
use cached_query::cached_query;

#[cached_query(skip(viewer), tags = ["article:{slug}", "viewer:{viewer}"])]
async fn article(slug: String, viewer: Option<i64>) -> Result<String, String> {
    let _ = viewer;
    Ok(slug)
}

// Spaces in the placeholder do not hide it.
#[cached_query(skip(tenant), tags = ["tenant:{ tenant }"])]
async fn report(tenant: i64, id: i64) -> Result<i64, String> {
    Ok(tenant + id)
}

fn main() {}
