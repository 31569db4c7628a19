//! The items a connection's unsent replies still hold: memcached keeps a
//! reference to every item a `get`/`gets`/`gat`/`mg` hit returns until the
//! reply is written, and an `incr`/`decr`/`ma` of such an item cannot
//! rewrite it in place. It stores the result as a new item of the exact
//! length instead of padding it with spaces.
//!
//! The session clears this set whenever it hands its replies to the driver,
//! so it holds at most the hits of one batch of requests. A hit is kept as
//! the key's hash and the CAS of the version read, because a store in
//! between makes a new item that nothing holds yet; a hash collision only
//! changes the padding of one counter.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;

/// More hits than this in one batch are not remembered: a multi-get of
/// thousands of keys followed by an `incr` of one of them is rare enough to
/// pad as if nothing held it.
const MAX_HELD: usize = 256;

/// The items hit since the replies were last handed out.
#[derive(Debug, Default)]
pub struct Held {
    /// (key hash, CAS of the version read), oldest first.
    hits: Vec<(u64, u64)>,
    /// The request running is the last of its batch: nothing can ask
    /// about its hits before its replies are sent.
    last: bool,
}

impl Held {
    /// Whether the request about to run is the last one of the batch, so
    /// that its hits need not be remembered (hashing each key cost a get
    /// about 45 instructions, for nothing when one request is in flight).
    pub fn set_last(&mut self, last: bool) {
        self.last = last;
    }

    /// A hit on version `cas` of `key` whose reply is still unsent.
    pub fn hit(&mut self, key: &[u8], cas: u64) {
        if !self.last && self.hits.len() < MAX_HELD {
            self.hits.push((hash(key), cas));
        }
    }

    /// The CAS of the latest version of `key` an unsent reply holds. Only
    /// that one can still be the current item: a later version would have
    /// been made after it.
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        if self.hits.is_empty() {
            return None;
        }
        let h = hash(key);
        self.hits
            .iter()
            .rev()
            .find(|(k, _)| *k == h)
            .map(|&(_, cas)| cas)
    }

    /// `key` was stored or deleted: whatever replaces it is a new item
    /// (a client-chosen CAS may even repeat the old one's).
    pub fn forget(&mut self, key: &[u8]) {
        if !self.hits.is_empty() {
            let h = hash(key);
            self.hits.retain(|(k, _)| *k != h);
        }
    }

    /// The replies were handed out: nothing is held any more.
    pub fn clear(&mut self) {
        self.hits.clear();
    }
}

fn hash(key: &[u8]) -> u64 {
    FixedState::with_seed(0).hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_latest_version_hit_since_the_last_clear() {
        let mut held = Held::default();
        assert_eq!(held.version(b"k"), None);
        held.hit(b"k", 5);
        held.hit(b"j", 6);
        held.hit(b"k", 7);
        assert_eq!((held.version(b"k"), held.version(b"x")), (Some(7), None));
        held.forget(b"k");
        assert_eq!((held.version(b"k"), held.version(b"j")), (None, Some(6)));
        held.clear();
        assert_eq!(held.version(b"k"), None);
        for i in 0..MAX_HELD + 10 {
            held.hit(format!("k{i}").as_bytes(), 1);
        }
        assert_eq!(held.hits.len(), MAX_HELD);
    }

    #[test]
    fn the_last_request_of_a_batch_holds_nothing() {
        let mut held = Held::default();
        held.set_last(true);
        held.hit(b"k", 5);
        held.set_last(false);
        assert_eq!(held.version(b"k"), None);
        held.hit(b"k", 6);
        assert_eq!(held.version(b"k"), Some(6));
    }
}
