//! The ghost set of S3-FIFO: which keys left the small queue unread not
//! long ago, so that when one of them is written again it goes straight to
//! the main queue. A key that comes back after a short absence has shown
//! it is reused; one that never does (a scan, a one-hit wonder) is
//! forgotten as newer ghosts take its slot.
//!
//! It holds one byte per slot, a fingerprint of the key's hash, in a
//! direct-mapped table as long as the shard's index has buckets: about as
//! many ghosts as the shard holds items, at a fifth of the index's memory.
//! A newer ghost overwrites an older one in its slot (so the set forgets
//! in rough age order), and a fingerprint may match a key never evicted
//! (1 in 255): the price is that key's admission to the main queue, never
//! a wrong reply.

/// Fingerprints of recently evicted keys' hashes.
#[derive(Debug, Default)]
pub struct Ghost {
    slots: Vec<u8>,
}

impl Ghost {
    /// An empty set allocates nothing.
    pub const fn new() -> Ghost {
        Ghost { slots: Vec::new() }
    }

    /// Slots for a shard whose index has `buckets` buckets (a power of
    /// two, or 0). Growing keeps the ghosts: a slot's bits are the low bits
    /// of its new slot's, so each lands in every new slot it could be in
    /// (the index grows as a store first fills, right when the first
    /// ghosts are made). Shrinking forgets them.
    pub fn resize(&mut self, buckets: usize) {
        let old = self.slots.len();
        if buckets == old {
            return;
        }
        let mut slots = vec![0; buckets];
        if old != 0 && buckets > old {
            for (i, s) in slots.iter_mut().enumerate() {
                *s = self.slots[i & (old - 1)];
            }
        }
        self.slots = slots;
    }

    /// Where a hash lives and its fingerprint, never 0 (an empty slot).
    /// The shard was picked by the top bits and the index bucket by the
    /// bits `table_hash` rotates, so both come from bits in between.
    fn place(&self, hash: u64) -> Option<(usize, u8)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let slot = (hash >> 20) as usize & mask;
        let tag = ((hash >> 12) as u8).max(1);
        Some((slot, tag))
    }

    /// Remembers a key evicted unread from the small queue.
    pub fn insert(&mut self, hash: u64) {
        if let Some((slot, tag)) = self.place(hash) {
            self.slots[slot] = tag;
        }
    }

    /// Whether the key was evicted lately; forgets it if so, since it is
    /// about to be stored again.
    pub fn take(&mut self, hash: u64) -> bool {
        match self.place(hash) {
            Some((slot, tag)) if self.slots[slot] == tag => {
                self.slots[slot] = 0;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_taken_or_overwritten() {
        let mut g = Ghost::new();
        assert!(!g.take(42), "an empty set has no room and no ghosts");
        g.insert(42);
        assert!(!g.take(42));
        g.resize(1024);
        let a = 0x0123_4567_89ab_cdef_u64;
        g.insert(a);
        assert!(g.take(a));
        assert!(!g.take(a), "taking forgets");
        // Same slot, another fingerprint: the newer ghost wins.
        let b = a ^ (1 << 12);
        g.insert(a);
        g.insert(b);
        assert!(!g.take(a));
        assert!(g.take(b));
        g.insert(a);
        g.resize(4096);
        assert!(g.take(a), "growing keeps ghosts");
        g.insert(a);
        g.resize(64);
        assert!(!g.take(a), "shrinking forgets");
    }

    #[test]
    fn few_false_ghosts() {
        let mut g = Ghost::new();
        g.resize(1 << 12);
        let mut rng = crate::test_rng::Rng::new(7);
        for _ in 0..(1 << 12) {
            g.insert(rng.next_u64());
        }
        let false_hits = (0..100_000).filter(|_| g.take(rng.next_u64())).count();
        // A full table: about 1 in 255 strangers matches.
        assert!(
            false_hits < 1_000,
            "{false_hits} of 100000 strangers matched"
        );
        assert!(false_hits > 0, "a full table matches some strangers");
    }
}
