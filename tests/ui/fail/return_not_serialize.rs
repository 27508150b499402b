// The cached value (the `Ok` type of a `Result`, or a plain return type) must be
// `Serialize + DeserializeOwned`: the error points at the return type.
use cached_query::cached_query;

struct Row {
    id: i64,
}

#[cached_query(ttl = 60)]
async fn row(id: i64) -> Result<Row, String> {
    Ok(Row { id })
}

#[cached_query(ttl = 60)]
async fn plain(id: i64) -> Row {
    Row { id }
}

fn main() {}
