//! The service's data access: cached reads, and writes that invalidate what they change.
//!
//! The tags: `user:{username}` (a profile), `article:{slug}` (an article, for every viewer, and
//! every list that holds it: `result_tags`), `author:{username}` (an author's list of articles,
//! for a new article), `viewer:{id}` (everything one viewer sees: what they follow and favorite
//! shows in it). A read that differs per viewer has the viewer in its key and its tag; the
//! anonymous viewer is `None` (`viewer:`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cached_query::{QueryCache, cache_invalidate, cached_query};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::{ArticleUpdate, NewArticle};

#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Profile {
    pub username: String,
    pub bio: String,
    /// Whether the viewer follows this user.
    pub following: bool,
}

#[derive(sqlx::FromRow, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Article {
    pub slug: String,
    pub title: String,
    pub body: String,
    pub author: String,
    pub favorites_count: i64,
    /// Whether the viewer favorited it.
    pub favorited: bool,
    /// Whether the viewer follows its author.
    pub following: bool,
}

#[cached_query(ttl = 300, cache = cache, skip(cache, queries), tags = ["user:{username}", "viewer:{viewer}"])]
pub async fn profile(
    cache: &QueryCache,
    pool: &PgPool,
    queries: &AtomicU64,
    username: String,
    viewer: Option<i64>,
) -> Result<Option<Profile>, sqlx::Error> {
    queries.fetch_add(1, Relaxed);
    sqlx::query_as(
        "SELECT u.username, u.bio,
                EXISTS (SELECT 1 FROM svc_follows f WHERE f.follower_id = $2 AND f.followee_id = u.id) AS following
         FROM svc_users u WHERE u.username = $1",
    )
    .bind(username)
    .bind(viewer)
    .fetch_optional(pool)
    .await
}

#[cached_query(ttl = 300, cache = cache, skip(cache, queries), tags = ["article:{slug}", "viewer:{viewer}"])]
pub async fn article(
    cache: &QueryCache,
    pool: &PgPool,
    queries: &AtomicU64,
    slug: String,
    viewer: Option<i64>,
) -> Result<Option<Article>, sqlx::Error> {
    queries.fetch_add(1, Relaxed);
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{ARTICLES} WHERE a.slug = $1")))
        .bind(slug)
        .bind(viewer)
        .fetch_optional(pool)
        .await
}

/// The tags of a list of articles: each article's, so that a write to one of them (which knows
/// its slug, not the lists it is in) invalidates the lists that hold it.
fn article_tags(articles: &[Article]) -> impl Iterator<Item = String> + '_ {
    articles.iter().map(|article| format!("article:{}", article.slug))
}

#[cached_query(
    ttl = 300,
    cache = cache,
    skip(cache, queries),
    tags = ["author:{author}", "viewer:{viewer}"],
    result_tags = article_tags
)]
pub async fn articles_by(
    cache: &QueryCache,
    pool: &PgPool,
    queries: &AtomicU64,
    author: String,
    viewer: Option<i64>,
) -> Result<Vec<Article>, sqlx::Error> {
    queries.fetch_add(1, Relaxed);
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{ARTICLES} WHERE u.username = $1 ORDER BY a.id")))
        .bind(author)
        .bind(viewer)
        .fetch_all(pool)
        .await
}

/// Articles as a viewer (`$2`) sees them.
const ARTICLES: &str = "SELECT a.slug, a.title, a.body, u.username AS author,
        (SELECT count(*) FROM svc_favorites fv WHERE fv.article_id = a.id) AS favorites_count,
        EXISTS (SELECT 1 FROM svc_favorites fv WHERE fv.article_id = a.id AND fv.user_id = $2) AS favorited,
        EXISTS (SELECT 1 FROM svc_follows f WHERE f.follower_id = $2 AND f.followee_id = a.author_id) AS following
    FROM svc_articles a JOIN svc_users u ON u.id = a.author_id";

/// A new user: drops the cached "not found" of their profile. (Their list of articles stays
/// empty until they write one, which invalidates it.)
#[cache_invalidate(cache = cache, tags = ["user:{username}"])]
pub async fn create_user(
    cache: &QueryCache,
    pool: &PgPool,
    username: &str,
    bio: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO svc_users (username, bio) VALUES ($1, $2)")
        .bind(username)
        .bind(bio)
        .execute(pool)
        .await
        .map(drop)
}

#[cache_invalidate(cache = cache, tags = ["user:{username}"])]
pub async fn update_bio(
    cache: &QueryCache,
    pool: &PgPool,
    username: &str,
    bio: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE svc_users SET bio = $2 WHERE username = $1")
        .bind(username)
        .bind(bio)
        .execute(pool)
        .await
        .map(drop)
}

#[cache_invalidate(cache = cache, tags = ["article:{new.slug}", "author:{new.author}"])]
pub async fn create_article(cache: &QueryCache, pool: &PgPool, new: &NewArticle) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO svc_articles (slug, author_id, title, body)
         SELECT $1, id, $3, $4 FROM svc_users WHERE username = $2",
    )
    .bind(&new.slug)
    .bind(&new.author)
    .bind(&new.title)
    .bind(&new.body)
    .execute(pool)
    .await
    .map(drop)
}

/// An article changed: its entries, and the lists that hold it (tagged by their result).
#[cache_invalidate(cache = cache, tags = ["article:{slug}"])]
pub async fn update_article(
    cache: &QueryCache,
    pool: &PgPool,
    slug: &str,
    update: &ArticleUpdate,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE svc_articles SET title = $2, body = $3 WHERE slug = $1")
        .bind(slug)
        .bind(&update.title)
        .bind(&update.body)
        .execute(pool)
        .await
        .map(drop)
}

/// Its count changed for every viewer: the article's entries and the lists that hold it.
#[cache_invalidate(cache = cache, tags = ["article:{slug}"])]
pub async fn favorite(cache: &QueryCache, pool: &PgPool, user: i64, slug: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO svc_favorites (user_id, article_id)
         SELECT $1, id FROM svc_articles WHERE slug = $2 ON CONFLICT DO NOTHING",
    )
    .bind(user)
    .bind(slug)
    .execute(pool)
    .await
    .map(drop)
}

#[cache_invalidate(cache = cache, tags = ["article:{slug}"])]
pub async fn unfavorite(cache: &QueryCache, pool: &PgPool, user: i64, slug: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM svc_favorites fv USING svc_articles a
         WHERE fv.user_id = $1 AND fv.article_id = a.id AND a.slug = $2",
    )
    .bind(user)
    .bind(slug)
    .execute(pool)
    .await
    .map(drop)
}

/// What `follower` sees changes: every entry of that viewer.
#[cache_invalidate(cache = cache, tags = ["viewer:{follower}"])]
pub async fn follow(
    cache: &QueryCache,
    pool: &PgPool,
    follower: i64,
    username: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO svc_follows (follower_id, followee_id)
         SELECT $1, id FROM svc_users WHERE username = $2 ON CONFLICT DO NOTHING",
    )
    .bind(follower)
    .bind(username)
    .execute(pool)
    .await
    .map(drop)
}

#[cache_invalidate(cache = cache, tags = ["viewer:{follower}"])]
pub async fn unfollow(
    cache: &QueryCache,
    pool: &PgPool,
    follower: i64,
    username: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM svc_follows WHERE follower_id = $1 AND followee_id IN (SELECT id FROM svc_users WHERE username = $2)",
    )
    .bind(follower)
    .bind(username)
    .execute(pool)
    .await
    .map(drop)
}
