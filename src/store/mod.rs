//! The item store: a memcached-shaped API over many independently locked
//! shards, each an LRU with TTL expiry, under one memory limit.
//!
//! The store knows nothing of the wire protocol: callers hand it keys, values,
//! flags and deadlines already converted by [`clock`], and get back outcomes
//! that `server::execute` turns into replies.
//!
//! Layout: [`Store`] (here) hashes a key to one of many shards, each behind
//! its own mutex (`shard.rs`: index, slab of slots, LRU); `lru.rs` is the
//! intrusive list, `item.rs` the encoding of one item in one allocation,
//! `memory.rs` what an item costs and the shared budget.
//!
//! Concurrency: a request locks one shard, briefly. Items are built (the
//! only allocation and copy of a value) before the lock is taken; a hit
//! takes a slice of the stored allocation, which only bumps a reference
//! count; items that leave the store are freed after the lock is released.
//! Nothing global is locked; the byte budget is one atomic touched by writes
//! only, and `flush_all`'s `oldest_live` one atomic read by all.

pub mod clock;
mod item;
mod lru;
mod memory;
mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use foldhash::quality::RandomState;

pub use clock::Clock;

use crate::protocol::StoreMode;
use shard::{Ctx, Full, Shard, Swap};

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
}

/// An item as a read returns it. `data` shares the stored allocation, so
/// handing it out copies no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub data: Bytes,
    pub flags: u32,
    pub cas: u64,
}

/// The outcome of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Value),
    /// No such key.
    Miss,
    /// The key was there but its time had passed (memcached's `get_expired`).
    Expired,
    /// The key was there but a `flush_all` hid it (`get_flushed`).
    Flushed,
}

/// The outcome of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    Stored,
    NotStored,
    /// `cas` against a changed item.
    Exists,
    /// `cas` against a missing item.
    NotFound,
    /// The store is full and evictions are off (`-M`).
    OutOfMemory,
}

/// The outcome of `incr`/`decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithResult {
    Value(u64),
    NotFound,
    NonNumeric,
    OutOfMemory,
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
}

/// How often a write may go round "evict elsewhere, try again" before it
/// gives up with out of memory (only under heavy contention for the last
/// free bytes).
const MAX_WRITE_ATTEMPTS: usize = 16;

/// One shard and its CAS counter, on a cache line of their own.
#[repr(align(64))]
struct Cell {
    shard: Mutex<Shard>,
    /// The next CAS sequence number; taken before the lock, so a CAS value
    /// costs no global atomic.
    cas: AtomicU64,
}

/// The item store. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    cells: Box<[Cell]>,
    /// log2 of the shard count.
    shard_bits: u32,
    hasher: RandomState,
    memory: memory::Memory,
    /// memcached's `settings.oldest_live` (0: none).
    oldest_live: AtomicU32,
    /// Where the search for a shard to evict from starts next.
    victim: AtomicUsize,
    config: StoreConfig,
    clock: Clock,
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
    /// allocates only its shard array (under 256 bytes a shard:
    /// 48 KiB for 256 shards); slabs and indexes grow with the items.
    pub fn new(mut config: StoreConfig, clock: Clock) -> Store {
        config.shards = config.shards.max(1).next_power_of_two();
        let cells = (0..config.shards)
            .map(|_| Cell {
                shard: Mutex::new(Shard::new()),
                cas: AtomicU64::new(1),
            })
            .collect();
        Store {
            cells,
            shard_bits: config.shards.trailing_zeros(),
            // Seeded per process: clients cannot aim keys at one bucket.
            hasher: RandomState::default(),
            memory: memory::Memory::new(config.memory_limit),
            oldest_live: AtomicU32::new(0),
            victim: AtomicUsize::new(0),
            config,
            clock,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Everything one item costs in the accounting, in bytes: its allocation
    /// (key, value, a header of 2 bytes + 4 for non-zero flags + 8 for CAS,
    /// the reference count, malloc rounding), its 48-byte slot and the
    /// slab's spare share, and its share of the hash index. This is the
    /// figure for non-zero flags with CAS on, the most an item of these
    /// lengths costs. For a 10-byte key and a 100-byte value: 206 bytes.
    pub fn item_overhead(key_len: usize, value_len: usize) -> usize {
        memory::item_cost(item::encoded_len(key_len, value_len, 1, 1))
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_of(&self, hash: u64) -> usize {
        // The top bits; `checked_shr` covers the single-shard case.
        hash.checked_shr(64 - self.shard_bits).unwrap_or(0) as usize
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic under a lock leaves a consistent shard (each method
        // completes its bookkeeping before it can panic), so keep serving.
        self.cells[i]
            .shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ctx(&self, now: u32) -> Ctx<'_> {
        Ctx {
            now,
            oldest_live: self.oldest_live.load(Ordering::Relaxed),
            evictions: self.config.evictions,
            hasher: &self.hasher,
            memory: &self.memory,
        }
    }

    /// A CAS value unique across shards: the shard's sequence number with
    /// the shard index in the low bits. Never 0; 0 when CAS is off.
    fn next_cas(&self, shard: usize) -> u64 {
        if !self.config.cas_enabled {
            return 0;
        }
        let seq = self.cells[shard].cas.fetch_add(1, Ordering::Relaxed);
        (seq << self.shard_bits) | shard as u64
    }

    /// get: marks the item fetched and refreshes its recency.
    pub fn get(&self, key: &[u8], now: u32) -> Lookup {
        self.read(key, None, now)
    }

    /// gat: returns the value and sets a new deadline, CAS unchanged. With
    /// [`clock::EXPIRED`], returns the value and removes the item.
    pub fn get_and_touch(&self, key: &[u8], deadline: u32, now: u32) -> Lookup {
        self.read(key, Some(deadline), now)
    }

    fn read(&self, key: &[u8], touch: Option<u32>, now: u32) -> Lookup {
        if key.len() > item::KEY_MAX {
            return Lookup::Miss;
        }
        let hash = self.hash(key);
        let ctx = self.ctx(now);
        let (lookup, garbage) = self.lock(self.shard_of(hash)).read(key, hash, touch, &ctx);
        drop(garbage);
        lookup
    }

    /// set / add / replace / append / prepend / cas.
    ///
    /// `OutOfMemory` when the item cannot be made to fit: larger than the
    /// whole limit, or the store is full and evictions are off. A `set` that
    /// fails so also deletes the old value, as memcached does, so that stale
    /// data does not outlive a failed overwrite. A key longer than 255 bytes
    /// (the protocol allows 250) is not stored.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        deadline: u32,
        value: &[u8],
        cas_unique: u64,
        now: u32,
    ) -> StoreResult {
        if key.len() > item::KEY_MAX {
            return StoreResult::NotStored;
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        if matches!(mode, StoreMode::Append | StoreMode::Prepend) {
            return self.concat(mode == StoreMode::Append, key, hash, value, now);
        }
        let cas = self.next_cas(si);
        let built = item::build(key, flags, cas, value.len(), |d| d.copy_from_slice(value));
        let fits = memory::item_cost(built.len()) <= self.memory.limit();
        let mut built = Some(built);
        if fits {
            for _ in 0..MAX_WRITE_ATTEMPTS {
                let ctx = self.ctx(now);
                let outcome = self
                    .lock(si)
                    .store(mode, key, hash, &mut built, cas_unique, deadline, &ctx);
                match outcome {
                    Ok((result, garbage)) => {
                        drop(garbage);
                        return result;
                    }
                    Err(Full::Elsewhere(need)) if self.evict_elsewhere(si, need, now) => {}
                    Err(_) => break,
                }
            }
        }
        if mode == StoreMode::Set {
            self.delete(key, now);
        }
        StoreResult::OutOfMemory
    }

    /// append / prepend: read the current version, build the joined item
    /// outside the lock, and store it only if that version is still current.
    fn concat(&self, append: bool, key: &[u8], hash: u64, value: &[u8], now: u32) -> StoreResult {
        let si = self.shard_of(hash);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(key, hash, &ctx);
            drop(garbage);
            let Some(old) = old else {
                return StoreResult::NotStored;
            };
            let h = item::header(&old);
            let old_value = &old[h.value_start..];
            let len = old_value.len() + value.len();
            let built = item::build(key, h.flags, self.next_cas(si), len, |d| {
                let (first, second) = if append {
                    (old_value, value)
                } else {
                    (value, old_value)
                };
                d[..first.len()].copy_from_slice(first);
                d[first.len()..].copy_from_slice(second);
            });
            if memory::item_cost(built.len()) > self.memory.limit() {
                return StoreResult::OutOfMemory;
            }
            match self.swap(si, key, hash, &old, built, now) {
                Ok(true) => return StoreResult::Stored,
                Ok(false) => continue,
                Err(()) => return StoreResult::OutOfMemory,
            }
        }
        StoreResult::OutOfMemory
    }

    /// Stores `new` in place of the version `old`: Ok(false) if that version
    /// is no longer current, Err if no memory could be found for it.
    fn swap(
        &self,
        si: usize,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: Bytes,
        now: u32,
    ) -> Result<bool, ()> {
        let mut new = Some(new);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let outcome = self.lock(si).swap(key, hash, old, &mut new, &ctx);
            match outcome {
                Ok(Swap::Done(garbage)) => {
                    drop(garbage);
                    return Ok(true);
                }
                Ok(Swap::Changed(garbage)) => {
                    drop(garbage);
                    return Ok(false);
                }
                Err(Full::Elsewhere(need)) if self.evict_elsewhere(si, need, now) => {}
                Err(_) => return Err(()),
            }
        }
        Err(())
    }

    /// delete: true if a live item was removed.
    pub fn delete(&self, key: &[u8], now: u32) -> bool {
        if key.len() > item::KEY_MAX {
            return false;
        }
        let hash = self.hash(key);
        let ctx = self.ctx(now);
        let removed = self.lock(self.shard_of(hash)).delete(key, hash, &ctx);
        removed.is_some()
    }

    /// incr / decr (PROTOCOL.md section 6): incr wraps at 2^64, decr stops
    /// at 0. A result no longer than the stored text is right-padded with
    /// spaces to its length, as memcached rewrites in place; a longer one is
    /// stored as its digits. Flags and deadline are kept; the CAS is new.
    pub fn arith(&self, key: &[u8], delta: u64, incr: bool, now: u32) -> ArithResult {
        if key.len() > item::KEY_MAX {
            return ArithResult::NotFound;
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(key, hash, &ctx);
            drop(garbage);
            let Some(old) = old else {
                return ArithResult::NotFound;
            };
            let h = item::header(&old);
            let old_value = &old[h.value_start..];
            let Some(n) = item::parse_counter(old_value) else {
                return ArithResult::NonNumeric;
            };
            let n = if incr {
                n.wrapping_add(delta)
            } else {
                n.saturating_sub(delta)
            };
            let mut digits = [0u8; 20];
            let ndigits = item::format_counter(n, &mut digits);
            let len = ndigits.max(old_value.len());
            let built = item::build(key, h.flags, self.next_cas(si), len, |d| {
                d[..ndigits].copy_from_slice(&digits[..ndigits]);
                d[ndigits..].fill(b' ');
            });
            match self.swap(si, key, hash, &old, built, now) {
                Ok(true) => return ArithResult::Value(n),
                Ok(false) => continue,
                Err(()) => return ArithResult::OutOfMemory,
            }
        }
        ArithResult::OutOfMemory
    }

    /// touch: a new deadline, CAS unchanged. True if the item was there.
    pub fn touch(&self, key: &[u8], deadline: u32, now: u32) -> bool {
        if key.len() > item::KEY_MAX {
            return false;
        }
        let hash = self.hash(key);
        let ctx = self.ctx(now);
        let (found, garbage) = self
            .lock(self.shard_of(hash))
            .touch(key, hash, deadline, &ctx);
        drop(garbage);
        found
    }

    /// flush_all. With a deadline of 0 or not after `now`: every item goes
    /// at once, and items stored from now on are visible. Otherwise, once
    /// the deadline comes, every item last stored or bumped before it is
    /// invisible (memcached: `oldest_live = realtime(exptime) - 1`), which
    /// includes items stored between this call and the deadline. The check
    /// is lazy, on access, by eviction and by [`Store::sweep`].
    pub fn flush_all(&self, deadline: u32, now: u32) {
        if deadline != 0 && deadline > now {
            self.oldest_live.store(deadline - 1, Ordering::Relaxed);
            return;
        }
        // Items of this second stored before the flush are cleared below;
        // those stored after it (time == now) stay visible.
        self.oldest_live
            .store(now.saturating_sub(1), Ordering::Relaxed);
        for i in 0..self.cells.len() {
            let ctx = self.ctx(now);
            let old = self.lock(i).clear(&ctx);
            drop(old);
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
    /// over the shards, from each LRU tail) until it is not.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory.set_limit(bytes);
        let now = self.clock.now();
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
                progress |= self.lock(i).evict_one(None, &ctx).is_some();
            }
            if !progress {
                break;
            }
        }
    }

    /// Frees at least `need` bytes from shards other than `except`, one
    /// shard at a time (never two locks at once), starting from a rotating
    /// shard so that no shard bears all of it. True if anything was freed.
    fn evict_elsewhere(&self, except: usize, need: usize, now: u32) -> bool {
        let n = self.cells.len();
        let start = self.victim.fetch_add(1, Ordering::Relaxed);
        let mut freed = 0;
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
                match shard.evict_one(None, &ctx) {
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
            bytes: self.memory.used() as u64,
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
        }
        s
    }
}

