//! One shard: a hash index of slot numbers into a slab of slots, the LRU
//! order through those slots, and the shard's share of the counters. Every
//! method runs under the shard's lock, so each does a bounded amount of
//! work, allocates nothing it can avoid, and hands items it drops back to
//! the caller to free after the lock is released.
//!
//! Recency: the LRU list is ordered by store and by *bump*. A hit bumps an
//! item to the head at most once per [`UPDATE_INTERVAL`] (memcached's
//! `ITEM_UPDATE_INTERVAL`), so hot items do not rewrite the list on every
//! read; hits in between set an ACTIVE bit instead, and eviction gives an
//! active tail item a second chance (back to the head, bit cleared), as
//! memcached's segmented LRU does with `ITEM_ACTIVE`. A hit thus costs two
//! bit writes, and the order still reflects every read when it matters.

use std::hash::BuildHasher;
use std::mem;

use bytes::Bytes;
use foldhash::quality::RandomState;
use hashbrown::HashTable;

use super::item;
use super::lru::{self, Links, List, Nodes};
use super::memory::{self, Memory};
use super::{Lookup, StoreResult, Value, clock};
use crate::protocol::StoreMode;

/// Seconds between two LRU bumps of one item on hits.
pub const UPDATE_INTERVAL: u32 = 60;

/// Slot flags (four bits, kept in the slot's links).
/// Read since it was stored.
pub const FETCHED: u8 = 1;
/// Read since it was last bumped: spared once by eviction.
pub const ACTIVE: u8 = 2;
/// Meta protocol: marked stale by an invalidating `md` or `ms` (`X`).
pub const STALE: u8 = 4;
/// Meta protocol: the recache token has been handed out (`W`, then `Z`).
pub const WIN: u8 = 8;

/// How many items from the tail eviction inspects for a dead one first.
const TAIL_SEARCH: usize = 5;

/// How many active items one eviction may pass over before it takes one anyway.
const MAX_SECOND_CHANCES: usize = 64;

/// What a shard operation needs from the store.
pub struct Ctx<'a> {
    pub now: u32,
    /// memcached's `oldest_live`, a flush deadline minus one: once the
    /// deadline has come, items last stored or bumped at or before it are
    /// flushed (0: no flush pending).
    pub oldest_live: u32,
    pub evictions: bool,
    pub hasher: &'a RandomState,
    pub memory: &'a Memory,
}

impl Ctx<'_> {
    /// memcached tests `oldest_live <= current_time`, which hides items one
    /// second before the deadline; we hide them at the deadline, as
    /// documented for `flush_all`.
    fn flushed(&self, time: u32) -> bool {
        self.oldest_live != 0 && self.oldest_live < self.now && time <= self.oldest_live
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }
}

/// The hash the index is keyed by. The shard was picked by the top bits of
/// `hash`; hashbrown takes its 7-bit tags from the top bits and its bucket
/// from the low bits, so rotate bits that vary within a shard to the top.
fn table_hash(hash: u64) -> u64 {
    hash.rotate_right(7)
}

/// One slab slot: 48 bytes. A free slot has no item and chains the free
/// list through `links.next`.
#[derive(Debug)]
pub struct Entry {
    item: Option<Bytes>,
    /// Relative seconds, 0 for never.
    pub(super) deadline: u32,
    /// Last store or bump (memcached's `it->time`): LRU age, flush check,
    /// and the meta protocol's last access.
    pub(super) time: u32,
    pub(super) links: Links,
}

impl Entry {
    fn vacant(next_free: u32) -> Self {
        let mut links = Links::detached();
        links.set_next(next_free);
        Entry {
            item: None,
            deadline: 0,
            time: 0,
            links,
        }
    }
}

struct Slots(Vec<Entry>);

impl Nodes for Slots {
    fn links(&self, i: u32) -> &Links {
        &self.0[i as usize].links
    }
    fn links_mut(&mut self, i: u32) -> &mut Links {
        &mut self.0[i as usize].links
    }
}

/// The counters a shard owns; the store sums them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub total_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    /// Evictions of items that had a deadline (memcached's `evicted_nonzero`).
    pub evicted_nonzero: u64,
    /// When the last eviction here happened, and how long its item had gone
    /// unaccessed then (memcached's `evicted_time`); relative seconds.
    pub last_evicted_at: u32,
    pub last_evicted_age: u32,
}

/// One live item as [`Shard::visit`] shows it.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    pub flags: u32,
    pub cas: u64,
    /// Relative seconds, 0 for never.
    pub deadline: u32,
    /// Last store or bump, relative seconds.
    pub time: u32,
    pub fetched: bool,
}

/// Why a write could not get the memory it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Nothing left to evict here: free this much in other shards and retry.
    Elsewhere(usize),
    /// Evictions are off (or the shard has no slot left): out of memory.
    NoMemory,
}

/// An item looked up by key.
pub(super) enum Find {
    Live(u32),
    /// It was there but dead; it has been removed. `Lookup` says why.
    Dead(Lookup, Bytes),
    Missing,
}

/// The outcome of a conditional replace of one version of an item.
pub enum Swap {
    /// Replaced; the old item, to drop outside the lock.
    Done(Option<Bytes>),
    /// The version read earlier is gone: read again.
    Changed(Option<Bytes>),
}

pub struct Shard {
    index: HashTable<u32>,
    slots: Slots,
    /// Head of the free slot list.
    free: u32,
    lru: List,
    len: u32,
    /// Bytes charged to `Memory` for this shard's items.
    bytes: usize,
    /// Where `sweep` goes on.
    cursor: u32,
    pub counters: Counters,
}

impl Default for Shard {
    fn default() -> Self {
        Self::new()
    }
}

impl Shard {
    /// An empty shard allocates nothing.
    pub const fn new() -> Self {
        Shard {
            index: HashTable::new(),
            slots: Slots(Vec::new()),
            free: lru::NIL,
            lru: List::new(),
            len: 0,
            bytes: 0,
            cursor: 0,
            counters: Counters {
                total_items: 0,
                evictions: 0,
                reclaimed: 0,
                expired_unfetched: 0,
                evicted_unfetched: 0,
                evicted_nonzero: 0,
                last_evicted_at: 0,
                last_evicted_age: 0,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn entry(&self, i: u32) -> &Entry {
        &self.slots.0[i as usize]
    }

    pub(super) fn entry_mut(&mut self, i: u32) -> &mut Entry {
        &mut self.slots.0[i as usize]
    }

    pub(super) fn item(&self, i: u32) -> &Bytes {
        self.entry(i)
            .item
            .as_ref()
            .expect("an indexed slot holds an item")
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        let slots = &self.slots.0;
        self.index
            .find(table_hash(hash), |&i| {
                slots[i as usize]
                    .item
                    .as_deref()
                    .is_some_and(|it| item::key(it) == key)
            })
            .copied()
    }

    /// Finds a key, removing it if it has expired or been flushed.
    pub(super) fn find_live(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> Find {
        let Some(i) = self.find(key, hash) else {
            return Find::Missing;
        };
        match self.dead(i, ctx) {
            None => Find::Live(i),
            Some(why) => Find::Dead(why, self.reclaim(i, hash, ctx)),
        }
    }

    fn dead(&self, i: u32, ctx: &Ctx) -> Option<Lookup> {
        let e = self.entry(i);
        if clock::is_expired(e.deadline, ctx.now) {
            Some(Lookup::Expired)
        } else if ctx.flushed(e.time) {
            Some(Lookup::Flushed)
        } else {
            None
        }
    }

    /// Removes a dead item, counting it.
    fn reclaim(&mut self, i: u32, hash: u64, ctx: &Ctx) -> Bytes {
        self.counters.reclaimed += 1;
        if !self.entry(i).links.has(FETCHED) {
            self.counters.expired_unfetched += 1;
        }
        self.remove(i, hash, ctx)
    }

    /// Takes an item out of the index, the LRU and the budget.
    pub(super) fn remove(&mut self, i: u32, hash: u64, ctx: &Ctx) -> Bytes {
        match self.index.find_entry(table_hash(hash), |&s| s == i) {
            Ok(found) => {
                found.remove();
            }
            Err(_) => unreachable!("slot {i} is not in the index"),
        }
        self.lru.unlink(&mut self.slots, i);
        let free = self.free;
        let e = self.entry_mut(i);
        let item = e.item.take().expect("a removed slot held an item");
        *e = Entry::vacant(free);
        self.free = i;
        self.len -= 1;
        let cost = memory::item_cost(item.len());
        self.bytes -= cost;
        ctx.memory.release(cost);
        item
    }

    /// [`Shard::remove`] when the caller has no hash at hand.
    fn remove_slot(&mut self, i: u32, ctx: &Ctx) -> Bytes {
        let hash = ctx.hash(item::key(self.item(i)));
        self.remove(i, hash, ctx)
    }

    fn has_free_slot(&self) -> bool {
        self.free != lru::NIL || self.slots.0.len() < lru::MAX_SLOTS as usize
    }

    fn take_slot(&mut self) -> u32 {
        if self.free != lru::NIL {
            let i = self.free;
            self.free = self.entry(i).links.next();
            return i;
        }
        let slots = &mut self.slots.0;
        if slots.len() == slots.capacity() {
            // Grow by a quarter rather than doubling: the slab is charged
            // per item, and its spare capacity is memory too.
            slots.reserve_exact((slots.len() / 4).max(16));
        }
        slots.push(Entry::vacant(lru::NIL));
        (slots.len() - 1) as u32
    }

    /// The most recently stored or bumped slot.
    pub(super) fn newest(&self) -> Option<u32> {
        self.lru.head()
    }

    /// A hit: fetched, and bumped or marked active.
    pub(super) fn hit(&mut self, i: u32, now: u32) {
        let e = self.entry_mut(i);
        e.links.set(FETCHED);
        if now >= e.time.saturating_add(UPDATE_INTERVAL) {
            e.time = now;
            e.links.clear(ACTIVE);
            self.lru.move_to_front(&mut self.slots, i);
        } else {
            e.links.set(ACTIVE);
        }
    }

    pub(super) fn value(&self, i: u32) -> Value {
        let it = self.item(i);
        let h = item::header(it);
        Value {
            data: it.slice(h.value_start..),
            flags: h.flags,
            cas: h.cas,
        }
    }

    /// get / gat. With `touch`, also sets the deadline; a deadline of
    /// [`clock::EXPIRED`] returns the value and removes the item.
    pub fn read(
        &mut self,
        key: &[u8],
        hash: u64,
        touch: Option<u32>,
        ctx: &Ctx,
    ) -> (Lookup, Option<Bytes>) {
        let i = match self.find_live(key, hash, ctx) {
            Find::Live(i) => i,
            Find::Dead(why, item) => return (why, Some(item)),
            Find::Missing => return (Lookup::Miss, None),
        };
        self.hit(i, ctx.now);
        let value = self.value(i);
        let mut garbage = None;
        match touch {
            Some(clock::EXPIRED) => garbage = Some(self.remove(i, hash, ctx)),
            Some(deadline) => self.entry_mut(i).deadline = deadline,
            None => {}
        }
        (Lookup::Hit(value), garbage)
    }

    /// touch: a new deadline, CAS unchanged.
    pub fn touch(
        &mut self,
        key: &[u8],
        hash: u64,
        deadline: u32,
        ctx: &Ctx,
    ) -> (bool, Option<Bytes>) {
        match self.find_live(key, hash, ctx) {
            Find::Live(i) => {
                self.hit(i, ctx.now);
                self.entry_mut(i).deadline = deadline;
                (true, None)
            }
            Find::Dead(_, item) => (false, Some(item)),
            Find::Missing => (false, None),
        }
    }

    pub fn delete(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> Option<Bytes> {
        match self.find_live(key, hash, ctx) {
            Find::Live(i) => Some(self.remove(i, hash, ctx)),
            // An expired item is removed but was not there to delete.
            Find::Dead(..) | Find::Missing => None,
        }
    }

    /// The current version of a live item, for a read-modify-write done
    /// outside the lock (append, prepend, incr, decr).
    pub fn snapshot(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> (Option<Bytes>, Option<Bytes>) {
        match self.find_live(key, hash, ctx) {
            Find::Live(i) => (Some(self.item(i).clone()), None),
            Find::Dead(_, item) => (None, Some(item)),
            Find::Missing => (None, None),
        }
    }

    /// set / add / replace / cas with an item built beforehand; `item` is
    /// taken when it is stored. Append and prepend go through [`Shard::swap`].
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        hash: u64,
        item: &mut Option<Bytes>,
        cas_unique: u64,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(StoreResult, Option<Bytes>), Full> {
        let (at, garbage) = match self.find_live(key, hash, ctx) {
            Find::Live(i) => (Some(i), None),
            Find::Dead(_, old) => (None, Some(old)),
            Find::Missing => (None, None),
        };
        match (mode, at) {
            (StoreMode::Add, Some(i)) => {
                // memcached bumps the item a failed add ran into.
                self.lru.move_to_front(&mut self.slots, i);
                return Ok((StoreResult::NotStored, garbage));
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok((StoreResult::NotStored, garbage));
            }
            (StoreMode::Cas, None) => return Ok((StoreResult::NotFound, garbage)),
            // A cas of 0 never matches, also when -C leaves every item's CAS at 0
            // (memcached answers EXISTS there too).
            (StoreMode::Cas, Some(i))
                if cas_unique == 0 || item::header(self.item(i)).cas != cas_unique =>
            {
                return Ok((StoreResult::Exists, garbage));
            }
            (StoreMode::Append | StoreMode::Prepend, Some(_)) => {
                unreachable!("append and prepend are built from the old value: use swap")
            }
            _ => {}
        }
        let old = self.commit(hash, at, item, deadline, ctx)?;
        Ok((StoreResult::Stored, old.or(garbage)))
    }

    /// Replaces the version `old` (from [`Shard::snapshot`]) of an item with
    /// `new`, keeping its deadline; or reports that it changed meanwhile.
    pub fn swap(
        &mut self,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: &mut Option<Bytes>,
        ctx: &Ctx,
    ) -> Result<Swap, Full> {
        match self.find_live(key, hash, ctx) {
            Find::Live(i) => {
                let cur = self.item(i);
                // `old` keeps its allocation alive, so its address cannot
                // have been reused by another version.
                if cur.as_ptr() != old.as_ptr() || cur.len() != old.len() {
                    return Ok(Swap::Changed(None));
                }
                let deadline = self.entry(i).deadline;
                self.commit(hash, Some(i), new, deadline, ctx)
                    .map(Swap::Done)
            }
            Find::Dead(_, item) => Ok(Swap::Changed(Some(item))),
            Find::Missing => Ok(Swap::Changed(None)),
        }
    }

    /// Stores `item` at slot `at` (replacing that item) or in a new slot,
    /// at the head of the LRU, after making room for it.
    pub(super) fn commit(
        &mut self,
        hash: u64,
        at: Option<u32>,
        item: &mut Option<Bytes>,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<Option<Bytes>, Full> {
        let new_cost = memory::item_cost(item.as_ref().expect("an item to store").len());
        let old_cost = at.map_or(0, |i| memory::item_cost(self.item(i).len()));
        match at {
            // At the head, it is the last thing eviction would look at.
            Some(i) => self.lru.move_to_front(&mut self.slots, i),
            None if !self.has_free_slot() => return Err(Full::NoMemory),
            None => {}
        }
        if new_cost > old_cost {
            self.make_room(new_cost - old_cost, at, ctx)?;
        } else {
            ctx.memory.release(old_cost - new_cost);
        }
        self.bytes = self.bytes + new_cost - old_cost;
        self.counters.total_items += 1;
        let item = item.take();
        match at {
            Some(i) => {
                let e = self.entry_mut(i);
                let old = mem::replace(&mut e.item, item);
                e.deadline = deadline;
                e.time = ctx.now;
                e.links.clear(FETCHED | ACTIVE | STALE | WIN);
                Ok(old)
            }
            None => {
                let i = self.take_slot();
                *self.entry_mut(i) = Entry {
                    item,
                    deadline,
                    time: ctx.now,
                    links: Links::detached(),
                };
                self.lru.push_front(&mut self.slots, i);
                let slots = &self.slots.0;
                let hasher = ctx.hasher;
                self.index.insert_unique(table_hash(hash), i, |&s| {
                    let it = slots[s as usize].item.as_deref().expect("indexed");
                    table_hash(hasher.hash_one(item::key(it)))
                });
                self.len += 1;
                Ok(None)
            }
        }
    }

    /// Reserves `need` bytes, evicting from this shard's tail as needed.
    /// `protect` (the item being replaced) is never evicted.
    fn make_room(&mut self, need: usize, protect: Option<u32>, ctx: &Ctx) -> Result<(), Full> {
        while !ctx.memory.try_reserve(need) {
            if self.evict_one(protect, ctx).is_none() {
                return Err(if ctx.evictions {
                    Full::Elsewhere(need)
                } else {
                    Full::NoMemory
                });
            }
        }
        Ok(())
    }

    /// Frees one item from the cold end: a dead one near the tail if there
    /// is one, else (with evictions on) the least recently used one, sparing
    /// active items once. Returns the bytes freed.
    pub fn evict_one(&mut self, protect: Option<u32>, ctx: &Ctx) -> Option<usize> {
        let mut at = self.lru.tail();
        for _ in 0..TAIL_SEARCH {
            let Some(i) = at else { break };
            if Some(i) != protect && self.dead(i, ctx).is_some() {
                let cost = memory::item_cost(self.item(i).len());
                let hash = ctx.hash(item::key(self.item(i)));
                drop(self.reclaim(i, hash, ctx));
                return Some(cost);
            }
            at = self.lru.newer(&self.slots, i);
        }
        if !ctx.evictions {
            return None;
        }
        let mut chances = 0;
        loop {
            let i = self.lru.tail()?;
            if Some(i) == protect {
                if self.len <= 1 {
                    return None;
                }
                self.lru.move_to_front(&mut self.slots, i);
                continue;
            }
            let links = &mut self.slots.0[i as usize].links;
            if links.has(ACTIVE) && chances < MAX_SECOND_CHANCES {
                links.clear(ACTIVE);
                self.lru.move_to_front(&mut self.slots, i);
                chances += 1;
                continue;
            }
            self.counters.evictions += 1;
            if !links.has(FETCHED) {
                self.counters.evicted_unfetched += 1;
            }
            let e = &self.slots.0[i as usize];
            if e.deadline != 0 {
                self.counters.evicted_nonzero += 1;
            }
            self.counters.last_evicted_at = ctx.now;
            self.counters.last_evicted_age = ctx.now.saturating_sub(e.time);
            let cost = memory::item_cost(self.item(i).len());
            drop(self.remove_slot(i, ctx));
            return Some(cost);
        }
    }

    /// Looks at up to `budget` slots from where the last sweep stopped and
    /// reclaims the dead items among them.
    pub fn sweep(&mut self, budget: usize, ctx: &Ctx) -> usize {
        let n = self.slots.0.len();
        let mut reclaimed = 0;
        for _ in 0..budget.min(n) {
            if self.cursor as usize >= n {
                self.cursor = 0;
            }
            let i = self.cursor;
            self.cursor += 1;
            if self.entry(i).item.is_some() && self.dead(i, ctx).is_some() {
                let hash = ctx.hash(item::key(self.item(i)));
                drop(self.reclaim(i, hash, ctx));
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Drops every item and gives back the slab and index memory. Returns
    /// the old shard contents to be freed outside the lock.
    pub fn clear(&mut self, ctx: &Ctx) -> Shard {
        ctx.memory.release(self.bytes);
        let counters = self.counters;
        let cursor = self.cursor;
        let old = mem::take(self);
        self.counters = counters;
        self.cursor = cursor;
        old
    }

    /// Bytes charged for this shard's items, and the last store or bump
    /// time of its least recently used item (`None` when empty).
    pub fn usage(&self) -> (usize, Option<u32>) {
        let tail = self.lru.tail().map(|i| self.entry(i).time);
        (self.bytes, tail)
    }

    /// Calls `f` with every live item, from the least recently used on,
    /// until it returns false. Returns false if `f` stopped it.
    pub fn visit(&self, ctx: &Ctx, f: &mut dyn FnMut(ItemView<'_>) -> bool) -> bool {
        let mut at = self.lru.tail();
        while let Some(i) = at {
            let e = self.entry(i);
            if self.dead(i, ctx).is_none() {
                let it = self.item(i);
                let h = item::header(it);
                let view = ItemView {
                    key: item::key(it),
                    value_len: it.len() - h.value_start,
                    flags: h.flags,
                    cas: h.cas,
                    deadline: e.deadline,
                    time: e.time,
                    fetched: e.links.has(FETCHED),
                };
                if !f(view) {
                    return false;
                }
            }
            at = self.lru.newer(&self.slots, i);
        }
        true
    }

    /// Checks every structural invariant; for tests.
    #[cfg(test)]
    pub fn check(&self, hasher: &RandomState) {
        let mut n = 0;
        let mut bytes = 0;
        let mut prev = lru::NIL;
        let mut at = self.lru.head();
        while let Some(i) = at {
            let e = self.entry(i);
            assert_eq!(e.links.prev(), prev, "back link of slot {i}");
            let it = e.item.as_ref().expect("listed slot holds an item");
            bytes += memory::item_cost(it.len());
            assert_eq!(
                self.find(item::key(it), hasher.hash_one(item::key(it))),
                Some(i)
            );
            n += 1;
            prev = i;
            at = (e.links.next() != lru::NIL).then_some(e.links.next());
        }
        assert_eq!(self.lru.tail().unwrap_or(lru::NIL), prev);
        assert_eq!(n, self.len);
        assert_eq!(self.index.len(), self.len as usize);
        assert_eq!(bytes, self.bytes);
        let mut free = 0;
        let mut f = self.free;
        while f != lru::NIL {
            assert!(self.entry(f).item.is_none());
            free += 1;
            f = self.entry(f).links.next();
        }
        assert_eq!(free + self.len as usize, self.slots.0.len());
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys from the most to the least recently used; for tests.
    #[cfg(test)]
    pub fn lru_keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = self.lru.head();
        while let Some(i) = at {
            out.push(item::key(self.item(i)).to_vec());
            let nx = self.entry(i).links.next();
            at = (nx != lru::NIL).then_some(nx);
        }
        out
    }
}
