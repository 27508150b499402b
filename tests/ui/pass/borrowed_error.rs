// An error type that borrows (here from a `'static` table) is returned as it is; waiters of a
// failed query are not given it (only owned `Clone` errors are shared).
use cached_query::cached_query;

#[derive(Debug, Clone)]
pub struct Failure<'a>(pub &'a str);

#[cached_query(ttl = 60)]
async fn lookup(id: i64) -> Result<i64, Failure<'static>> {
    if id < 0 { Err(Failure("negative")) } else { Ok(id) }
}

fn main() {
    let _ = lookup(1);
}
