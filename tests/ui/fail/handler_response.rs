// The attribute on a web handler (a first try many make): the response type is not a value to
// cache; the error says so plainly, at the type.
use cached_query::cached_query;

pub struct Json<T>(pub T);

#[cached_query(ttl = 60)]
async fn tags_handler() -> Result<Json<Vec<String>>, String> {
    Ok(Json(vec!["rust".to_owned()]))
}

fn main() {}
