//! What freshness from the database costs and how fresh it is (`tables = auto` + a watched
//! change feed): the write throughput of a table with each kind of trigger and without, under
//! concurrent single-row UPDATEs (pgbench-like); the propagation delay from a commit on another
//! connection to the first call that sees it (Postgres listening, Postgres polled, MariaDB
//! polled); and a hit of a function with a table dependency next to one with a tag. Recorded
//! in `docs/benchmarks.md`. `MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`).
//! `POSTGRES_WAL_URL`, a Postgres with `wal_level = logical`: the write-ahead log feed's write
//! throughput (no watcher, one, two) and delay there (skipped when unset; `feed wal`: only
//! that).
//!
//! ```sh
//! cargo run --release -p cached-query-examples --bin feed
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cached_query::{QueryCache, cached_query};
use sqlx::{Connection, MySqlConnection, MySqlPool, PgConnection, PgPool};

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn by_table(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n FROM bench_feed WHERE id = $1").bind(id).fetch_one(pool).await
}

#[cached_query(ttl = 300, tables = auto, cache = cache, skip(cache))]
async fn by_table_mysql(cache: &QueryCache, pool: &MySqlPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n FROM bench_feed WHERE id = ?").bind(id).fetch_one(pool).await
}

#[cached_query(ttl = 300, tags = ["bench_feed"], cache = cache, skip(cache))]
async fn by_tag(cache: &QueryCache, pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT n FROM bench_feed WHERE id = $1").bind(id).fetch_one(pool).await
}

const ROWS: i64 = 10_000;

/// How `cached_query::mysql` names a table's triggers.
fn xxhash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

/// UPDATEs per second of `tasks` connections for `secs`, each on a random row.
async fn write_rate(database_url: &str, tasks: usize, secs: f64) -> f64 {
    if database_url.starts_with("mysql") {
        return mysql_write_rate(database_url, tasks, secs).await;
    }
    let (done, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (done, stop, url) = (done.clone(), stop.clone(), database_url.to_owned());
        handles.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            while !stop.load(Relaxed) {
                sqlx::query("UPDATE bench_feed SET n = n + 1 WHERE id = $1")
                    .bind(fastrand::i64(1..=ROWS))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                done.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Relaxed) as f64 / secs
}

async fn mysql_write_rate(url: &str, tasks: usize, secs: f64) -> f64 {
    let (done, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (done, stop, url) = (done.clone(), stop.clone(), url.to_owned());
        handles.push(tokio::spawn(async move {
            let mut conn = MySqlConnection::connect(&url).await.unwrap();
            while !stop.load(Relaxed) {
                sqlx::query("UPDATE bench_feed SET n = n + 1 WHERE id = ?")
                    .bind(fastrand::i64(1..=ROWS))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                done.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Relaxed) as f64 / secs
}

/// The other program that writes: one connection, held across writes.
enum Writer {
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

impl Writer {
    async fn connect(url: &str) -> Arc<tokio::sync::Mutex<Writer>> {
        let writer = match url.starts_with("mysql") {
            true => Writer::MySql(MySqlConnection::connect(url).await.unwrap()),
            false => Writer::Postgres(PgConnection::connect(url).await.unwrap()),
        };
        Arc::new(tokio::sync::Mutex::new(writer))
    }

    /// One UPDATE of row `id` (delays are timed from its commit).
    async fn update(writer: Arc<tokio::sync::Mutex<Writer>>, id: i64) {
        match &mut *writer.lock().await {
            Writer::Postgres(conn) => {
                let sql = "UPDATE bench_feed SET n = n + 1 WHERE id = $1";
                sqlx::query(sql).bind(id).execute(conn).await.unwrap();
            }
            Writer::MySql(conn) => {
                let sql = "UPDATE bench_feed SET n = n + 1 WHERE id = ?";
                sqlx::query(sql).bind(id).execute(conn).await.unwrap();
            }
        };
    }
}

/// Calls `call` until `cache` serves a hit (its change feed is up), for at most 10 s.
async fn serving<F: Future<Output = Result<i64, sqlx::Error>>>(
    cache: &QueryCache,
    mut call: impl FnMut() -> F,
) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    while cache.stats().hits == 0 && started.elapsed() < Duration::from_secs(10) {
        call().await?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Calls `call` until it changes after `write`, 300 times: the delays, commit to seen.
async fn delays<W, C, WF, CF>(mut write: W, mut call: C) -> (Duration, Duration)
where
    W: FnMut(i64) -> WF,
    WF: Future<Output = ()>,
    C: FnMut(i64) -> CF,
    CF: Future<Output = i64>,
{
    let mut delays = Vec::new();
    for round in 1..=300 {
        let id = 1 + round % 50;
        let before = call(id).await;
        call(id).await;
        write(id).await;
        let committed = Instant::now();
        while call(id).await == before {}
        delays.push(committed.elapsed());
    }
    percentiles(delays)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if std::env::args().nth(1).as_deref() == Some("wal") {
        let url = std::env::var("POSTGRES_WAL_URL").map_err(|_| "`wal` needs POSTGRES_WAL_URL")?;
        return wal(&url, &redis_url, 8, 4.0).await;
    }
    let pool = PgPool::connect(&database_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS bench_feed;
         CREATE TABLE bench_feed (id bigint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO bench_feed SELECT g, 0 FROM generate_series(1, {ROWS}) g;"
    )))
    .execute(&pool)
    .await?;

    // Write throughput: no trigger, the trigger with NOTIFY, the polled one (no NOTIFY).
    let (tasks, secs) = (8, 4.0);
    let (mut none, mut notify, mut polled) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        sqlx::raw_sql("DROP TRIGGER IF EXISTS cached_query_changed ON bench_feed").execute(&pool).await?;
        none.push(write_rate(&database_url, tasks, secs).await);
        cached_query::postgres::install(&pool, &["bench_feed"]).await?;
        notify.push(write_rate(&database_url, tasks, secs).await);
        cached_query::postgres::install_polled(&pool, &["bench_feed"]).await?;
        polled.push(write_rate(&database_url, tasks, secs).await);
    }
    let none = median(none);
    println!(
        "| UPDATEs/s, {tasks} connections, random rows (median of 3 × {secs} s) | UPDATEs/s | vs no trigger |"
    );
    println!("|---|---:|---:|");
    println!("| Postgres, no trigger | {none:.0} | 1.00 |");
    for (name, rates) in
        [("Postgres, trigger with NOTIFY", notify), ("Postgres, polled trigger (no NOTIFY)", polled)]
    {
        let rate = median(rates);
        println!("| {name} | {rate:.0} | {:.2} |", rate / none);
    }

    // MariaDB: without and with the row-level triggers.
    let mysql_url = std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let mysql = MySqlPool::connect(&mysql_url).await?;
    for statement in [
        "DROP TABLE IF EXISTS bench_feed".to_owned(),
        "CREATE TABLE bench_feed (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)".to_owned(),
        format!("INSERT INTO bench_feed SELECT seq, 0 FROM seq_1_to_{ROWS}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mysql).await?;
    }
    let (mut none, mut with) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for letter in ['i', 'u', 'd'] {
            let digest = xxhash(b"bench_feed");
            let drop = format!("DROP TRIGGER IF EXISTS `cached_query_{letter}_{digest:016x}`");
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mysql).await?;
        }
        none.push(write_rate(&mysql_url, tasks, secs).await);
        cached_query::mysql::install(&mysql, &["bench_feed"]).await?;
        with.push(write_rate(&mysql_url, tasks, secs).await);
    }
    let (none, with) = (median(none), median(with));
    println!("| MariaDB, no trigger | {none:.0} | 1.00 |");
    println!("| MariaDB, row-level triggers | {with:.0} | {:.2} |", with / none);

    // Propagation delay, commit to seen, on another instance's cache.
    cached_query::postgres::install(&pool, &["bench_feed"]).await?;
    println!("\n| propagation delay, commit to seen (300 writes) | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, poll) in [("Postgres, LISTEN/NOTIFY", None), ("Postgres, polled every 100 ms", Some(100))] {
        let prefix = format!("cq-bench-feed:{}:{name}", std::process::id());
        let mut builder =
            QueryCache::builder().redis_url(&redis_url).prefix(&prefix).watch_postgres(pool.clone());
        if let Some(ms) = poll {
            builder = builder.change_poll_interval(Duration::from_millis(ms));
        }
        let cache = builder.build().await?;
        serving(&cache, || by_table(&cache, &pool, 1)).await?;
        let writer = Writer::connect(&database_url).await;
        let (p50, p99) = delays(
            |id| Writer::update(writer.clone(), id),
            |id| {
                let (cache, pool) = (cache.clone(), pool.clone());
                async move { by_table(&cache, &pool, id).await.unwrap() }
            },
        )
        .await;
        println!("| {name} | {p50:.1?} | {p99:.1?} |");
    }
    let cache = QueryCache::builder()
        .redis_url(&redis_url)
        .prefix(format!("cq-bench-feed:{}:mysql", std::process::id()))
        .default_schema("test")
        .watch_mysql(mysql.clone())
        .build()
        .await?;
    serving(&cache, || by_table_mysql(&cache, &mysql, 1)).await?;
    let writer = Writer::connect(&mysql_url).await;
    let (p50, p99) = delays(
        |id| Writer::update(writer.clone(), id),
        |id| {
            let (cache, mysql) = (cache.clone(), mysql.clone());
            async move { by_table_mysql(&cache, &mysql, id).await.unwrap() }
        },
    )
    .await;
    println!("| MariaDB, polled every 100 ms | {p50:.1?} | {p99:.1?} |");
    sqlx::raw_sql("DROP TABLE bench_feed").execute(&mysql).await?;

    let prefix = format!("cq-bench-feed:{}", std::process::id());
    let cache = QueryCache::builder()
        .redis_url(&redis_url)
        .prefix(&prefix)
        .watch_postgres(pool.clone())
        .build()
        .await?;
    serving(&cache, || by_table(&cache, &pool, 1)).await?;

    // A hit with a table dependency against one with a tag (the same counters' work).
    by_tag(&cache, &pool, 1).await?;
    let mut rows = Vec::new();
    for (name, table) in
        [("tables = auto", true), ("tags = [...]", false), ("tables = auto", true), ("tags = [...]", false)]
    {
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let started = Instant::now();
            if table {
                by_table(&cache, &pool, 1).await?
            } else {
                by_tag(&cache, &pool, 1).await?
            };
            samples.push(started.elapsed());
        }
        rows.push((name, percentiles(samples)));
    }
    println!("\n| hit, 5,000 sequential calls (two rounds each, in turn) | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in rows {
        println!("| {name} | {p50:.1?} | {p99:.1?} |");
    }
    sqlx::raw_sql("DROP TABLE bench_feed").execute(&pool).await?;

    match std::env::var("POSTGRES_WAL_URL") {
        Ok(url) => wal(&url, &redis_url, tasks, secs).await?,
        Err(_) => {
            println!("\n(POSTGRES_WAL_URL unset: a server with wal_level = logical measures the log's feed)")
        }
    }
    Ok(())
}

/// The write-ahead log's feed, on a server with `wal_level = logical`: write throughput with no
/// cache watching, one, and two instances on one prefix (one of them reads the log), at
/// `tasks` connections and at one; and the propagation delay.
async fn wal(url: &str, redis_url: &str, tasks: usize, secs: f64) -> Result<(), Box<dyn std::error::Error>> {
    let pool = PgPool::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS bench_feed;
         CREATE TABLE bench_feed (id bigint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO bench_feed SELECT g, 0 FROM generate_series(1, {ROWS}) g;"
    )))
    .execute(&pool)
    .await?;
    let watching = |n: usize, every: u64| {
        let pool = pool.clone();
        async move {
            let mut caches = Vec::new();
            for _ in 0..n {
                let cache = QueryCache::builder()
                    .redis_url(redis_url)
                    .prefix(format!("cq-bench-feed:{}:wal:{every}", std::process::id()))
                    .change_poll_interval(Duration::from_millis(every))
                    .watch_postgres_wal(pool.clone())
                    .build()
                    .await?;
                serving(&cache, || by_table(&cache, &pool, 1)).await?;
                caches.push(cache);
            }
            Ok::<_, Box<dyn std::error::Error>>(caches)
        }
    };
    println!("\n| UPDATEs/s, wal_level = logical (median of 3 × {secs} s) | UPDATEs/s | vs no feed |");
    println!("|---|---:|---:|");
    for connections in [tasks, 1] {
        let (mut none, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            none.push(write_rate(url, connections, secs).await);
            let caches = watching(1, 250).await?;
            one.push(write_rate(url, connections, secs).await);
            drop(caches);
            // The reader's slot goes with its connection, once its task sees the cache gone.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let caches = watching(2, 250).await?;
            two.push(write_rate(url, connections, secs).await);
            drop(caches);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let none = median(none);
        println!("| {connections} connection(s), no cache watching | {none:.0} | 1.00 |");
        for (name, rates) in [("one instance watching the log", one), ("two instances, one prefix", two)] {
            let rate = median(rates);
            println!("| {connections} connection(s), {name} | {rate:.0} | {:.2} |", rate / none);
        }
    }
    println!("\n| propagation delay, write-ahead log (300 writes) | p50 | p99 |");
    println!("|---|---:|---:|");
    for every in [250, 100, 10] {
        let caches = watching(1, every).await?;
        let cache = caches[0].clone();
        let writer = Writer::connect(url).await;
        let (p50, p99) = delays(
            |id| Writer::update(writer.clone(), id),
            |id| {
                let (cache, pool) = (cache.clone(), pool.clone());
                async move { by_table(&cache, &pool, id).await.unwrap() }
            },
        )
        .await;
        println!("| read every {every} ms | {p50:.1?} | {p99:.1?} |");
    }
    sqlx::raw_sql("DROP TABLE bench_feed").execute(&pool).await?;
    Ok(())
}
