//! The example service (`cached_query_examples::service`), served, or measured.
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin service          # serves on 127.0.0.1:3000
//! cargo run --release -p cached-query-examples --bin service -- load  # cached vs uncached
//! ```
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`; its `svc_*` tables are
//! dropped and seeded), `REDIS_URL` (default `redis://127.0.0.1:6379`). `load` serves a cached
//! and an uncached instance over HTTP on loopback and drives each with 32 clients for 8 s of a
//! read-heavy mix (19 reads to 1 write, skewed to popular articles and authors as traffic is):
//! requests per second, and database queries per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::QueryCache;
use cached_query_examples::service::{AppState, reset_schema, router};
use sqlx::PgPool;

const USERS: i64 = 20;
const ARTICLES: i64 = 200;

/// Users, articles, follows and favorites.
async fn seed(pool: &PgPool) -> Result<(), sqlx::Error> {
    reset_schema(pool).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO svc_users (username, bio) SELECT 'user' || g, 'bio of user' || g FROM generate_series(1, {USERS}) g;
         INSERT INTO svc_articles (slug, author_id, title, body)
             SELECT 'post-' || g, 1 + g % {USERS}, 'Title ' || g, repeat('text ', 60) FROM generate_series(1, {ARTICLES}) g;
         INSERT INTO svc_follows SELECT a, b FROM generate_series(1, {USERS}) a, generate_series(1, {USERS}) b WHERE (a + b) % 3 = 0;
         INSERT INTO svc_favorites SELECT u, a FROM generate_series(1, {USERS}) u, generate_series(1, {ARTICLES}) a WHERE (u * a) % 7 = 0;"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// Serves `state` on a free loopback port; its address.
async fn serve(state: AppState) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Ok(address)
}

/// A popular-skewed id in `1..=n`: half the picks among the first tenth.
fn skewed(rng: &mut fastrand::Rng, n: i64) -> i64 {
    if rng.bool() { rng.i64(1..=(n / 10).max(1)) } else { rng.i64(1..=n) }
}

/// Requests per second and database queries per request of `state` served at `address`.
async fn load(address: &str, state: &AppState, clients: usize, secs: u64) -> (f64, f64) {
    let client = reqwest::Client::new();
    let (done, stop) = (Arc::new(AtomicU64::new(0)), Instant::now() + Duration::from_secs(secs));
    let queries = state.queries();
    let tasks: Vec<_> = (0..clients)
        .map(|seed| {
            let (client, done, address) = (client.clone(), done.clone(), address.to_owned());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed as u64);
                while Instant::now() < stop {
                    let viewer = if rng.bool() {
                        String::new()
                    } else {
                        format!("viewer={}", skewed(&mut rng, USERS))
                    };
                    let request = match rng.u8(0..20) {
                        0 => {
                            let url = format!(
                                "{address}/articles/post-{}/favorite?user={}",
                                skewed(&mut rng, ARTICLES),
                                rng.i64(1..=USERS)
                            );
                            if rng.bool() { client.post(url) } else { client.delete(url) }
                        }
                        1..=10 => client
                            .get(format!("{address}/articles/post-{}?{viewer}", skewed(&mut rng, ARTICLES))),
                        11..=15 => {
                            client.get(format!("{address}/profiles/user{}?{viewer}", skewed(&mut rng, USERS)))
                        }
                        _ => client.get(format!(
                            "{address}/articles?author=user{}&{viewer}",
                            skewed(&mut rng, USERS)
                        )),
                    };
                    let response = request.send().await.expect("the service answers");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.expect("a body");
                    done.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client");
    }
    let requests = done.load(Relaxed) as f64;
    (requests / secs as f64, (state.queries() - queries) as f64 / requests)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (database_url, redis_url) = cached_query_examples::urls();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(&database_url).await?;
    seed(&pool).await?;
    let prefix = format!("cq-example-service:{}", std::process::id());
    let cache = QueryCache::builder().redis_url(&redis_url).prefix(prefix).build().await?;
    if std::env::args().nth(1).as_deref() != Some("load") {
        #[cfg(feature = "metrics")]
        cached_query_examples::service::install_metrics();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving on http://127.0.0.1:3000 (try /articles/post-1?viewer=2, and /metrics)");
        axum::serve(listener, router(AppState::new(pool, cache))).await?;
        return Ok(());
    }
    println!(
        "| instance (32 clients, 8 s, 19 reads : 1 write) | requests/s | database queries per request |"
    );
    println!("|---|---:|---:|");
    for (name, cache) in [("uncached", QueryCache::passthrough()), ("cached", cache)] {
        let state = AppState::new(pool.clone(), cache);
        let address = serve(state.clone()).await?;
        load(&address, &state, 32, 1).await; // warm-up: connections, and the cache
        let (rate, queries) = load(&address, &state, 32, 8).await;
        println!("| {name} | {rate:.0} | {queries:.2} |");
    }
    Ok(())
}
