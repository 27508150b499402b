// `result_tags` names a function of `&T` (the cached value) returning `Display` items.
use cached_query::cached_query;

fn of_strings(values: &Vec<String>) -> Vec<String> {
    values.clone()
}

struct NotDisplay;

fn not_display(values: &Vec<i64>) -> Vec<NotDisplay> {
    values.iter().map(|_| NotDisplay).collect()
}

#[cached_query(result_tags = of_strings)]
async fn wrong_type(id: i64) -> Result<Vec<i64>, String> {
    Ok(vec![id])
}

#[cached_query(result_tags = not_display)]
async fn items_not_display(id: i64) -> Result<Vec<i64>, String> {
    Ok(vec![id])
}

#[cached_query(result_tags = "of_strings")]
async fn not_a_path(id: i64) -> Vec<i64> {
    vec![id]
}

fn main() {}
