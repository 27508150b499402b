// A call of `<fn>_invalidate` with the wrong arguments is reported at the call.
use cached_query::cached_query;

#[cached_query(ttl = 60)]
async fn user_name(id: i64, org: i64) -> Result<String, String> {
    Ok(format!("{id}@{org}"))
}

async fn write() {
    let _ = user_name_invalidate(7).await;
}

fn main() {
    let _ = write;
}
