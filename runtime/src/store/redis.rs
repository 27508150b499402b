//! The Redis backend: one multiplexed, self-reconnecting connection, to a server
//! (`ConnectionManager`), to a Redis Cluster (the `redis` crate's async cluster client), or to
//! the master that a set of Redis Sentinels names (found again after a failover).
//!
//! On a cluster, an entry, its lease and the counters a lookup of it reads share one slot (its
//! shard's hash tag, see `keyspace`), so that a lookup and a lease are each one request to one
//! node, as on a single server; an invalidation is one pipeline per slot it touches, sent at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::Marks;
use super::slots::SlotTracking;
use super::tracking::{Session, Tracking};
use crate::CacheError;
use crate::settings::Timeouts;
use crate::stamp::{counter_start, parse_counter, parse_counters, stamp};

pub(crate) struct RedisStore {
    /// Clients of the nodes the backplane may subscribe through (one per URL given).
    clients: Vec<redis::Client>,
    /// Replaced when it stops answering (see [`replace`](Self::replace)).
    conn: ArcSwap<Conn>,
    /// Makes the connection (pending: it connects on first use).
    connect: Box<dyn Fn() -> Result<Conn, CacheError> + Send + Sync>,
    /// Lookups with the counters kept in this process (see `tracking`): on a server.
    tracking: Option<Arc<Tracking>>,
    /// The same on a cluster, one tracked connection per master (see `slots`).
    slot_tracking: Option<Arc<SlotTracking>>,
    /// The URL(s) with passwords masked, for `Debug` and logs.
    redacted: String,
}

/// A connection to a server, a cluster or a Sentinel's master; cheap to clone (multiplexed
/// handles).
#[derive(Clone)]
enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let result = s.manager().await?.req_packed_command(cmd).await;
                SentinelMaster::settle(s, &result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let result = s.manager().await?.req_packed_commands(pipeline, offset, count).await;
                SentinelMaster::settle(s, &result);
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(s) => s.db,
        }
    }
}

/// The master a set of Sentinels names: asked for on first use, and again once a request
/// finds it gone or demoted (a connection refused or dropped, or `READONLY`: a replica now).
struct SentinelMaster {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    master: ArcSwapOption<ConnectionManager>,
    connect_timeout: Duration,
    db: i64,
}

impl SentinelMaster {
    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(master) = self.master.load_full() {
            return Ok(ConnectionManager::clone(&master));
        }
        let mut sentinels = self.sentinels.lock().await;
        if let Some(master) = self.master.load_full() {
            return Ok(ConnectionManager::clone(&master)); // found while this one waited
        }
        let client = sentinels.async_get_client().await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        self.master.store(Some(Arc::new(manager.clone())));
        Ok(manager)
    }

    /// Forgets the master if `result` says it is gone or demoted, and asks the Sentinels for
    /// the new one in the background (not only while callers wait, each for one timeout).
    fn settle<T>(this: &Arc<Self>, result: &Result<T, RedisError>) {
        if let Err(err) = result
            && (err.is_io_error()
                || err.is_connection_refusal()
                || err.is_connection_dropped()
                || err.code() == Some("READONLY"))
            && this.master.swap(None).is_some()
        {
            drive(&Conn::Sentinel(this.clone()), this.connect_timeout);
        }
    }
}

/// The shortest and longest wait before a cluster request is retried (see `cluster`).
const RETRY_WAIT_MIN: Duration = Duration::from_millis(1);
const RETRY_WAIT_MAX: Duration = Duration::from_millis(100);
/// How often a cluster request is retried: enough for a slot in migration (`ASK`, `TRYAGAIN`,
/// then `MOVED`), few because each retry to a node that is gone reads the slot map again,
/// holding back every other request meanwhile (the cache answers failures itself: breaker,
/// queue, the query). Measured in docs/internals.md, "Redis Cluster".
const RETRIES: u32 = 5;

/// A server connection made on first use (and again after it breaks), with no response
/// timeout of its own: every request already runs under the cache's timer
/// (`Engine::bounded`), which would fire first; a second timer per request costs hit
/// throughput under load.
fn manager(client: &redis::Client, connect_timeout: Duration) -> Result<ConnectionManager, CacheError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None);
    Ok(ConnectionManager::new_lazy_with_config(client.clone(), config)?)
}

/// Makes `conn`'s connection in the background (a `PING` on it): a connection made on first
/// use is otherwise made only while callers wait for it, each for no longer than the cache's
/// timeout, which may be too short for the several round trips it takes. (A cluster's
/// connection makes itself.) Nothing is spawned outside a runtime.
fn drive(conn: &Conn, connect_timeout: Duration) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let mut conn = conn.clone();
        // A few attempts; callers go on with the half-made connection after that, and a
        // server that never answers does not keep the task.
        let within = connect_timeout.saturating_mul(4);
        runtime.spawn(async move {
            let ping = redis::cmd("PING");
            let _ = tokio::time::timeout(within, ping.query_async::<()>(&mut conn)).await;
        });
    }
}

fn invalid_url(redacted: &str, e: redis::RedisError) -> CacheError {
    CacheError::Config(format!("invalid Redis URL `{redacted}`: {e}"))
}

/// Certificates for `rediss://` connections besides the system's roots (feature `tls`).
#[derive(Clone, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct Tls {
    /// A PEM root certificate to trust (a private CA).
    pub root: Option<Vec<u8>>,
    /// A PEM client certificate and its key, for servers that ask for one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    #[cfg(feature = "tls")]
    fn given(&self) -> Option<redis::TlsCertificates> {
        (self.root.is_some() || self.client.is_some()).then(|| redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.root.clone(),
        })
    }
}

/// A client of the server at `url`, with `tls`'s certificates for a `rediss://` URL.
fn client(url: &str, tls: &Tls) -> Result<redis::Client, CacheError> {
    let redacted = redact(url);
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(CacheError::Config(format!(
            "`{redacted}` asks for TLS: enable the feature `tls` of cached-query"
        )));
    }
    #[cfg(feature = "tls")]
    if let Some(certificates) = tls.given() {
        return redis::Client::build_with_tls(url, certificates).map_err(|e| invalid_url(&redacted, e));
    }
    let _ = tls;
    redis::Client::open(url).map_err(|e| invalid_url(&redacted, e))
}

impl RedisStore {
    /// Validates `url` and prepares a connection that is made on first use, so that a Redis
    /// that is down when the program starts only degrades the cache until it comes up.
    /// With `track`, lookups keep the counters in this process (see `tracking`).
    pub fn new(url: &str, timeouts: Timeouts, track: bool, tls: &Tls) -> Result<Self, CacheError> {
        let redacted = redact(url);
        let client = client(url, tls)?;
        let tracking = match track {
            true => Some(Tracking::new(&client, timeouts.connect).map_err(|e| invalid_url(&redacted, e))?),
            false => None,
        };
        let connect = {
            let client = client.clone();
            Box::new(move || {
                let conn = Conn::Server(manager(&client, timeouts.connect)?);
                drive(&conn, timeouts.connect);
                Ok(conn)
            })
        };
        let conn = ArcSwap::from_pointee(connect()?);
        Ok(RedisStore { clients: vec![client], conn, connect, tracking, slot_tracking: None, redacted })
    }

    /// Like [`new`](Self::new), for a cluster reached through any of `urls` (its slot map is
    /// discovered from them, and followed through failovers and resharding).
    pub fn cluster(urls: &[String], timeouts: Timeouts, track: bool, tls: &Tls) -> Result<Self, CacheError> {
        let redacted = format!("cluster[{}]", urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", "));
        if urls.is_empty() {
            return Err(CacheError::Config("a Redis Cluster needs at least one node URL".into()));
        }
        let clients = urls.iter().map(|url| client(url, tls)).collect::<Result<Vec<_>, _>>()?;
        // A redirection that must wait (`TRYAGAIN` while a slot migrates, `CLUSTERDOWN` during a
        // failover) is retried within milliseconds: the crate's default first wait (1.28 s)
        // outlasts any caller's timeout, so an invalidation during a reshard would fail.
        let cluster = ClusterClient::builder(urls.iter().map(String::as_str))
            .min_retry_wait(RETRY_WAIT_MIN.as_millis() as u64)
            .max_retry_wait(RETRY_WAIT_MAX.as_millis() as u64)
            .retry_wait_formula(5, 2)
            .retries(RETRIES);
        #[cfg(feature = "tls")]
        let cluster = match tls.given() {
            Some(certificates) => cluster.certs(certificates),
            None => cluster,
        };
        let cluster = cluster.build().map_err(|e| invalid_url(&redacted, e))?;
        let config = ClusterConfig::new()
            .set_connection_timeout(timeouts.cluster_connect)
            .set_response_timeout(timeouts.request);
        let connect = Box::new(move || {
            Ok(Conn::Cluster(cluster.get_pending_async_connection_with_config(config.clone())))
        });
        let conn = ArcSwap::from_pointee(connect()?);
        let slot_tracking = match track {
            true => Some(SlotTracking::new(clients[0].get_connection_info().clone(), timeouts.connect)),
            false => None,
        };
        Ok(RedisStore { clients, conn, connect, tracking: None, slot_tracking, redacted })
    }

    /// Like [`new`](Self::new), for the master that the Sentinels at `urls` name `master`
    /// (the URLs' user and password are used for the sentinels and the master alike). No
    /// client tracking: its connection would have to follow the master too.
    pub fn sentinel(
        master: &str,
        urls: &[String],
        timeouts: Timeouts,
        tls: &Tls,
    ) -> Result<Self, CacheError> {
        let redacted =
            format!("sentinel[{master} @ {}]", urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", "));
        let first = urls
            .first()
            .ok_or_else(|| CacheError::Config("Redis Sentinel needs at least one sentinel URL".into()))?;
        let info = client(first, tls)?.get_connection_info().clone();
        let node =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(info.redis_settings().clone());
        #[cfg(feature = "tls")]
        let node = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => {
                node.set_tls_mode(if *insecure { redis::TlsMode::Insecure } else { redis::TlsMode::Secure })
            }
            _ => node,
        };
        let (urls, master, db) = (urls.to_vec(), master.to_owned(), info.redis_settings().db());
        let build = move || {
            SentinelClient::build(
                urls.clone(),
                master.clone(),
                Some(node.clone()),
                SentinelServerType::Master,
            )
        };
        build().map_err(|e| invalid_url(&redacted, e))?;
        let connect = Box::new(move || {
            let sentinels = build().map_err(|e| CacheError::Config(e.to_string()))?;
            let master = SentinelMaster {
                sentinels: tokio::sync::Mutex::new(sentinels),
                master: ArcSwapOption::empty(),
                connect_timeout: timeouts.connect,
                db,
            };
            let conn = Conn::Sentinel(Arc::new(master));
            drive(&conn, timeouts.connect);
            Ok(conn)
        });
        let conn = ArcSwap::from_pointee(connect()?);
        Ok(RedisStore { clients: Vec::new(), conn, connect, tracking: None, slot_tracking: None, redacted })
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(**self.conn.load(), Conn::Cluster(_))
    }

    /// Gives up the connection (a cluster's: to all its nodes), to be made again on next use:
    /// for when requests stop being answered and nothing says the connection is broken (a
    /// stuck proxy, a server gone without a reset: TCP can take many minutes to notice).
    pub fn replace(&self) {
        match (self.connect)() {
            Ok(conn) => self.conn.store(Arc::new(conn)),
            Err(err) => tracing::warn!(%err, "cached_query: could not replace the Redis connection"),
        }
        if let Some(tracking) = &self.tracking {
            tracking.give_up();
        }
        if let Some(tracking) = &self.slot_tracking {
            tracking.give_up();
        }
    }

    /// A handle on the connection (cheap: a multiplexed connection's handles share it).
    fn conn(&self) -> Conn {
        Conn::clone(&self.conn.load())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn();
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    pub async fn fetch(&self, key: &str, counters: &[&str]) -> Result<(Option<Vec<u8>>, u64), CacheError> {
        if let Some(session) = self.tracking.as_ref().and_then(Tracking::session) {
            return session.fetch(key, counters).await;
        }
        if let Some(session) = self.slot_session(key) {
            match session.fetch(key, counters).await {
                Ok(found) => return Ok(found),
                // Redirected (or the node failed): read through the cluster connection, which
                // follows redirections, and read the slot map again.
                Err(_) => self.refresh_slots(true),
            }
        }
        // One `MGET` of the entry and its counters: one round trip, and one command for Redis
        // (a pipelined GET + MGET is two, which costs Redis throughput under load).
        // Not a snapshot across keys, and it need not be: see `lookup` for why reading the
        // counters with the entry is enough.
        let mut conn = self.conn();
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(key).arg(counters).query_async(&mut conn).await?;
        let mut values = values.into_iter();
        let entry = values.next().flatten();
        let values = parse_counters(values.as_slice())?;
        Ok((entry, stamp(&values)))
    }

    /// Increments the counters (and publishes `announce` on its channel, in the same
    /// pipeline, so that no invalidation reaches Redis without its announcement).
    pub async fn increment(
        &self,
        counters: &[String],
        marks: Marks<'_>,
        keep: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        // The tag epoch moves on: Redis's clock in microseconds, or one more if it is not ahead
        // (so that it never goes back, even if the clock does or the epoch expired); the marks
        // take it. First, so that a read that sees an increment sees its mark (see `marked`).
        const MARK: &str = "local t = redis.call('TIME') \
             local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
             local epoch = tonumber(redis.call('GET', KEYS[1]) or '0') \
             if epoch < now then epoch = now else epoch = epoch + 1 end \
             epoch = string.format('%.0f', epoch) \
             for i = 1, #KEYS do redis.call('SET', KEYS[i], epoch, 'PX', ARGV[1]) end \
             return epoch";
        let mut mark = redis::pipe();
        if !marks.names.is_empty() {
            let keys = 1 + marks.names.len();
            mark.cmd("EVAL").arg(MARK).arg(keys).arg(marks.epoch).arg(marks.names);
            mark.arg(keep.as_millis() as u64).ignore();
        }
        let increments = |pipe: &mut Pipeline, counters: &mut dyn Iterator<Item = &String>| {
            for key in counters {
                // A counter that does not exist (never incremented, expired, evicted) starts at
                // a random value (see `counter_start`).
                pipe.cmd("SET").arg(key).arg(counter_start()).arg("NX").ignore();
                pipe.incr(key, 1).ignore().pexpire(key, keep.as_millis() as i64).ignore();
            }
        };
        let mut conn = self.conn();
        if !self.is_cluster() {
            increments(&mut mark, &mut counters.iter());
            if let Some((channel, message)) = announce {
                mark.publish(channel, message).ignore();
            }
            mark.exec_async(&mut conn).await?;
            return Ok(());
        }
        // A pipeline goes to one slot: the marks first (a read that sees an increment must
        // see its mark), then one pipeline per slot, at once.
        if !marks.names.is_empty() {
            mark.exec_async(&mut conn).await?;
        }
        let mut slots: HashMap<Slot, Pipeline> = HashMap::new();
        for counter in counters {
            let pipe = slots.entry(Slot::for_key(counter)).or_insert_with(redis::pipe);
            increments(pipe, &mut std::iter::once(counter));
        }
        Self::on_slots(conn, slots, announce).await
    }

    /// Sends each slot's pipeline (at once, on a cluster connection), and `announce` with the
    /// one of its channel's slot (the cluster client routes `PUBLISH` by its channel), or on
    /// its own beside them.
    async fn on_slots(
        conn: Conn,
        mut slots: HashMap<Slot, Pipeline>,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        if let Some((channel, message)) = announce {
            slots
                .entry(Slot::for_key(channel))
                .or_insert_with(redis::pipe)
                .publish(channel, message)
                .ignore();
        }
        let sent = slots.values().map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.exec_async(&mut conn).await }
        });
        futures_util::future::try_join_all(sent).await?;
        Ok(())
    }

    pub async fn tag_epoch(&self, epoch: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn();
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(epoch).query_async(&mut conn).await?;
        value.as_deref().map_or(Ok(0), parse_counter)
    }

    pub async fn counter_values(&self, counters: &[&str]) -> Result<Vec<u64>, CacheError> {
        let mut conn = self.conn();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(counters).query_async(&mut conn).await?;
        parse_counters(&values)
    }

    pub async fn claim(&self, key: &str, value: &str) -> Result<String, CacheError> {
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(key).arg(value).arg("NX").ignore().cmd("GET").arg(key);
        let (held,): (String,) = pipe.query_async(&mut conn).await?;
        Ok(held)
    }

    pub async fn remaining(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let mut conn = self.conn();
        let ms: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// One round trip: the hash's old fields go, the new ones come, with their expiry.
    pub async fn replace_hash(
        &self,
        key: &str,
        fields: &[(String, String)],
        keep: Duration,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(key).ignore();
        if !fields.is_empty() {
            pipe.hset_multiple(key, fields).ignore().pexpire(key, keep.as_millis() as i64).ignore();
        }
        let mut conn = self.conn();
        pipe.exec_async(&mut conn).await?;
        Ok(())
    }

    /// One `MGET` of the counters and the marks.
    pub async fn marked(&self, counters: &[&str], marks: &[String]) -> Result<(u64, u64), CacheError> {
        let mut conn = self.conn();
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(counters).arg(marks).query_async(&mut conn).await?;
        let values = parse_counters(&values)?;
        let (counters, marks) = values.split_at(counters.len());
        Ok((stamp(counters), marks.iter().copied().max().unwrap_or(0)))
    }

    pub async fn stamp_of(&self, counters: &[&str]) -> Result<u64, CacheError> {
        if let Some(session) = self.tracking.as_ref().and_then(Tracking::session) {
            return session.stamp_of(counters).await;
        }
        if let Some(session) = counters.first().and_then(|first| self.slot_session(first)) {
            match session.stamp_of(counters).await {
                Ok(stamp) => return Ok(stamp),
                Err(_) => self.refresh_slots(true),
            }
        }
        Ok(self.marked(counters, &[]).await?.0)
    }

    /// On a cluster with tracking, the tracked session of the master of `key`'s slot, if the
    /// slot map is known and the session is up (see `slots`).
    fn slot_session(&self, key: &str) -> Option<Arc<Session>> {
        let tracking = self.slot_tracking.as_ref()?;
        let session = tracking.session(key);
        if session.is_none() {
            self.refresh_slots(false);
        }
        session
    }

    /// Reads the slot map again in the background, if it is due (see `SlotTracking`).
    fn refresh_slots(&self, failed: bool) {
        let Some(tracking) = &self.slot_tracking else { return };
        if !tracking.refresh_due(failed) {
            return;
        }
        let (tracking, mut conn) = (tracking.clone(), self.conn());
        tokio::spawn(async move {
            let reply = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await;
            tracking.install(reply);
        });
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Applies a change feed's `version` of one `shard` of a table to its `counter`: increments
    /// it only if `seen` does not hold that version yet, so that the instances that hear one
    /// change make one increment between them. `true` if it incremented.
    pub async fn follow(
        &self,
        counter: &str,
        seen: &str,
        shard: i64,
        version: i64,
        keep: Duration,
    ) -> Result<bool, CacheError> {
        static FOLLOW: LazyLock<redis::Script> = LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 0 end \
                 redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) \
                 redis.call('PEXPIRE', KEYS[2], ARGV[3]) \
                 if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[4]) end \
                 redis.call('INCR', KEYS[1]) \
                 redis.call('PEXPIRE', KEYS[1], ARGV[3]) \
                 return 1",
            )
        });
        let mut conn = self.conn();
        let mut call = FOLLOW.key(counter);
        call.key(seen).arg(shard).arg(version).arg(keep.as_millis() as u64).arg(counter_start());
        Ok(call.invoke_async::<i64>(&mut conn).await? == 1)
    }

    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn();
        redis::cmd("PUBLISH").arg(channel).arg(message).exec_async(&mut conn).await?;
        Ok(())
    }

    /// Clients for connections of their own (the backplane's subscription): on a cluster, one
    /// per node URL given, since a `PUBLISH` on any node reaches the subscribers of all.
    pub fn clients(&self) -> &[redis::Client] {
        &self.clients
    }

    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        let millis = ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("PX").arg(millis);
        self.announced(key, set, announce).await
    }

    pub async fn delete(&self, key: &str, announce: Option<(&str, &[u8])>) -> Result<(), CacheError> {
        let mut del = redis::cmd("DEL");
        del.arg(key);
        self.announced(key, del, announce).await
    }

    /// Runs `cmd` on `key`, and publishes `announce` in the same pipeline (one round trip; on
    /// a cluster, beside it unless they share a slot).
    async fn announced(
        &self,
        key: &str,
        cmd: Cmd,
        announce: Option<(&str, &[u8])>,
    ) -> Result<(), CacheError> {
        let mut conn = self.conn();
        match announce {
            None => cmd.exec_async(&mut conn).await?,
            Some(_) if self.is_cluster() => {
                let mut pipe = redis::pipe();
                pipe.add_command(cmd).ignore();
                return Self::on_slots(conn, HashMap::from([(Slot::for_key(key), pipe)]), announce).await;
            }
            Some((channel, message)) => {
                let mut pipe = redis::pipe();
                pipe.add_command(cmd).ignore().publish(channel, message).ignore();
                pipe.exec_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    pub async fn try_lock(&self, key: &str, token: &str, lease: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn renew(&self, key: &str, held: &str, now: &str, lease: Duration) -> Result<bool, CacheError> {
        static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
            redis::Script::new(
                "local v = redis.call('GET', KEYS[1]) \
                 if v and v ~= ARGV[1] and v ~= ARGV[2] then return 0 end \
                 redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
                 return 1",
            )
        });
        let mut conn = self.conn();
        let mut call = RENEW.key(key);
        call.arg(held).arg(now).arg(lease.as_millis().max(1) as u64);
        Ok(call.invoke_async::<i64>(&mut conn).await? == 1)
    }

    pub async fn remember(&self, key: &str, members: &[String], keep: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(key).arg(members).ignore();
        pipe.cmd("PEXPIRE").arg(key).arg(keep.as_millis() as u64).ignore();
        pipe.exec_async(&mut conn).await?;
        Ok(())
    }

    pub async fn members(&self, key: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn();
        Ok(redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await?)
    }

    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
        });
        let mut conn = self.conn();
        UNLOCK.key(key).arg(token).invoke_async::<i64>(&mut conn).await?;
        Ok(())
    }

    /// Redis's eviction policy, if it may evict keys: `maxmemory` set and a policy other than
    /// `noeviction` (on a cluster, as the node asked says).
    pub async fn eviction_policy(&self) -> Result<Option<String>, CacheError> {
        let mut conn = self.conn();
        let config: std::collections::HashMap<String, String> =
            redis::cmd("CONFIG").arg("GET").arg("maxmemory*").query_async(&mut conn).await?;
        let limited = config.get("maxmemory").is_some_and(|max| max != "0");
        Ok(config.get("maxmemory-policy").filter(|policy| limited && *policy != "noeviction").cloned())
    }

    /// Whether the node holding `key` answers (`EXISTS`: on a cluster, `PING` would go to
    /// every master, and fail while any one of them is down).
    pub async fn ping(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn();
        redis::cmd("EXISTS").arg(key).exec_async(&mut conn).await?;
        Ok(())
    }

    pub fn describe(&self) -> &str {
        &self.redacted
    }
}

/// `url` with the password (or a lone user-info part) and the `pass` / `password` query
/// parameters (Unix-socket URLs) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<unparsable url>".to_owned();
    };
    let rest = mask_query(&url[scheme_end..]);
    // The user-info ends at the last `@`: a password may hold a `/` or a `?`, unencoded.
    let Some(at) = rest.rfind('@') else {
        return format!("{}{rest}", &url[..scheme_end]);
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

/// `rest` (a URL after its scheme) with the values of its `pass` and `password` parameters
/// replaced by `***`.
fn mask_query(rest: &str) -> String {
    let Some((path, query)) = rest.split_once('?') else { return rest.to_owned() };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name @ ("pass" | "password"), _)) => format!("{name}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[cfg(not(feature = "tls"))]
    #[test]
    fn a_tls_url_needs_the_feature() {
        use super::{Tls, client};
        let err = client("rediss://me:s3cret@host:6380", &Tls::default()).err().unwrap();
        assert!(err.to_string().contains("feature `tls`") && !err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://me:s3cret@host"), "redis://me:***@host");
        assert_eq!(redact("rediss://s3cret@host"), "rediss://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://a:p@ss@host"), "redis://a:***@host");
        assert_eq!(redact("s3cret"), "<unparsable url>");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact("unix:///r.sock?password=s3cret&user=me"), "unix:///r.sock?password=***&user=me");
        assert_eq!(redact("redis+unix:///r.sock?pass=s3@cret"), "redis+unix:///r.sock?pass=***");
        // Unencoded `/` or `?` in a password (a malformed URL, reported by `build()`).
        assert_eq!(redact("redis://me:s3/cret@host"), "redis://me:***@host");
        assert_eq!(redact("redis://me:s3?cret@host/0"), "redis://me:***@host/0");
    }
}
