//! The example service: a small JSON API on axum + sqlx (Postgres), a "Conduit"-like blog
//! (users, articles, follows, favorites) whose reads are cached the way the README recommends:
//! `#[cached_query(tags = [...])]` on the data-access functions, the viewer in the key and in
//! a tag of what differs per viewer, `#[cache_invalidate(tags = [...])]` on the writes, and
//! `invalidate_tags` where a write learns a key by running (see `data`).
//!
//! `service::router(state)` is the whole service; `cargo run --release -p
//! cached-query-examples --bin service` serves it, and `-- load` measures it cached and
//! uncached (see the README's "The example service").

mod data;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cached_query::QueryCache;
use serde::Deserialize;
use sqlx::PgPool;

pub use data::{Article, Profile};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The cache (`QueryCache::passthrough()` for the uncached instance).
    pub cache: QueryCache,
    /// The queries the data-access functions ran (their bodies run only on a miss).
    pub queries: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(pool: PgPool, cache: QueryCache) -> Self {
        AppState { pool, cache, queries: Arc::default() }
    }

    /// The queries run so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Relaxed)
    }
}

/// The tables, empty (drops them first).
pub async fn reset_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS svc_favorites, svc_follows, svc_articles, svc_users;
         CREATE TABLE svc_users (id bigserial PRIMARY KEY, username text UNIQUE NOT NULL, bio text NOT NULL);
         CREATE TABLE svc_articles (id bigserial PRIMARY KEY, slug text UNIQUE NOT NULL,
             author_id bigint NOT NULL REFERENCES svc_users, title text NOT NULL, body text NOT NULL);
         CREATE TABLE svc_follows (follower_id bigint REFERENCES svc_users, followee_id bigint REFERENCES svc_users,
             PRIMARY KEY (follower_id, followee_id));
         CREATE TABLE svc_favorites (user_id bigint REFERENCES svc_users, article_id bigint REFERENCES svc_articles,
             PRIMARY KEY (user_id, article_id));",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The service's routes; `/metrics`, the cache's metrics once [`install_metrics`] ran.
pub fn router(state: AppState) -> Router {
    #[cfg(feature = "metrics")]
    let routes = Router::new().route("/metrics", get(metrics));
    #[cfg(not(feature = "metrics"))]
    let routes = Router::new();
    routes
        .route("/users", post(create_user))
        .route("/users/{username}", put(update_user))
        .route("/profiles/{username}", get(profile))
        .route("/profiles/{username}/follow", post(follow).delete(unfollow))
        .route("/articles", get(articles).post(create_article))
        .route("/articles/{slug}", get(article).put(update_article))
        .route("/articles/{slug}/favorite", post(favorite).delete(unfavorite))
        .with_state(state)
}

/// The process's metrics recorder (Prometheus), installed once: what `/metrics` renders.
#[cfg(feature = "metrics")]
static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// Installs the Prometheus recorder (once per process) that `/metrics` renders.
#[cfg(feature = "metrics")]
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no other metrics recorder is installed")
    });
}

#[cfg(feature = "metrics")]
async fn metrics() -> Response {
    match METRICS.get() {
        Some(handle) => handle.render().into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics recorder installed").into_response(),
    }
}

/// `?viewer=ID`: who is asking (none: anonymous).
#[derive(Deserialize)]
pub struct Viewer {
    pub viewer: Option<i64>,
}

/// `?user=ID`: who is acting.
#[derive(Deserialize)]
pub struct Acting {
    pub user: i64,
}

#[derive(Deserialize)]
pub struct ByAuthor {
    pub author: String,
    pub viewer: Option<i64>,
}

#[derive(Deserialize)]
pub struct NewUser {
    pub username: String,
    pub bio: String,
}

#[derive(Deserialize)]
pub struct UserUpdate {
    pub bio: String,
}

#[derive(Deserialize)]
pub struct NewArticle {
    pub author: String,
    pub slug: String,
    pub title: String,
    pub body: String,
}

#[derive(Deserialize)]
pub struct ArticleUpdate {
    pub title: String,
    pub body: String,
}

/// Any database error, as a 500 with its message.
pub struct AppError(sqlx::Error);

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0.to_string()).into_response()
    }
}

/// A found value as JSON, or 404.
fn found<T: serde::Serialize>(value: Option<T>) -> Response {
    match value {
        Some(value) => Json(value).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn profile(
    State(s): State<AppState>,
    Path(username): Path<String>,
    Query(Viewer { viewer }): Query<Viewer>,
) -> Result<Response, AppError> {
    Ok(found(data::profile(&s.cache, &s.pool, &s.queries, username, viewer).await?))
}

async fn article(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    Query(Viewer { viewer }): Query<Viewer>,
) -> Result<Response, AppError> {
    Ok(found(data::article(&s.cache, &s.pool, &s.queries, slug, viewer).await?))
}

async fn articles(
    State(s): State<AppState>,
    Query(q): Query<ByAuthor>,
) -> Result<Json<Vec<Article>>, AppError> {
    Ok(Json(data::articles_by(&s.cache, &s.pool, &s.queries, q.author, q.viewer).await?))
}

async fn create_user(State(s): State<AppState>, Json(new): Json<NewUser>) -> Result<StatusCode, AppError> {
    data::create_user(&s.cache, &s.pool, &new.username, &new.bio).await?;
    Ok(StatusCode::CREATED)
}

async fn update_user(
    State(s): State<AppState>,
    Path(username): Path<String>,
    Json(update): Json<UserUpdate>,
) -> Result<StatusCode, AppError> {
    data::update_bio(&s.cache, &s.pool, &username, &update.bio).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_article(
    State(s): State<AppState>,
    Json(new): Json<NewArticle>,
) -> Result<StatusCode, AppError> {
    data::create_article(&s.cache, &s.pool, &new).await?;
    Ok(StatusCode::CREATED)
}

async fn update_article(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    Json(update): Json<ArticleUpdate>,
) -> Result<StatusCode, AppError> {
    data::update_article(&s.cache, &s.pool, &slug, &update).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn favorite(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    Query(Acting { user }): Query<Acting>,
) -> Result<StatusCode, AppError> {
    data::favorite(&s.cache, &s.pool, user, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unfavorite(
    State(s): State<AppState>,
    Path(slug): Path<String>,
    Query(Acting { user }): Query<Acting>,
) -> Result<StatusCode, AppError> {
    data::unfavorite(&s.cache, &s.pool, user, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn follow(
    State(s): State<AppState>,
    Path(username): Path<String>,
    Query(Acting { user }): Query<Acting>,
) -> Result<StatusCode, AppError> {
    data::follow(&s.cache, &s.pool, user, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unfollow(
    State(s): State<AppState>,
    Path(username): Path<String>,
    Query(Acting { user }): Query<Acting>,
) -> Result<StatusCode, AppError> {
    data::unfollow(&s.cache, &s.pool, user, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
