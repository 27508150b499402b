//! Each command of `cached-query` against a real Redis, on entries the library wrote: what it
//! prints (JSON), what it changes, and its errors (a non-zero exit, never a panic).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cached_query::{QueryCache, cached_query};
use serde::{Deserialize, Serialize};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("cqcli:{test}:{}:{nanos}", std::process::id())
}

/// A value stored as MessagePack (a field skipped when empty, which postcard cannot carry), so
/// that `inspect` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Row {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

#[cached_query(name = "cli_row", ttl = 300, cache = cache, skip(cache, calls), tags = ["row:{id}"])]
async fn row(cache: &QueryCache, calls: &AtomicUsize, id: i64) -> Row {
    calls.fetch_add(1, SeqCst);
    Row { id, note: None }
}

/// An entry that depends on a table (invalidated by `--table`).
#[cached_query(name = "cli_tabled", ttl = 300, tables = ["items"], cache = cache, skip(cache, calls))]
async fn tabled(cache: &QueryCache, calls: &AtomicUsize, id: i64) -> i64 {
    calls.fetch_add(1, SeqCst);
    id
}

/// Postcard-encoded (an `i64`), fresh for a second, then stale for a minute.
#[cached_query(name = "cli_aged", ttl = 1, stale = 60, jitter = 0, cache = cache, skip(cache))]
async fn aged(cache: &QueryCache, id: i64) -> i64 {
    id * 10
}

/// Runs the tool with `args` on the cache's Redis and prefix.
fn cli(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cached-query"))
        .args(["--redis-url", &redis_url(), "--prefix", prefix])
        .args(args)
        .output()
        .expect("run cached-query")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

async fn cache(prefix: &str) -> QueryCache {
    QueryCache::builder()
        .redis_url(redis_url())
        .prefix(prefix)
        .publish_stats(Duration::from_millis(100))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_inspect_invalidate() {
    let (prefix, calls) = (prefix("commands"), AtomicUsize::new(0));
    let cache = cache(&prefix).await;
    let before = unix_ms();
    for id in 1..=3 {
        row(&cache, &calls, id).await;
    }
    let after = unix_ms();
    let key = cache.key("cli_row", 0, &(2i64,)).unwrap();

    let listed = json_lines(&cli(&prefix, &["keys", "--json"]));
    assert_eq!(listed.len(), 3, "{listed:?}");
    let two = listed.iter().find(|entry| entry["key"] == key.as_str()).expect("the entry of 2");
    assert_eq!(two["function"], "cli_row");
    assert!(two["size"].as_u64().unwrap() > 10 && two["ttl_ms"].as_i64().unwrap() > 200_000, "{two}");
    assert!(two["memory_bytes"].as_u64().unwrap() > two["size"].as_u64().unwrap(), "Redis's own cost: {two}");
    assert_eq!(
        json_lines(&cli(&prefix, &["--json", "keys", "--limit", "2"])).len(),
        2,
        "--json before the command"
    );
    assert!(json_lines(&cli(&prefix, &["keys", "--function", "other", "--json"])).is_empty());

    let inspected = &json_lines(&cli(&prefix, &["inspect", &key, "--json"]))[0];
    assert_eq!(inspected["function"], "cli_row");
    assert_eq!(
        (inspected["state"].as_str(), inspected["valid"].as_bool()),
        (Some("fresh"), Some(true)),
        "{inspected}"
    );
    assert_eq!(inspected["value"], serde_json::json!({ "id": 2 }));
    assert_eq!(inspected["codec"], "msgpack");
    assert!(inspected["ttl_ms"].as_u64().unwrap() > 200_000);
    let stored = inspected["stored_ms"].as_u64().unwrap();
    assert!((before..=after).contains(&stored), "{inspected}");
    assert!(inspected["age_ms"].as_u64().unwrap() <= unix_ms() - before, "{inspected}");
    let counters: Vec<&str> =
        inspected["counters"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(counters.iter().any(|name| name.ends_with(":tag:row:2")), "the tag it depends on: {counters:?}");

    // A dry run changes nothing; a tag invalidation makes the entry invalid, and the next call
    // runs the query.
    let dry = json_lines(&cli(&prefix, &["invalidate", "--tag", "row:2", "--dry-run", "--json"]));
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(json_lines(&cli(&prefix, &["inspect", &key, "--json"]))[0]["valid"], true);
    json_lines(&cli(&prefix, &["invalidate", "--tag", "row:2", "--json"]));
    assert_eq!(json_lines(&cli(&prefix, &["inspect", &key, "--json"]))[0]["valid"], false);
    row(&cache, &calls, 2).await;
    row(&cache, &calls, 1).await;
    assert_eq!(calls.load(SeqCst), 4, "only row 2 ran again");
    json_lines(&cli(&prefix, &["invalidate", "--all", "--json"]));
    row(&cache, &calls, 1).await;
    assert_eq!(calls.load(SeqCst), 5, "everything ran again");
    // By table: the entries that depend on it, and no other.
    tabled(&cache, &calls, 1).await;
    let tabled_key = cache.key("cli_tabled", 0, &(1i64,)).unwrap();
    let counters = &json_lines(&cli(&prefix, &["inspect", &tabled_key, "--json"]))[0]["counters"];
    assert!(counters.to_string().contains("items"), "the table it depends on: {counters}");
    json_lines(&cli(&prefix, &["invalidate", "--table", "items", "--json"]));
    assert_eq!(json_lines(&cli(&prefix, &["inspect", &tabled_key, "--json"]))[0]["valid"], false);
    tabled(&cache, &calls, 1).await;
    row(&cache, &calls, 1).await;
    assert_eq!(calls.load(SeqCst), 7, "the table's entry ran again, the row's did not");
    assert!(cli(&prefix, &["invalidate", "--key", &key]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_add_up_every_publishing_instance() {
    let (prefix, calls) = (prefix("stats"), AtomicUsize::new(0));
    let (one, two) = (cache(&prefix).await, cache(&prefix).await);
    row(&one, &calls, 1).await;
    row(&one, &calls, 1).await;
    row(&two, &calls, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = json_lines(&cli(&prefix, &["stats", "--json"]));
        let function = lines.iter().find(|line| line["function"] == "cli_row");
        if let Some(function) = function
            && function["instances"] == 2
            && function["hits"] == 2
        {
            assert_eq!(function["misses"], 1);
            let memory = lines.last().unwrap();
            assert_eq!(memory["entries"], 1, "{memory}");
            assert!(memory["memory_bytes"].as_u64().unwrap() > 0);
            break;
        }
        assert!(Instant::now() < deadline, "stats never added up: {lines:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `inspect` of a postcard entry (its shape and size, no value shown), fresh, then stale: still
/// valid, and kept for its `stale` window.
#[tokio::test]
async fn inspect_tells_a_stale_entry_and_a_value_it_cannot_show() {
    let prefix = prefix("stale");
    let cache = cache(&prefix).await;
    assert_eq!(aged(&cache, 1).await, 10);
    let key = cache.key("cli_aged", 0, &(1i64,)).unwrap();
    let fresh = &json_lines(&cli(&prefix, &["inspect", &key, "--json"]))[0];
    assert_eq!(
        (fresh["state"].as_str(), fresh["codec"].as_str()),
        (Some("fresh"), Some("postcard")),
        "{fresh}"
    );
    assert!(fresh["value"].is_null(), "postcard carries no field names: {fresh}");
    assert_eq!(fresh["shape"].as_str().map(str::len), Some(16), "{fresh}");
    assert!(fresh["size"].as_u64().unwrap() > 0, "{fresh}");
    let human = String::from_utf8(cli(&prefix, &["inspect", &key]).stdout).unwrap();
    assert!(human.contains("(postcard: shown by its type only)"), "{human}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inspected = &json_lines(&cli(&prefix, &["inspect", &key, "--json"]))[0];
        if inspected["state"] == "stale" {
            assert_eq!(inspected["valid"], true, "{inspected}");
            assert!(inspected["ttl_ms"].as_u64().unwrap() > 50_000, "kept for `stale`: {inspected}");
            break;
        }
        assert!(Instant::now() < deadline, "never stale: {inspected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn errors_are_said_with_a_non_zero_exit() {
    let prefix = prefix("errors");
    let failed = |output: Output, says: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(says), "{says}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let bad_url = Command::new(env!("CARGO_BIN_EXE_cached-query"))
        .args(["--redis-url", "not a url", "keys"])
        .output()
        .unwrap();
    failed(bad_url, "invalid Redis URL");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_cached-query"))
        .args(["--redis-url", "redis://127.0.0.1:1", "keys"])
        .output()
        .unwrap();
    failed(unreachable, "cannot reach Redis");
    failed(cli(&prefix, &["inspect", "not-a-key"]), "is not an entry");
    let missing = format!("{prefix}:f:v0:{}", "0".repeat(32));
    failed(cli(&prefix, &["inspect", &missing]), "no entry");
    // Bytes that are no entry of this format, under an entry's name.
    let mut conn =
        redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET").arg(&missing).arg("garbage").query_async(&mut conn).await.unwrap();
    failed(cli(&prefix, &["inspect", &missing]), "not a cached-query entry");
    failed(cli(&prefix, &["invalidate", "--key", "x"]), "is not an entry");
    failed(cli(&prefix, &["invalidate", "--tag", "a", "--all"]), "cannot be used with");
}

/// On a Redis Cluster the tool reads every master (a cluster of the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_read_on_every_master() {
    let cluster = cached_query_tests::cluster::RedisCluster::start(3, 0);
    let urls = cluster.urls();
    let (prefix, calls) = (prefix("cluster"), AtomicUsize::new(0));
    // Not the default number of shards: the tool must read the one the cache recorded, or its
    // invalidations would miss the entries' copies of the counters.
    let cache = QueryCache::builder()
        .redis_cluster(urls.clone())
        .prefix(&prefix)
        .cluster_shards(32)
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    cached_query_tests::matrix::until_reachable(&cache).await;
    let backend = cached_query_tests::matrix::Backend::Cluster(urls.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let layout = QueryCache::layout_key(&prefix);
    while backend.query::<Option<String>>(redis::cmd("GET").arg(&layout)).await.as_deref() != Some("32") {
        assert!(std::time::Instant::now() < deadline, "the cache records its number of shards");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    const ROWS: i64 = 40;
    for id in 1..=ROWS {
        row(&cache, &calls, id).await;
    }
    let on_cluster = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cached-query"));
        command.args(["--prefix", &prefix, "--cluster", &urls.join(",")]).args(args);
        command.output().expect("run cached-query")
    };
    assert_eq!(json_lines(&on_cluster(&["keys", "--json"])).len(), ROWS as usize);
    let key = cache.key("cli_row", 0, &(1i64,)).unwrap();
    assert_eq!(json_lines(&on_cluster(&["--json", "inspect", &key]))[0]["valid"], true);
    json_lines(&on_cluster(&["--json", "invalidate", "--tag", "row:1"]));
    assert_eq!(json_lines(&on_cluster(&["--json", "inspect", &key]))[0]["valid"], false);
    row(&cache, &calls, 1).await;
    assert_eq!(calls.load(SeqCst), ROWS as usize + 1, "the library sees the tool's invalidation");
    // Every shard's copy of the namespace's counter (half of 32 shards' tags are none of the
    // default 16's).
    json_lines(&on_cluster(&["--json", "invalidate", "--all"]));
    for id in 1..=ROWS {
        row(&cache, &calls, id).await;
    }
    assert_eq!(calls.load(SeqCst), 2 * ROWS as usize + 1, "every entry ran again");

    // A prefix no cache uses: the tool (each node given with its own `--cluster`) lists
    // nothing and records no number of shards there, which would bind the caches to come.
    let unused = self::prefix("cluster_unused");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cached-query"));
    command.args(["--prefix", &unused]);
    for url in &urls {
        command.args(["--cluster", url]);
    }
    assert_eq!(json_lines(&command.args(["--json", "keys"]).output().unwrap()).len(), 0);
    let layout = QueryCache::layout_key(&unused);
    assert_eq!(backend.query::<Option<String>>(redis::cmd("GET").arg(&layout)).await, None);
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
