// Parameters written as patterns, as web handlers take their extractors: the key is made of the
// bindings, and templates, `skip` and `cache = ...` name them. `<fn>_invalidate` takes the
// parameters as declared.
use cached_query::{QueryCache, cache_invalidate, cached_query};

pub struct Path<T>(pub T);
pub struct Extension<T>(pub T);

#[derive(Clone)]
pub struct AppState {
    pub cache: QueryCache,
}

pub struct Point {
    pub x: i64,
    pub y: i64,
}

#[cached_query(ttl = 60, cache = &state.cache, skip(state), tags = ["article:{slug}"])]
async fn article(Extension(state): Extension<AppState>, Path(slug): Path<String>) -> Result<String, String> {
    let _ = &state;
    Ok(slug)
}

#[cached_query(ttl = 60, tags = ["sum:{a}:{b}"])]
async fn sum((a, b): (i64, i64), Point { x, y: _ }: Point) -> Result<i64, String> {
    Ok(a + b + x)
}

#[cache_invalidate(cache = &state.cache, tags = ["article:{slug}"])]
async fn edit(Extension(state): Extension<AppState>, Path(slug): Path<String>) -> Result<(), String> {
    let _ = (&state, slug);
    Ok(())
}

async fn calls(state: AppState) {
    let _ = article(Extension(state.clone()), Path("a".into())).await;
    let _ = article_invalidate(Extension(state.clone()), Path("a".into())).await;
    let _ = sum((1, 2), Point { x: 3, y: 4 }).await;
    let _ = sum_invalidate((1, 2), Point { x: 3, y: 4 }).await;
    let _ = edit(Extension(state), Path("a".into())).await;
}


// A binding with a sub-pattern (`whole @ ...`): keyed by both; `<fn>_invalidate` takes it whole.
#[derive(serde::Serialize, Clone)]
pub struct Range {
    pub lo: i64,
    pub hi: i64,
}

#[cached_query(ttl = 60)]
async fn span(whole @ Range { lo, .. }: Range) -> Result<i64, String> {
    Ok(whole.hi - lo)
}

// A parameter whose type is named like an executor (the app's own `Pool`), used by `cache`.
pub struct Pool {
    pub cache: QueryCache,
}

#[cached_query(ttl = 60, cache = &pool.cache)]
async fn from_pool(pool: &Pool, id: i64) -> Result<i64, String> {
    let _ = pool;
    Ok(id)
}

async fn more(pool: Pool) {
    let _ = span(Range { lo: 1, hi: 2 }).await;
    let _ = span_invalidate(Range { lo: 1, hi: 2 }).await;
    let _ = from_pool(&pool, 1).await;
    let _ = from_pool_invalidate(&pool, 1).await;
}

fn main() {
    let _ = (calls, more);
}
