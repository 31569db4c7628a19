//! A shard's hash index: from a key's hash to the 32-bit location of its
//! record. It owns only hashes, tags and locations; what a location points
//! at, and so how to compare keys or hash an entry again, the shard tells
//! it with closures.
//!
//! It is an open-addressing table in the manner of SwissTable (and of
//! hashbrown, which it replaces here), with one difference that matters to
//! a cache: any number of buckets, not only powers of two. A power-of-two
//! table doubles when it fills, so a store whose memory is full spends
//! either 7/8 or 7/16 of its index's buckets, depending on where its item
//! count falls; this one grows by a step (`room.rs` picks it), and stays
//! near 7/8 full.
//!
//! Buckets come in aligned groups of 8: a control word (one byte per bucket:
//! a 7-bit tag from the hash, or EMPTY, or DELETED) and the 8 entries
//! beside it, so a lookup reads one group's 40 bytes, usually one cache
//! line. The control bytes are matched 8 at a time in a `u64`, without
//! SIMD. A hash's home group is chosen by multiply-shift range reduction
//! (any group count); a probe walks groups linearly from there and stops at
//! a group with an EMPTY byte.
//!
//! Removal leaves a DELETED tombstone unless its group still has an EMPTY:
//! then no probe ever went past that group (an insert takes the first free
//! bucket on its way, so it passes only groups with none, and a lookup
//! stops at the first EMPTY). Tombstones count towards the 7/8 maximum
//! load, as they lengthen probes; [`Index::rehash`] clears them.

/// Buckets in a group: one control byte each in a `u64`.
const GROUP: usize = 8;
/// Entries a group holds at most on average (7/8 load), counting tombstones.
const PER_GROUP: usize = 7;

/// Control bytes: a full bucket holds its 7-bit tag (high bit clear).
const EMPTY: u8 = 0xFF;
const DELETED: u8 = 0x80;

/// Each control byte's low and high bit.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// 8 buckets, their control bytes first (byte `i` is bits `8i..8i+8`).
#[derive(Clone, Copy)]
struct Group {
    ctrl: u64,
    slots: [u32; GROUP],
}

impl Group {
    const EMPTY: Group = Group {
        ctrl: u64::from_ne_bytes([EMPTY; GROUP]),
        slots: [0; GROUP],
    };

    /// A high bit set for each full bucket whose tag is `tag`; may also
    /// flag a full bucket whose tag differs in the low bit, just above a
    /// match (the subtraction's borrow), which the caller's comparison
    /// rejects. Never flags EMPTY or DELETED.
    #[inline]
    fn match_tag(&self, tag: u8) -> u64 {
        let x = self.ctrl ^ (LO * u64::from(tag));
        x.wrapping_sub(LO) & !x & HI
    }

    /// A high bit set for each EMPTY bucket (0xFF: bits 7 and 6 set;
    /// DELETED has bit 6 clear, a tag bit 7 clear).
    #[inline]
    fn match_empty(&self) -> u64 {
        self.ctrl & (self.ctrl << 1) & HI
    }

    #[inline]
    fn match_free(&self) -> u64 {
        self.ctrl & HI
    }

    #[inline]
    fn match_full(&self) -> u64 {
        !self.ctrl & HI
    }

    fn set_ctrl(&mut self, i: usize, c: u8) {
        let shift = i * 8;
        self.ctrl = (self.ctrl & !(0xFF << shift)) | (u64::from(c) << shift);
    }
}

/// The bucket a set bit of a match stands for.
#[inline]
fn first(m: u64) -> usize {
    m.trailing_zeros() as usize / 8
}

/// The 7 bits kept in a full bucket's control byte: the hash's low bits,
/// as the home group comes from its high bits.
#[inline]
fn tag(hash: u64) -> u8 {
    (hash & 0x7F) as u8
}

/// Groups needed to hold `capacity` entries.
fn groups_for(capacity: usize) -> usize {
    capacity.div_ceil(PER_GROUP)
}

/// Where an entry is: a group and a bucket in it.
#[derive(Clone, Copy)]
struct At {
    group: usize,
    bucket: usize,
}

/// Hashes to `u32` entries. Hashes should vary in their high bits (they
/// choose the group) and their low 7 (the tag).
#[derive(Default)]
pub struct Index {
    groups: Vec<Group>,
    // Four bytes each keep a shard's lock and fields in as few cache lines
    // as hashbrown's table did; a shard's entries are 32-bit locations.
    len: u32,
    deleted: u32,
}

impl Index {
    /// An empty index allocates nothing.
    pub const fn new() -> Index {
        Index {
            groups: Vec::new(),
            len: 0,
            deleted: 0,
        }
    }

    /// The bucket count of an index of `capacity`: 8 for every 7 entries.
    pub fn buckets_for(capacity: usize) -> usize {
        groups_for(capacity) * GROUP
    }

    /// The bytes an index of `capacity` allocates: a `u64` of control
    /// bytes and 8 entries a group.
    pub fn bytes_for(capacity: usize) -> usize {
        groups_for(capacity) * size_of::<Group>()
    }

    /// (The shard counts its items itself.)
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Entries it can hold: 7/8 of its buckets.
    pub fn capacity(&self) -> usize {
        self.groups.len() * PER_GROUP
    }

    pub fn buckets(&self) -> usize {
        self.groups.len() * GROUP
    }

    /// Buckets left DELETED by removals.
    #[cfg(test)]
    pub fn tombstones(&self) -> usize {
        self.deleted as usize
    }

    /// Whether an insert needs [`Index::rehash`] first: entries and
    /// tombstones are at 7/8 of the buckets.
    pub fn is_full(&self) -> bool {
        (self.len + self.deleted) as usize >= self.capacity()
    }

    /// Whether rebuilding at the same size would leave room enough to be
    /// worth it: tombstones take an eighth of the capacity, so the next
    /// rebuild is that many inserts away (at most 8 entries moved an
    /// insert).
    pub fn rehash_clears_room(&self) -> bool {
        self.deleted > 0 && self.deleted as usize * 8 >= self.capacity()
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.groups.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, group: usize) -> usize {
        if group + 1 == self.groups.len() {
            0
        } else {
            group + 1
        }
    }

    #[inline]
    fn find_at(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<At> {
        if self.groups.is_empty() {
            return None;
        }
        let tag = tag(hash);
        let mut g = self.home(hash);
        // Ends: at most 7/8 of the buckets are taken, so some group has an
        // EMPTY byte.
        loop {
            let group = &self.groups[g];
            let mut m = group.match_tag(tag);
            while m != 0 {
                let i = first(m);
                if eq(group.slots[i]) {
                    return Some(At {
                        group: g,
                        bucket: i,
                    });
                }
                m &= m - 1;
            }
            if group.match_empty() != 0 {
                return None;
            }
            g = self.next(g);
        }
    }

    /// The entry with this hash for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_at(hash, eq)
            .map(|at| self.groups[at.group].slots[at.bucket])
    }

    #[inline]
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<&mut u32> {
        let at = self.find_at(hash, eq)?;
        Some(&mut self.groups[at.group].slots[at.bucket])
    }

    /// Takes out the entry with this hash for which `eq` holds.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let at = self.find_at(hash, eq)?;
        let group = &mut self.groups[at.group];
        let mark = if group.match_empty() != 0 {
            EMPTY
        } else {
            self.deleted += 1;
            DELETED
        };
        group.set_ctrl(at.bucket, mark);
        self.len -= 1;
        Some(group.slots[at.bucket])
    }

    /// Adds an entry whose key is known to be missing. A full index
    /// (see [`Index::is_full`]) is rebuilt first, a step larger unless
    /// clearing its tombstones makes room: a caller that charges for the
    /// index's memory makes room beforehand. `rehash` gives an entry's
    /// hash.
    pub fn insert_unique(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if self.is_full() {
            let capacity = if self.rehash_clears_room() {
                self.capacity()
            } else {
                self.capacity() + (self.capacity() / 4).max(PER_GROUP)
            };
            self.rehash(capacity, rehash);
        }
        self.put(hash, value);
    }

    /// Places an entry in the first free bucket of its probe; there is one.
    fn put(&mut self, hash: u64, value: u32) {
        let mut g = self.home(hash);
        loop {
            let group = &mut self.groups[g];
            let m = group.match_free();
            if m != 0 {
                let i = first(m);
                if group.match_empty() & (0x80 << (i * 8)) == 0 {
                    self.deleted -= 1;
                }
                group.set_ctrl(i, tag(hash));
                group.slots[i] = value;
                self.len += 1;
                return;
            }
            g = self.next(g);
        }
    }

    /// Rebuilds the index with room for `capacity` entries (at least its
    /// length), without tombstones. `rehash` gives an entry's hash.
    pub fn rehash(&mut self, capacity: usize, rehash: impl Fn(u32) -> u64) {
        let capacity = capacity.max(self.len as usize);
        let old = std::mem::replace(&mut self.groups, vec![Group::EMPTY; groups_for(capacity)]);
        self.len = 0;
        self.deleted = 0;
        for group in &old {
            let mut m = group.match_full();
            while m != 0 {
                let value = group.slots[first(m)];
                self.put(rehash(value), value);
                m &= m - 1;
            }
        }
    }

    /// Every entry, in bucket order; for tests.
    #[cfg(test)]
    pub fn entries(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for group in &self.groups {
            let mut m = group.match_full();
            while m != 0 {
                out.push(group.slots[first(m)]);
                m &= m - 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::test_rng::Rng;

    /// Entries are keys; their hash is a mix of them.
    fn hash(v: u32) -> u64 {
        u64::from(v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
            ^ u64::from(v)
    }

    fn insert(ix: &mut Index, v: u32) {
        ix.insert_unique(hash(v), v, hash);
    }

    fn find(ix: &Index, v: u32) -> Option<u32> {
        ix.find(hash(v), |e| e == v)
    }

    fn remove(ix: &mut Index, v: u32) -> Option<u32> {
        ix.remove(hash(v), |e| e == v)
    }

    /// Length and tombstones agree with the control bytes, every entry is
    /// found from its hash, and no probe passes an EMPTY byte.
    fn check(ix: &Index) {
        let (mut full, mut deleted) = (0, 0);
        for group in &ix.groups {
            for i in 0..GROUP {
                match (group.ctrl >> (i * 8)) as u8 {
                    EMPTY => {}
                    DELETED => deleted += 1,
                    c => {
                        assert!(c < 0x80);
                        assert_eq!(c, tag(hash(group.slots[i])));
                        full += 1;
                    }
                }
            }
        }
        assert_eq!((full, deleted), (ix.len, ix.deleted));
        assert!((ix.len + ix.deleted) as usize <= ix.capacity());
        for v in ix.entries() {
            assert_eq!(find(ix, v), Some(v), "entry {v} lost");
        }
    }

    #[test]
    fn empty_index_finds_nothing_and_allocates_nothing() {
        let mut ix = Index::new();
        assert_eq!(find(&ix, 3), None);
        assert_eq!(remove(&mut ix, 3), None);
        assert_eq!((ix.len(), ix.capacity(), ix.buckets()), (0, 0, 0));
        assert!(ix.is_full());
    }

    #[test]
    fn matches_flag_the_right_buckets() {
        let mut g = Group::EMPTY;
        g.set_ctrl(0, 0x12);
        g.set_ctrl(3, DELETED);
        g.set_ctrl(5, 0x13);
        g.set_ctrl(7, 0x12);
        assert_eq!(
            g.match_tag(0x12) & (0x80 | (0x80 << 56)),
            0x80 | (0x80 << 56)
        );
        assert_eq!(g.match_tag(0x12) & !(0x80 | (0x80 << 40) | (0x80 << 56)), 0);
        assert_eq!(
            g.match_empty(),
            HI & !(0x80 | (0x80 << 24) | (0x80 << 40) | (0x80 << 56))
        );
        assert_eq!(g.match_free(), HI & !(0x80 | (0x80 << 40) | (0x80 << 56)));
        assert_eq!(g.match_full(), 0x80 | (0x80 << 40) | (0x80 << 56));
        // No tag matches an EMPTY or DELETED byte.
        for t in 0..0x80 {
            assert_eq!(Group::EMPTY.match_tag(t), 0);
            let mut d = Group::EMPTY;
            d.ctrl = u64::from_ne_bytes([DELETED; GROUP]);
            assert_eq!(d.match_tag(t), 0);
        }
    }

    #[test]
    fn every_group_count_fills_to_seven_eighths() {
        // Powers of two and not, one group up: each fills to capacity
        // without growing, every entry found, and one more grows it.
        for groups in 1..=70 {
            let mut ix = Index::new();
            ix.rehash(groups * PER_GROUP, hash);
            assert_eq!(ix.buckets(), groups * GROUP);
            let n = ix.capacity() as u32;
            for v in 0..n {
                insert(&mut ix, v);
            }
            assert_eq!(ix.buckets(), groups * GROUP, "grew early");
            assert!(ix.is_full());
            check(&ix);
            assert_eq!(find(&ix, n), None);
            insert(&mut ix, n);
            assert!(ix.buckets() > groups * GROUP);
            check(&ix);
        }
    }

    #[test]
    fn home_groups_spread_over_any_group_count() {
        // Range reduction reaches every group, the last one too.
        for groups in [1, 3, 7, 12, 100, 1000] {
            let mut ix = Index::new();
            ix.rehash(groups * PER_GROUP, hash);
            let mut seen = vec![false; groups];
            for v in 0..(groups as u32 * 64) {
                seen[ix.home(hash(v))] = true;
            }
            assert!(seen.iter().all(|&s| s), "{groups} groups");
        }
    }

    #[test]
    fn probes_stay_short_at_full_load() {
        // Linear probing clusters; at 7/8 full, groups of 8 keep it mild:
        // 1.3 groups read per hit, 4.5 per miss (measured with the
        // shard's hashes of `key:N`; these are the test's).
        let mut ix = Index::new();
        ix.rehash(PER_GROUP * 10_000, hash);
        let n = ix.capacity() as u32;
        for v in 0..n {
            insert(&mut ix, v);
        }
        let groups_read = |v: u32, stop: &dyn Fn(&Group) -> bool| {
            let mut g = ix.home(hash(v));
            let mut k = 1;
            while !stop(&ix.groups[g]) {
                g = ix.next(g);
                k += 1;
            }
            k
        };
        let hits: usize = (0..n)
            .map(|v| groups_read(v, &|g: &Group| g.slots.contains(&v)))
            .sum();
        let misses: usize = (n..n + 10_000)
            .map(|v| groups_read(v, &|g: &Group| g.match_empty() != 0))
            .sum();
        let (hit, miss) = (hits as f64 / f64::from(n), misses as f64 / 10_000.0);
        assert!(
            hit < 1.5 && miss < 6.0,
            "{hit:.2} groups a hit, {miss:.2} a miss"
        );
    }

    #[test]
    fn model_of_inserts_removes_and_growth() {
        let mut rng = Rng::new(15);
        for round in 0..20 {
            let mut ix = Index::new();
            let mut model: HashMap<u32, ()> = HashMap::new();
            // Few distinct keys make removes hit; more make the index grow.
            let keys = 8 << (round % 8);
            for _ in 0..20_000 {
                let v = rng.below(keys) as u32;
                match rng.below(10) {
                    0..5 => {
                        if find(&ix, v).is_none() {
                            insert(&mut ix, v);
                        }
                        model.insert(v, ());
                    }
                    5..9 => assert_eq!(remove(&mut ix, v), model.remove(&v).map(|()| v)),
                    _ => {
                        let grow = rng.below(3) as usize * PER_GROUP;
                        ix.rehash(ix.capacity() + grow, hash);
                    }
                }
                assert_eq!(ix.len(), model.len());
                assert_eq!(find(&ix, v).is_some(), model.contains_key(&v));
            }
            check(&ix);
            for v in 0..keys as u32 {
                assert_eq!(find(&ix, v).is_some(), model.contains_key(&v));
            }
        }
    }

    #[test]
    fn tombstone_churn_at_full_load() {
        // A full index, one entry out and another in, again and again:
        // tombstones pile up, and rebuilding in place clears them without
        // growing (the length stays at the capacity minus one).
        let mut rng = Rng::new(3);
        let mut ix = Index::new();
        ix.rehash(100 * PER_GROUP, hash);
        let cap = ix.capacity();
        let mut live: Vec<u32> = (0..cap as u32 - 1).collect();
        for &v in &live {
            insert(&mut ix, v);
        }
        let mut next = cap as u32;
        let mut most_tombstones = 0;
        for _ in 0..100_000 {
            let i = rng.below(live.len() as u64) as usize;
            assert_eq!(remove(&mut ix, live[i]), Some(live[i]));
            most_tombstones = most_tombstones.max(ix.tombstones());
            if ix.is_full() {
                ix.rehash(ix.capacity(), hash);
            }
            insert(&mut ix, next);
            live[i] = next;
            next += 1;
        }
        assert_eq!(ix.capacity(), cap);
        assert!(most_tombstones > 0, "no tombstones at full load");
        check(&ix);
        for &v in &live {
            assert_eq!(find(&ix, v), Some(v));
        }
        for v in 0..next {
            if !live.contains(&v) {
                assert_eq!(find(&ix, v), None);
            }
        }
    }

    #[test]
    fn a_deleted_bucket_in_a_group_with_room_becomes_empty() {
        let mut ix = Index::new();
        ix.rehash(PER_GROUP * 4, hash);
        insert(&mut ix, 1);
        assert_eq!(remove(&mut ix, 1), Some(1));
        assert_eq!(ix.tombstones(), 0);
        assert_eq!(ix.entries(), []);
    }

    #[test]
    fn insert_into_an_index_full_of_tombstones_rebuilds_in_place() {
        // Three quarters full, then churn: inserts rebuild it when tombstones fill
        // it, at the same size.
        let mut rng = Rng::new(9);
        let mut ix = Index::new();
        ix.rehash(PER_GROUP * 16, hash);
        let cap = ix.capacity();
        let mut live: Vec<u32> = (0..cap as u32 * 3 / 4).collect();
        for &v in &live {
            insert(&mut ix, v);
        }
        let mut rebuilt = false;
        for next in cap as u32..cap as u32 * 50 {
            let i = rng.below(live.len() as u64) as usize;
            remove(&mut ix, live[i]);
            rebuilt |= ix.is_full();
            insert(&mut ix, next);
            live[i] = next;
        }
        assert!(rebuilt, "tombstones never filled it");
        assert_eq!(ix.capacity(), cap);
        check(&ix);
    }
}
