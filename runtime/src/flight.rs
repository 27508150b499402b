//! Single-flight: while one caller (the leader) looks a key up, and runs the query on a miss,
//! the other callers of that key in this process wait for its result instead of doing the
//! same work.
//!
//! The leader publishes the entry's bytes; each waiter decodes its own copy, so the cached type
//! needs no `Clone`. When the leader has nothing to give (its query failed, or its future was
//! dropped), the waiters are told so and go round again: one of them becomes the next leader.
//! Entries leave the map when their leader finishes or is dropped, so it never outgrows the
//! number of keys in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What a leader publishes.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// Still working.
    Running,
    /// The entry's bytes (an envelope, see `codec`).
    Done(Arc<[u8]>),
    /// Nothing to share: ask again.
    Failed,
}

type Map = Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>;

/// The keys in flight in one cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: Map,
}

/// The role of a caller for one key.
pub(crate) enum Role {
    Leader(Leader),
    Waiter(watch::Receiver<Outcome>),
}

impl Flights {
    /// Joins the flight for `key`, leading it if there is none.
    pub fn join(&self, key: &str) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(key) {
            return Role::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(Outcome::Running);
        map.insert(key.to_owned(), rx.clone());
        Role::Leader(Leader { map: self.map.clone(), key: key.to_owned(), tx: Some(tx), rx })
    }

    /// Keys in flight.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The caller that does the work for a key; publishes `Failed` if dropped unfinished.
pub(crate) struct Leader {
    map: Map,
    key: String,
    tx: Option<watch::Sender<Outcome>>,
    /// Identifies this leader's channel in the map.
    rx: watch::Receiver<Outcome>,
}

impl Leader {
    /// Hands `bytes` (or nothing) to the waiters and leaves the flight.
    pub fn finish(mut self, bytes: Option<Arc<[u8]>>) {
        self.publish(bytes.map_or(Outcome::Failed, Outcome::Done));
    }

    fn publish(&mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            // Remove the entry only if it is still this leader's.
            if map.get(&self.key).is_some_and(|rx| rx.same_channel(&self.rx)) {
                map.remove(&self.key);
            }
            drop(map);
            tx.send_replace(outcome);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.publish(Outcome::Failed);
    }
}

/// Waits for the leader: its bytes, or `None` when the caller must ask again.
pub(crate) async fn wait(mut rx: watch::Receiver<Outcome>) -> Option<Arc<[u8]>> {
    let outcome = rx.wait_for(|o| !matches!(o, Outcome::Running)).await;
    match outcome.as_deref() {
        Ok(Outcome::Done(bytes)) => Some(bytes.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_leaders_bytes_and_the_map_empties() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller leads") };
        let Role::Waiter(rx) = flights.join("k") else { panic!("second caller waits") };
        let waiter = tokio::spawn(wait(rx));
        leader.finish(Some(Arc::from(&b"v"[..])));
        assert_eq!(waiter.await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let Role::Waiter(rx) = flights.join("k") else { panic!("second caller waits") };
        drop(leader);
        assert_eq!(wait(rx).await, None);
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), Role::Leader(_)), "the next caller leads");
    }
}
