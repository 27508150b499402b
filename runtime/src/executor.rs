//! A check on the parameters that `#[cached_query]` leaves out of the key as sqlx executors
//! because of their type's name (`Pool`, `PgConnection`, `Transaction`, ...: a proc-macro
//! sees no types). No sqlx executor implements `Serialize`; a parameter whose type does is
//! more likely a value of the caller's own type of that name, which the key needs: calls that
//! differ only in it would share an entry. The generated code calls
//! `(&probe(&param)).__cq_executor()`, which autoref specialization resolves to a deprecated
//! method (a warning at the parameter) when its type is `Serialize`.

use std::marker::PhantomData;

use serde::Serialize;

/// What the check's methods are called on: the type of one parameter.
pub struct Probe<T: ?Sized>(PhantomData<T>);

/// The probe of a parameter taken for an executor.
pub fn probe<T: ?Sized>(_: &T) -> Probe<T> {
    Probe(PhantomData)
}

/// The check's methods, for `use ...::check::*` in the generated code.
pub mod check {
    use super::{Probe, Serialize};

    /// Chosen for a type that implements `Serialize`: no executor does.
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
    }

    impl<T: ?Sized + Serialize> __CqSerializable for Probe<T> {}

    /// Chosen for every other type (one more `&` away).
    pub trait __CqExecutor {
        fn __cq_executor(&self) {}
    }

    impl<T: ?Sized> __CqExecutor for &Probe<T> {}
}
