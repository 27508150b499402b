// Inner attributes at the start of a body (`#![...]`) stay at the start of the body: both
// attributes, with a lint they silence.
#![deny(unused_variables)]

use cached_query::{cache_invalidate, cached_query};

#[cached_query(ttl = 60)]
async fn answer(id: i64) -> Result<i64, String> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(id)
}

#[cache_invalidate(tags = ["answers"])]
async fn forget(id: i64) -> Result<(), String> {
    #![allow(unused_variables)]
    let unused = id;
    Ok(())
}

fn main() {
    let _ = answer(1);
    let _ = forget(1);
}
