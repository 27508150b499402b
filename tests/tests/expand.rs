//! What `cargo expand` shows users: snapshots of three representative expansions.
//!
//! Needs `cargo-expand` (`.ci/run` installs it). After a deliberate change to the generated
//! code, refresh the snapshots with `MACROTEST=overwrite cargo test -p cached-query-tests
//! --test expand` and review the diff.

#[test]
fn expansions_match_the_snapshots() {
    if std::env::var_os("MACROTEST").is_some_and(|v| v == "overwrite") {
        macrotest::expand("expand/*.rs");
    } else {
        // Never writes a snapshot: a missing or different one fails.
        macrotest::expand_without_refresh("expand/*.rs");
    }
}
