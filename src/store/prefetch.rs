//! Prefetching for requests about to run. A driver with several
//! requests in hand (the io_uring worker after one wait: a receive from
//! each of many connections) names their keys first, and the store starts
//! the memory loads their lookups will make, for all of them, before any
//! request runs.
//!
//! A lookup makes two dependent loads from memory the caches rarely hold
//! once the items outgrow them: the key's index group, then the record its
//! entry points at. One request at a time, each waits out both (with
//! 100,000 items, a third of a get's user-space time); started together,
//! the waits overlap. So prefetching is two passes over the keys in hand: the
//! first loads each key's home group, the second reads the groups (by then
//! arriving) and loads the records whose tag matches.
//!
//! A prefetch reads nothing the program sees and changes nothing: a key
//! that is not one (a guess from unparsed bytes), a tag that matches
//! another key, or an entry moved since, costs a wasted load, never a
//! wrong reply. A shard another thread holds is skipped, not waited for.

use super::Store;
use super::loc::Loc;
use super::shard::table_hash;

/// A key between the two passes: its hash and shard.
#[derive(Debug, Clone, Copy)]
pub struct Prefetch {
    hash: u64,
    shard: usize,
}

impl Store {
    /// The first pass for one key: starts loading its index group.
    pub fn prefetch_index(&self, key: &[u8]) -> Option<Prefetch> {
        let (hash, shard) = self.route(key)?;
        let cell = self.cells[shard].shard.try_lock().ok()?;
        cell.index.prefetch(table_hash(hash));
        Some(Prefetch { hash, shard })
    }

    /// The second pass, once the first has run for every key in hand:
    /// starts loading the records the key's index group points at.
    pub fn prefetch_records(&self, p: Prefetch) {
        let Ok(cell) = self.cells[p.shard].shard.try_lock() else {
            return;
        };
        cell.index
            .candidates(table_hash(p.hash), |loc| cell.segs.prefetch(Loc(loc)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cmd, get, new_store};
    use crate::item_rules::StoreMode::Set;
    use crate::store::Lookup;

    #[test]
    fn prefetching_changes_nothing() {
        let s = new_store(8 << 20, true, true, 4);
        for i in 0..2000 {
            cmd(&s, Set, format!("k{i}").as_bytes(), 0, 0, b"v", 0, 1);
        }
        let before = s.stats();
        let long = [b'x'; 300];
        let keys: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("k{i}").into_bytes())
            .chain([long.to_vec(), Vec::new()])
            .collect();
        let prefetches: Vec<_> = keys.iter().filter_map(|k| s.prefetch_index(k)).collect();
        // Every key an item can have is routed; the one too long is not.
        assert_eq!(prefetches.len(), keys.len() - 1);
        for p in prefetches {
            s.prefetch_records(p);
        }
        assert_eq!(s.stats(), before);
        // Not counted as a read: the first get still finds it unfetched.
        match get(&s, b"k7", 2) {
            Lookup::Hit(hit) => assert!(!hit.fetched),
            other => panic!("{other:?}"),
        }
    }
}
