//! The ghost set of S3-FIFO: which keys were evicted not long ago, unread
//! from the small queue or after being read from the main queue, so that
//! when one of them is written again it goes straight to the main queue. A
//! key that comes back after a short absence has shown it is reused; one
//! that never does (a scan, a one-hit wonder) is forgotten as newer ghosts
//! take its slot. (S3-FIFO remembers only the small queue's: remembering
//! the main queue's read ones too gained 0.05 to 0.2 points on the
//! hit-ratio benchmark, a key read once in the cache and back soon after
//! being no less reused than one seen twice on probation.)
//!
//! It holds one byte per slot, a fingerprint of the key's hash, in a
//! direct-mapped table as long as the shard's index has buckets: about as
//! many ghosts as the shard holds items, at a fifth of the index's memory.
//! A newer ghost overwrites an older one in its slot (so the set forgets
//! in rough age order), and a fingerprint may match a key never evicted
//! (1 in 255): the price is that key's admission to the main queue, never
//! a wrong reply.
//!
//! A ghost admits by size ([`Ghost::admits`]): an item larger than the
//! shard's average goes to the main queue with odds of the average over its
//! size, else back on probation. A hit on a large item saves no more than a
//! hit on a small one but costs more memory, so of keys seen twice the
//! small ones are the better buy; a large one read often enough is soon
//! admitted anyway, or promoted by a read while on probation. Replayed
//! over the hit-ratio benchmark (`examples/hit_replay.rs`), this gained
//! 0.16 points with values of 100 to 2000 bytes at Zipf 0.99 and 0.6 at
//! Zipf 0.8; with values of one size the odds are 1 and nothing changes.

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

    /// Slots for a shard whose index has `buckets` buckets (any number).
    /// Growing keeps the ghosts (the index grows as a store first fills,
    /// right when the first ghosts are made): a slot covers a range of
    /// hashes, so a new slot takes the ghost of the old slot whose range
    /// holds its own, or when it straddles two old slots, one of their
    /// ghosts (the first unless it is empty); growing by a step smaller
    /// than 2x thus forgets some. Shrinking forgets them all.
    pub fn resize(&mut self, buckets: usize) {
        let old = self.slots.len();
        if buckets == old {
            return;
        }
        let mut slots = vec![0; buckets];
        if old != 0 && buckets > old {
            for (j, s) in slots.iter_mut().enumerate() {
                let first = self.slots[j * old / buckets];
                let last = self.slots[((j + 1) * old - 1) / buckets];
                *s = if first != 0 { first } else { last };
            }
        }
        self.slots = slots;
    }

    /// Where a hash lives and its fingerprint, never 0 (an empty slot).
    /// The shard was picked by the top bits (16 at most), so the slot comes
    /// from the 32 bits below them, by multiply-shift range reduction, and
    /// the fingerprint from bits below those.
    fn place(&self, hash: u64) -> Option<(usize, u8)> {
        if self.slots.is_empty() {
            return None;
        }
        let range = u64::from((hash >> 16) as u32);
        let slot = ((range * self.slots.len() as u64) >> 32) as usize;
        let tag = ((hash >> 8) as u8).max(1);
        Some((slot, tag))
    }

    /// Remembers a key evicted (see the module's comment for which).
    pub fn insert(&mut self, hash: u64) {
        if let Some((slot, tag)) = self.place(hash) {
            self.slots[slot] = tag;
        }
    }

    /// Whether a key about to be stored, as an item of `len` bytes, goes
    /// straight to the main queue: it was evicted lately (forgotten now,
    /// admitted or not), and if `len` is above `average`, a draw with odds
    /// `average / len` says so. `stir` is mixed into the draw: pass one
    /// that changes between writes, so that a key refused once may be
    /// admitted the next time.
    pub fn admits(&mut self, hash: u64, len: usize, average: usize, stir: u64) -> bool {
        self.take(hash) && size_odds(len, average, hash, stir)
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

/// The size rule of the ghost set's admissions (and of the main queue's
/// second chances, `evict.rs`): true for an item of `len` bytes no larger than `average`, else
/// with odds `average / len`, drawn from its key's `hash` and a `stir`
/// that changes between calls (so a refusal is not for ever). A hit on a
/// large item saves no more than one on a small item but holds more
/// memory: of two keys read as often, the cache keeps more hits by
/// keeping the smaller. With items of one size it is always true.
pub(super) fn size_odds(len: usize, average: usize, hash: u64, stir: u64) -> bool {
    if len <= average {
        return true;
    }
    // splitmix64's finalizer: every input bit moves every output bit, so
    // draws from related inputs are unrelated.
    let mut z = hash ^ stir.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // z / 2^64 < average / len, without division.
    (u128::from(z) * len as u128) >> 64 < average as u128
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
        assert_eq!(g.place(a).unwrap().0, g.place(b).unwrap().0);
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
    fn growing_by_steps_keeps_most_ghosts() {
        // An index grown by an eighth at a time: ghosts are kept where
        // the new slot's range lies in one old slot's.
        let mut rng = crate::test_rng::Rng::new(11);
        let mut g = Ghost::new();
        g.resize(8 * 1000);
        let ghosts: Vec<u64> = (0..1000).map(|_| rng.next_u64()).collect();
        for &h in &ghosts {
            g.insert(h);
        }
        g.resize(8 * 1126);
        let kept = ghosts.iter().filter(|&&h| g.take(h)).count();
        assert!(kept > 800, "{kept} of 1000 kept");
        // Any size works, the last slot included.
        for n in [1, 3, 7, 9, 1001] {
            g.resize(n);
            g.insert(u64::MAX);
            assert!(g.take(u64::MAX), "{n} slots");
        }
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

    #[test]
    fn a_ghost_admits_items_above_average_size_with_odds_average_over_size() {
        let mut g = Ghost::new();
        g.resize(1 << 16);
        let mut rng = crate::test_rng::Rng::new(5);
        assert!(!g.admits(rng.next_u64(), 10, 1000, 0), "not a ghost");
        let mut admitted = [0usize; 3];
        for _ in 0..3000 {
            for (n, len) in admitted.iter_mut().zip([1000, 2000, 4000]) {
                let h = rng.next_u64();
                g.insert(h);
                *n += usize::from(g.admits(h, len, 1000, 0));
                assert!(!g.take(h), "forgotten, admitted or not");
            }
        }
        assert_eq!(admitted[0], 3000, "at most the average: always");
        assert!((1350..1650).contains(&admitted[1]), "{admitted:?}");
        assert!((600..900).contains(&admitted[2]), "{admitted:?}");
        // Refused once, the same key may be admitted the next time.
        let h = rng.next_u64();
        let tries = (0..64)
            .position(|stir| {
                g.insert(h);
                g.admits(h, 2000, 1000, stir)
            })
            .expect("admitted within 64 tries");
        assert!(tries < 64);
    }

    #[test]
    fn size_odds_are_the_average_over_the_size_above_it() {
        let mut rng = crate::test_rng::Rng::new(3);
        for stir in 0..1000 {
            let hash = rng.next_u64();
            assert!(size_odds(1000, 1000, hash, stir), "at the average");
            assert!(size_odds(10, 1000, hash, stir), "below it");
        }
        let mut kept = [0usize; 3];
        for stir in 0..30_000 {
            let hash = rng.next_u64();
            for (n, len) in kept.iter_mut().zip([1500, 2000, 8000]) {
                *n += usize::from(size_odds(len, 1000, hash, stir));
            }
        }
        // Odds 2/3, 1/2 and 1/8 of 30,000 draws.
        assert!((19_400..20_600).contains(&kept[0]), "{kept:?}");
        assert!((14_400..15_600).contains(&kept[1]), "{kept:?}");
        assert!((3_400..4_100).contains(&kept[2]), "{kept:?}");
        // The same key is drawn for afresh with another stir.
        let hash = rng.next_u64();
        let outcomes: Vec<bool> = (0..64).map(|s| size_odds(2000, 1000, hash, s)).collect();
        assert!(outcomes.contains(&true) && outcomes.contains(&false));
    }
}
