//! `cached-query`: look at and flush the entries that a service's caches keep in Redis, without
//! writing code (docs/observability.md, "The command-line tool").

mod nodes;

use std::process::ExitCode;
use std::time::Duration;

use cached_query::{CacheError, FunctionStats, QueryCache};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use nodes::Nodes;

#[derive(Parser)]
#[command(
    name = "cached-query",
    version,
    about = "List, inspect and invalidate cached-query entries in Redis"
)]
struct Cli {
    /// The Redis server the caches use.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", global = true)]
    redis_url: String,
    /// The nodes of a Redis Cluster the caches use (instead of `--redis-url`): any of them,
    /// comma-separated or one `--cluster` each.
    #[arg(long, value_delimiter = ',', global = true)]
    cluster: Vec<String>,
    /// The caches' prefix (`.prefix(..)` on their builder).
    #[arg(long, default_value = "cq", global = true)]
    prefix: String,
    /// On a cluster, the number of shards the caches cut the prefix into (`.cluster_shards(..)`);
    /// by default the number they recorded in Redis (16 if none).
    #[arg(long, global = true)]
    cluster_shards: Option<u16>,
    /// Print JSON (one object per line) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The entries of the prefix (SCAN, throttled; every master of a cluster), with their size
    /// and remaining TTL.
    Keys {
        /// Only the entries of this function (its key name: `name = ".."`, or its path).
        #[arg(long)]
        function: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One entry taken apart: function, codec, shape, size, age, state, the counters it
    /// depends on and whether it is still valid; its value as JSON where the codec allows.
    Inspect { key: String },
    /// The same O(1) invalidations the library makes (counters, never a sweep of keys).
    Invalidate(Invalidate),
    /// Hits, misses and hit ratio per function over every instance that publishes its counts
    /// (`.publish_stats(interval)`), and the memory the prefix's entries use (sampled).
    Stats,
}

#[derive(Args)]
struct Invalidate {
    #[command(flatten)]
    what: What,
    /// Say what would be invalidated, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct What {
    /// One entry, by its key.
    #[arg(long)]
    key: Option<String>,
    /// Every entry with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Every entry that depends on this table.
    #[arg(long)]
    table: Option<String>,
    /// Every entry of the prefix.
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cached-query: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let nodes = Nodes::connect(&cli.redis_url, &cli.cluster).await?;
    let builder = match cli.cluster.as_slice() {
        [] => QueryCache::builder().redis_url(&cli.redis_url),
        urls => {
            let recorded =
                nodes.get(&QueryCache::layout_key(&cli.prefix)).await?.and_then(|n| n.parse().ok());
            let shards = cli.cluster_shards.or(recorded).unwrap_or(16);
            QueryCache::builder().redis_cluster(urls.to_vec()).cluster_shards(shards)
        }
    };
    let cache = builder
        .prefix(&cli.prefix)
        .timeout(Duration::from_secs(5))
        .client_tracking(false)
        .record_layout(false)
        .build()
        .await
        .map_err(|err| err.to_string())?;
    match &cli.command {
        Command::Keys { function, limit } => keys(cli, &cache, &nodes, function.as_deref(), *limit).await,
        Command::Inspect { key } => inspect(cli, &cache, key).await,
        Command::Invalidate(what) => invalidate(cli, &cache, what).await,
        Command::Stats => stats(cli, &cache, &nodes).await,
    }
}

/// One entry, as `keys` lists it.
#[derive(Serialize)]
struct Listed {
    key: String,
    function: String,
    /// The value's bytes (`STRLEN`).
    size: u64,
    /// What Redis uses for the key and its value (`MEMORY USAGE`).
    memory_bytes: u64,
    /// Remaining, in milliseconds (-1: none).
    ttl_ms: i64,
}

async fn keys(
    cli: &Cli,
    cache: &QueryCache,
    nodes: &Nodes,
    function: Option<&str>,
    limit: usize,
) -> Result<(), String> {
    let mut listed = Vec::new();
    nodes
        .scan(
            &cache.key_pattern(),
            |key| {
                let wanted =
                    cache.entry_function(key).is_some_and(|(name, _)| function.is_none_or(|f| f == name));
                if wanted {
                    listed.push(key.to_owned());
                }
                wanted
            },
            limit,
        )
        .await?;
    let sizes = nodes.sizes(&listed).await?;
    let rows: Vec<Listed> = listed
        .into_iter()
        .zip(sizes)
        .map(|(key, (size, memory_bytes, ttl_ms))| {
            let function = cache.entry_function(&key).map(|(name, _)| name.to_owned()).unwrap_or_default();
            Listed { key, function, size, memory_bytes, ttl_ms }
        })
        .collect();
    if cli.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
        }
    } else {
        println!("{:<10} {:<10} {:>10}  {:<40} KEY", "SIZE", "MEMORY", "TTL_MS", "FUNCTION");
        for row in &rows {
            let (size, memory, ttl) = (row.size, row.memory_bytes, row.ttl_ms);
            println!("{size:<10} {memory:<10} {ttl:>10}  {:<40} {}", row.function, row.key);
        }
        println!("{} entries", rows.len());
    }
    Ok(())
}

#[derive(Serialize)]
struct Inspected {
    key: String,
    function: String,
    version: u32,
    codec: &'static str,
    shape: String,
    size: usize,
    compressed: bool,
    /// Remaining, in milliseconds (`null`: the store does not say).
    ttl_ms: Option<u64>,
    fresh_until_ms: u64,
    /// How long ago it was written.
    age_ms: u64,
    stored_ms: u64,
    query_ms: u32,
    state: &'static str,
    valid: bool,
    counters: Vec<Counter>,
    result_tags: Vec<String>,
    /// The value, where the codec carries field names (MessagePack).
    value: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Counter {
    name: String,
    value: u64,
}

async fn inspect(cli: &Cli, cache: &QueryCache, key: &str) -> Result<(), String> {
    if cache.entry_function(key).is_none() {
        return Err(format!("`{key}` is not an entry of the prefix `{}`", cli.prefix));
    }
    let entry = cache.inspect(key).await.map_err(|err| err.to_string())?;
    let entry = entry.ok_or_else(|| format!("no entry under `{key}`"))?;
    let value = entry.msgpack().and_then(|bytes| rmp_serde::from_slice::<serde_json::Value>(bytes).ok());
    let shown = Inspected {
        key: entry.key.clone(),
        function: entry.function.clone(),
        version: entry.version,
        codec: entry.codec,
        shape: format!("{:016x}", entry.shape),
        size: entry.size,
        compressed: entry.compressed,
        ttl_ms: entry.ttl.map(|ttl| ttl.as_millis() as u64),
        fresh_until_ms: entry.fresh_until_ms,
        age_ms: entry.age.as_millis() as u64,
        stored_ms: entry.stored_ms,
        query_ms: entry.query_ms,
        state: entry.state.as_str(),
        valid: entry.valid,
        counters: entry
            .counters
            .iter()
            .map(|(name, value)| Counter { name: name.clone(), value: *value })
            .collect(),
        result_tags: entry.result_tags.clone(),
        value,
    };
    if cli.json {
        println!("{}", serde_json::to_string(&shown).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("key          {}", shown.key);
    println!("function     {} (version {})", shown.function, shown.version);
    println!("codec        {} (shape {})", shown.codec, shown.shape);
    println!("size         {} bytes{}", shown.size, if shown.compressed { " (compressed)" } else { "" });
    println!("age          {} ms (stored at {} ms)", shown.age_ms, shown.stored_ms);
    println!(
        "state        {} (fresh until {} ms, ttl {:?} ms)",
        shown.state, shown.fresh_until_ms, shown.ttl_ms
    );
    println!("query time   {} ms", shown.query_ms);
    println!("valid        {}", shown.valid);
    for counter in &shown.counters {
        println!("counter      {} = {}", counter.name, counter.value);
    }
    for tag in &shown.result_tags {
        println!("result tag   {tag}");
    }
    match &shown.value {
        Some(value) => {
            println!("value        {}", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?)
        }
        None => println!("value        (postcard: shown by its type only)"),
    }
    Ok(())
}

async fn invalidate(cli: &Cli, cache: &QueryCache, invalidate: &Invalidate) -> Result<(), String> {
    let what = &invalidate.what;
    let (kind, name) = match (&what.key, &what.tag, &what.table) {
        (Some(key), _, _) => ("key", key.as_str()),
        (_, Some(tag), _) => ("tag", tag.as_str()),
        (_, _, Some(table)) => ("table", table.as_str()),
        _ => ("all", cli.prefix.as_str()),
    };
    if kind == "key" && cache.entry_function(name).is_none() {
        return Err(format!("`{name}` is not an entry of the prefix `{}`", cli.prefix));
    }
    if !invalidate.dry_run {
        let done: Result<(), CacheError> = match kind {
            "key" => cache.invalidate(name).await,
            "tag" => cache.invalidate_tags([name]).await,
            "table" => cache.invalidate_tables([name]).await,
            _ => cache.invalidate_all().await,
        };
        done.map_err(|err| err.to_string())?;
    }
    let verb = if invalidate.dry_run { "would invalidate" } else { "invalidated" };
    if cli.json {
        let shown = serde_json::json!({ "kind": kind, "name": name, "dry_run": invalidate.dry_run });
        println!("{shown}");
    } else {
        println!("{verb} {kind} {name}");
    }
    Ok(())
}

/// One function's counts over every publishing instance.
#[derive(Serialize)]
struct Totals {
    function: String,
    instances: usize,
    hits: u64,
    stale: u64,
    misses: u64,
    bypasses: u64,
    errors: u64,
    local_hits: u64,
    hit_ratio: f64,
}

async fn stats(cli: &Cli, cache: &QueryCache, nodes: &Nodes) -> Result<(), String> {
    let pattern = format!("{}:stats:*", pattern_start(&cache.key_pattern()));
    let published: Vec<FunctionStats> = nodes
        .published_stats(&pattern)
        .await?
        .into_iter()
        .filter_map(|(function, counts)| FunctionStats::from_published(&function, &counts))
        .collect();
    let instances = |name: &str| published.iter().filter(|f| f.name == name).count();
    let totals: Vec<Totals> = FunctionStats::add_up(published.iter().cloned())
        .into_iter()
        .map(|f| Totals {
            instances: instances(&f.name),
            hit_ratio: f.hit_ratio(),
            hits: f.hits,
            stale: f.stale,
            misses: f.misses,
            bypasses: f.bypasses,
            errors: f.errors,
            local_hits: f.local_hits,
            function: f.name,
        })
        .collect();
    let memory =
        nodes.sampled_memory(&cache.key_pattern(), |key| cache.entry_function(key).is_some()).await?;
    if cli.json {
        for t in &totals {
            println!("{}", serde_json::to_string(t).map_err(|e| e.to_string())?);
        }
        let memory = serde_json::json!({ "entries": memory.entries, "memory_bytes": memory.bytes, "sampled": memory.sampled });
        println!("{memory}");
    } else {
        println!(
            "{:<40} {:>9} {:>10} {:>8} {:>10} {:>8} {:>9}",
            "FUNCTION", "INSTANCES", "HITS", "STALE", "MISSES", "ERRORS", "HIT_RATIO"
        );
        for t in &totals {
            println!(
                "{:<40} {:>9} {:>10} {:>8} {:>10} {:>8} {:>8.1}%",
                t.function,
                t.instances,
                t.hits,
                t.stale,
                t.misses,
                t.errors,
                100.0 * t.hit_ratio
            );
        }
        println!(
            "{} entries, about {} bytes in Redis (MEMORY USAGE of {} sampled)",
            memory.entries, memory.bytes, memory.sampled
        );
    }
    Ok(())
}

/// The pattern's keyspace, without its trailing `:*`.
fn pattern_start(pattern: &str) -> &str {
    pattern.strip_suffix(":*").unwrap_or(pattern)
}
