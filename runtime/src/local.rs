//! The in-process tier (`.local_cache(n)`): entries kept in this process in front of Redis,
//! so that a hit costs no network, kept coherent across instances by a Redis pub/sub
//! backplane.
//!
//! - An entry goes into the local tier after a lookup in Redis found it valid and fresh, or
//!   after this instance computed it; it expires there when it turns stale in Redis, never later.
//! - Every invalidation (the counters it increments) and every overwrite (a refresh, a removal,
//!   `QueryCache::set`; not the store of a miss, which replaces nothing another instance may
//!   hold) is published on the prefix's channel, `{prefix}:bus`, by every instance, with a
//!   local tier or without (see `backplane`). Each instance drops the local entries that depend
//!   on those counters, or that key. Its own invalidations apply locally before they return.
//! - A result computed from a read that began before a message was received is not put in the
//!   local tier (an epoch counts the messages), so a slow reader cannot park a stale value there.
//! - Without its subscription (connection lost, not yet subscribed), an instance serves nothing
//!   from its local tier: it clears it and goes to Redis, until it has subscribed again.
//! - A subscription can also go quiet without dropping (its node frozen, or cut off from the
//!   other nodes of a cluster). So each instance publishes a heartbeat on a channel of its own
//!   every `HEARTBEAT_EVERY`, through the cache's connection, and listens for it on its
//!   subscription: two heartbeats in a row that have not come back count as a lost
//!   subscription. Those tasks run on the runtime that built the cache and end with it,
//!   silently: the local tier serves only while its subscription was seen working lately.
//!
//! Pub/sub was chosen over client-side caching of the entries (`CLIENT TRACKING`):
//! invalidations are few and explicit, and one channel per prefix carries them (and
//! overwrites) with no per-key state in Redis, on a server, a cluster or behind a proxy.
//! (Tracking does keep the counters of Redis lookups, see `store::tracking`.)

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moka::Expiry;
use moka::future::Cache;

use crate::backplane::{Backplane, Message};
use crate::clock::now_ms;
use crate::keyspace::Keyspace;
use crate::seeded::Seeded;
use crate::store::Store;

/// How often an instance checks its subscription with a heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// How long the local tier serves after its subscription was last seen working (by the
/// heartbeat's check, every two `HEARTBEAT_EVERY`): the tasks that listen and check run on
/// the runtime that built the cache, and end with it without a word.
const CHECKED_WITHIN_MS: u64 = 8 * HEARTBEAT_EVERY.as_millis() as u64;

/// How long connecting and subscribing to the backplane may take, per node tried.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(2);

/// One local entry: the envelope's bytes, what it depends on, and once decoded (for a type
/// that can be copied, see `lookup::Engine::local_value`) its value, which leaves with it.
#[derive(Clone)]
pub(crate) struct LocalEntry {
    pub bytes: Arc<[u8]>,
    pub fresh_until_ms: u64,
    pub counters: Arc<[String]>,
    pub decoded: Arc<OnceLock<Arc<dyn Any + Send + Sync>>>,
    /// Tells this entry from another of its key in the index (given by `put`).
    pub id: u64,
}

/// The keys of the entries that depend on each counter (the namespace's aside: every entry
/// does), with each entry's id: an invalidation drops those keys, not a scan of every entry.
/// An entry leaves it when it leaves the tier, unless its key holds a newer one by then.
type Index = HashMap<String, HashMap<String, u64, Seeded>, Seeded>;

/// Expires each entry when it turns stale.
struct UntilStale;

impl Expiry<String, LocalEntry> for UntilStale {
    fn expire_after_create(&self, _: &String, entry: &LocalEntry, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(entry.fresh_until_ms.saturating_sub(now_ms())))
    }
}

pub(crate) struct Local {
    entries: Cache<String, LocalEntry>,
    index: Arc<Mutex<Index>>,
    /// The last entry id given.
    ids: AtomicU64,
    /// Subscribed to the backplane: the local tier may serve.
    subscribed: AtomicBool,
    /// Counts the messages applied (see the module docs).
    epoch: AtomicU64,
    /// Tells this instance's messages from the others'.
    instance: u64,
    channel: String,
    /// This instance's heartbeat channel, `{channel}:hb:{instance}`.
    heartbeat_channel: String,
    /// The last heartbeat sent, and the last one heard back.
    heartbeat_sent: AtomicU64,
    heartbeat_heard: AtomicU64,
    /// When the subscription was last seen working (subscribed, or a heartbeat check), in ms
    /// since `born` (a monotonic clock: a wall clock set back would keep it serving).
    checked_ms: AtomicU64,
    born: Instant,
    /// Tells the listener to drop its subscription and subscribe again.
    resubscribe: Arc<tokio::sync::Notify>,
    /// The namespace counter, on which every entry depends.
    ns_key: String,
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Local {
    /// A tier that listens on `backplane`'s channel, ignoring the messages of its instance.
    pub fn new(max_entries: u64, backplane: &Backplane, keyspace: &Keyspace) -> Arc<Local> {
        let index: Arc<Mutex<Index>> = Arc::default();
        let entries = Cache::builder()
            .max_capacity(max_entries)
            .expire_after(UntilStale)
            .eviction_listener({
                let index = index.clone();
                move |key: Arc<String>, entry: LocalEntry, _| unindex(&index, &key, &entry)
            })
            .build();
        let instance = backplane.instance();
        Arc::new(Local {
            entries,
            index,
            ids: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            instance,
            channel: backplane.channel().to_owned(),
            heartbeat_channel: keyspace.heartbeat(instance),
            heartbeat_sent: AtomicU64::new(0),
            heartbeat_heard: AtomicU64::new(0),
            checked_ms: AtomicU64::new(0),
            born: Instant::now(),
            resubscribe: Arc::default(),
            ns_key: keyspace.namespace_counter().to_owned(),
            listener: std::sync::Mutex::new(None),
        })
    }

    /// Subscribes to the backplane through one of `clients`, in the background, for as long as
    /// `local` lives; after a lost connection, resubscribes through the next one.
    pub fn listen(local: &Arc<Local>, clients: Vec<redis::Client>) {
        let (weak, resubscribe) = (Arc::downgrade(local), local.resubscribe.clone());
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            for client in clients.iter().cycle() {
                let Some(local) = weak.upgrade() else { return };
                let channels = [local.channel.clone(), local.heartbeat_channel.clone()];
                drop(local);
                // Bounded: a node that does not answer must not hold up the next one.
                let connect = tokio::time::timeout(SUBSCRIBE_WITHIN, client.get_async_pubsub());
                if let Ok(Ok(mut pubsub)) = connect.await
                    && let Ok(Ok(())) =
                        tokio::time::timeout(SUBSCRIBE_WITHIN, pubsub.subscribe(&channels)).await
                {
                    let Some(local) = weak.upgrade() else { return };
                    // Messages may have been missed while unsubscribed.
                    local.entries.invalidate_all();
                    local.epoch.fetch_add(1, SeqCst);
                    local.checked_ms.store(local.age_ms(), SeqCst);
                    local.subscribed.store(true, SeqCst);
                    drop(local);
                    backoff = Duration::from_millis(50);
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let message = tokio::select! {
                            message = messages.next() => message,
                            () = resubscribe.notified() => None,
                        };
                        let Some(message) = message else { break };
                        let Some(local) = weak.upgrade() else { return };
                        if message.get_channel_name() == local.heartbeat_channel {
                            if let Ok(seq) = rmp_serde::from_slice(message.get_payload_bytes()) {
                                local.heartbeat_heard.fetch_max(seq, SeqCst);
                            }
                        } else if let Some(message) = Backplane::decode(message.get_payload_bytes()) {
                            local.apply(message).await;
                        }
                    }
                }
                let Some(local) = weak.upgrade() else { return };
                local.unsubscribed();
                drop(local);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
        *local.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }

    /// Checks the subscription every `HEARTBEAT_EVERY` with a heartbeat published through
    /// `store` (the cache's connection), for as long as both live.
    pub fn spawn_heartbeat(local: &Arc<Local>, store: Weak<Store>) {
        let local = Arc::downgrade(local);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let (Some(local), Some(store)) = (local.upgrade(), store.upgrade()) else { return };
                let Some((channel, message, seq)) = local.heartbeat() else { continue };
                let publish = store.publish(channel, &message);
                let sent = matches!(tokio::time::timeout(HEARTBEAT_EVERY, publish).await, Ok(Ok(())));
                drop(store);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                local.check_heartbeat(seq, sent);
            }
        });
    }

    /// The next heartbeat to publish (its channel and message), while subscribed.
    fn heartbeat(&self) -> Option<(&str, Vec<u8>, u64)> {
        if !self.subscribed.load(SeqCst) {
            return None;
        }
        let seq = self.heartbeat_sent.fetch_add(1, SeqCst) + 1;
        Some((&self.heartbeat_channel, rmp_serde::to_vec(&seq).expect("a number encodes"), seq))
    }

    /// Called one `HEARTBEAT_EVERY` after heartbeat `seq` was published (`sent` false: it
    /// could not even be published). If it could not be, or the one before it has not come
    /// back either (one late heartbeat is forgiven, for a busy process), the subscription is
    /// treated as lost: bypassed, and subscribed again.
    fn check_heartbeat(&self, seq: u64, sent: bool) {
        if !self.subscribed.load(SeqCst) {
            return;
        }
        if !sent || self.heartbeat_heard.load(SeqCst) + 1 < seq {
            tracing::warn!(channel = %self.channel, "cached_query: backplane heartbeat not heard back; resubscribing");
            self.unsubscribed();
            self.resubscribe.notify_one();
        } else {
            self.checked_ms.store(self.age_ms(), SeqCst);
        }
    }

    fn unsubscribed(&self) {
        if self.subscribed.swap(false, SeqCst) {
            tracing::warn!(channel = %self.channel, "cached_query: backplane lost; local tier bypassed until resubscribed");
        }
        self.entries.invalidate_all();
        self.epoch.fetch_add(1, SeqCst);
    }

    /// Whether the local tier may serve: it is subscribed, and that was checked lately.
    fn serving(&self) -> bool {
        let age = self.age_ms();
        self.subscribed.load(SeqCst) && age.saturating_sub(self.checked_ms.load(SeqCst)) < CHECKED_WITHIN_MS
    }

    fn age_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    pub async fn get(&self, key: &str) -> Option<LocalEntry> {
        if !self.serving() {
            return None;
        }
        self.entries.get(key).await.filter(|e| now_ms() < e.fresh_until_ms)
    }

    /// Keeps an entry, unless a message arrived since `epoch` (its read began before it).
    pub async fn put(&self, epoch: u64, key: &str, mut entry: LocalEntry) {
        if self.serving() && self.epoch() == epoch && now_ms() < entry.fresh_until_ms {
            entry.id = self.ids.fetch_add(1, SeqCst) + 1;
            {
                let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
                for counter in entry.counters.iter().filter(|counter| **counter != self.ns_key) {
                    index.entry(counter.clone()).or_default().insert(key.to_owned(), entry.id);
                }
            }
            self.entries.insert(key.to_owned(), entry).await;
            // A message may have been applied during the insert: undo it then.
            if self.epoch() != epoch {
                self.entries.invalidate(key).await;
            }
        }
    }

    /// Drops what depends on `counters` (this instance's own invalidation, before it returns).
    /// (An entry kept meanwhile is undone by `put`: the epoch moved first.)
    pub async fn invalidated(&self, counters: &[String]) {
        self.epoch.fetch_add(1, SeqCst);
        if counters.contains(&self.ns_key) {
            self.entries.invalidate_all();
            self.index.lock().unwrap_or_else(PoisonError::into_inner).clear();
            return;
        }
        let keys: Vec<String> = {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            counters.iter().filter_map(|counter| index.remove(counter)).flat_map(HashMap::into_keys).collect()
        };
        for key in keys {
            self.entries.invalidate(&key).await;
        }
    }

    async fn apply(&self, message: Message) {
        match message {
            Message::Invalidated { from, counters } if from != self.instance => {
                self.invalidated(&counters).await
            }
            Message::Written { from, key } if from != self.instance => {
                self.epoch.fetch_add(1, SeqCst);
                self.entries.invalidate(&key).await;
            }
            _ => {}
        }
    }
}

/// Forgets that `entry`, gone from the tier, depended on its counters (unless `key` holds a
/// newer entry by then, whose counters are in the index under its own id).
fn unindex(index: &Mutex<Index>, key: &str, entry: &LocalEntry) {
    let mut index = index.lock().unwrap_or_else(PoisonError::into_inner);
    for counter in entry.counters.iter() {
        if let Some(keys) = index.get_mut(counter)
            && keys.get(key) == Some(&entry.id)
        {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(counter);
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(task) = self.listener.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(counters: &[&str], id: u64) -> LocalEntry {
        LocalEntry {
            bytes: Arc::from(&b""[..]),
            fresh_until_ms: 0,
            counters: counters.iter().map(|c| c.to_string()).collect(),
            decoded: Arc::default(),
            id,
        }
    }

    /// An entry that leaves the tier leaves the index, unless its key holds a newer entry
    /// by then (whose id the index has): a late removal must not unindex it.
    #[test]
    fn a_removed_entry_leaves_the_index_unless_its_key_holds_a_newer_one() {
        let index: Mutex<Index> = Mutex::default();
        let add = |counter: &str, key: &str, id| {
            index.lock().unwrap().entry(counter.to_owned()).or_default().insert(key.to_owned(), id);
        };
        add("tag:a", "k", 2);
        add("tag:b", "k", 1);
        unindex(&index, "k", &entry(&["tag:a", "tag:b"], 1));
        let index = index.into_inner().unwrap();
        assert_eq!(index.get("tag:a").and_then(|keys| keys.get("k")), Some(&2), "the newer entry stays");
        assert!(!index.contains_key("tag:b"), "the removed entry's own counter goes, and its empty set");
    }
}
