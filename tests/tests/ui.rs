//! Compile-time behaviour of `#[cached_query]`: code that must compile (`ui/pass`) and
//! mistakes that must be reported clearly, at the right tokens (`ui/fail`, with the expected
//! messages in the `.stderr` files next to them).
//!
//! After a deliberate change to a message, refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p cached-query-tests --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
