//! Tags computed from a cached value (`result_tags = path::to_fn`): how the generated code
//! hands that function to the call path. The tags are known only once the query ran; `stored`
//! checks at store time that none was invalidated while it ran (see `Keyspace::tag_epoch`).

use std::fmt::Display;

use crate::outcome::Stores;

/// The tags of a function's values: `None` when the function has no `result_tags`.
pub trait ResultTags<V>: Clone + Send + Sync {
    fn of(&self, value: &V) -> Option<Vec<String>>;
}

/// A function without `result_tags`.
#[derive(Clone, Copy)]
pub struct NoResultTags;

impl<V> ResultTags<V> for NoResultTags {
    fn of(&self, _: &V) -> Option<Vec<String>> {
        None
    }
}

/// The function of `result_tags`, its items rendered (see [`render`]).
#[derive(Clone, Copy)]
pub struct ByResult<F>(pub F);

impl<V, F: Fn(&V) -> Vec<String> + Clone + Send + Sync> ResultTags<V> for ByResult<F> {
    fn of(&self, value: &V) -> Option<Vec<String>> {
        Some((self.0)(value))
    }
}

/// `result_tags` for a function whose adapter is `A`: the closure the generated code makes of
/// the user's function, typed here by the cached value's type, so that a function of another
/// type is reported at its path as a mismatched argument.
pub fn checked<A, F>(_adapter: &A, result_tags: F) -> ByResult<F>
where
    A: Stores,
    F: Fn(&A::Value) -> Vec<String>,
{
    ByResult(result_tags)
}

/// The tags of a `result_tags` function's items, each its `Display`, sorted and without
/// repeats (each is one counter to read).
pub fn render<I>(items: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: Display,
{
    let mut tags: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_render_sorted_without_repeats() {
        assert_eq!(render([3, 1, 3, 2]), ["1", "2", "3"]);
        assert_eq!(render(Vec::<String>::new()), Vec::<String>::new());
        let tags = ByResult(|v: &Vec<i64>| render(v.iter().map(|id| format!("author:{id}"))));
        assert_eq!(tags.of(&vec![7, 7]), Some(vec!["author:7".to_owned()]));
        assert_eq!(ResultTags::<Vec<i64>>::of(&NoResultTags, &vec![7]), None);
    }
}
