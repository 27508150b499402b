use cached_query::cached_query;

fn author_tags(authors: &Vec<i64>) -> Vec<String> {
    authors.iter().map(|id| format!("author:{id}")).collect()
}

#[cached_query(ttl = 60, result_tags = author_tags)]
async fn authors_of(topic: String) -> Result<Vec<i64>, String> {
    Ok(vec![topic.len() as i64])
}

fn main() {}
