// Tag templates name parameters of the function; a lone brace is an error.
use cached_query::cached_query;

#[cached_query(tags = ["user:{nope}", "a}b"])]
async fn user(id: i64) -> i64 {
    id
}

fn main() {}
