//! Single-flight: while one caller (the leader) looks a key up, and runs the query on a miss,
//! the other callers of that key in this process wait for its result instead of doing the
//! same work.
//!
//! The leader publishes the entry's bytes; each waiter decodes its own copy, so the cached type
//! needs no `Clone`. A failed query's error is handed to the waiters when its type can be
//! copied (see `outcome::ErrorShare`): one run per failure. Otherwise, when the leader has
//! nothing to give (its query failed, or its future was dropped), the waiters are told which
//! and go round again: one of them becomes the next leader (after repeated failures they stop
//! waiting, see `lookup`).
//!
//! Every join takes a ticket, in order: a leader whose ticket is later than a waiter's first
//! one read the counters after that waiter's call began (see `lookup` for what that allows).
//! Entries leave the map when their leader finishes or is dropped, so it never outgrows the
//! number of keys in flight.
//!
//! Ended flights are counted per slot of keys (`ended`): a caller that finds the count of its
//! key's slot unchanged since before its read knows that no flight of its key ended meanwhile,
//! so that its read is as recent as a second one would be.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::outcome::SharedError;

/// What a leader publishes.
#[derive(Clone)]
pub(crate) enum LeaderState {
    /// Still working.
    Running,
    /// The entry's bytes (an envelope, see `codec`), and the leader's ticket.
    Done(Arc<[u8]>, u64),
    /// No value to share (the query failed, or its result is not cacheable): its error, if it
    /// can be shared, with what the query was computed under (see `LeaderError`); otherwise
    /// ask again.
    Failed(Option<LeaderError>),
    /// The leader's future was dropped: ask again.
    Abandoned,
}

/// A failed query's error, with the counters' stamp its leader read before the query (if it
/// could) and its ticket: a waiter takes it only on the terms it takes a value (see `lookup`).
#[derive(Clone)]
pub(crate) struct LeaderError {
    pub error: SharedError,
    pub stamp: Option<u64>,
    pub ticket: u64,
}

/// What a waiter gets.
pub(crate) enum Shared {
    /// The entry's bytes and the leader's ticket.
    Done(Arc<[u8]>, u64),
    /// The leader's query failed: with its error, if it can be shared.
    Failed(Option<LeaderError>),
    /// The leader's future was dropped.
    Abandoned,
}

type Map = Arc<Mutex<InFlight>>;

/// The flights under way, by key, and the last ticket given.
#[derive(Default)]
struct InFlight {
    keys: HashMap<String, watch::Receiver<LeaderState>>,
    tickets: u64,
}

/// Slots of keys whose ended flights are counted together.
const SLOTS: usize = 64;

/// The flights ended so far, per slot of keys.
type Ended = Arc<[AtomicU64]>;

/// The keys in flight in one cache.
pub(crate) struct Flights {
    map: Map,
    ended: Ended,
}

impl Default for Flights {
    fn default() -> Self {
        Flights { map: Map::default(), ended: (0..SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

/// The slot of `key`: its last two characters, the end of the hash of an entry's key.
fn slot(key: &str) -> usize {
    let tail = key.as_bytes().iter().rev().take(2).fold(0usize, |acc, b| acc * 31 + usize::from(*b));
    tail % SLOTS
}

/// The role of a caller for one key.
pub(crate) enum Role {
    Leader(Leader),
    Waiter(watch::Receiver<LeaderState>),
}

impl Flights {
    /// Joins the flight for `key`, leading it if there is none; with this join's ticket.
    pub fn join(&self, key: &str) -> (Role, u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.tickets += 1;
        let ticket = map.tickets;
        if let Some(rx) = map.keys.get(key) {
            return (Role::Waiter(rx.clone()), ticket);
        }
        let (tx, rx) = watch::channel(LeaderState::Running);
        map.keys.insert(key.to_owned(), rx.clone());
        let (map, ended) = (self.map.clone(), self.ended.clone());
        let leader = Leader { map, ended, key: key.to_owned(), ticket, tx: Some(tx), rx };
        (Role::Leader(leader), ticket)
    }

    /// The flights ended so far in `key`'s slot (see the module docs).
    pub fn ended(&self, key: &str) -> u64 {
        self.ended[slot(key)].load(SeqCst)
    }

    /// Keys in flight.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).keys.len()
    }
}

/// The caller that does the work for a key; publishes `Failed` if dropped unfinished.
pub(crate) struct Leader {
    map: Map,
    ended: Ended,
    key: String,
    ticket: u64,
    tx: Option<watch::Sender<LeaderState>>,
    /// Identifies this leader's channel in the map.
    rx: watch::Receiver<LeaderState>,
}

impl Leader {
    /// Hands `bytes` (or nothing) to the waiters and leaves the flight.
    pub fn finish(self, bytes: Option<Arc<[u8]>>) {
        self.finish_or_fail(bytes, None, None);
    }

    /// Hands `bytes` to the waiters, or else `error` (computed under `stamp`), and leaves the
    /// flight.
    pub fn finish_or_fail(
        mut self,
        bytes: Option<Arc<[u8]>>,
        error: Option<SharedError>,
        stamp: Option<u64>,
    ) {
        let ticket = self.ticket;
        let error = error.map(|error| LeaderError { error, stamp, ticket });
        self.publish(bytes.map_or(LeaderState::Failed(error), |bytes| LeaderState::Done(bytes, ticket)));
    }

    fn publish(&mut self, outcome: LeaderState) {
        if let Some(tx) = self.tx.take() {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            // Remove the entry only if it is still this leader's.
            if map.keys.get(&self.key).is_some_and(|rx| rx.same_channel(&self.rx)) {
                map.keys.remove(&self.key);
            }
            drop(map);
            self.ended[slot(&self.key)].fetch_add(1, SeqCst);
            tx.send_replace(outcome);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.publish(LeaderState::Abandoned);
    }
}

/// Waits for the leader's outcome.
pub(crate) async fn wait(mut rx: watch::Receiver<LeaderState>) -> Shared {
    let outcome = rx.wait_for(|o| !matches!(o, LeaderState::Running)).await;
    match outcome.as_deref() {
        Ok(LeaderState::Done(bytes, ticket)) => Shared::Done(bytes.clone(), *ticket),
        Ok(LeaderState::Failed(error)) => Shared::Failed(error.clone()),
        _ => Shared::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_leaders_bytes_and_the_map_empties() {
        let flights = Flights::default();
        let (Role::Leader(leader), 1) = flights.join("k") else { panic!("first caller leads") };
        let (Role::Waiter(rx), 2) = flights.join("k") else { panic!("second caller waits") };
        let waiter = tokio::spawn(wait(rx));
        leader.finish(Some(Arc::from(&b"v"[..])));
        assert!(matches!(waiter.await.unwrap(), Shared::Done(bytes, 1) if *bytes == *b"v"));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn ended_flights_are_counted_in_their_keys_slot() {
        let flights = Flights::default();
        let (a, b) = ("p:f:v0:00ab", "p:f:v0:00cd");
        let before = (flights.ended(a), flights.ended(b));
        let (Role::Leader(leader), _) = flights.join(a) else { panic!("leads") };
        assert_eq!(flights.ended(a), before.0, "running");
        leader.finish(None);
        assert_eq!(flights.ended(a), before.0 + 1);
        if slot(a) != slot(b) {
            assert_eq!(flights.ended(b), before.1, "another slot");
        }
        drop(flights.join(a));
        assert_eq!(flights.ended(a), before.0 + 2, "a dropped leader ends its flight too");
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let (Role::Waiter(rx), _) = flights.join("k") else { panic!("second caller waits") };
        drop(leader);
        assert!(matches!(wait(rx).await, Shared::Abandoned));
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), (Role::Leader(_), 3)), "the next caller leads");
    }
}
