//! Shared helpers of the integration tests: real Postgres and Redis, and private
//! `redis-server` processes for tests that break Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cached_query::{QueryCache, QueryCacheBuilder, cached_query};
use sqlx::PgPool;

pub mod cluster;
pub mod logs;
pub mod matrix;
pub mod proxy;

/// `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test` (MariaDB or MySQL).
pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A pool on the test database.
pub async fn pg() -> PgPool {
    PgPool::connect(&database_url()).await.expect("Postgres at DATABASE_URL")
}

/// A fresh `users(id bigint, name text)` table named `table`, with rows `(1, "alice")`,
/// `(2, "bob")`, `(3, "carol")`. Each test uses its own table, so tests run in parallel.
pub async fn users_table(pool: &PgPool, table: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO {table} VALUES (1, 'alice'), (2, 'bob'), (3, 'carol');"
    )))
    .execute(pool)
    .await
    .expect("create test table");
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("cqtest:{test}:{}:{nanos}:{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A cache on the shared Redis, under a prefix of its own.
pub async fn redis_cache(test: &str) -> QueryCache {
    redis_cache_at(&redis_url(), test).await
}

/// A cache on the shared Redis, under a prefix of its own, built `with` more settings.
pub async fn redis_cache_with(
    test: &str,
    with: impl FnOnce(QueryCacheBuilder) -> QueryCacheBuilder,
) -> QueryCache {
    with(QueryCache::builder().redis_url(redis_url()).prefix(unique_prefix(test)))
        .build()
        .await
        .expect("build cache")
}

/// A cache on the Redis at `url`, under a prefix of its own.
pub async fn redis_cache_at(url: &str, test: &str) -> QueryCache {
    QueryCache::builder()
        .redis_url(url)
        .prefix(unique_prefix(test))
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("build cache")
}

/// A plain connection to the Redis at `url`, to look at what the cache stored.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.expect("Redis reachable")
}

/// The keys under `prefix` in the Redis at `url` (`SCAN`, in steps: the shared Redis may hold
/// many other keys, and one `KEYS` over all of them could outlast a reply's timeout).
pub async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis_conn(url).await;
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(found);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// A port on loopback that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of the test's own on a free loopback port, killed on drop. Tests that
/// stop, pause or restart Redis use one of these, never the shared server.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    /// More `redis-server` arguments (a cluster node's).
    args: Vec<String>,
    /// The server's program: `redis-server`, or another that speaks its protocol (Valkey).
    program: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn start() -> RedisServer {
        let mut server = RedisServer::unstarted();
        server.restart();
        server
    }

    /// A server on a free port that is not running yet (`restart` starts it).
    pub fn unstarted() -> RedisServer {
        RedisServer::unstarted_with(free_port(), Vec::new())
    }

    /// A server on `port`, started with `args` besides the usual ones, not running yet.
    pub fn unstarted_with(port: u16, args: Vec<String>) -> RedisServer {
        RedisServer { port, password: None, args, program: "redis-server".to_owned(), child: None }
    }

    /// Starts `program` (a server compatible with `redis-server`'s arguments, such as
    /// `valkey-server`) on a free port, and waits until it answers.
    pub fn start_program(program: &str) -> RedisServer {
        let mut server = RedisServer::unstarted();
        server.program = program.to_owned();
        server.restart();
        server
    }

    /// Starts a server that requires `password` (its `url()` carries it).
    pub fn start_with_password(password: &str) -> RedisServer {
        let mut server = RedisServer::unstarted();
        server.password = Some(password.to_owned());
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Starts (again) on the same port, and waits until it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", &std::env::temp_dir().to_string_lossy()])
            .args(self.password.iter().flat_map(|p| ["--requirepass", p.as_str()]))
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("{} on PATH: {err}", self.program));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (`SIGSTOP`): its port stays open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen server (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether this server's process is running (not stopped; it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs `args` with `redis-cli` against this server; its output.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let output =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// How many times `command` ran on this server so far (`INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.command(&["INFO", "commandstats"]).expect("INFO answers");
        let line = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    fn answers(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Postgres server of the test's own (initdb'd in a temporary directory, run as the
/// `postgres` system user, trust authentication) on a free loopback port, stopped on drop.
/// Tests that restart Postgres use one of these, never the shared server.
pub struct PostgresServer {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    settings: Vec<String>,
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        PostgresServer::start_with(&[])
    }

    /// A server started with `settings` (`"wal_level=logical"`, as `postgres -c` takes them).
    pub fn start_with(settings: &[&str]) -> PostgresServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres's binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("cq-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = settings.iter().map(|setting| format!(" -c {setting}")).collect();
        let server = PostgresServer { port: free_port(), dir, bin, settings };
        run(&["chown", "-R", "postgres", &server.dir.to_string_lossy()]);
        let initdb = server.bin.join("initdb").to_string_lossy().into_owned();
        run(&[
            "runuser",
            "-u",
            "postgres",
            "--",
            &initdb,
            "-D",
            &server.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// `pg_ctl -D <data> <args>`, as the `postgres` system user (Postgres refuses root).
    fn pg_ctl(&self, args: &[&str]) -> bool {
        let (pg_ctl, data) = (self.bin.join("pg_ctl").to_string_lossy().into_owned(), self.data());
        let mut all = vec!["runuser", "-u", "postgres", "--", pg_ctl.as_str(), "-D", data.as_str()];
        all.extend_from_slice(args);
        Command::new(all[0])
            .args(&all[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server (fast shutdown: sessions are ended) and starts it again on its port.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
        let mut options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        options.extend(self.settings.iter().map(String::as_str));
        let log = self.dir.join("log").to_string_lossy().into_owned();
        assert!(
            self.pg_ctl(&["-w", "-o", &options, "-l", &log, "start"]),
            "Postgres did not start: see {log}"
        );
    }
}

/// Runs a command, which must succeed.
fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "{args:?} failed");
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `sql` through `psql`, the Postgres command-line client, against `url`: another
/// program's write, which must succeed.
pub async fn psql(url: &str, sql: &str) {
    let output = tokio::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .await
        .expect("psql on PATH");
    assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
}

/// Calls `f` until it gives `expected`, within 10 s; how long that took.
pub async fn until_eq<T, F>(expected: T, mut f: impl FnMut() -> F) -> Duration
where
    T: PartialEq + std::fmt::Debug,
    F: std::future::Future<Output = T>,
{
    let started = Instant::now();
    loop {
        let got = f().await;
        if got == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {got:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Calls `f` until `cache` has counted a hit, within 10 s (a watched feed serves once it is up).
pub async fn until_a_hit<F, T, E>(cache: &QueryCache, mut f: impl FnMut() -> F)
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let started = Instant::now();
    while cache.stats().hits == 0 {
        f().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "never a hit: {:?}", cache.stats());
    }
}

/// The name of user `id` in the `users_table` named `table`, cached with the tag `user:{id}`;
/// counts its executions in `calls`.
#[cached_query(ttl = 60, cache = cache, skip(cache, table, calls), tags = ["users", "user:{id}"])]
pub async fn user_name(
    cache: &QueryCache,
    pool: &PgPool,
    table: &str,
    calls: &AtomicUsize,
    id: i64,
) -> Result<String, sqlx::Error> {
    calls.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_one(pool)
        .await
}
