//! How a function's return type is cached, chosen by trait resolution, not by the type's
//! spelling, so that type aliases (`type DbResult<T> = Result<T, sqlx::Error>`) work.
//!
//! The generated code calls `(&&Outcome::<R>::NEW).__cq_adapter()`. Method resolution tries
//! the receiver `&&Outcome<R>` first (results that can be empty: `Result<Option<T>, E>`,
//! `Result<Vec<T>, E>`, `Option<T>`, `Vec<T>`), then `&Outcome<R>` (any `Result<T, E>`), then
//! `Outcome<R>` (anything else), and stops at the first that applies.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A zero-sized mention of the types an adapter is for (`fn() -> T`: no ownership, no
/// auto-trait effects).
type Marker<T> = PhantomData<fn() -> T>;

/// How a return type `R` is cached: what part of it is stored, and how it is rebuilt.
/// The stored value is its `Stores::Value`.
pub trait Adapter<R>: Stores<Value: Serialize + DeserializeOwned + Send + 'static> {
    /// The value to store, if this result is cacheable.
    fn value(result: &R) -> Option<&Self::Value>;
    /// The result rebuilt from a stored value.
    fn wrap(value: Self::Value) -> R;
    /// Whether a value is a negative result (`None`, an empty `Vec`): see `none_ttl`.
    fn is_empty(value: &Self::Value) -> bool;
}

/// The value an adapter stores, without the bounds that caching it needs (so that asking
/// for it adds no error to those of a value that cannot be cached).
pub trait Stores {
    /// The stored value.
    type Value;
}

impl<T, E, K> Stores for ResultAdapter<T, E, K> {
    type Value = T;
}

impl<R, K> Stores for PlainAdapter<R, K> {
    type Value = R;
}

/// Whether a result counts as a success, for `#[cache_invalidate]` (no serde bounds: a
/// write may return anything).
pub trait Success<R> {
    fn succeeded(result: &R) -> bool;
}

/// Whether the result of a write succeeded (`Ok`, or any value of a non-`Result` type).
pub fn succeeded<R, A: Success<R>>(_adapter: &A, result: &R) -> bool {
    A::succeeded(result)
}

/// Which stored values are empty.
pub trait Emptiness<T> {
    fn is_empty(value: &T) -> bool;
}

/// Values that are never empty.
pub struct NeverEmpty;
/// `Option`s: empty when `None`.
pub struct OptionEmpty;
/// `Vec`s: empty when empty.
pub struct VecEmpty;

impl<T> Emptiness<T> for NeverEmpty {
    fn is_empty(_: &T) -> bool {
        false
    }
}

impl<T> Emptiness<Option<T>> for OptionEmpty {
    fn is_empty(value: &Option<T>) -> bool {
        value.is_none()
    }
}

impl<T> Emptiness<Vec<T>> for VecEmpty {
    fn is_empty(value: &Vec<T>) -> bool {
        value.is_empty()
    }
}

/// `Result<T, E>`: only `Ok(T)` is stored; errors are returned as they came, never cached.
pub struct ResultAdapter<T, E, K>(Marker<(T, E, K)>);

impl<T, E, K> Adapter<Result<T, E>> for ResultAdapter<T, E, K>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    K: Emptiness<T>,
{
    fn value(result: &Result<T, E>) -> Option<&T> {
        result.as_ref().ok()
    }

    fn wrap(value: T) -> Result<T, E> {
        Ok(value)
    }

    fn is_empty(value: &T) -> bool {
        K::is_empty(value)
    }
}

impl<T, E, K> Success<Result<T, E>> for ResultAdapter<T, E, K> {
    fn succeeded(result: &Result<T, E>) -> bool {
        result.is_ok()
    }
}

/// Any other return type: stored as it is.
pub struct PlainAdapter<R, K>(Marker<(R, K)>);

impl<R, K> Adapter<R> for PlainAdapter<R, K>
where
    R: Serialize + DeserializeOwned + Send + 'static,
    K: Emptiness<R>,
{
    fn value(result: &R) -> Option<&R> {
        Some(result)
    }

    fn wrap(value: R) -> R {
        value
    }

    fn is_empty(value: &R) -> bool {
        K::is_empty(value)
    }
}

impl<R, K> Success<R> for PlainAdapter<R, K> {
    fn succeeded(_: &R) -> bool {
        true
    }
}

/// An error shared with the callers that waited for the query that returned it.
pub type SharedError = Arc<dyn Any + Send + Sync>;

/// How the error of a failed result is handed to the callers that waited for its query (one
/// run per failure, not one per waiter): for a `Result<T, E>` whose `E` is `Clone + Send + Sync`,
/// found at compile time (`share::*`).
pub struct ErrorShare<R> {
    keep: fn(&R) -> Option<SharedError>,
    give: fn(&(dyn Any + Send + Sync)) -> Option<R>,
}

impl<R> Clone for ErrorShare<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for ErrorShare<R> {}

impl<R> ErrorShare<R> {
    /// The error of `result`, if it failed.
    pub(crate) fn keep(&self, result: &R) -> Option<SharedError> {
        (self.keep)(result)
    }

    /// A result holding a copy of `error` (`None` if it is another function's type).
    pub(crate) fn give(&self, error: &SharedError) -> Option<R> {
        (self.give)(&**error)
    }
}

fn keep_error<T, E: Clone + Send + Sync + 'static>(result: &Result<T, E>) -> Option<SharedError> {
    result.as_ref().err().map(|err| Arc::new(err.clone()) as SharedError)
}

fn give_error<T, E: Clone + Send + Sync + 'static>(error: &(dyn Any + Send + Sync)) -> Option<Result<T, E>> {
    error.downcast_ref::<E>().map(|err| Err(err.clone()))
}

/// Whether errors are shared, imported with a glob by the generated code:
/// `(&&Outcome::<R>::NEW).__cq_errors()` finds `__CqSharesErrors` for a `Result` with a `Clone`
/// error at the receiver as it is, `__CqKeepsErrors` (none) for anything else one `&` down.
pub mod share {
    use super::{ErrorShare, Outcome, give_error, keep_error};

    pub trait __CqSharesErrors<R> {
        fn __cq_errors(self) -> Option<ErrorShare<R>>;
    }

    impl<T, E: Clone + Send + Sync + 'static> __CqSharesErrors<Result<T, E>> for &&Outcome<Result<T, E>> {
        fn __cq_errors(self) -> Option<ErrorShare<Result<T, E>>> {
            Some(ErrorShare { keep: keep_error::<T, E>, give: give_error::<T, E> })
        }
    }

    pub trait __CqKeepsErrors<R> {
        fn __cq_errors(self) -> Option<ErrorShare<R>>;
    }

    impl<R> __CqKeepsErrors<R> for &Outcome<R> {
        fn __cq_errors(self) -> Option<ErrorShare<R>> {
            None
        }
    }
}

/// The receiver of the selection (see the module docs).
pub struct Outcome<R>(Marker<R>);

impl<R> Outcome<R> {
    pub const NEW: Self = Outcome(PhantomData);
}

impl<R> Clone for Outcome<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Outcome<R> {}

/// The selection traits, imported with a glob by the generated code (their odd names keep
/// them from shadowing anything of the user's).
pub mod select {
    use std::marker::PhantomData;

    use super::{NeverEmpty, OptionEmpty, Outcome, PlainAdapter, ResultAdapter, VecEmpty};

    pub trait __CqViaEmptiable {
        type Adapter;
        fn __cq_adapter(self) -> Self::Adapter;
    }

    impl<T, E> __CqViaEmptiable for &&Outcome<Result<Option<T>, E>> {
        type Adapter = ResultAdapter<Option<T>, E, OptionEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            ResultAdapter(PhantomData)
        }
    }

    impl<T, E> __CqViaEmptiable for &&Outcome<Result<Vec<T>, E>> {
        type Adapter = ResultAdapter<Vec<T>, E, VecEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            ResultAdapter(PhantomData)
        }
    }

    impl<T> __CqViaEmptiable for &&Outcome<Option<T>> {
        type Adapter = PlainAdapter<Option<T>, OptionEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            PlainAdapter(PhantomData)
        }
    }

    impl<T> __CqViaEmptiable for &&Outcome<Vec<T>> {
        type Adapter = PlainAdapter<Vec<T>, VecEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            PlainAdapter(PhantomData)
        }
    }

    pub trait __CqViaResult {
        type Adapter;
        fn __cq_adapter(self) -> Self::Adapter;
    }

    impl<T, E> __CqViaResult for &Outcome<Result<T, E>> {
        type Adapter = ResultAdapter<T, E, NeverEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            ResultAdapter(PhantomData)
        }
    }

    pub trait __CqViaPlain {
        type Adapter;
        fn __cq_adapter(self) -> Self::Adapter;
    }

    impl<R> __CqViaPlain for Outcome<R> {
        type Adapter = PlainAdapter<R, NeverEmpty>;
        fn __cq_adapter(self) -> Self::Adapter {
            PlainAdapter(PhantomData)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;
    use super::share::*;

    #[derive(Debug)]
    struct NotClone;

    /// As the macro writes it.
    macro_rules! errors {
        ($r:ty) => {{
            let outcome = &&Outcome::<$r>::NEW;
            outcome.__cq_errors()
        }};
    }

    #[test]
    fn errors_are_shared_when_they_can_be_copied() {
        let shared = errors!(Result<i64, String>).unwrap();
        let error = shared.keep(&Err("down".to_owned())).unwrap();
        assert_eq!(shared.give(&error), Some(Err("down".to_owned())));
        assert!(shared.keep(&Ok(1)).is_none(), "a success is not an error");
        assert!(errors!(Result<i64, NotClone>).is_none());
        assert!(errors!(Vec<i64>).is_none());
        let other = errors!(Result<i64, u32>).unwrap();
        assert_eq!(other.give(&error), None, "another function's error type");
    }
}
