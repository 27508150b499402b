// A one-line body of a function that runs in the background (`stale`, `verify`) compiles
// without warnings (the UI tests deny them): no `unused_braces` around the user's block.
#![deny(warnings)]
use cached_query::cached_query;

#[cached_query(ttl = 60, stale = 30)]
async fn stale(id: i64) -> Result<i64, String> {
    Ok(id)
}

#[cached_query(ttl = 60, verify)]
async fn verified(id: &str) -> Result<String, String> {
    Ok(id.to_owned())
}

fn main() {
    let _ = (stale(1), verified("a"));
}
