//! A store whose replies a test scripts, for deterministic unit tests of the decision logic
//! (who leads, who waits, what is served, when the breaker opens): every operation asks the
//! script what to do (answer, fail, answer late, never answer, or change the store first),
//! then runs on an in-process store. Test builds only.

use std::sync::Mutex;
use std::time::Duration;

use super::memory::MemoryStore;
use crate::CacheError;

/// An operation the engine asked of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get(String),
    Fetch(String),
    Set(String),
    Delete(String),
    Increment(Vec<String>),
    TagEpoch,
    Marked,
    StampOf,
    TryLock(String),
    Renew(String),
    Unlock(String),
    Remember(String),
    Members(String),
    Publish,
    Ping,
}

/// What the store does with an operation.
pub(crate) enum Reply {
    /// Runs it.
    Answer,
    /// Fails as an unreachable store does.
    Fail,
    /// Runs it after this long (tokio's clock: paused in tests, so exact and instant).
    Late(Duration),
    /// Never answers (the engine's timeout ends it).
    Hang,
    /// Changes the store (another process's write), then runs it.
    After(Box<dyn FnOnce(&MemoryStore) + Send>),
}

type Script = Box<dyn FnMut(&Op) -> Reply + Send>;

pub(crate) struct ScriptedStore {
    memory: MemoryStore,
    script: Mutex<Script>,
    /// Every operation asked, in order.
    log: Mutex<Vec<Op>>,
}

impl ScriptedStore {
    /// A store that answers everything until `script` is set.
    pub fn new() -> Self {
        ScriptedStore {
            memory: MemoryStore::new(1000),
            script: Mutex::new(Box::new(|_| Reply::Answer)),
            log: Mutex::default(),
        }
    }

    /// From now on, `script` decides each operation's reply.
    pub fn script(&self, script: impl FnMut(&Op) -> Reply + Send + 'static) {
        *self.script.lock().unwrap() = Box::new(script);
    }

    /// The operations asked so far.
    pub fn log(&self) -> Vec<Op> {
        self.log.lock().unwrap().clone()
    }

    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// Asks the script about `op` and carries its reply out, up to running the operation.
    pub async fn ask(&self, op: Op) -> Result<(), CacheError> {
        let reply = (self.script.lock().unwrap())(&op);
        self.log.lock().unwrap().push(op);
        match reply {
            Reply::Answer => Ok(()),
            Reply::Fail => Err(CacheError::Unavailable),
            Reply::Late(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Reply::Hang => std::future::pending().await,
            Reply::After(change) => {
                change(&self.memory);
                Ok(())
            }
        }
    }
}
