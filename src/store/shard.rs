//! One shard: the hash index from keys to record locations, over the
//! segment table, and the shard's share of the counters. Every method runs
//! under the shard's lock, so each does a bounded amount of work, and
//! memory it gives up goes back to the caller to free after the lock is
//! released.
//!
//! This file owns the index and the lifecycle of one record: finding it
//! (and removing it if it is dead), replacing it, retiring it. Where a new
//! record goes and what is evicted to make room are `room.rs` and
//! `evict.rs`; the segment table is `segments.rs`. It knows nothing of
//! requests: the store's request methods drive it.
//!
//! Storage is log-structured (see `segment.rs`): a write appends a record
//! to the newest shared segment, or brings a segment of its own for a large
//! item; a replaced or deleted record is only marked dead, and a segment
//! whose records are all dead is freed at once.
//!

use std::hash::BuildHasher;
use std::mem;

use bytes::Bytes;
use foldhash::quality::FixedState;

use super::clock;
use super::ghost::Ghost;
use super::index::{At, Index};
use super::item;
use super::loc::Loc;
use super::memory::Memory;
use super::pool::SegPool;
use super::record::{DEAD, FETCHED, Meta, NewItem};
use super::request::{ItemView, Lookup};
use super::segment::SegMem;
use super::segments::{Layout, Queue, Segments};

/// What a shard operation needs from the store.
pub struct Ctx<'a> {
    pub now: u32,
    /// memcached's `oldest_live`, a flush deadline minus one: once the
    /// deadline has come, items last stored or bumped at or before it are
    /// flushed (0: no flush pending).
    pub oldest_live: u32,
    pub evictions: bool,
    pub hasher: &'a FixedState,
    pub memory: &'a Memory,
    pub layout: Layout,
    pub pool: &'a SegPool,
    /// Told of each eviction (`watch evictions`).
    pub evictions_log: Option<&'a dyn super::EvictionLog>,
}

impl Ctx<'_> {
    /// memcached tests `oldest_live <= current_time`, which hides items one
    /// second before the deadline; we hide them at the deadline, as
    /// documented for `flush_all`.
    pub(super) fn flushed(&self, time: u32) -> bool {
        self.oldest_live != 0 && self.oldest_live < self.now && time <= self.oldest_live
    }

    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Why a record with these fields is dead now, if it is.
    pub(super) fn dead(&self, m: Meta) -> Option<Lookup> {
        if clock::is_expired(m.deadline, self.now) {
            Some(Lookup::Expired)
        } else if self.flushed(m.time) {
            Some(Lookup::Flushed)
        } else {
            None
        }
    }
}

/// The hash the index is keyed by. The shard was picked by the top bits of
/// `hash` (16 at most); the index takes its home group from the top bits
/// and its 7-bit tags from the low bits, so rotate the shard's bits to
/// where it looks at neither.
pub(super) fn table_hash(hash: u64) -> u64 {
    hash.rotate_left(24)
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

/// How a shard turns its CAS sequence numbers into CAS values: the shard's
/// index in the low bits keeps them unique across shards; 0 when CAS is
/// off (`-C`). Four bytes, so that a shard with its lock stays within
/// five cache lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasRule {
    pub on: bool,
    pub shard_bits: u8,
    pub shard: u16,
}

impl CasRule {
    pub(super) fn value(self, seq: u64) -> u64 {
        if self.on {
            (seq << self.shard_bits) | u64::from(self.shard)
        } else {
            0
        }
    }
}

/// Why a write could not get the memory it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Nothing left to evict here: free this much in other shards and retry.
    Elsewhere(usize),
    /// Evictions are off (or the shard has no segment id left): out of memory.
    NoMemory,
}

/// An item looked up by key.
pub(super) enum Find {
    /// Where it is, and where the index holds it (for [`Shard::commit`]).
    Live(Loc, At),
    /// It was there but dead; it has been removed. `Lookup` says why, and
    /// the memory it let go (if any) is to be freed outside the lock.
    Dead(Lookup, Option<Bytes>),
    Missing,
}

pub struct Shard {
    pub(super) index: Index,
    pub(super) segs: Segments,
    pub(super) len: u32,
    /// Bytes charged to `Memory`: segments and the index.
    pub(super) bytes: usize,
    pub(super) index_charge: usize,
    /// Where `sweep` goes on: a position among the nodes, the epoch of
    /// the segment there, and an offset in it.
    pub(super) cursor: (u32, u32, usize),
    /// Records moved by eviction so far: a write whose old version did
    /// not move can update its index entry without comparing keys.
    pub(super) moves: u64,
    /// Segment memory let go under the lock, for the store to free after
    /// unlocking (unmapping pages takes microseconds).
    pub garbage: Vec<Bytes>,
    /// A freed shared segment no reader holds, with its charge: the next
    /// segment this shard opens, without mapping fresh pages (and their
    /// page faults) for every 64 KiB written. Freed first when memory is
    /// wanted for anything else.
    pub(super) spare: Option<(SegMem, usize)>,
    /// Keys lately evicted unread from the small queue (charged with the
    /// index, sized by it).
    pub(super) ghost: Ghost,
    pub counters: Counters,
    pub(super) cas_rule: CasRule,
    /// The next CAS sequence number: every one below it has been handed
    /// out or passed over. Never 0.
    pub(super) cas_next: u64,
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
            index: Index::new(),
            segs: Segments::new(),
            len: 0,
            bytes: 0,
            index_charge: 0,
            cursor: (0, 0, 0),
            moves: 0,
            garbage: Vec::new(),
            spare: None,
            ghost: Ghost::new(),
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
            cas_rule: CasRule {
                on: true,
                shard_bits: 0,
                shard: 0,
            },
            cas_next: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The immutable item bytes of a record.
    #[inline(always)]
    pub(super) fn item(&self, loc: Loc) -> &[u8] {
        self.segs.item(loc)
    }

    /// The item bytes as a slice a reader keeps after the lock.
    pub(super) fn item_shared(&self, loc: Loc) -> Bytes {
        let node = loc.node();
        let (start, len) = self.segs.item_span(node, loc.offset());
        self.segs.get(node).mem().share(start, len)
    }

    // Always: a few loads on every hit and write, which thin LTO otherwise
    // leaves out of line in some builds (about 70 instructions a get).
    #[inline(always)]
    pub(super) fn meta(&self, loc: Loc) -> Meta {
        Meta::read(self.segs.get(loc.node()).mem(), loc.offset())
    }

    /// Writes `m` to the record at `loc`, which must have room for its
    /// deadline (see [`Shard::set_meta_moving`]).
    #[inline]
    pub(super) fn set_meta(&mut self, loc: Loc, m: Meta) {
        m.write(self.segs.get_mut(loc.node()).mem_mut(), loc.offset());
    }

    /// Writes `m` to the live record at `loc`, as [`Shard::set_meta`]; a
    /// record with no deadline field given a deadline is written again
    /// with one, as memcached changes an item's TTL in place: the same
    /// key, value, flags and CAS (carried, as its new place would give it
    /// another), in the same queue as the newest record there, `m` its
    /// fields, the old one retired. Returns where the record is now; with
    /// `evict_if_full`, `None` if there was no memory for it and the item
    /// was evicted instead: a cache may drop an item early, but must not
    /// keep it past its deadline.
    ///
    /// # Errors
    /// Without `evict_if_full`, no memory for the new record, as for a
    /// write: nothing has changed but what eviction did (which may have
    /// moved the record).
    #[inline]
    pub(super) fn set_meta_moving(
        &mut self,
        loc: Loc,
        hash: u64,
        m: Meta,
        evict_if_full: bool,
        ctx: &Ctx,
    ) -> Result<Option<Loc>, Full> {
        if m.try_write(self.segs.get_mut(loc.node()).mem_mut(), loc.offset()) {
            return Ok(Some(loc));
        }
        self.rewrite_with_deadline(loc, hash, m, evict_if_full, ctx)
    }

    /// [`Shard::set_meta_moving`] for a record that must be written again.
    #[cold]
    #[inline(never)]
    fn rewrite_with_deadline(
        &mut self,
        loc: Loc,
        hash: u64,
        m: Meta,
        evict_if_full: bool,
        ctx: &Ctx,
    ) -> Result<Option<Loc>, Full> {
        // A slice of the old record, not a borrow of the shard: it stays
        // readable while the shard changes.
        let it = self.item_shared(loc);
        let h = item::header(&it);
        let cas = self.cas_rule.on.then(|| self.cas_of(loc, &h));
        let value = &it[h.value_start..];
        let fill = |d: &mut [u8]| d.copy_from_slice(value);
        let key = item::key(&it);
        let mut new = NewItem::new(
            ctx.layout,
            key,
            item::key_binary(&it),
            h.flags,
            cas,
            value.len(),
            &fill,
        );
        let placed = self.commit(key, hash, Some((loc, None)), &mut new, m.deadline, ctx);
        drop(new);
        let at = match placed {
            Ok((at, garbage)) => {
                // The same item, not a new one.
                self.counters.total_items -= 1;
                self.garbage.extend(garbage);
                self.set_meta(at, m);
                Some(at)
            }
            Err(full) if !evict_if_full => return Err(full),
            Err(_) => {
                // Eviction may have moved it, or had no room to keep it.
                if let Some(loc) = self.find(item::key(&it), hash) {
                    let m = self.meta(loc);
                    self.count_eviction(&it, m, ctx);
                    let freed = self.remove(loc, hash, ctx);
                    self.garbage.extend(freed);
                }
                None
            }
        };
        // The old segment may have no other holder left: freed after the
        // lock, as the shard's other garbage.
        self.garbage.push(it);
        Ok(at)
    }

    pub(super) fn find(&self, key: &[u8], hash: u64) -> Option<Loc> {
        self.find_entry(key, hash).map(|(loc, _)| loc)
    }

    /// [`Shard::find`], and where the index holds the key.
    #[inline]
    fn find_entry(&self, key: &[u8], hash: u64) -> Option<(Loc, At)> {
        let segs = &self.segs;
        self.index
            .find_with_place(table_hash(hash), |l| item::key(segs.item(Loc(l))) == key)
            .map(|(l, at)| (Loc(l), at))
    }

    /// Finds a key, removing it if it has expired or been flushed.
    pub(super) fn find_live(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> Find {
        let Some((loc, entry)) = self.find_entry(key, hash) else {
            return Find::Missing;
        };
        match self.dead(loc, ctx) {
            None => Find::Live(loc, entry),
            Some(why) => Find::Dead(why, self.reclaim(loc, hash, ctx)),
        }
    }

    pub(super) fn dead(&self, loc: Loc, ctx: &Ctx) -> Option<Lookup> {
        ctx.dead(self.meta(loc))
    }

    /// Removes a dead item, counting it.
    pub(super) fn reclaim(&mut self, loc: Loc, hash: u64, ctx: &Ctx) -> Option<Bytes> {
        self.count_reclaimed(self.meta(loc));
        self.remove(loc, hash, ctx)
    }

    pub(super) fn count_reclaimed(&mut self, m: Meta) {
        self.counters.reclaimed += 1;
        if !m.has(FETCHED) {
            self.counters.expired_unfetched += 1;
        }
    }

    /// Takes an item out of the index; its space waits for its segment.
    pub(super) fn remove(&mut self, loc: Loc, hash: u64, ctx: &Ctx) -> Option<Bytes> {
        self.unindex(loc, hash);
        self.retire(loc, ctx)
    }

    /// Takes a live record's entry out of the index.
    pub(super) fn unindex(&mut self, loc: Loc, hash: u64) {
        if self
            .index
            .remove(table_hash(hash), |l| l == loc.0)
            .is_none()
        {
            unreachable!("record {loc:?} is not in the index");
        }
        self.len -= 1;
    }

    /// Marks a record dead; frees its segment if nothing else lives there.
    pub(super) fn retire(&mut self, loc: Loc, ctx: &Ctx) -> Option<Bytes> {
        let (node, at) = (loc.node(), loc.offset());
        let len = self.segs.record_len(node, at);
        let seg = self.segs.get_mut(node);
        let mem = seg.mem_mut();
        let state = mem.state(at);
        mem.set_state(at, state | DEAD);
        seg.live -= 1;
        seg.live_bytes -= len;
        if seg.live == 0 && !self.segs.is_head(node) {
            self.free_segment(node, ctx)
        } else {
            None
        }
    }

    /// The CAS value of a record: the one it carries, else the one its
    /// place gives it. Every reader of a CAS comes here (or to
    /// [`Shard::cas_of`]).
    ///
    /// A record that carries none has the sequence number of its place,
    /// its segment's `cas_base` plus its offset: each segment is given a
    /// range of numbers no other has when it opens, so no two places share
    /// one. A new version whose place would not show a CAS above the one it
    /// replaces carries a new one instead (see `room.rs`). Records never
    /// change, and a record moved keeps its CAS by carrying it, so a CAS
    /// handed out stays its record's.
    pub(super) fn cas(&self, loc: Loc) -> u64 {
        self.cas_of(loc, &item::header(self.item(loc)))
    }

    /// [`Shard::cas`] given the record's item header.
    pub(super) fn cas_of(&self, loc: Loc, h: &item::Header) -> u64 {
        self.cas_carried_or_placed(loc, h.cas)
    }

    /// The CAS of a record at `loc` whose item carries `carried`: that,
    /// or else the one its place gives it (0 with CAS off).
    fn cas_carried_or_placed(&self, loc: Loc, carried: Option<u64>) -> u64 {
        if !self.cas_rule.on {
            return 0;
        }
        match carried {
            Some(cas) => cas,
            None => self.cas_rule.value(self.placed_seq(loc)),
        }
    }

    /// [`Shard::cas`] of the record `new` was just written to at `loc`,
    /// from what `new` carries instead of read back from the record: each
    /// store answers with its new CAS, and reading it back cost a lookup of
    /// the record and a parse of its header.
    pub(super) fn placed_cas(&self, loc: Loc, new: &NewItem) -> u64 {
        let cas = self.cas_carried_or_placed(loc, new.carried_cas());
        debug_assert_eq!(cas, self.cas(loc), "the record carries what was written");
        cas
    }

    /// Whether the CAS of the record at `loc` is at least the one sequence
    /// number `seq` gives, with CAS on: [`Shard::cas`] compared, but for a
    /// record that takes its place's CAS by comparing sequence numbers
    /// (`CasRule::value` keeps their order), from one segment lookup and
    /// the item's first two bytes (its item starts after its prefix).
    pub(super) fn cas_reaches(&self, loc: Loc, seq: u64) -> bool {
        debug_assert!(self.cas_rule.on);
        let (node, at) = (loc.node(), loc.offset());
        let seg = self.segs.get(node);
        let mem = seg.mem();
        let reaches = if item::carries_cas(mem.bytes(at + mem.prefix_len(at), 2)) {
            self.cas_rule.value(seq) <= self.cas(loc)
        } else {
            seq <= seg.cas_base + at as u64
        };
        debug_assert_eq!(reaches, self.cas_rule.value(seq) <= self.cas(loc));
        reaches
    }

    /// The sequence number a record's place gives it.
    pub(super) fn placed_seq(&self, loc: Loc) -> u64 {
        self.segs.get(loc.node()).cas_base + loc.offset() as u64
    }

    /// A new CAS for an item that must carry it.
    pub(super) fn issue_cas(&mut self) -> u64 {
        let seq = self.take_cas_seqs(1);
        self.cas_rule.value(seq)
    }

    /// The first of `n` sequence numbers no place or item has been given.
    pub(super) fn take_cas_seqs(&mut self, n: usize) -> u64 {
        let first = self.cas_next;
        self.cas_next += n as u64;
        first
    }

    /// The current version of a live item and its CAS, for a
    /// read-modify-write done outside the lock (append, prepend, incr,
    /// decr).
    pub(super) fn snapshot(
        &mut self,
        key: &[u8],
        hash: u64,
        ctx: &Ctx,
    ) -> (Option<(Bytes, u64)>, Option<Bytes>) {
        match self.find_live(key, hash, ctx) {
            Find::Live(loc, _) => (Some((self.item_shared(loc), self.cas(loc))), None),
            Find::Dead(_, garbage) => (None, garbage),
            Find::Missing => (None, None),
        }
    }

    /// Inserts `new` with `deadline` for a key known to be missing.
    pub(super) fn insert_new(
        &mut self,
        key: &[u8],
        hash: u64,
        new: &mut NewItem,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(Loc, Option<Bytes>), Full> {
        self.commit(key, hash, None, new, deadline, ctx)
    }

    /// Replaces the version `old` (from [`Shard::snapshot`]) of an item
    /// with `new`, keeping its deadline; `then` adjusts the new record's
    /// fields, given the old one's, before it is written (it may run again
    /// if there is no room at first). `Ok(Some(cas))`: swapped, and the new
    /// version's CAS; `Ok(None)` if the item changed meanwhile: the caller
    /// reads it again.
    pub(super) fn swap(
        &mut self,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: &mut NewItem,
        ctx: &Ctx,
        then: impl FnOnce(Meta, &mut Meta),
    ) -> Result<(Option<u64>, Option<Bytes>), Full> {
        let (loc, entry) = match self.find_live(key, hash, ctx) {
            Find::Live(loc, entry) => (loc, entry),
            Find::Dead(_, garbage) => return Ok((None, garbage)),
            Find::Missing => return Ok((None, None)),
        };
        if !self.is_version(loc, old) {
            return Ok((None, None));
        }
        let prev = self.meta(loc);
        // The new record's fields decided first: its deadline decides its
        // layout.
        let mut e = Meta::new(prev.deadline, ctx.now);
        then(prev, &mut e);
        let (at, garbage) =
            self.commit(key, hash, Some((loc, Some(entry))), new, e.deadline, ctx)?;
        self.set_meta(at, e);
        Ok((Some(self.cas(at)), garbage))
    }

    /// True if the record at `loc` is the version `old` was read from.
    /// `old` keeps its segment alive, so no other record can have taken
    /// its address.
    pub(super) fn is_version(&self, loc: Loc, old: &Bytes) -> bool {
        let cur = self.item(loc);
        cur.as_ptr() == old.as_ptr() && cur.len() == old.len()
    }

    /// Stores `new` in place of the live record at `at` (or as a new key),
    /// as the newest record, `at` given with where the index holds it if
    /// that is known. Returns where it went and memory to free.
    pub(super) fn commit(
        &mut self,
        key: &[u8],
        hash: u64,
        at: Option<(Loc, Option<At>)>,
        new: &mut NewItem,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(Loc, Option<Bytes>), Full> {
        let (at, entry) = match at {
            Some((loc, entry)) => (Some(loc), entry),
            None => (None, None),
        };
        if at.is_none() {
            self.index_room(ctx)?;
        }
        // A new version stays in its queue; a new key is on probation
        // unless it was evicted from probation lately (and, if larger than
        // the average item here, a draw admits it: see `ghost.rs`). With
        // evictions off nothing is evicted, so nothing needs to be on
        // probation.
        let queue = match at {
            _ if !ctx.evictions => Queue::Main,
            Some(at) => self.segs.get(at.node()).queue,
            None => {
                let average = self.average_cost();
                if self
                    .ghost
                    .admits(hash, new.item_len, average, self.cas_next)
                {
                    Queue::Main
                } else {
                    Queue::Small
                }
            }
        };
        let moves = self.moves;
        let loc = self.place(new, deadline, at, queue, ctx)?;
        self.counters.total_items += 1;
        let old = match at {
            None => None,
            // (Gone only if eviction had no room to keep it: then this is
            // a new key again.) Where the lookup found it, if known.
            Some(at) if self.moves == moves => {
                if entry.is_some_and(|e| self.index.replace_at(e, at.0, loc.0)) {
                    Some(at)
                } else {
                    self.index
                        .find_mut(table_hash(hash), |l| l == at.0)
                        .map(|slot| {
                            *slot = loc.0;
                            at
                        })
                }
            }
            // Eviction moved records: the old version may be elsewhere now.
            Some(_) => {
                let segs = &self.segs;
                self.index
                    .find_mut(table_hash(hash), |l| {
                        l != loc.0 && item::key(segs.item(Loc(l))) == key
                    })
                    .map(|l| Loc(mem::replace(l, loc.0)))
            }
        };
        let garbage = match old {
            Some(old) => self.retire(old, ctx),
            None => {
                let segs = &self.segs;
                let hasher = ctx.hasher;
                self.index.insert_unique(table_hash(hash), loc.0, |l| {
                    table_hash(hasher.hash_one(item::key(segs.item(Loc(l)))))
                });
                self.len += 1;
                None
            }
        };
        Ok((loc, garbage))
    }

    /// An immediate `flush_all`, as memcached's `item_flush_expired`: the
    /// items of the flush's second and the one before (time at or after
    /// `oldest_live`) go now; older ones stay until they are found flushed
    /// (`get_flushed`) or swept. Returns the freed memory (segments, and
    /// the old shard when nothing was left), to drop outside the lock.
    pub fn flush_recent(&mut self, ctx: &Ctx) -> (Vec<Bytes>, Shard) {
        let mut recent = Vec::new();
        self.walk_oldest_first(&mut |loc, m| {
            if m.time >= ctx.oldest_live {
                recent.push(loc);
            }
            true
        });
        let mut freed = Vec::new();
        for loc in recent {
            let hash = ctx.hash(item::key(self.item(loc)));
            freed.extend(self.remove(loc, hash, ctx));
        }
        let mut old = Shard::new();
        if self.len == 0 {
            // Nothing older was left: give back every segment, the head too.
            ctx.memory.release(self.bytes);
            let (counters, installs) = (self.counters, self.segs.installs);
            let (cas_rule, cas_next) = (self.cas_rule, self.cas_next);
            old = mem::take(self);
            self.counters = counters;
            self.segs.installs = installs;
            // CAS values handed out before stay unique.
            self.cas_rule = cas_rule;
            self.cas_next = cas_next;
        }
        (freed, old)
    }

    /// Bytes charged to this shard, and the last store or access refresh
    /// of its oldest live item (`None` when empty).
    pub fn usage(&self) -> (usize, Option<u32>) {
        let mut oldest = None;
        self.walk_oldest_first(&mut |_, m| {
            oldest = Some(m.time);
            false
        });
        (self.bytes, oldest)
    }

    /// Calls `f` with every live record, oldest segment first, until it
    /// returns false. Returns false if `f` stopped it.
    pub(super) fn walk_oldest_first(&self, f: &mut dyn FnMut(Loc, Meta) -> bool) -> bool {
        let mut at_node = self.segs.oldest();
        while let Some(node) = at_node {
            let seg = self.segs.get(node);
            let mut at = 0;
            while at < seg.used {
                let this = at;
                at += self.segs.record_len(node, this);
                let m = Meta::read(seg.mem(), this);
                if m.has(DEAD) {
                    continue;
                }
                let loc = Loc::at(node, this);
                if !f(loc, m) {
                    return false;
                }
            }
            at_node = self.segs.newer(node);
        }
        true
    }

    /// Calls `f` with every live item, oldest first, until it returns
    /// false. Returns false if `f` stopped it.
    pub fn visit(&self, ctx: &Ctx, f: &mut dyn FnMut(ItemView<'_>) -> bool) -> bool {
        self.walk_oldest_first(&mut |loc, m| {
            if ctx.dead(m).is_some() {
                return true;
            }
            let it = self.item(loc);
            let h = item::header(it);
            f(ItemView {
                key: item::key(it),
                key_binary: item::key_binary(it),
                value_len: it.len() - h.value_start,
                flags: h.flags,
                cas: self.cas_of(loc, &h),
                deadline: m.deadline,
                time: m.time,
                fetched: m.has(FETCHED),
            })
        })
    }

    /// Checks every structural invariant; for tests.
    #[cfg(test)]
    pub fn check(&self, hasher: &FixedState) {
        let mut live = 0;
        let mut charges = 0;
        let mut queues = [0; 2];
        let mut at_node = self.segs.newest();
        let mut prev = super::list::NIL;
        while let Some(node) = at_node {
            let seg = self.segs.get(node);
            assert_eq!(seg.links.prev(), prev, "back link of segment {node}");
            charges += seg.charge;
            let (mut n, mut bytes, mut at) = (0, 0, 0);
            while at < seg.used {
                let len = self.segs.record_len(node, at);
                let loc = Loc::at(node, at);
                if !Meta::read(seg.mem(), at).has(DEAD) {
                    n += 1;
                    bytes += len;
                    let key = item::key(self.item(loc));
                    assert_eq!(self.find(key, hasher.hash_one(key)), Some(loc));
                }
                at += len;
            }
            assert_eq!(at, seg.used, "records fill segment {node} exactly");
            assert_eq!((n, bytes), (seg.live, seg.live_bytes), "segment {node}");
            assert!(
                n > 0 || self.segs.is_head(node),
                "empty sealed segment {node}"
            );
            if let Some(h) = self.segs.head(seg.queue) {
                assert_eq!(self.segs.get(h).queue, seg.queue, "head of the wrong queue");
            }
            queues[seg.queue as usize] += seg.charge;
            live += n;
            prev = node;
            at_node = (seg.links.next() != super::list::NIL).then_some(seg.links.next());
        }
        assert_eq!(self.segs.oldest().unwrap_or(super::list::NIL), prev);
        for q in [Queue::Small, Queue::Main] {
            assert_eq!(self.segs.queue_bytes(q), queues[q as usize], "{q:?} bytes");
            let mut n = 0;
            let mut at = self.segs.oldest_in(q);
            while let Some(node) = at {
                assert_eq!(self.segs.get(node).queue, q);
                n += self.segs.get(node).charge;
                at = self.segs.newer_in(node);
            }
            assert_eq!(n, queues[q as usize], "{q:?} list");
        }
        assert_eq!(live, self.len);
        assert_eq!(self.index.len(), self.len as usize);
        let spare = self.spare.as_ref().map_or(0, |(_, charge)| *charge);
        assert_eq!(charges + self.index_charge + spare, self.bytes);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys from the newest record to the oldest; for tests.
    #[cfg(test)]
    pub fn keys_newest_first(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.walk_oldest_first(&mut |loc, _| {
            out.push(item::key(self.item(loc)).to_vec());
            true
        });
        out.reverse();
        out
    }
}
