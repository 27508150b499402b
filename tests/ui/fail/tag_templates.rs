// Tag templates name parameters of the function; a lone brace, or one not closed, is an error.
use cached_query::cached_query;

#[cached_query(tags = ["user:{nope}", "a}b", "user:{id"])]
async fn user(id: i64) -> i64 {
    id
}

fn main() {}
