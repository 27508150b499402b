//! The example service's consistency test: a scripted session of writes and reads (seeded, so
//! each run is the same), every read sent to the cached instance and to an uncached one over
//! the same Postgres: their responses must be identical, byte for byte, while the cached one
//! answers most reads from the cache. Real Postgres and Redis.

mod common;

use axum::http::{Method, StatusCode};
use cached_query::QueryCache;
use cached_query_examples::service::{AppState, reset_schema, router};
use common::{send, urls};
use sqlx::PgPool;

const USERS: i64 = 6;

fn username(n: i64) -> String {
    format!("user{n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_responses_equal_uncached_ones_through_a_session_of_writes() {
    let (database_url, redis_url) = urls();
    let pool = PgPool::connect(&database_url).await.unwrap();
    reset_schema(&pool).await.unwrap();
    let prefix = format!("cq-example-service:{}:{}", std::process::id(), fastrand::u64(..));
    let cache = QueryCache::builder().redis_url(&redis_url).prefix(prefix).build().await.unwrap();
    let cached_state = AppState::new(pool.clone(), cache.clone());
    let (cached, uncached) =
        (router(cached_state.clone()), router(AppState::new(pool.clone(), QueryCache::passthrough())));

    for n in 0..USERS {
        let user = format!(r#"{{"username":"{}","bio":"bio {n}"}}"#, username(n));
        assert_eq!(send(&cached, Method::POST, "/users", Some(user)).await.0, StatusCode::CREATED);
    }
    let mut slugs: Vec<String> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut reads, mut differences) = (0, Vec::new());
    for step in 0..1500 {
        // Skewed as real traffic is: a few popular authors and articles, many anonymous readers;
        // the users who act (follow, favorite) are among the readers, so that what they change
        // is read again.
        let user = if rng.bool() { rng.i64(0..2) } else { rng.i64(0..USERS) };
        let viewer = match rng.u8(0..4) {
            0 | 1 => String::new(),
            _ => format!("viewer={}", rng.i64(1..=3)),
        };
        let recent = slugs.len().saturating_sub(4);
        let slug = (!slugs.is_empty()).then(|| slugs[rng.usize(recent..slugs.len())].clone());
        // About one request in eight writes; every write goes through the cached instance.
        let write = match (rng.u8(0..35), &slug) {
            (0, _) | (1, None) => {
                let new = format!("post-{step}");
                slugs.push(new.clone());
                let body = format!(
                    r#"{{"author":"{}","slug":"{new}","title":"t{step}","body":"b{step}"}}"#,
                    username(user)
                );
                Some((Method::POST, "/articles".to_owned(), Some(body)))
            }
            (1, Some(slug)) => {
                let body = format!(r#"{{"title":"edited {step}","body":"b{step}"}}"#);
                Some((Method::PUT, format!("/articles/{slug}"), Some(body)))
            }
            (2, Some(slug)) => {
                let method = if rng.bool() { Method::POST } else { Method::DELETE };
                Some((method, format!("/articles/{slug}/favorite?user={}", rng.i64(1..=3)), None))
            }
            (3, _) => {
                let method = if rng.bool() { Method::POST } else { Method::DELETE };
                Some((
                    method,
                    format!("/profiles/{}/follow?user={}", username(user), rng.i64(1..=USERS)),
                    None,
                ))
            }
            (4, _) if rng.u8(0..3) == 0 => {
                let body = format!(r#"{{"bio":"bio at step {step}"}}"#);
                Some((Method::PUT, format!("/users/{}", username(user)), Some(body)))
            }
            _ => None,
        };
        // A user who is read before they exist (a cached "not found") joins half-way.
        let write = match step {
            700 => Some((
                Method::POST,
                "/users".to_owned(),
                Some(format!(r#"{{"username":"{}","bio":"late"}}"#, username(USERS))),
            )),
            _ => write,
        };
        if let Some((method, uri, body)) = write {
            let (status, _) = send(&cached, method, &uri, body).await;
            assert!(status.is_success(), "step {step}: {uri}: {status}");
            continue;
        }
        let user = if rng.u8(0..10) == 0 { USERS } else { user };
        let uri = match (rng.u8(0..3), &slug) {
            (0, Some(slug)) => format!("/articles/{slug}?{viewer}"),
            (1, _) => format!("/articles?author={}&{viewer}", username(user)),
            _ => format!("/profiles/{}?{viewer}", username(user)),
        };
        let (a, b) =
            (send(&cached, Method::GET, &uri, None).await, send(&uncached, Method::GET, &uri, None).await);
        reads += 1;
        if a != b {
            differences.push(format!(
                "step {step}: {uri}: cached {} {}, uncached {} {}",
                a.0,
                String::from_utf8_lossy(&a.1),
                b.0,
                String::from_utf8_lossy(&b.1)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {reads} reads differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    let stats = cache.stats();
    assert!(stats.hits > reads / 3, "the cached instance answered from its cache: {stats:?}");
    assert!(cached_state.queries() < reads, "fewer queries than reads: {}", cached_state.queries());
    println!("{reads} reads, all equal; cached instance: {} queries, {stats:?}", cached_state.queries());
}
