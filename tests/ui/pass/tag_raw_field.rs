// A tag template may reach into a field with a raw name (`{event.r#type}`).
use cached_query::cached_query;

#[derive(serde::Serialize)]
pub struct Event {
    pub r#type: String,
}

#[cached_query(ttl = 60, tags = ["kind:{event.r#type}"])]
async fn events(event: Event) -> Vec<String> {
    vec![event.r#type]
}

fn main() {
    let _ = events(Event { r#type: "a".into() });
}
