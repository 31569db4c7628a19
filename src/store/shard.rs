//! One shard: a hash index of record locations, the segments the records
//! live in, oldest to newest, and the shard's share of the counters. Every
//! method runs under the shard's lock, so each does a bounded amount of
//! work, and memory it gives up goes back to the caller to free after the
//! lock is released.
//!
//! Storage is log-structured (see `segment.rs`): a write appends a record
//! to the newest shared segment, or brings a segment of its own for a large
//! item; a replaced or deleted record is only marked dead, and a segment
//! whose records are all dead is freed at once. When memory runs out the
//! oldest segment goes, whole. Its live records are evicted, except those
//! read since they were written (the ACTIVE bit, memcached's second chance
//! for items in its segmented LRU), which are copied forward into the newest
//! segment, up to half a segment's worth per eviction. So a hot item stays
//! while it is read, a cold one leaves in write order, and the shard never
//! frees item by item: no per-item allocation, no per-item LRU links.
//!
//! A hit sets the FETCHED and ACTIVE bits and refreshes the record's access
//! time at most once per [`UPDATE_INTERVAL`] (memcached's
//! `ITEM_UPDATE_INTERVAL`), which `flush_all` and the meta `l`/`la` read.
//! With evictions off (`-M`), running out of memory compacts instead: the
//! oldest segment with dead space is rewritten without it, and a write is
//! refused only when no segment has any.

use std::hash::BuildHasher;
use std::mem;

use bytes::Bytes;
use foldhash::quality::RandomState;
use hashbrown::HashTable;

use super::item;
use super::list::{self, Links, List, Nodes};
use super::memory::{self, Memory};
use super::segment::{PREFIX, SegMem};
use super::{Lookup, StoreResult, Value, clock};
use crate::item_rules::StoreMode;

/// Seconds between two refreshes of an item's access time on hits.
pub const UPDATE_INTERVAL: u32 = 60;

/// Record state bits (the first byte of a record).
/// Read since it was stored.
pub const FETCHED: u8 = 1;
/// Read since it was stored or last spared: eviction copies it forward once.
pub const ACTIVE: u8 = 2;
/// Meta protocol: marked stale by an invalidating `md` or `ms` (`X`).
pub const STALE: u8 = 4;
/// Meta protocol: the recache token has been handed out (`W`, then `Z`).
pub const WIN: u8 = 8;
/// Replaced or removed: the space waits for its segment to go.
const DEAD: u8 = 16;

/// Shared segments have node ids below this; records in them are located by
/// a 15-bit segment id and a 16-bit offset.
const SHARED_IDS: u32 = 1 << 15;
/// Locations with this bit set name a segment of their own.
const SOLO_BIT: u32 = 1 << 31;

/// How many evictions one write may run before it gives up (only reached
/// with evictions off, when compaction frees too little each time).
const MAX_EVICTIONS_PER_WRITE: usize = 64;

/// How segments are sized; fixed for a store's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes in a shared segment (at most 64 KiB: offsets are 16 bits).
    pub segment_size: usize,
    /// Records up to this size share segments; larger ones get their own.
    pub shared_max: usize,
}

impl Layout {
    /// Segments small enough that a shard has many (eviction frees a small
    /// share at a time) and large enough that their tail waste is small.
    pub fn for_share(shard_share: usize) -> Layout {
        let want = (shard_share / 64).clamp(1024, 64 * 1024);
        let segment_size = 1 << (usize::BITS - 1 - want.leading_zeros());
        // A record copied under the lock is at most 4 KiB; one that needs
        // more than a quarter of a segment would waste too much of its tail.
        let shared_max = if segment_size * 4 <= shard_share.max(1) {
            (segment_size / 4).min(4096)
        } else {
            0
        };
        Layout {
            segment_size,
            shared_max,
        }
    }

    pub fn is_shared(&self, record_len: usize) -> bool {
        record_len <= self.shared_max
    }

    /// What storing a record of this length may need to reserve.
    pub fn cost(&self, record_len: usize) -> usize {
        if self.is_shared(record_len) {
            memory::segment_cost(self.segment_size)
        } else {
            memory::segment_cost(record_len)
        }
    }
}

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
    pub layout: Layout,
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

    /// Why a record with these fields is dead now, if it is.
    fn dead(&self, m: Meta) -> Option<Lookup> {
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
/// `hash`; hashbrown takes its 7-bit tags from the top bits and its bucket
/// from the low bits, so rotate bits that vary within a shard to the top.
fn table_hash(hash: u64) -> u64 {
    hash.rotate_right(7)
}

/// Where a record is: a shared segment and an offset in it, or a segment
/// of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc(u32);

impl Loc {
    fn shared(seg: u32, offset: usize) -> Loc {
        debug_assert!(seg < SHARED_IDS && offset <= u16::MAX as usize);
        Loc((seg << 16) | offset as u32)
    }

    fn solo(node: u32) -> Loc {
        debug_assert!(node >= SHARED_IDS);
        Loc(SOLO_BIT | node)
    }

    /// The record at `offset` of segment `node` (0 for one of its own).
    fn at(node: u32, offset: usize) -> Loc {
        if is_solo(node) {
            Loc::solo(node)
        } else {
            Loc::shared(node, offset)
        }
    }

    /// The segment's node id.
    fn node(self) -> u32 {
        if self.0 & SOLO_BIT != 0 {
            self.0 & !SOLO_BIT
        } else {
            self.0 >> 16
        }
    }

    fn offset(self) -> usize {
        if self.0 & SOLO_BIT != 0 {
            0
        } else {
            (self.0 & 0xffff) as usize
        }
    }
}

/// A record's changeable fields, read and written as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Relative seconds, 0 for never.
    pub deadline: u32,
    /// Last store or access refresh (memcached's `it->time`).
    pub time: u32,
    state: u8,
}

impl Meta {
    pub fn has(&self, bit: u8) -> bool {
        self.state & bit != 0
    }

    pub fn set(&mut self, bit: u8) {
        self.state |= bit;
    }

    pub fn clear(&mut self, bit: u8) {
        self.state &= !bit;
    }

    pub fn bits(&self) -> u8 {
        self.state
    }
}

/// An item about to be stored: what it holds, and for a large one its
/// record already written into a segment of its own, before the lock.
pub struct NewItem<'a> {
    key: &'a [u8],
    key_binary: bool,
    flags: u32,
    cas: u64,
    fill: &'a dyn Fn(&mut [u8]),
    item_len: usize,
    solo: Option<SegMem>,
}

impl<'a> NewItem<'a> {
    /// `fill` writes the value; it may run more than once (a write that
    /// has to retry). Large items are written here, outside any lock.
    pub fn new(
        layout: Layout,
        key: &'a [u8],
        key_binary: bool,
        flags: u32,
        cas: u64,
        value_len: usize,
        fill: &'a dyn Fn(&mut [u8]),
    ) -> NewItem<'a> {
        let item_len = item::encoded_len(key.len(), value_len, flags, cas);
        let mut new = NewItem {
            key,
            key_binary,
            flags,
            cas,
            fill,
            item_len,
            solo: None,
        };
        if !layout.is_shared(new.record_len()) {
            let mut mem = SegMem::new(new.record_len());
            new.write_item(mem.bytes_mut(PREFIX, item_len));
            new.solo = Some(mem);
        }
        new
    }

    pub fn record_len(&self) -> usize {
        PREFIX + self.item_len
    }

    fn write_item(&self, dst: &mut [u8]) {
        item::write(dst, self.key, self.key_binary, self.flags, self.cas, |d| {
            (self.fill)(d)
        });
    }
}

/// One segment: a shared one receiving appends or sealed, or a large
/// record's own. A vacant entry has no memory and chains its table's free
/// list through `links.next`.
#[derive(Debug)]
struct Segment {
    mem: Option<SegMem>,
    /// Bytes written.
    used: usize,
    /// Live records, and their bytes.
    live: u32,
    live_bytes: usize,
    /// What it is charged against the memory limit.
    charge: usize,
    /// Which use of its node this is, so a sweep that stopped inside it
    /// can tell whether it is still the segment it was walking.
    epoch: u32,
    links: Links,
}

impl Segment {
    fn vacant(next_free: u32) -> Segment {
        let mut links = Links::detached();
        links.set_next(next_free);
        Segment {
            mem: None,
            used: 0,
            live: 0,
            live_bytes: 0,
            charge: 0,
            epoch: 0,
            links,
        }
    }

    fn mem(&self) -> &SegMem {
        self.mem.as_ref().expect("a segment in use has memory")
    }

    fn mem_mut(&mut self) -> &mut SegMem {
        self.mem.as_mut().expect("a segment in use has memory")
    }
}

fn is_solo(node: u32) -> bool {
    node >= SHARED_IDS
}

/// The segment tables: shared segments, then segments of their own, as
/// one id space for the age list.
#[derive(Debug, Default)]
struct Segments {
    shared: Vec<Segment>,
    solo: Vec<Segment>,
}

impl Segments {
    fn get(&self, node: u32) -> &Segment {
        if is_solo(node) {
            &self.solo[(node - SHARED_IDS) as usize]
        } else {
            &self.shared[node as usize]
        }
    }

    fn get_mut(&mut self, node: u32) -> &mut Segment {
        if is_solo(node) {
            &mut self.solo[(node - SHARED_IDS) as usize]
        } else {
            &mut self.shared[node as usize]
        }
    }

    /// The length of the record at `at` in segment `node`.
    fn record_len(&self, node: u32, at: usize) -> usize {
        let mem = self.get(node).mem();
        if is_solo(node) {
            mem.len()
        } else {
            PREFIX + mem.item_len(at)
        }
    }

    fn item(&self, loc: Loc) -> &[u8] {
        let (node, at) = (loc.node(), loc.offset());
        let len = self.record_len(node, at) - PREFIX;
        self.get(node).mem().bytes(at + PREFIX, len)
    }
}

impl Nodes for Segments {
    fn links(&self, i: u32) -> &Links {
        &self.get(i).links
    }
    fn links_mut(&mut self, i: u32) -> &mut Links {
        &mut self.get_mut(i).links
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
    /// Evictions are off (or the shard has no segment id left): out of memory.
    NoMemory,
}

/// An item looked up by key.
pub(super) enum Find {
    Live(Loc),
    /// It was there but dead; it has been removed. `Lookup` says why, and
    /// the memory it let go (if any) is to be freed outside the lock.
    Dead(Lookup, Option<Bytes>),
    Missing,
}

/// The outcome of a conditional replace of one version of an item.
pub enum Swap {
    /// Replaced; memory to free outside the lock.
    Done(Option<Bytes>),
    /// The version read earlier is gone: read again.
    Changed(Option<Bytes>),
}

pub struct Shard {
    index: HashTable<u32>,
    segs: Segments,
    free_shared: u32,
    free_solo: u32,
    /// Segments from the newest (head of the list) to the oldest.
    order: List,
    /// The shared segment appends go to.
    head: Option<u32>,
    len: u32,
    /// Bytes charged to `Memory`: segments and the index.
    bytes: usize,
    index_charge: usize,
    /// Where `sweep` goes on: a position among the nodes, the epoch of
    /// the segment there, and an offset in it.
    cursor: (u32, u32, usize),
    /// Segments installed so far, for their epochs.
    installs: u32,
    /// Records moved by eviction so far: a write whose old version did
    /// not move can update its index entry without comparing keys.
    moves: u64,
    /// Segment memory let go under the lock, for the store to free after
    /// unlocking (unmapping pages takes microseconds).
    pub garbage: Vec<Bytes>,
    /// A freed shared segment no reader holds, with its charge: the next
    /// segment this shard opens, without mapping fresh pages (and their
    /// page faults) for every 64 KiB written. Freed first when memory is
    /// wanted for anything else.
    spare: Option<(SegMem, usize)>,
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
            segs: Segments {
                shared: Vec::new(),
                solo: Vec::new(),
            },
            free_shared: list::NIL,
            free_solo: list::NIL,
            order: List::new(),
            head: None,
            len: 0,
            bytes: 0,
            index_charge: 0,
            cursor: (0, 0, 0),
            installs: 0,
            moves: 0,
            garbage: Vec::new(),
            spare: None,
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

    /// The immutable item bytes of a record.
    pub(super) fn item(&self, loc: Loc) -> &[u8] {
        self.segs.item(loc)
    }

    /// The item bytes as a slice a reader keeps after the lock.
    pub(super) fn item_shared(&self, loc: Loc) -> Bytes {
        let (node, at) = (loc.node(), loc.offset());
        let len = self.segs.record_len(node, at) - PREFIX;
        self.segs.get(node).mem().share(at + PREFIX, len)
    }

    pub(super) fn meta(&self, loc: Loc) -> Meta {
        record_meta(self.segs.get(loc.node()).mem(), loc.offset())
    }

    pub(super) fn set_meta(&mut self, loc: Loc, m: Meta) {
        let mem = self.segs.get_mut(loc.node()).mem_mut();
        let at = loc.offset();
        mem.set_state(at, m.state);
        mem.set_deadline(at, m.deadline);
        mem.set_time(at, m.time);
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<Loc> {
        let segs = &self.segs;
        self.index
            .find(table_hash(hash), |&l| item::key(segs.item(Loc(l))) == key)
            .map(|&l| Loc(l))
    }

    /// Finds a key, removing it if it has expired or been flushed.
    pub(super) fn find_live(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> Find {
        let Some(loc) = self.find(key, hash) else {
            return Find::Missing;
        };
        match self.dead(loc, ctx) {
            None => Find::Live(loc),
            Some(why) => Find::Dead(why, self.reclaim(loc, hash, ctx)),
        }
    }

    fn dead(&self, loc: Loc, ctx: &Ctx) -> Option<Lookup> {
        ctx.dead(self.meta(loc))
    }

    /// Removes a dead item, counting it.
    fn reclaim(&mut self, loc: Loc, hash: u64, ctx: &Ctx) -> Option<Bytes> {
        self.count_reclaimed(self.meta(loc));
        self.remove(loc, hash, ctx)
    }

    fn count_reclaimed(&mut self, m: Meta) {
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
    fn unindex(&mut self, loc: Loc, hash: u64) {
        match self.index.find_entry(table_hash(hash), |&l| l == loc.0) {
            Ok(found) => {
                found.remove();
            }
            Err(_) => unreachable!("record {loc:?} is not in the index"),
        }
        self.len -= 1;
    }

    /// Marks a record dead; frees its segment if nothing else lives there.
    fn retire(&mut self, loc: Loc, ctx: &Ctx) -> Option<Bytes> {
        let (node, at) = (loc.node(), loc.offset());
        let len = self.segs.record_len(node, at);
        let seg = self.segs.get_mut(node);
        let mem = seg.mem_mut();
        let state = mem.state(at);
        mem.set_state(at, state | DEAD);
        seg.live -= 1;
        seg.live_bytes -= len;
        if seg.live == 0 && self.head != Some(node) {
            self.free_segment(node, ctx)
        } else {
            None
        }
    }

    /// Gives a segment's memory back; returns it to be dropped unlocked
    /// (slices handed out keep it alive until they go).
    fn free_segment(&mut self, node: u32, ctx: &Ctx) -> Option<Bytes> {
        let (mem, charge, _) = self.detach(node);
        if !is_solo(node) && self.spare.is_none() && mem.len() == ctx.layout.segment_size {
            match mem.recycle() {
                Some(mem) => self.spare = Some((mem, charge)),
                // Readers hold it: the last of them frees it.
                None => self.unreserve(charge, ctx),
            }
            return None;
        }
        self.unreserve(charge, ctx);
        Some(mem.into_bytes())
    }

    /// Whether a new shared segment could be given a node.
    fn can_open(&self) -> bool {
        self.free_shared != list::NIL || self.segs.shared.len() < SHARED_IDS as usize
    }

    /// Takes a segment out of the age list and its table; returns its
    /// memory, its charge (still on the books) and how much of it is written.
    fn detach(&mut self, node: u32) -> (SegMem, usize, usize) {
        self.order.unlink(&mut self.segs, node);
        if self.head == Some(node) {
            self.head = None;
        }
        let free = if is_solo(node) {
            &mut self.free_solo
        } else {
            &mut self.free_shared
        };
        let seg = self.segs.get_mut(node);
        let mem = seg.mem.take().expect("a detached segment had memory");
        let (charge, used) = (seg.charge, seg.used);
        *seg = Segment::vacant(*free);
        *free = node;
        (mem, charge, used)
    }

    /// A vacant node for a new segment, if the id space has one left.
    fn take_node(&mut self, solo: bool) -> Option<u32> {
        let free = if solo {
            self.free_solo
        } else {
            self.free_shared
        };
        if free != list::NIL {
            let next = self.segs.get(free).links.next();
            if solo {
                self.free_solo = next;
            } else {
                self.free_shared = next;
            }
            return Some(free);
        }
        let (table, base, max) = if solo {
            (&mut self.segs.solo, SHARED_IDS, SOLO_BIT)
        } else {
            (&mut self.segs.shared, 0, SHARED_IDS)
        };
        let node = base + table.len() as u32;
        if node >= max {
            return None;
        }
        table.push(Segment::vacant(list::NIL));
        Some(node)
    }

    /// Puts memory in a node as the newest segment.
    fn install(&mut self, node: u32, mem: SegMem, charge: usize) {
        self.installs = self.installs.wrapping_add(1);
        let seg = self.segs.get_mut(node);
        *seg = Segment {
            mem: Some(mem),
            used: 0,
            live: 0,
            live_bytes: 0,
            charge,
            epoch: self.installs,
            links: Links::detached(),
        };
        self.order.push_front(&mut self.segs, node);
    }

    /// Takes `need` bytes of the limit, evicting as needed. `protect` is
    /// never evicted, but may be moved: look it up again afterwards.
    /// With `spare_ok` (the need is a shared segment), a spare segment will
    /// do: then `Ok(false)`, nothing reserved; else `Ok(true)`.
    fn make_room(
        &mut self,
        need: usize,
        protect: Option<Loc>,
        spare_ok: bool,
        ctx: &Ctx,
    ) -> Result<bool, Full> {
        for _ in 0..MAX_EVICTIONS_PER_WRITE {
            if spare_ok && self.spare.is_some() {
                return Ok(false);
            }
            if ctx.memory.try_reserve(need) {
                self.bytes += need;
                return Ok(true);
            }
            if let Some((mem, charge)) = self.spare.take() {
                self.unreserve(charge, ctx);
                self.garbage.push(mem.into_bytes());
                continue;
            }
            if self.evict_segment(protect, spare_ok, ctx).is_none() {
                break;
            }
        }
        Err(if ctx.evictions {
            Full::Elsewhere(need)
        } else {
            Full::NoMemory
        })
    }

    /// Gives back a charge taken by `make_room` and not used.
    fn unreserve(&mut self, charge: usize, ctx: &Ctx) {
        ctx.memory.release(charge);
        self.bytes -= charge;
    }

    /// Space for `len` bytes at the end of the head segment, if it has it.
    fn append_to_head(&mut self, len: usize, ctx: &Ctx) -> Option<Loc> {
        let h = self.head?;
        let seg = self.segs.get_mut(h);
        if seg.used + len > ctx.layout.segment_size {
            return None;
        }
        let at = seg.used;
        seg.used += len;
        Some(Loc::shared(h, at))
    }

    /// Opens `mem` (its charge taken) as the head; check [`Shard::can_open`]
    /// first. The old head is sealed, and freed if nothing in it lives.
    fn open_head(&mut self, mem: SegMem, charge: usize, ctx: &Ctx) {
        let node = self.take_node(false).expect("checked by can_open");
        if let Some(old) = self.head.take()
            && self.segs.get(old).live == 0
        {
            let garbage = self.free_segment(old, ctx);
            self.garbage.extend(garbage);
        }
        self.install(node, mem, charge);
        self.head = Some(node);
    }

    /// Finds room for a record and writes it, state clear, access time
    /// now. Returns where it is; it is not yet in the index or counted.
    fn place(
        &mut self,
        new: &mut NewItem,
        deadline: u32,
        protect: Option<Loc>,
        ctx: &Ctx,
    ) -> Result<Loc, Full> {
        let len = new.record_len();
        let loc = if new.solo.is_some() {
            let charge = memory::segment_cost(len);
            self.make_room(charge, protect, false, ctx)?;
            let Some(node) = self.take_node(true) else {
                self.unreserve(charge, ctx);
                return Err(Full::NoMemory);
            };
            let mem = new.solo.take().expect("checked above");
            self.install(node, mem, charge);
            self.segs.get_mut(node).used = len;
            Loc::solo(node)
        } else if let Some(loc) = self.append_to_head(len, ctx) {
            loc
        } else {
            if !self.can_open() {
                return Err(Full::NoMemory);
            }
            let size = ctx.layout.segment_size;
            let charge = memory::segment_cost(size);
            let reserved = self.make_room(charge, protect, true, ctx)?;
            // Eviction may have opened a head (to copy items forward into)
            // with room to spare.
            if let Some(loc) = self.append_to_head(len, ctx) {
                if reserved {
                    self.unreserve(charge, ctx);
                }
                loc
            } else {
                let (mem, charge) = if reserved {
                    (SegMem::new(size), charge)
                } else {
                    self.spare.take().expect("make_room found a spare")
                };
                self.open_head(mem, charge, ctx);
                self.append_to_head(len, ctx)
                    .expect("a new segment takes any shared record")
            }
        };
        let (node, at) = (loc.node(), loc.offset());
        let seg = self.segs.get_mut(node);
        seg.live += 1;
        seg.live_bytes += len;
        let mem = seg.mem_mut();
        mem.write_prefix(at, 0, deadline, ctx.now, new.item_len);
        if !is_solo(node) {
            new.write_item(mem.bytes_mut(at + PREFIX, new.item_len));
        }
        Ok(loc)
    }

    /// Makes sure the index can take one more entry, charging for its
    /// growth first (hashbrown doubles it when full).
    fn index_room(&mut self, ctx: &Ctx) -> Result<(), Full> {
        if self.index.len() < self.index.capacity() {
            return Ok(());
        }
        let need = memory::index_cost(self.index.capacity() + 1).saturating_sub(self.index_charge);
        self.make_room(need, None, false, ctx)?;
        if self.index.len() < self.index.capacity() {
            // Eviction made room in the table as it is.
            self.unreserve(need, ctx);
            return Ok(());
        }
        self.index_charge += need;
        let segs = &self.segs;
        let hasher = ctx.hasher;
        self.index.reserve(1, |&l| {
            table_hash(hasher.hash_one(item::key(segs.item(Loc(l)))))
        });
        Ok(())
    }

    /// A hit: fetched and active, and the access time refreshed if due.
    pub(super) fn hit(&mut self, loc: Loc, now: u32) {
        let mut m = self.meta(loc);
        m.set(FETCHED | ACTIVE);
        if now >= m.time.saturating_add(UPDATE_INTERVAL) {
            m.time = now;
        }
        self.set_meta(loc, m);
    }

    pub(super) fn value(&self, loc: Loc) -> Value {
        let it = self.item_shared(loc);
        let h = item::header(&it);
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
        let loc = match self.find_live(key, hash, ctx) {
            Find::Live(loc) => loc,
            Find::Dead(why, garbage) => return (why, garbage),
            Find::Missing => return (Lookup::Miss, None),
        };
        self.hit(loc, ctx.now);
        let value = self.value(loc);
        let mut garbage = None;
        match touch {
            Some(clock::EXPIRED) => garbage = self.remove(loc, hash, ctx),
            Some(deadline) => self.set_deadline(loc, deadline),
            None => {}
        }
        (Lookup::Hit(value), garbage)
    }

    pub(super) fn set_deadline(&mut self, loc: Loc, deadline: u32) {
        let mut m = self.meta(loc);
        m.deadline = deadline;
        self.set_meta(loc, m);
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
            Find::Live(loc) => {
                self.hit(loc, ctx.now);
                self.set_deadline(loc, deadline);
                (true, None)
            }
            Find::Dead(_, garbage) => (false, garbage),
            Find::Missing => (false, None),
        }
    }

    /// delete: true if a live item was removed, and memory to free.
    pub fn delete(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> (bool, Option<Bytes>) {
        match self.find_live(key, hash, ctx) {
            Find::Live(loc) => (true, self.remove(loc, hash, ctx)),
            // An expired item is removed but was not there to delete.
            Find::Dead(_, garbage) => (false, garbage),
            Find::Missing => (false, None),
        }
    }

    /// The current version of a live item, for a read-modify-write done
    /// outside the lock (append, prepend, incr, decr).
    pub fn snapshot(&mut self, key: &[u8], hash: u64, ctx: &Ctx) -> (Option<Bytes>, Option<Bytes>) {
        match self.find_live(key, hash, ctx) {
            Find::Live(loc) => (Some(self.item_shared(loc)), None),
            Find::Dead(_, garbage) => (None, garbage),
            Find::Missing => (None, None),
        }
    }

    /// set / add / replace / cas. Append and prepend go through
    /// [`Shard::swap`].
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        hash: u64,
        new: &mut NewItem,
        cas_unique: u64,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(StoreResult, Option<Bytes>), Full> {
        let (at, garbage) = match self.find_live(key, hash, ctx) {
            Find::Live(loc) => (Some(loc), None),
            Find::Dead(_, garbage) => (None, garbage),
            Find::Missing => (None, None),
        };
        match (mode, at) {
            (StoreMode::Add, Some(loc)) => {
                // memcached bumps the item a failed add ran into.
                let mut m = self.meta(loc);
                m.set(ACTIVE);
                self.set_meta(loc, m);
                return Ok((StoreResult::NotStored, garbage));
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok((StoreResult::NotStored, garbage));
            }
            (StoreMode::Cas, None) => return Ok((StoreResult::NotFound, garbage)),
            // A cas of 0 never matches, also when -C leaves every item's CAS at 0
            // (memcached answers EXISTS there too).
            (StoreMode::Cas, Some(loc))
                if cas_unique == 0 || item::header(self.item(loc)).cas != cas_unique =>
            {
                return Ok((StoreResult::Exists, garbage));
            }
            (StoreMode::Append | StoreMode::Prepend, Some(_)) => {
                unreachable!("append and prepend are built from the old value: use swap")
            }
            _ => {}
        }
        let (_, old) = self.commit(key, hash, at, new, deadline, ctx)?;
        Ok((StoreResult::Stored, old.or(garbage)))
    }

    /// Replaces the version `old` (from [`Shard::snapshot`]) of an item with
    /// `new`, keeping its deadline; or reports that it changed meanwhile.
    pub fn swap(
        &mut self,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: &mut NewItem,
        ctx: &Ctx,
    ) -> Result<Swap, Full> {
        match self.find_live(key, hash, ctx) {
            Find::Live(loc) => {
                if !self.is_version(loc, old) {
                    return Ok(Swap::Changed(None));
                }
                let deadline = self.meta(loc).deadline;
                self.commit(key, hash, Some(loc), new, deadline, ctx)
                    .map(|(_, garbage)| Swap::Done(garbage))
            }
            Find::Dead(_, garbage) => Ok(Swap::Changed(garbage)),
            Find::Missing => Ok(Swap::Changed(None)),
        }
    }

    /// True if the record at `loc` is the version `old` was read from.
    /// `old` keeps its segment alive, so no other record can have taken
    /// its address.
    pub(super) fn is_version(&self, loc: Loc, old: &Bytes) -> bool {
        let cur = self.item(loc);
        cur.as_ptr() == old.as_ptr() && cur.len() == old.len()
    }

    /// Stores `new` in place of the live record at `at` (or as a new key),
    /// as the newest record. Returns where it went and memory to free.
    pub(super) fn commit(
        &mut self,
        key: &[u8],
        hash: u64,
        at: Option<Loc>,
        new: &mut NewItem,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(Loc, Option<Bytes>), Full> {
        if at.is_none() {
            self.index_room(ctx)?;
        }
        let moves = self.moves;
        let loc = self.place(new, deadline, at, ctx)?;
        self.counters.total_items += 1;
        let old = match at {
            None => None,
            // (Gone only if eviction had no room to keep it: then this is
            // a new key again.)
            Some(at) if self.moves == moves => self
                .index
                .find_mut(table_hash(hash), |&l| l == at.0)
                .map(|slot| {
                    *slot = loc.0;
                    at
                }),
            // Eviction moved records: the old version may be elsewhere now.
            Some(_) => {
                let segs = &self.segs;
                self.index
                    .find_mut(table_hash(hash), |&l| {
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
                self.index.insert_unique(table_hash(hash), loc.0, |&l| {
                    table_hash(hasher.hash_one(item::key(segs.item(Loc(l)))))
                });
                self.len += 1;
                None
            }
        };
        Ok((loc, garbage))
    }

    /// Frees one segment from the cold end. With evictions on, the oldest:
    /// its dead records go, its live ones are evicted except ACTIVE ones,
    /// which are copied forward (up to half a segment's worth). With them
    /// off, the oldest segment with dead space is compacted. Returns the
    /// bytes given back, or `None` if there was nothing to free. With
    /// `park`, the victim may become the shard's spare segment instead of
    /// being given back (for a write here that wants a new segment).
    pub fn evict_segment(&mut self, protect: Option<Loc>, park: bool, ctx: &Ctx) -> Option<usize> {
        if !park && let Some((mem, charge)) = self.spare.take() {
            // Memory wanted elsewhere: the spare goes before any item does.
            self.unreserve(charge, ctx);
            self.garbage.push(mem.into_bytes());
            return Some(charge);
        }
        let victim = if ctx.evictions {
            self.order.tail()?
        } else {
            self.compactable(ctx)?
        };
        let (mem, charge, used) = self.detach(victim);
        if is_solo(victim) {
            return Some(self.evict_solo(victim, mem, charge, protect, ctx));
        }
        // The victim's charge pays for the segment its survivors move to.
        let mut budget = charge;
        let mut keep_max = if ctx.evictions {
            ctx.layout.segment_size / 2
        } else {
            usize::MAX
        };
        let mut at = 0;
        while at < used {
            let this = at;
            let len = PREFIX + mem.item_len(this);
            at += len;
            let m = record_meta(&mem, this);
            if m.has(DEAD) {
                continue;
            }
            let old = Loc::shared(victim, this);
            let hash = ctx.hash(item::key(mem.bytes(this + PREFIX, len - PREFIX)));
            let dead = ctx.dead(m).is_some();
            let keep = !dead
                && (!ctx.evictions || Some(old) == protect || (m.has(ACTIVE) && len <= keep_max));
            let moved = if keep {
                keep_max = keep_max.saturating_sub(len);
                self.copy_forward(&mem, this, len, &mut budget, ctx)
            } else {
                None
            };
            match moved {
                Some(new) => self.relocate(hash, old, new),
                None => self.drop_record(hash, old, m, dead, ctx),
            }
        }
        let size = ctx.layout.segment_size;
        let seg_charge = memory::segment_cost(size);
        if park && self.spare.is_none() && budget >= seg_charge && mem.len() == size {
            // Readers holding it (recycle fails) free it when they are done.
            if let Some(mem) = mem.recycle() {
                self.spare = Some((mem, seg_charge));
                budget -= seg_charge;
            }
        } else {
            self.garbage.push(mem.into_bytes());
        }
        self.unreserve(budget, ctx);
        Some(budget)
    }

    /// [`Shard::evict_segment`] for a large record's own segment: kept (the
    /// same memory back as the newest segment, no copy) or dropped.
    fn evict_solo(
        &mut self,
        victim: u32,
        mem: SegMem,
        charge: usize,
        protect: Option<Loc>,
        ctx: &Ctx,
    ) -> usize {
        let m = record_meta(&mem, 0);
        let hash = ctx.hash(item::key(mem.bytes(PREFIX, mem.len() - PREFIX)));
        let old = Loc::solo(victim);
        let dead = ctx.dead(m).is_some();
        let keep = !dead && (!ctx.evictions || Some(old) == protect || m.has(ACTIVE));
        if keep && let Some(node) = self.take_node(true) {
            let len = mem.len();
            self.install(node, mem, charge);
            let seg = self.segs.get_mut(node);
            seg.used = len;
            seg.live = 1;
            seg.live_bytes = len;
            let mut spared = m;
            spared.clear(ACTIVE);
            self.set_meta(Loc::solo(node), spared);
            self.relocate(hash, old, Loc::solo(node));
            return 0;
        }
        self.drop_record(hash, old, m, dead, ctx);
        self.unreserve(charge, ctx);
        self.garbage.push(mem.into_bytes());
        charge
    }

    /// Points the index entry of a moved record at its new place.
    fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        self.moves += 1;
        let slot = self
            .index
            .find_mut(table_hash(hash), |&l| l == old.0)
            .expect("a live record is indexed");
        *slot = new.0;
    }

    /// Takes a record of a detached segment out of the index, counted as
    /// reclaimed (dead) or evicted.
    fn drop_record(&mut self, hash: u64, old: Loc, m: Meta, dead: bool, ctx: &Ctx) {
        if dead {
            self.count_reclaimed(m);
        } else {
            let c = &mut self.counters;
            c.evictions += 1;
            if !m.has(FETCHED) {
                c.evicted_unfetched += 1;
            }
            if m.deadline != 0 {
                c.evicted_nonzero += 1;
            }
            c.last_evicted_at = ctx.now;
            c.last_evicted_age = ctx.now.saturating_sub(m.time);
        }
        self.unindex(old, hash);
    }

    /// With evictions off: the oldest segment worth compacting, one whose
    /// dead space could hold any shared record (so its live records fit in
    /// one new segment), or a large record's own segment whose item is dead.
    fn compactable(&self, ctx: &Ctx) -> Option<u32> {
        let worth = ctx.layout.shared_max.max(1);
        let mut at = self.order.tail();
        while let Some(node) = at {
            let seg = self.segs.get(node);
            let found = if is_solo(node) {
                ctx.dead(record_meta(seg.mem(), 0)).is_some()
            } else {
                seg.used - seg.live_bytes >= worth && self.head != Some(node)
            };
            if found {
                return Some(node);
            }
            at = self.order.newer(&self.segs, node);
        }
        None
    }

    /// Copies the live record at `at` of a detached shared segment to the
    /// newest segment, paying for a new segment out of `budget`. `None` if
    /// there is no room for it.
    fn copy_forward(
        &mut self,
        from: &SegMem,
        at: usize,
        len: usize,
        budget: &mut usize,
        ctx: &Ctx,
    ) -> Option<Loc> {
        let loc = match self.append_to_head(len, ctx) {
            Some(loc) => loc,
            None => {
                if !self.can_open() {
                    return None;
                }
                let size = ctx.layout.segment_size;
                let (mem, charge) = match self.spare.take() {
                    Some(spare) => spare,
                    None => {
                        let charge = memory::segment_cost(size);
                        if *budget < charge {
                            return None;
                        }
                        *budget -= charge;
                        (SegMem::new(size), charge)
                    }
                };
                self.open_head(mem, charge, ctx);
                self.append_to_head(len, ctx)?
            }
        };
        let (node, to) = (loc.node(), loc.offset());
        let seg = self.segs.get_mut(node);
        seg.live += 1;
        seg.live_bytes += len;
        let mem = seg.mem_mut();
        let m = record_meta(from, at);
        let state = m.bits() & !ACTIVE;
        mem.write_prefix(to, state, m.deadline, m.time, len - PREFIX);
        mem.bytes_mut(to + PREFIX, len - PREFIX)
            .copy_from_slice(from.bytes(at + PREFIX, len - PREFIX));
        Some(loc)
    }

    /// Reclaims dead records, looking at up to `budget` records from where
    /// the last sweep stopped. Returns how many it reclaimed.
    pub fn sweep(&mut self, budget: usize, ctx: &Ctx) -> usize {
        let shared = self.segs.shared.len();
        let total = shared + self.segs.solo.len();
        let (mut looked, mut reclaimed, mut moves) = (0, 0, 0);
        while looked < budget && moves <= total {
            let (p, epoch, at) = self.cursor;
            let p = p as usize % total.max(1);
            let node = if p < shared {
                p as u32
            } else {
                SHARED_IDS + (p - shared) as u32
            };
            let seg = (total > 0).then(|| self.segs.get(node));
            let at = match seg {
                Some(seg) if seg.mem.is_some() && seg.epoch == epoch && at < seg.used => at,
                Some(seg) if seg.mem.is_some() && seg.epoch != epoch && seg.used > 0 => {
                    self.cursor = (p as u32, seg.epoch, 0);
                    0
                }
                _ => {
                    // Done with this node (or there is none): the next one.
                    moves += 1;
                    if total == 0 {
                        break;
                    }
                    let next = ((p + 1) % total) as u32;
                    self.cursor = (next, 0, 0);
                    continue;
                }
            };
            let len = self.segs.record_len(node, at);
            self.cursor.2 = at + len;
            looked += 1;
            let m = record_meta(self.segs.get(node).mem(), at);
            if m.has(DEAD) || ctx.dead(m).is_none() {
                continue;
            }
            let loc = Loc::at(node, at);
            let hash = ctx.hash(item::key(self.item(loc)));
            let freed = self.reclaim(loc, hash, ctx);
            self.garbage.extend(freed);
            reclaimed += 1;
        }
        reclaimed
    }

    /// Drops every item and gives back all memory. Returns the old shard
    /// contents to be freed outside the lock.
    pub fn clear(&mut self, ctx: &Ctx) -> Shard {
        ctx.memory.release(self.bytes);
        let (counters, installs) = (self.counters, self.installs);
        let old = mem::take(self);
        self.counters = counters;
        self.installs = installs;
        old
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
    fn walk_oldest_first(&self, f: &mut dyn FnMut(Loc, Meta) -> bool) -> bool {
        let mut at_node = self.order.tail();
        while let Some(node) = at_node {
            let seg = self.segs.get(node);
            let mut at = 0;
            while at < seg.used {
                let this = at;
                at += self.segs.record_len(node, this);
                let m = record_meta(seg.mem(), this);
                if m.has(DEAD) {
                    continue;
                }
                let loc = Loc::at(node, this);
                if !f(loc, m) {
                    return false;
                }
            }
            at_node = self.order.newer(&self.segs, node);
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
                value_len: it.len() - h.value_start,
                flags: h.flags,
                cas: h.cas,
                deadline: m.deadline,
                time: m.time,
                fetched: m.has(FETCHED),
            })
        })
    }

    /// Checks every structural invariant; for tests.
    #[cfg(test)]
    pub fn check(&self, hasher: &RandomState) {
        let mut live = 0;
        let mut charges = 0;
        let mut at_node = self.order.head();
        let mut prev = list::NIL;
        while let Some(node) = at_node {
            let seg = self.segs.get(node);
            assert_eq!(seg.links.prev(), prev, "back link of segment {node}");
            charges += seg.charge;
            let (mut n, mut bytes, mut at) = (0, 0, 0);
            while at < seg.used {
                let len = self.segs.record_len(node, at);
                let loc = Loc::at(node, at);
                if !record_meta(seg.mem(), at).has(DEAD) {
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
                n > 0 || self.head == Some(node),
                "empty sealed segment {node}"
            );
            live += n;
            prev = node;
            at_node = (seg.links.next() != list::NIL).then_some(seg.links.next());
        }
        assert_eq!(self.order.tail().unwrap_or(list::NIL), prev);
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
    pub fn lru_keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.walk_oldest_first(&mut |loc, _| {
            out.push(item::key(self.item(loc)).to_vec());
            true
        });
        out.reverse();
        out
    }
}

/// The changeable fields of the record at `at`.
fn record_meta(mem: &SegMem, at: usize) -> Meta {
    Meta {
        deadline: mem.deadline(at),
        time: mem.time(at),
        state: mem.state(at),
    }
}
