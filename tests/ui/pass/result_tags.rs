// `result_tags = path`: a function of `&T` (the cached value), or of what it derefs to, returning any `IntoIterator` of
// `Display` items, owned or borrowed from the value; a path to a module's function or an
// associated function; with a background refresh too.
use cached_query::cached_query;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
pub struct Article {
    id: i64,
    author: i64,
}

mod tags {
    pub fn authors(articles: &Vec<super::Article>) -> Vec<String> {
        articles.iter().map(|a| format!("author:{}", a.author)).collect()
    }
}

fn ids(articles: &[Article]) -> impl Iterator<Item = &i64> + '_ {
    articles.iter().map(|a| &a.id)
}

fn of_one(article: &Option<Article>) -> Option<String> {
    article.as_ref().map(|a| format!("author:{}", a.author))
}

#[cached_query(ttl = 60, result_tags = tags::authors)]
async fn latest(limit: i64) -> Result<Vec<Article>, String> {
    Ok((0..limit).map(|id| Article { id, author: id % 3 }).collect())
}

#[cached_query(ttl = 60, stale = 30, result_tags = ids, tags = ["articles"])]
async fn refreshed(limit: i64) -> Vec<Article> {
    (0..limit).map(|id| Article { id, author: 1 }).collect()
}

#[cached_query(ttl = 60, result_tags = of_one)]
async fn one(id: i64) -> Result<Option<Article>, String> {
    Ok(Some(Article { id, author: 2 }))
}

pub struct Repo;

impl Repo {
    fn authors(articles: &Vec<Article>) -> [String; 1] {
        [format!("n:{}", articles.len())]
    }

    #[cached_query(ttl = 60, result_tags = Self::authors)]
    async fn by_author(&self, author: i64) -> Result<Vec<Article>, String> {
        Ok(vec![Article { id: 1, author }])
    }
}

// From a `macro_rules!`: the path keeps its hygiene, the generated names theirs.
macro_rules! cached_list {
    ($name:ident, $tags:path) => {
        #[cached_query(ttl = 60, result_tags = $tags)]
        async fn $name(limit: i64) -> Result<Vec<Article>, String> {
            Ok((0..limit).map(|id| Article { id, author: 1 }).collect())
        }
    };
}

cached_list!(listed, tags::authors);

fn main() {
    let _ = listed(1);
    let _ = (latest(1), refreshed(1), one(1), Repo.by_author(1));
}
