use cached_query::{QueryCache, cached_query};
use cached_query_examples::{User, user};
use redis::AsyncCommands;

#[cached_query(ttl = 3600, cache = cache, skip(cache))]
async fn q1(cache: &QueryCache, id: i64) -> Result<Option<User>, std::io::Error> {
    Ok(Some(user(id)))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].clone();
    let n: i64 = args[2].parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let cache =
            QueryCache::builder().redis_url("redis://127.0.0.1:6379").prefix("cgq1").build().await.unwrap();
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for id in 0..1000 {
            q1(&cache, id).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for id in 0..1000 {
            q1(&cache, id).await.unwrap();
        }
        let keys: Vec<String> = (0..1000).map(|id| cache.key("cgq1::q1", 0, &(id,)).unwrap()).collect();
        let mut sum = 0i64;
        for i in 0..n {
            let id = i % 1000;
            if mode == "hit" {
                sum += q1(&cache, id).await.unwrap().unwrap().id;
            } else {
                let bytes: Vec<u8> = conn.get(&keys[id as usize]).await.unwrap();
                sum += QueryCache::decode_entry::<Option<User>>(&bytes).unwrap().unwrap().id;
            }
        }
        eprintln!("{sum} {:?}", cache.stats());
    });
}
