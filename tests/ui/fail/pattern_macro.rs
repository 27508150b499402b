// A macro in a parameter's pattern hides what it binds: the call could not be keyed by it.
use cached_query::cached_query;

macro_rules! bind {
    ($name:ident) => {
        $name
    };
}

#[cached_query(ttl = 60)]
async fn by_id(bind!(id): i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
