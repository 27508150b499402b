// A misspelled option is rejected and the valid ones are listed.
use cached_query::cached_query;

#[cached_query(tll = 60)]
async fn answer(id: i64) -> Result<i64, String> {
    Ok(id)
}

fn main() {}
