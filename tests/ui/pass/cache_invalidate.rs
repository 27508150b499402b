// `#[cache_invalidate]` on functions returning a `Result`, a `Result` alias, unit, and on a
// method with `cache = &self.cache`; tags formatted from parameters and fields.
use cached_query::{QueryCache, cache_invalidate, cached_query};

type DbResult<T> = Result<T, String>;

pub struct User {
    pub id: i64,
}

#[cached_query(tags = ["users", "user:{id}"])]
async fn name(id: i64) -> DbResult<String> {
    Ok(format!("user {id}"))
}

#[cache_invalidate(tags = ["users", "user:{id}"])]
async fn rename(id: i64, to: &str) -> DbResult<u64> {
    let _ = (id, to);
    Ok(1)
}

#[cache_invalidate(tags = ["user:{user.id}"])]
async fn touch(user: User) {
    let _ = user.id;
}

struct Repo {
    cache: QueryCache,
}

impl Repo {
    #[cache_invalidate(cache = &self.cache, tags = ["user:{id}"])]
    async fn delete(&self, id: i64) -> Result<(), String> {
        if id < 0 {
            return Err("negative".into());
        }
        Ok(())
    }
}

fn main() {
    let _ = name(1);
    let _ = rename(1, "x");
    let _ = touch(User { id: 1 });
    let repo = Repo { cache: QueryCache::in_memory(1) };
    let _ = repo.delete(1);
}
