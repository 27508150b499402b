//! The backplane: what every instance of a prefix publishes on `{keyspace}:bus` when it
//! increments invalidation counters or writes an entry, whatever its own configuration. The
//! instances with a local tier (see `local`) listen and drop their copies; an instance without
//! one still publishes, so that its invalidations reach theirs.

use serde::{Deserialize, Serialize};

use crate::keyspace::Keyspace;

/// A message on the backplane (its encoding is shared by every version of the library that
/// listens on the channel: keep it).
#[derive(Serialize, Deserialize)]
pub(crate) enum Message {
    /// These invalidation counters were incremented.
    Invalidated { from: u64, counters: Vec<String> },
    /// This key was written (or deleted).
    Written { from: u64, key: String },
}

/// This instance's side of the backplane: its channel, and the id that tells its messages from
/// the others'.
pub(crate) struct Backplane {
    channel: String,
    instance: u64,
}

impl Backplane {
    /// The backplane of the names of `keyspace`.
    pub fn new(keyspace: &Keyspace) -> Backplane {
        Backplane { channel: keyspace.bus().to_owned(), instance: fastrand::u64(..) }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The message that announces `counters` were incremented.
    pub fn invalidated(&self, counters: &[String]) -> Vec<u8> {
        encode(&Message::Invalidated { from: self.instance, counters: counters.to_vec() })
    }

    /// The message that announces `key` was written or deleted.
    pub fn written(&self, key: &str) -> Vec<u8> {
        encode(&Message::Written { from: self.instance, key: key.to_owned() })
    }

    /// A message another instance published (`None` if it does not decode).
    pub fn decode(payload: &[u8]) -> Option<Message> {
        rmp_serde::from_slice(payload).ok()
    }
}

fn encode(message: &Message) -> Vec<u8> {
    rmp_serde::to_vec(message).expect("a message encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instances of other versions of the library read these bytes.
    #[test]
    fn messages_keep_their_encoding() {
        let backplane = Backplane { channel: "cq:bus".into(), instance: 7 };
        let invalidated = backplane.invalidated(&["cq:ns".into()]);
        assert_eq!(invalidated, b"\x81\xabInvalidated\x92\x07\x91\xa5cq:ns");
        let written = backplane.written("cq:k");
        assert_eq!(written, b"\x81\xa7Written\x92\x07\xa4cq:k");
        assert!(
            matches!(Backplane::decode(&written), Some(Message::Written { from: 7, key }) if key == "cq:k")
        );
        assert!(Backplane::decode(b"garbage").is_none());
    }
}
