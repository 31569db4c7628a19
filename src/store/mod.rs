//! The item store: a request-shaped API over many independently locked
//! shards, under one memory limit. Each shard is a segment store: items are
//! packed into segments in write order, and when memory runs out the oldest
//! segment of its probation or main queue goes (S3-FIFO), sparing the items
//! read since they were written (see `evict.rs`). Items expire lazily, on
//! access, and by a periodic sweep.
//!
//! The store knows nothing of the wire protocol: callers hand it requests
//! (`request.rs`) with keys, values, flags and deadlines already converted
//! by [`clock`], and get back outcomes that `server` turns into replies.
//! It imports neither `protocol` nor `server`.
//!
//! Layout: [`Store`] (here) hashes a key to a shard, each behind its own
//! mutex, and owns what spans shards: the byte budget, the flush cutoff,
//! and [`Store::with_room`], the one loop by which every write finds
//! memory. Each shard numbers its own CAS values (`Shard::cas`). The
//! requests are `read.rs` (lookups), `write.rs` (stores and deletes) and
//! `counter.rs` (incr/decr). Inside a shard: `shard.rs`
//! the index and a record's lifecycle, `room.rs` where a new record goes,
//! `evict.rs` what leaves, `segments.rs` the segment table, `loc.rs` a
//! record's address, `record.rs` its state, `segment.rs` segment memory and
//! the record layout, `item.rs` the immutable encoding of one item,
//! `list.rs` the intrusive list that orders segments, `memory.rs` what
//! storage costs and the shared budget. `prefetch.rs` starts the
//! memory loads of lookups about to run (`hint.rs`: the CPU's hint).
//! `snapshot/` writes the whole store to a file and loads it back (warm
//! restart, `-e`).
//!
//! Concurrency: a request locks one shard, briefly. A small item (at most
//! 4 KiB) is copied from the request into its shard's newest segment under
//! the lock: a copy that size costs less than the index probe's cache
//! misses, and saves the allocation, its header and its rounding per item,
//! which is what lets a store hold more items than memcached in the same
//! memory. A larger item is written into a segment of its own before the
//! lock is taken. A hit takes a slice of the segment, which only bumps a
//! reference count; memory that leaves the store is freed after the lock
//! is released, and lives on while replies still point into it. Nothing
//! global is locked; the byte budget is one atomic touched by writes only,
//! and `flush_all`'s `oldest_live` one atomic read by all.

pub mod clock;
mod counter;
mod evict;
mod ghost;
mod hint;
mod index;
mod item;
mod list;
mod loc;
mod memory;
mod pool;
mod prefetch;
mod read;
mod record;
mod request;
mod room;
mod segment;
mod segments;
mod shard;
mod snapshot;
mod write;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use foldhash::quality::FixedState;

pub use clock::Clock;
pub use prefetch::Prefetch;
pub use request::{
    ArithRequest, ArithResult, Counter, DeleteRequest, DeleteResult, GetRequest, Hit, ItemInfo,
    ItemView, Lookup, Step, StoreRequest, StoreResult, Value, Written,
};
pub use snapshot::{
    Invalid, Restore, Saved, WarmStart, check_writable as check_snapshot_writable,
    discard as discard_snapshot,
};

use record::NewItem;
use segments::Layout;
use shard::{CasRule, Ctx, Full, Shard};

/// What the store needs from the configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `-m`, in bytes: the most that items may cost, all included.
    pub memory_limit: usize,
    /// `-M` turns this off: a full store then refuses writes instead of evicting.
    pub evictions: bool,
    /// `-C` turns this off: every CAS value is then 0.
    pub cas_enabled: bool,
    /// A power of two.
    pub shards: usize,
    /// `-I`: an append or prepend whose result would be larger is refused
    /// (`NOT_STORED`), as memcached refuses it. Sized as memcached sizes
    /// items, see [`crate::item_rules::Limits::too_large`].
    pub item_size_max: usize,
}

/// Told of each live item evicted for room: memcached's `watch evictions`.
/// The store calls it under a shard lock, so it must not block.
pub trait EvictionLog: Send + Sync {
    /// Whether anybody listens; asked before anything is gathered.
    fn wanted(&self) -> bool;
    fn evicted(&self, item: &Evicted<'_>);
}

/// What [`EvictionLog`] is told of an evicted item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted<'a> {
    pub key: &'a [u8],
    pub flags: u32,
    pub value_len: usize,
    /// Whether it was read after it was stored.
    pub fetched: bool,
    /// Seconds it had left; `None` if it had no expiry.
    pub ttl: Option<u32>,
    /// Seconds since it was last stored or read.
    pub idle: u32,
}

/// Counters the store owns, with memcached's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    /// Buckets of the shards' indexes together (memcached's hash table
    /// has `2^hash_power_level`).
    pub hash_buckets: u64,
    /// Bytes those indexes allocate (memcached's `hash_bytes`).
    pub hash_bytes: u64,
}

/// How often a write may go round "evict elsewhere, try again", or a
/// read-modify-write "changed meanwhile, read again", before it gives up
/// with out of memory (only under heavy contention).
const MAX_WRITE_ATTEMPTS: usize = 16;

/// One shard, on a cache line of its own. It numbers its own CAS values,
/// under its lock, so a CAS value costs no global atomic.
#[repr(align(64))]
struct Cell {
    shard: Mutex<Shard>,
}

/// A locked shard. Unlocking frees the segment memory the shard let go
/// meanwhile, after the lock is released.
struct Locked<'a>(Option<MutexGuard<'a, Shard>>);

impl std::ops::Deref for Locked<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        self.0.as_ref().expect("locked until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        self.0.as_mut().expect("locked until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            // Nearly every unlock: nothing to hand over.
            if guard.garbage.is_empty() {
                return;
            }
            let garbage = std::mem::take(&mut guard.garbage);
            drop(guard);
            drop(garbage);
        }
    }
}

/// The item store. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    cells: Box<[Cell]>,
    /// log2 of the shard count.
    shard_bits: u32,
    hasher: FixedState,
    /// The hasher's seed, random per store, kept by a snapshot: a key's
    /// shard and bucket follow it.
    seed: u64,
    memory: memory::Memory,
    /// memcached's `settings.oldest_live` (0: none).
    oldest_live: AtomicU32,
    /// Where the search for a shard to evict from starts next.
    victim: AtomicUsize,
    /// Of `memory`, what data blocks still arriving hold
    /// ([`Store::reserve_incoming`]); not items, so not in `bytes`.
    incoming: AtomicUsize,
    layout: Layout,
    /// Freed segments any shard may open again (see `pool.rs`): charged,
    /// but holding no items, so not in `bytes`.
    pool: pool::SegPool,
    config: StoreConfig,
    clock: Clock,
    evictions_log: Option<Arc<dyn EvictionLog>>,
    /// What the snapshot this store was loaded from held, if it was.
    warm: Option<WarmStart>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("bytes", &self.memory.used())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// `config.shards` is rounded up to a power of two. An empty store
    /// allocates only its shard array (320 bytes a shard: 80 KiB for 256
    /// shards); segments and indexes grow with the items.
    pub fn new(config: StoreConfig, clock: Clock) -> Store {
        // Seeded per store: clients cannot aim keys at one bucket.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        Store::with_seed(config, clock, seed)
    }

    /// A store whose key hash has this seed (a snapshot's, to load it).
    fn with_seed(mut config: StoreConfig, clock: Clock, seed: u64) -> Store {
        config.shards = config.shards.max(1).next_power_of_two();
        let shard_bits = config.shards.trailing_zeros();
        let layout = Layout::for_share(config.memory_limit / config.shards);
        let cells = (0..config.shards)
            .map(|i| {
                let mut shard = Shard::new();
                shard.cas_rule = CasRule {
                    on: config.cas_enabled,
                    shard_bits: shard_bits as u8,
                    shard: u16::try_from(i).expect("at most 65536 shards"),
                };
                Cell {
                    shard: Mutex::new(shard),
                }
            })
            .collect();
        Store {
            cells,
            shard_bits,
            hasher: FixedState::with_seed(seed),
            seed,
            memory: memory::Memory::new(config.memory_limit),
            oldest_live: AtomicU32::new(0),
            victim: AtomicUsize::new(0),
            incoming: AtomicUsize::new(0),
            layout,
            pool: pool::SegPool::new(
                memory::segment_cost(layout.segment_size),
                config.memory_limit,
            ),
            config,
            clock,
            evictions_log: None,
            warm: None,
        }
    }

    /// Reports every eviction to `log` from now on.
    pub fn set_eviction_log(&mut self, log: Arc<dyn EvictionLog>) {
        self.evictions_log = Some(log);
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What one item takes, in bytes, once its segment is full: its record
    /// (a 7-byte prefix holding state, length and access time; the item
    /// header of 2 bytes + up to 4 for flags; key; value) and its share of
    /// the hash index. This is the figure for flags of 4 bytes (from 65,536)
    /// and no TTL, the most an item without either takes: flags of 0 take
    /// none, under 256 one byte, under 65,536 two. An item with a TTL has a
    /// 4-byte deadline field more, and one moved by eviction, or given its
    /// CAS by the client, carries its CAS: 8 more. For a 10-byte key and a
    /// 100-byte value: 131 bytes.
    pub fn item_overhead(key_len: usize, value_len: usize) -> usize {
        segment::PREFIX_MIN
            + item::encoded_len(key_len, value_len, u32::MAX, None)
            + memory::INDEX_SHARE
    }

    /// Whether an item could ever fit under the limit.
    fn fits(&self, new: &NewItem) -> bool {
        self.layout.cost(new.record_len_max()) <= self.memory.limit()
    }

    /// The hash and shard of a key; `None` for a key longer than an item
    /// can hold (255 bytes; the protocol allows 250), which finds nothing
    /// and stores nothing.
    fn route(&self, key: &[u8]) -> Option<(u64, usize)> {
        if key.len() > item::KEY_MAX {
            return None;
        }
        let hash = self.hash(key);
        Some((hash, self.shard_of(hash)))
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_of(&self, hash: u64) -> usize {
        // The top bits; `checked_shr` covers the single-shard case.
        hash.checked_shr(64 - self.shard_bits).unwrap_or(0) as usize
    }

    fn lock(&self, i: usize) -> Locked<'_> {
        // A panic under a lock leaves a consistent shard (each method
        // completes its bookkeeping before it can panic), so keep serving.
        let guard = self.cells[i]
            .shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Locked(Some(guard))
    }

    fn ctx(&self, now: u32) -> Ctx<'_> {
        Ctx {
            now,
            oldest_live: self.oldest_live.load(Ordering::Relaxed),
            evictions: self.config.evictions,
            hasher: &self.hasher,
            memory: &self.memory,
            layout: self.layout,
            pool: &self.pool,
            evictions_log: self.evictions_log.as_deref(),
        }
    }

    /// The CAS a new version must carry: `cas_in` if the client chose one
    /// (meta `E`) and CAS is on; else `None`, and its shard gives it the
    /// next one as it stores it (see `Shard::cas`).
    fn cas_for(&self, cas_in: Option<u64>) -> Option<u64> {
        cas_in.filter(|_| self.config.cas_enabled)
    }

    /// flush_all. With a deadline of 0 or not after `now`: every item goes
    /// at once, and items stored from now on are visible. Otherwise, once
    /// the deadline comes, every item last stored or bumped before it is
    /// invisible (memcached: `oldest_live = realtime(exptime) - 1`), which
    /// includes items stored between this call and the deadline. The check
    /// is lazy, on access, by eviction and by [`Store::sweep`].
    pub fn flush(&self, deadline: u32, now: u32) {
        if deadline != 0 && deadline > now {
            self.oldest_live.store(deadline - 1, Ordering::Relaxed);
            return;
        }
        // As memcached: items of this second and the last one stored
        // before the flush are removed below (those stored after it, with
        // time == now, stay visible); older ones are flushed lazily, so a
        // read of one counts in get_flushed.
        let oldest_live = now.saturating_sub(1);
        self.oldest_live.store(oldest_live, Ordering::Relaxed);
        for i in 0..self.cells.len() {
            let ctx = self.ctx(now);
            let freed = self.lock(i).flush_recent(&ctx);
            drop(freed);
        }
    }

    /// Reclaims dead (expired or flushed) items, looking at no more than
    /// `budget_per_shard` slots of each shard, from where the previous
    /// sweep of that shard stopped. Returns how many it reclaimed.
    pub fn sweep(&self, now: u32, budget_per_shard: usize) -> usize {
        let mut reclaimed = 0;
        for i in 0..self.cells.len() {
            let ctx = self.ctx(now);
            reclaimed += self.lock(i).sweep(budget_per_shard, &ctx);
        }
        reclaimed
    }

    /// cache_memlimit: a new limit; if use is above it, evicts (round-robin
    /// over the shards, oldest segments first) until it is not.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory.set_limit(bytes);
        let now = self.clock.now();
        while self.memory.excess() > 0 && self.pool.release_one(&self.memory).is_some() {}
        while self.memory.excess() > 0 {
            let mut progress = false;
            for i in 0..self.cells.len() {
                if self.memory.excess() == 0 {
                    break;
                }
                let ctx = Ctx {
                    evictions: true,
                    ..self.ctx(now)
                };
                progress |= self.lock(i).evict_segment(None, false, &ctx).is_some();
            }
            if !progress {
                break;
            }
        }
    }

    /// Runs a write against shard `si` until it finds the memory it needs,
    /// evicting from other shards when its own has nothing left to give:
    /// `None` when it cannot (full with evictions off, or too contended).
    /// Every write path gets its memory through here.
    fn with_room<R>(
        &self,
        si: usize,
        now: u32,
        mut write: impl FnMut(&mut Shard, &Ctx) -> Result<(R, Option<Bytes>), Full>,
    ) -> Option<R> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let outcome = write(&mut self.lock(si), &ctx);
            match outcome {
                Ok((r, garbage)) => {
                    drop(garbage);
                    return Some(r);
                }
                Err(Full::Elsewhere(need)) if self.evict_elsewhere(si, need, now) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Takes `bytes` of the limit for a data block still arriving (memcached
    /// allocates the item when its command line arrives), evicting from the
    /// shards as a write would. False if no room can be made: more than the
    /// whole limit, or full with evictions off. Give it back with
    /// [`Store::release_incoming`] once the block is stored or dropped.
    pub fn reserve_incoming(&self, bytes: usize, now: u32) -> bool {
        if bytes > self.memory.limit() {
            return false;
        }
        for _ in 0..MAX_WRITE_ATTEMPTS {
            if self.memory.try_reserve(bytes) {
                self.incoming.fetch_add(bytes, Ordering::Relaxed);
                return true;
            }
            let short = (self.memory.used() + bytes).saturating_sub(self.memory.limit());
            if !self.evict_elsewhere(usize::MAX, short.max(1), now) {
                return false;
            }
        }
        false
    }

    /// Gives back what [`Store::reserve_incoming`] took.
    pub fn release_incoming(&self, bytes: usize) {
        self.incoming.fetch_sub(bytes, Ordering::Relaxed);
        self.memory.release(bytes);
    }

    /// Frees at least `need` bytes: pooled segments first, then from shards
    /// other than `except` (from any shard when `except` is none), one
    /// shard at a time (never two locks at once), starting from a rotating
    /// shard so that no shard bears all of it. True if anything was freed.
    fn evict_elsewhere(&self, except: usize, need: usize, now: u32) -> bool {
        let mut freed = 0;
        while freed < need && self.pool.release_one(&self.memory).is_some() {
            freed += self.pool.charge();
        }
        if freed >= need {
            return true;
        }
        let n = self.cells.len();
        let start = self.victim.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if i == except {
                continue;
            }
            let ctx = self.ctx(now);
            let mut shard = self.lock(i);
            if shard.is_empty() {
                continue;
            }
            while freed < need {
                match shard.evict_segment(None, false, &ctx) {
                    Some(bytes) => freed += bytes,
                    None => break,
                }
            }
            if freed >= need {
                return true;
            }
        }
        freed > 0
    }

    /// The counters, summed over the shards.
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            bytes: self
                .memory
                .used()
                .saturating_sub(self.incoming.load(Ordering::Relaxed) + self.pool.bytes())
                as u64,
            limit_maxbytes: self.memory.limit() as u64,
            ..StoreStats::default()
        };
        for i in 0..self.cells.len() {
            let shard = self.lock(i);
            let c = shard.counters;
            s.curr_items += shard.len() as u64;
            s.total_items += c.total_items;
            s.evictions += c.evictions;
            s.reclaimed += c.reclaimed;
            s.expired_unfetched += c.expired_unfetched;
            s.evicted_unfetched += c.evicted_unfetched;
            s.hash_buckets += shard.index.buckets() as u64;
            s.hash_bytes += shard.index.bytes() as u64;
        }
        s
    }

    /// Per-shard figures for monitoring, one shard locked at a time.
    pub fn shard_usage(&self) -> Vec<ShardUsage> {
        (0..self.cells.len())
            .map(|i| {
                let shard = self.lock(i);
                let (bytes, oldest) = shard.usage();
                let c = shard.counters;
                ShardUsage {
                    items: shard.len() as u64,
                    bytes: bytes as u64,
                    oldest,
                    evicted_nonzero: c.evicted_nonzero,
                    last_evicted_at: c.last_evicted_at,
                    last_evicted_age: c.last_evicted_age,
                }
            })
            .collect()
    }

    /// Calls `f` with every live item, shard by shard and oldest segment
    /// first within a shard, until `f` returns false. Each shard is locked
    /// while it is walked, so `f` should only copy out what it needs.
    pub fn for_each_item(&self, now: u32, mut f: impl FnMut(ItemView<'_>) -> bool) {
        for i in 0..self.cells.len() {
            let ctx = self.ctx(now);
            if !self.lock(i).visit(&ctx, &mut f) {
                return;
            }
        }
    }
}

/// One shard's share, as [`Store::shard_usage`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardUsage {
    pub items: u64,
    /// Bytes charged for its items, overheads included.
    pub bytes: u64,
    /// Last store or access refresh of its oldest live item, the first in
    /// its oldest segment (relative seconds).
    pub oldest: Option<u32>,
    pub evicted_nonzero: u64,
    /// When its last eviction happened (relative seconds, 0: never) and how
    /// long that item had gone unaccessed.
    pub last_evicted_at: u32,
    pub last_evicted_age: u32,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod deadline_tests;
