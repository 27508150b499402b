//! Checks on what `#[cached_query]` leaves out of the key although it may tell results apart:
//! parameters taken for sqlx executors because of their type's name (`Pool`, `PgConnection`,
//! `Transaction`, ...: a proc-macro sees no types), and the `self` receiver. No sqlx executor,
//! and no repository holding a pool, implements `Serialize`; one that does is more likely a
//! value (a type of the caller's own with an executor's name, an id with methods), and calls
//! that differ only in it would share an entry. The generated code calls
//! `(&probe::<Type>()).__cq_executor()` (or `__cq_receiver()`, with `Self`), which autoref
//! specialization resolves to a deprecated method (a warning at the parameter) when its type is
//! `Serialize`.

use std::marker::PhantomData;

use serde::Serialize;

/// What the checks' methods are called on: the type of one parameter.
pub struct Probe<T: ?Sized>(PhantomData<T>);

/// The probe of the type of a parameter left out of the key.
pub fn probe<T: ?Sized>() -> Probe<T> {
    Probe(PhantomData)
}

/// The checks' methods, for `use ...::check::*` in the generated code.
pub mod check {
    use super::{Probe, Serialize};

    /// Chosen for a type that implements `Serialize`.
    pub trait __CqSerializable {
        #[deprecated(
            note = "this parameter is left out of the cache key as an sqlx executor (its type has an \
                    executor's name: `Pool`, `PgConnection`, `Transaction`, ...), but its type implements \
                    `Serialize`, which no sqlx executor does. If it is a value of your own type, calls that \
                    differ only in it share an entry: import the type under another name \
                    (`use crate::Pool as LiquidityPool;`) to make it a key parameter, or `skip` it to leave \
                    it out on purpose"
        )]
        fn __cq_executor(&self) {}

        #[deprecated(note = "the receiver (`self`) is never part of the cache key, but its type implements \
                    `Serialize`: if it is a value (an id, a filter), calls on different values share an \
                    entry. Take the value as a parameter (`async fn load(pool: &PgPool, id: UserId)`), or, \
                    if the receiver really does not tell results apart, `#[allow(deprecated)]` on the method")]
        fn __cq_receiver(&self) {}
    }

    impl<T: ?Sized + Serialize> __CqSerializable for Probe<T> {}

    /// Chosen for every other type (one more `&` away).
    pub trait __CqUnserializable {
        fn __cq_executor(&self) {}
        fn __cq_receiver(&self) {}
    }

    impl<T: ?Sized> __CqUnserializable for &Probe<T> {}
}
