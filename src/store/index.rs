//! A shard's hash index: from a key's hash to the 32-bit location of its
//! record. It owns only hashes, tags and locations; what a location points
//! at, and so how to compare keys or hash an entry again, the shard tells
//! it with closures.
//!
//! It is an open-addressing table in the manner of SwissTable (and of
//! hashbrown, which it replaces here), with one difference that matters to
//! a cache: any number of buckets, not only powers of two. A power-of-two
//! table doubles when it fills, so a store whose memory is full spends
//! either 6/7 or 3/7 of its index's buckets, depending on where its item
//! count falls; this one grows by a step (`room.rs` picks it).
//!
//! Buckets come in groups of 14: 16 control bytes (one per bucket, a 7-bit
//! tag from the hash or EMPTY, then the group's overflow count) and the 14
//! entries beside them, 72 bytes a group. The control bytes are matched 14
//! at a time in a `u128` (two registers), without SIMD or `unsafe`. A
//! hash's home group is chosen by multiply-shift range reduction (any group
//! count); a probe walks groups linearly from there. Groups of 14 rather
//! than 8 or 7 make overflow rare at a load of 6/7: a lookup reads 1.1
//! groups for a hit and 2.2 for a miss (7 a group: 1.3 and 3.5).
//!
//! A group's overflow count (as in folly's F14) is how many entries an
//! insert placed beyond it because it was full: a lookup stops at the first
//! group whose count is 0, and a removal walks its entry's probe again to
//! take its count off. So a removal frees its bucket at once, without the
//! tombstones SwissTable leaves: a full store, whose evictions take items
//! out a segment at a time, keeps its index as full as its items make it,
//! with no rebuilds to clear them. A count that reaches 255 stays there
//! (probes past that group go on) until the index is rebuilt.

use super::hint::prefetch;

/// Buckets in a group: one control byte each in a `u128`, whose 15th
/// byte is the overflow count (the 16th is unused).
const GROUP: usize = 14;
/// Entries a group holds at most on average: a load of 6/7.
const PER_GROUP: usize = 12;

/// The control byte of an empty bucket; a full one holds its 7-bit tag
/// (high bit clear).
const EMPTY: u8 = 0x80;
/// Where the overflow count is in the control word.
const OVERFLOW: usize = 14;

/// The low and high bit of each bucket's control byte (not the count's).
const LO: u128 = 0x0000_0101_0101_0101_0101_0101_0101_0101;
const HI: u128 = 0x0000_8080_8080_8080_8080_8080_8080_8080;

/// 14 buckets, their control bytes first (byte `i` is bits `8i..8i+8` of
/// the word); 72 bytes.
#[derive(Clone, Copy)]
struct Group {
    ctrl: [u8; 16],
    slots: [u32; GROUP],
}

impl Group {
    const EMPTY: Group = Group {
        ctrl: [
            EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY,
            EMPTY, EMPTY, 0, 0,
        ],
        slots: [0; GROUP],
    };

    #[inline]
    fn word(&self) -> u128 {
        u128::from_le_bytes(self.ctrl)
    }

    /// A high bit set for each full bucket whose tag is `tag`; may also
    /// flag a full bucket whose tag differs in the low bit, just above a
    /// match (the subtraction's borrow), which the caller's comparison
    /// rejects. Never flags an EMPTY bucket.
    #[inline]
    fn match_tag(&self, tag: u8) -> u128 {
        let x = self.word() ^ (LO * u128::from(tag));
        x.wrapping_sub(LO) & !x & HI
    }

    #[inline]
    fn match_empty(&self) -> u128 {
        self.word() & HI
    }

    #[inline]
    fn match_full(&self) -> u128 {
        !self.word() & HI
    }

    #[inline]
    fn overflow(&self) -> u8 {
        self.ctrl[OVERFLOW]
    }
}

/// The bucket a set bit of a match stands for.
#[inline]
fn first(m: u128) -> usize {
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
#[derive(Clone, Copy, Debug)]
pub struct At {
    group: usize,
    bucket: usize,
}

/// Hashes to `u32` entries. Hashes should vary in their high bits (they
/// choose the group) and their low 7 (the tag).
#[derive(Default)]
pub struct Index {
    groups: Vec<Group>,
    // Four bytes keep a shard's lock and fields in as few cache lines as
    // hashbrown's table did; a shard's entries are 32-bit locations.
    len: u32,
}

impl Index {
    /// An empty index allocates nothing.
    pub const fn new() -> Index {
        Index {
            groups: Vec::new(),
            len: 0,
        }
    }

    /// The bucket count of an index of `capacity`: 7 for every 6 entries.
    pub fn buckets_for(capacity: usize) -> usize {
        groups_for(capacity) * GROUP
    }

    /// The bytes an index of `capacity` allocates: 8 control bytes and 7
    /// entries a group.
    pub fn bytes_for(capacity: usize) -> usize {
        groups_for(capacity) * size_of::<Group>()
    }

    /// (The shard counts its items itself.)
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Entries it can hold: 6/7 of its buckets.
    pub fn capacity(&self) -> usize {
        self.groups.len() * PER_GROUP
    }

    pub fn buckets(&self) -> usize {
        self.groups.len() * GROUP
    }

    /// The bytes its table allocates.
    pub fn bytes(&self) -> usize {
        self.groups.len() * size_of::<Group>()
    }

    /// Whether an insert needs room first.
    pub fn is_full(&self) -> bool {
        self.len as usize >= self.capacity()
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
        let tag = tag(hash);
        let mut g = self.home(hash);
        // Every group once at most: with every count above 0 (a table
        // wrapped in overflow, or counts stuck at 255) nothing else ends it.
        for _ in 0..self.groups.len() {
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
            if group.overflow() == 0 {
                return None;
            }
            g = self.next(g);
        }
        None
    }

    /// Starts loading the group a lookup of `hash` reads first (72 bytes,
    /// which may span two cache lines).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if let Some(group) = self.groups.get(self.home(hash)) {
            let p = std::ptr::from_ref(group).cast::<u8>();
            prefetch(p);
            prefetch(p.wrapping_add(size_of::<Group>() - 1));
        }
    }

    /// The entries of `hash`'s home group whose tag matches: where a
    /// lookup of it will most likely look (it goes on past the group only
    /// when the group overflowed).
    #[inline]
    pub fn candidates(&self, hash: u64, mut f: impl FnMut(u32)) {
        if let Some(group) = self.groups.get(self.home(hash)) {
            let mut m = group.match_tag(tag(hash));
            while m != 0 {
                f(group.slots[first(m)]);
                m &= m - 1;
            }
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

    /// [`Index::find`], and where the entry is, for [`Index::replace_at`].
    #[inline]
    pub fn find_with_place(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<(u32, At)> {
        let at = self.find_at(hash, eq)?;
        Some((self.groups[at.group].slots[at.bucket], at))
    }

    /// Replaces the entry `old` by `new` where [`Index::find_with_place`]
    /// found it, without a probe, if it is still there: false, and nothing
    /// written, if the index has been rebuilt or the entry removed since.
    #[inline]
    pub fn replace_at(&mut self, at: At, old: u32, new: u32) -> bool {
        match self.groups.get_mut(at.group) {
            Some(g) if g.ctrl[at.bucket] != EMPTY && g.slots[at.bucket] == old => {
                g.slots[at.bucket] = new;
                true
            }
            _ => false,
        }
    }

    /// Takes out the entry with this hash for which `eq` holds, and its
    /// count from each group its insert passed.
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let at = self.find_at(hash, eq)?;
        let mut g = self.home(hash);
        while g != at.group {
            let count = &mut self.groups[g].ctrl[OVERFLOW];
            if *count != u8::MAX {
                *count -= 1;
            }
            g = self.next(g);
        }
        let group = &mut self.groups[at.group];
        group.ctrl[at.bucket] = EMPTY;
        self.len -= 1;
        Some(group.slots[at.bucket])
    }

    /// Adds an entry whose key is known to be missing. A full index
    /// (see [`Index::is_full`]) is first rebuilt a quarter larger: a caller
    /// that charges for the index's memory makes room beforehand.
    /// `rehash` gives an entry's hash.
    pub fn insert_unique(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if self.is_full() {
            let capacity = self.capacity() + (self.capacity() / 4).max(PER_GROUP);
            self.rehash(capacity, rehash);
        }
        self.put(hash, value);
    }

    /// Places an entry in the first empty bucket of its probe (there is
    /// one), counting it in each full group it passes.
    fn put(&mut self, hash: u64, value: u32) {
        let mut g = self.home(hash);
        loop {
            let group = &mut self.groups[g];
            let m = group.match_empty();
            if m != 0 {
                let i = first(m);
                group.ctrl[i] = tag(hash);
                group.slots[i] = value;
                self.len += 1;
                return;
            }
            let count = &mut group.ctrl[OVERFLOW];
            *count = count.saturating_add(1);
            g = self.next(g);
        }
    }

    /// Rebuilds the index with room for `capacity` entries (at least its
    /// length), overflow counts exact again. `rehash` gives an entry's
    /// hash.
    pub fn rehash(&mut self, capacity: usize, rehash: impl Fn(u32) -> u64) {
        let capacity = capacity.max(self.len as usize);
        let old = std::mem::replace(&mut self.groups, vec![Group::EMPTY; groups_for(capacity)]);
        self.len = 0;
        for group in &old {
            let mut m = group.match_full();
            while m != 0 {
                let value = group.slots[first(m)];
                self.put(rehash(value), value);
                m &= m - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::test_rng::Rng;

    /// Entries are keys; their hash is a mix of them (splitmix64's
    /// finalizer: a multiply alone would spread consecutive keys more
    /// evenly than any real hash, and hide clustering).
    fn hash(v: u32) -> u64 {
        let mut z = u64::from(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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

    /// The length agrees with the control bytes, every entry is found
    /// from its hash, and each group's overflow count is the number of
    /// entries placed past it (or 255 and no fewer).
    fn check_with(ix: &Index, hash: impl Fn(u32) -> u64) {
        let n = ix.groups.len();
        let mut full = 0;
        let mut passed = vec![0usize; n];
        for (g, group) in ix.groups.iter().enumerate() {
            for i in 0..GROUP {
                let c = group.ctrl[i];
                if c == EMPTY {
                    continue;
                }
                let v = group.slots[i];
                assert_eq!(c, tag(hash(v)));
                full += 1;
                let mut p = ix.home(hash(v));
                while p != g {
                    passed[p] += 1;
                    p = ix.next(p);
                }
                assert_eq!(ix.find(hash(v), |e| e == v), Some(v), "entry {v} lost");
            }
        }
        assert_eq!(full, ix.len());
        assert!(ix.len() <= ix.capacity());
        for (g, group) in ix.groups.iter().enumerate() {
            let count = usize::from(group.overflow());
            assert!(
                count == passed[g] || count == 255,
                "group {g}: count {count}, {} passed",
                passed[g]
            );
        }
    }

    fn check(ix: &Index) {
        check_with(ix, hash);
    }

    #[test]
    fn empty_index_finds_nothing_and_allocates_nothing() {
        let mut ix = Index::new();
        assert_eq!(find(&ix, 3), None);
        assert_eq!(remove(&mut ix, 3), None);
        assert_eq!((ix.len(), ix.capacity(), ix.buckets()), (0, 0, 0));
        assert!(ix.is_full());
        insert(&mut ix, 3);
        assert_eq!(find(&ix, 3), Some(3));
    }

    #[test]
    fn candidates_are_the_home_groups_tag_matches() {
        let mut ix = Index::new();
        for v in 0..1000 {
            insert(&mut ix, v);
        }
        let mut at_home = 0;
        for v in 0..1000 {
            let mut found = Vec::new();
            ix.candidates(hash(v), |e| found.push(e));
            // (A match may flag a tag one above, as `match_tag` says.)
            assert!(found.iter().all(|&e| tag(hash(e)) | 1 == tag(hash(v)) | 1));
            // Only an entry an overflow put past its home group is missed.
            if found.contains(&v) {
                at_home += 1;
            } else {
                assert!(ix.groups[ix.home(hash(v))].overflow() > 0, "{v} missed");
            }
            ix.prefetch(hash(v));
        }
        assert!(at_home > 900, "{at_home} of 1000 found at home");
        Index::new().candidates(hash(1), |_| panic!("an empty index has none"));
        Index::new().prefetch(hash(1));
    }

    #[test]
    fn a_group_is_72_bytes() {
        assert_eq!(size_of::<Group>(), 72);
        assert_eq!(Index::bytes_for(12), 72);
        assert_eq!(Index::buckets_for(13), 28);
    }

    #[test]
    fn matches_flag_the_right_buckets() {
        let bit = |i: usize| 0x80u128 << (i * 8);
        let mut g = Group::EMPTY;
        g.ctrl[0] = 0x12;
        g.ctrl[5] = 0x13;
        g.ctrl[13] = 0x12;
        // An overflow count that looks like the tag matches nothing.
        g.ctrl[OVERFLOW] = 0x12;
        assert_eq!(g.match_tag(0x12) & (bit(0) | bit(13)), bit(0) | bit(13));
        assert_eq!(g.match_tag(0x12) & !(bit(0) | bit(5) | bit(13)), 0);
        assert_eq!(g.match_full(), bit(0) | bit(5) | bit(13));
        let empty = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(g.match_empty(), empty.iter().map(|&i| bit(i)).sum());
        // No tag matches an EMPTY byte, whatever the count.
        for t in 0..0x80 {
            let mut e = Group::EMPTY;
            e.ctrl[OVERFLOW] = t;
            assert_eq!(e.match_tag(t), 0);
        }
    }

    #[test]
    fn every_group_count_fills_to_six_sevenths() {
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
        // Groups read per lookup at 6/7 full: 1.13 a hit, 2.19 a miss.
        // Misses stop at the first group nothing overflowed. (7 buckets a
        // group: 1.3 and 3.5; a table with tombstones, 8 a group at 7/8
        // full, stopping at an EMPTY byte: 1.3 and 4.5.)
        let mut ix = Index::new();
        ix.rehash(PER_GROUP * 10_000, hash);
        let n = ix.capacity() as u32;
        for v in 0..n {
            insert(&mut ix, v);
        }
        let groups_read = |v: u32| {
            let mut g = ix.home(hash(v));
            let mut k = 1;
            loop {
                let group = &ix.groups[g];
                let here = group.match_full() != 0 && group.slots.contains(&v);
                if here || group.overflow() == 0 {
                    return k;
                }
                g = ix.next(g);
                k += 1;
            }
        };
        let hits: usize = (0..n).map(groups_read).sum();
        let misses: usize = (n..n + 10_000).map(groups_read).sum();
        let (hit, miss) = (hits as f64 / f64::from(n), misses as f64 / 10_000.0);
        assert!(
            hit < 1.4 && miss < 4.0,
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
    fn an_entry_is_replaced_where_it_was_found_only_while_it_is_there() {
        let mut ix = Index::new();
        for v in 0..100 {
            insert(&mut ix, v);
        }
        let (v, at) = ix.find_with_place(hash(7), |e| e == 7).expect("found");
        assert_eq!(v, 7);
        assert!(!ix.replace_at(at, 8, 1000), "another entry's value");
        assert!(ix.replace_at(at, 7, 1000));
        assert_eq!(find(&ix, 7), None);
        assert_eq!(ix.find(hash(7), |e| e == 1000), Some(1000));
        // Removed, though the bucket still holds the value: refused.
        let (_, at) = ix.find_with_place(hash(9), |e| e == 9).expect("found");
        assert_eq!(remove(&mut ix, 9), Some(9));
        assert!(!ix.replace_at(at, 9, 2000));
        assert_eq!(ix.find(hash(9), |e| e == 2000), None);
        check_with(&ix, |v| hash(if v == 1000 { 7 } else { v }));
    }

    #[test]
    fn churn_at_full_load_needs_no_rebuild() {
        // A full index, one entry out and another in, again and again:
        // each removal frees its bucket, so inserts never find it full.
        let mut rng = Rng::new(3);
        let mut ix = Index::new();
        ix.rehash(100 * PER_GROUP, hash);
        let cap = ix.capacity();
        let mut live: Vec<u32> = (0..cap as u32).collect();
        for &v in &live {
            insert(&mut ix, v);
        }
        let mut next = cap as u32;
        for round in 0..100_000 {
            let i = rng.below(live.len() as u64) as usize;
            assert_eq!(remove(&mut ix, live[i]), Some(live[i]));
            assert!(!ix.is_full());
            insert(&mut ix, next);
            live[i] = next;
            next += 1;
            if round % 10_000 == 0 {
                check(&ix);
            }
        }
        assert_eq!(ix.capacity(), cap);
        check(&ix);
        for &v in &live {
            assert_eq!(find(&ix, v), Some(v));
        }
        let gone = (0..next).filter(|v| find(&ix, *v).is_some()).count();
        assert_eq!(gone, live.len());
    }

    #[test]
    fn a_saturated_overflow_count_stays_until_rebuilt() {
        // 1000 entries of one home group: the groups they pass count 255
        // at most; removing them all leaves the home group's count stuck,
        // which only lengthens probes; a rebuild clears it.
        let same_home = |v: u32| u64::from(v);
        let mut ix = Index::new();
        ix.rehash(PER_GROUP * 300, same_home);
        for v in 0..1000 {
            ix.insert_unique(same_home(v), v, same_home);
        }
        assert_eq!(ix.groups[0].overflow(), 255);
        check_with(&ix, same_home);
        // All but twenty go.
        let kept = |v: u32| v < 40 && v % 2 == 1;
        for v in (0..1000).filter(|&v| !kept(v)) {
            assert_eq!(ix.remove(same_home(v), |e| e == v), Some(v));
        }
        assert_eq!(ix.groups[0].overflow(), 255);
        check_with(&ix, same_home);
        for v in 0..1000 {
            let want = kept(v).then_some(v);
            assert_eq!(ix.find(same_home(v), |e| e == v), want);
        }
        ix.rehash(ix.capacity(), same_home);
        // Fourteen in the home group, six past it.
        assert_eq!(ix.groups[0].overflow(), 6);
        check_with(&ix, same_home);
    }
}
