//! The item store: a memcached-shaped API over many independently locked
//! shards, each an LRU with TTL expiry, under one memory limit.
//!
//! The store knows nothing of the wire protocol: callers hand it keys, values,
//! flags and deadlines already converted by [`clock`], and get back outcomes
//! that `server::execute` turns into replies.
//!
//! Layout: [`Store`] (here) hashes a key to one of many shards, each behind
//! its own mutex (`shard.rs`: hash index and segments, oldest to newest);
//! `segment.rs` is segment memory and the record layout, `item.rs` the
//! immutable encoding of one item, `list.rs` the intrusive list that orders
//! segments, `memory.rs` what storage costs and the shared budget, `meta.rs`
//! what the meta commands add (item state, recache tokens, invalidation).
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
mod evict;
mod item;
mod list;
mod loc;
mod memory;
pub mod meta;
mod record;
mod room;
mod segment;
mod segments;
mod shard;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use foldhash::quality::RandomState;

pub use clock::Clock;

use crate::item_rules::StoreMode;
use record::NewItem;
use segments::Layout;
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
    /// `-I`: an append or prepend whose result would be larger is refused
    /// (`NOT_STORED`), as memcached refuses it. Sized as memcached sizes
    /// items, see [`crate::item_rules::Limits::too_large`].
    pub item_size_max: usize,
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
    hasher: RandomState,
    memory: memory::Memory,
    /// memcached's `settings.oldest_live` (0: none).
    oldest_live: AtomicU32,
    /// Where the search for a shard to evict from starts next.
    victim: AtomicUsize,
    layout: Layout,
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
    /// allocates only its shard array (320 bytes a shard: 80 KiB for 256
    /// shards); segments and indexes grow with the items.
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
            layout: Layout::for_share(config.memory_limit / config.shards),
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

    /// What one item takes, in bytes, once its segment is full: its record
    /// (an 11-byte prefix holding state, deadline and access time; the item
    /// header of 2 bytes + 4 for non-zero flags + 8 for CAS; key; value) and
    /// its share of the hash index. This is the figure for non-zero flags
    /// with CAS on. For a 10-byte key and a 100-byte value: 143 bytes.
    pub fn item_overhead(key_len: usize, value_len: usize) -> usize {
        segment::PREFIX + item::encoded_len(key_len, value_len, 1, 1) + memory::INDEX_SHARE
    }

    /// Whether an item could ever fit under the limit.
    fn fits(&self, new: &NewItem) -> bool {
        self.layout.cost(new.record_len()) <= self.memory.limit()
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
        let fill = |d: &mut [u8]| d.copy_from_slice(value);
        let mut built = NewItem::new(self.layout, key, false, flags, cas, value.len(), &fill);
        if self.fits(&built) {
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
        let req = meta::SetRequest {
            mode: if append {
                StoreMode::Append
            } else {
                StoreMode::Prepend
            },
            key,
            key_binary: false,
            flags: 0,
            deadline: 0,
            value,
            compare_cas: None,
            invalidate: false,
        };
        self.meta_concat(&req, hash, now).0
    }

    /// Stores `new` in place of the version `old`: Ok(false) if that version
    /// is no longer current, Err if no memory could be found for it.
    fn swap(
        &self,
        si: usize,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: &mut NewItem,
        now: u32,
    ) -> Result<bool, ()> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let outcome = self.lock(si).swap(key, hash, old, new, &ctx);
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
        let (removed, garbage) = self.lock(self.shard_of(hash)).delete(key, hash, &ctx);
        drop(garbage);
        removed
    }

    /// incr / decr (PROTOCOL.md section 6): incr wraps at 2^64, decr stops
    /// at 0. A result no longer than the stored text is right-padded with
    /// spaces to its length, as memcached rewrites in place; a longer one is
    /// stored as its digits. Flags and deadline are kept; the CAS is new.
    pub fn arith(&self, key: &[u8], delta: u64, incr: bool, now: u32) -> ArithResult {
        // The one arithmetic path, shared with `ma`: it rewrites the number
        // in place as memcached does (not counted in total_items) unless the
        // result is longer than the stored text.
        let req = meta::ArithRequest {
            key_binary: false,
            incr,
            delta,
            compare_cas: 0,
            vivify: false,
            initial: 0,
            steps: &[],
        };
        match self.meta_arith(key, &req, now) {
            meta::Arith::Done(c) => ArithResult::Value(c.value),
            meta::Arith::NotFound | meta::Arith::NotStored | meta::Arith::Exists => {
                ArithResult::NotFound
            }
            meta::Arith::NonNumeric => ArithResult::NonNumeric,
            meta::Arith::OutOfMemory => ArithResult::OutOfMemory,
        }
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
                progress |= self.lock(i).evict_segment(None, false, &ctx).is_some();
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

    /// Calls `f` with every live item, shard by shard and from the least
    /// recently used within a shard, until `f` returns false. Each shard is
    /// locked while it is walked, so `f` should only copy out what it needs.
    pub fn for_each_item(&self, now: u32, mut f: impl FnMut(ItemView<'_>) -> bool) {
        for i in 0..self.cells.len() {
            let ctx = self.ctx(now);
            if !self.lock(i).visit(&ctx, &mut f) {
                return;
            }
        }
    }
}

pub use shard::ItemView;

/// One shard's share, as [`Store::shard_usage`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardUsage {
    pub items: u64,
    /// Bytes charged for its items, overheads included.
    pub bytes: u64,
    /// Last store or bump of its least recently used item (relative seconds).
    pub oldest: Option<u32>,
    pub evicted_nonzero: u64,
    /// When its last eviction happened (relative seconds, 0: never) and how
    /// long that item had gone unaccessed.
    pub last_evicted_at: u32,
    pub last_evicted_age: u32,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use StoreMode::*;

    const UNIX: i64 = 1_700_000_000;
    const MB: usize = 1 << 20;

    fn new_store(limit: usize, evictions: bool, cas: bool, shards: usize) -> Store {
        Store::new(
            StoreConfig {
                memory_limit: limit,
                evictions,
                cas_enabled: cas,
                shards,
                item_size_max: 1024 * 1024,
            },
            Clock::manual(UNIX),
        )
    }

    fn store() -> Store {
        new_store(64 * MB, true, true, 16)
    }

    fn set(s: &Store, key: &str, value: &str, now: u32) -> StoreResult {
        s.store(Set, key.as_bytes(), 0, 0, value.as_bytes(), 0, now)
    }

    fn hit(l: Lookup) -> Value {
        match l {
            Lookup::Hit(v) => v,
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    fn value(s: &Store, key: &str, now: u32) -> Option<String> {
        match s.get(key.as_bytes(), now) {
            Lookup::Hit(v) => Some(String::from_utf8(v.data.to_vec()).unwrap()),
            _ => None,
        }
    }

    /// Structural invariants of every shard, and the budget agrees with
    /// them; the model tests use it too.
    pub(super) fn check(s: &Store) {
        let mut bytes = 0;
        for i in 0..s.cells.len() {
            let shard = s.lock(i);
            shard.check(&s.hasher);
            bytes += shard.bytes();
        }
        assert_eq!(bytes, s.memory.used());
        assert!(s.memory.used() <= s.memory.limit());
    }

    #[test]
    fn set_get_round_trip() {
        let s = store();
        let now = s.clock().now();
        assert_eq!(s.get(b"k", now), Lookup::Miss);
        assert_eq!(
            s.store(Set, b"k", 42, 0, b"hello", 0, now),
            StoreResult::Stored
        );
        let v = hit(s.get(b"k", now));
        assert_eq!((&v.data[..], v.flags), (&b"hello"[..], 42));
        assert_ne!(v.cas, 0);
        assert_eq!(set(&s, "k", "", now), StoreResult::Stored);
        assert_eq!(value(&s, "k", now).as_deref(), Some(""));
        let big = vec![7u8; 300_000];
        assert_eq!(
            s.store(Set, b"big", 0, 0, &big, 0, now),
            StoreResult::Stored
        );
        assert_eq!(hit(s.get(b"big", now)).data, big);
        let st = s.stats();
        assert_eq!((st.curr_items, st.total_items), (2, 3));
        assert_eq!(st.limit_maxbytes, 64 * MB as u64);
        check(&s);
    }

    #[test]
    fn keys_are_binary_and_distinct() {
        let s = store();
        let keys: [&[u8]; 4] = [b"a\tb", b"a\x01", b"a\rb", "ключ".as_bytes()];
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(s.store(Set, k, n as u32, 0, k, 0, 2), StoreResult::Stored);
        }
        for (n, k) in keys.iter().enumerate() {
            let v = hit(s.get(k, 2));
            assert_eq!((&v.data[..], v.flags), (*k, n as u32));
        }
        assert_eq!(
            s.store(Set, &[b'k'; 256], 0, 0, b"v", 0, 2),
            StoreResult::NotStored
        );
        assert_eq!(s.get(&[b'k'; 256], 2), Lookup::Miss);
    }

    #[test]
    fn add_replace_append_prepend() {
        let s = store();
        let now = 2;
        assert_eq!(s.store(Add, b"k", 1, 0, b"a", 0, now), StoreResult::Stored);
        assert_eq!(
            s.store(Add, b"k", 2, 0, b"b", 0, now),
            StoreResult::NotStored
        );
        assert_eq!(value(&s, "k", now).as_deref(), Some("a"));
        assert_eq!(
            s.store(Replace, b"x", 0, 0, b"r", 0, now),
            StoreResult::NotStored
        );
        assert_eq!(s.get(b"x", now), Lookup::Miss);
        assert_eq!(
            s.store(Replace, b"k", 3, 0, b"r", 0, now),
            StoreResult::Stored
        );
        assert_eq!(hit(s.get(b"k", now)).flags, 3);
        assert_eq!(
            s.store(Append, b"x", 0, 0, b"a", 0, now),
            StoreResult::NotStored
        );
        assert_eq!(
            s.store(Prepend, b"x", 0, 0, b"a", 0, now),
            StoreResult::NotStored
        );
        assert_eq!(s.get(b"x", now), Lookup::Miss);

        // Append/prepend keep the flags and deadline, ignore the new ones.
        let deadline = s.clock().deadline(100, now);
        assert_eq!(
            s.store(Set, b"k", 9, deadline, b"mid", 0, now),
            StoreResult::Stored
        );
        let cas0 = hit(s.get(b"k", now)).cas;
        assert_eq!(
            s.store(Append, b"k", 1, 0, b">>", 0, now),
            StoreResult::Stored
        );
        assert_eq!(
            s.store(Prepend, b"k", 2, 5, b"<<", 0, now),
            StoreResult::Stored
        );
        let v = hit(s.get(b"k", now));
        assert_eq!((&v.data[..], v.flags), (&b"<<mid>>"[..], 9));
        assert_ne!(v.cas, cas0);
        assert!(matches!(s.get(b"k", deadline - 1), Lookup::Hit(_)));
        assert_eq!(s.get(b"k", deadline), Lookup::Expired);
        // Appending a large value moves the item to the Vec representation.
        assert_eq!(set(&s, "j", "x", now), StoreResult::Stored);
        let long = "y".repeat(5000);
        assert_eq!(
            s.store(Append, b"j", 0, 0, long.as_bytes(), 0, now),
            StoreResult::Stored
        );
        assert_eq!(value(&s, "j", now).unwrap(), format!("x{long}"));
        check(&s);
    }

    #[test]
    fn append_whose_result_is_over_the_item_size_limit_is_not_stored() {
        // memcached -I 2k: 1500 + 1000 bytes no longer fit, NOT_STORED, old value kept.
        let s = Store::new(
            StoreConfig {
                memory_limit: 64 * MB,
                evictions: true,
                cas_enabled: true,
                shards: 4,
                item_size_max: 2048,
            },
            Clock::manual(UNIX),
        );
        let old = "a".repeat(1500);
        assert_eq!(set(&s, "k", &old, 2), StoreResult::Stored);
        for mode in [Append, Prepend] {
            assert_eq!(
                s.store(mode, b"k", 0, 0, &[b'b'; 1000], 0, 2),
                StoreResult::NotStored
            );
        }
        assert_eq!(value(&s, "k", 2).unwrap(), old);
        // The largest value that fits: 2048 - (56 + 1 + 1 + 2) bytes in all.
        let fits = 2048 - 60 - 1500;
        assert_eq!(
            s.store(Append, b"k", 0, 0, &vec![b'b'; fits], 0, 2),
            StoreResult::Stored
        );
        assert_eq!(
            s.store(Append, b"k", 0, 0, b"b", 0, 2),
            StoreResult::NotStored
        );
        check(&s);
    }

    #[test]
    fn add_on_an_expired_item_stores() {
        let s = store();
        assert_eq!(s.store(Set, b"k", 0, 5, b"old", 0, 2), StoreResult::Stored);
        assert_eq!(s.store(Add, b"k", 0, 0, b"new", 0, 5), StoreResult::Stored);
        assert_eq!(value(&s, "k", 5).as_deref(), Some("new"));
        assert_eq!(
            s.store(Replace, b"k", 0, 5, b"r", 0, 5),
            StoreResult::Stored
        );
        assert_eq!(
            s.store(Replace, b"k", 0, 0, b"r", 0, 6),
            StoreResult::NotStored
        );
        check(&s);
    }

    #[test]
    fn cas_rules() {
        let s = store();
        let now = 2;
        assert_eq!(
            s.store(Cas, b"k", 0, 0, b"v", 1, now),
            StoreResult::NotFound
        );
        set(&s, "k", "v1", now);
        let c1 = hit(s.get(b"k", now)).cas;
        assert_eq!(
            s.store(Cas, b"k", 0, 0, b"v", c1 + 1, now),
            StoreResult::Exists
        );
        assert_eq!(s.store(Cas, b"k", 0, 0, b"v", 0, now), StoreResult::Exists);
        assert_eq!(
            s.store(Cas, b"k", 5, 0, b"v2", c1, now),
            StoreResult::Stored
        );
        let v = hit(s.get(b"k", now));
        assert_eq!((&v.data[..], v.flags), (&b"v2"[..], 5));
        let c2 = v.cas;
        assert_ne!(c2, c1);
        assert_eq!(
            s.store(Cas, b"k", 0, 0, b"v3", c1, now),
            StoreResult::Exists
        );

        // touch and gat keep the CAS; every write makes a new one.
        assert!(s.touch(b"k", 100, now));
        assert_eq!(hit(s.get_and_touch(b"k", 200, now)).cas, c2);
        assert_eq!(hit(s.get(b"k", now)).cas, c2);
        let mut seen = std::collections::HashSet::from([c1, c2]);
        for mode in [Set, Replace, Append, Prepend] {
            assert_eq!(s.store(mode, b"k", 0, 0, b"1", 0, now), StoreResult::Stored);
            assert!(
                seen.insert(hit(s.get(b"k", now)).cas),
                "{mode:?} reused a CAS"
            );
        }
        s.arith(b"k", 1, true, now);
        assert!(seen.insert(hit(s.get(b"k", now)).cas));
        // Unique across shards too.
        for i in 0..200 {
            set(&s, &format!("key{i}"), "v", now);
            assert!(seen.insert(hit(s.get(format!("key{i}").as_bytes(), now)).cas));
        }
    }

    #[test]
    fn cas_off_is_zero_everywhere() {
        let s = new_store(MB, true, false, 4);
        set(&s, "k", "v", 2);
        assert_eq!(hit(s.get(b"k", 2)).cas, 0);
        assert_eq!(s.store(Cas, b"k", 0, 0, b"w", 1, 2), StoreResult::Exists);
        // memcached -C: a cas never matches, 0 included.
        assert_eq!(s.store(Cas, b"k", 0, 0, b"w", 0, 2), StoreResult::Exists);
        assert_eq!(value(&s, "k", 2).as_deref(), Some("v"));
        s.arith(b"n", 1, true, 2);
        set(&s, "n", "1", 2);
        s.arith(b"n", 1, true, 2);
        assert_eq!(hit(s.get(b"n", 2)).cas, 0);
    }

    #[test]
    fn incr_decr_edges() {
        let s = store();
        let now = 2;
        let arith = |k: &str, v: &str, delta: u64, incr: bool| {
            s.store(Set, k.as_bytes(), 0, 0, v.as_bytes(), 0, now);
            let r = s.arith(k.as_bytes(), delta, incr, now);
            (r, value(&s, k, now).unwrap())
        };
        assert_eq!(
            arith("a", "10", 5, true),
            (ArithResult::Value(15), "15".into())
        );
        assert_eq!(
            arith("a", "10", 100, false),
            (ArithResult::Value(0), "0 ".into())
        );
        assert_eq!(
            arith("a", "100", 1, false),
            (ArithResult::Value(99), "99 ".into())
        );
        assert_eq!(
            arith("a", "99", 1, true),
            (ArithResult::Value(100), "100".into())
        );
        let max = u64::MAX.to_string();
        assert_eq!(
            arith("a", &max, 2, true),
            (ArithResult::Value(1), format!("1{}", " ".repeat(19)))
        );
        assert_eq!(
            arith("a", " 12", 1, true),
            (ArithResult::Value(13), "13 ".into())
        );
        assert_eq!(
            arith("a", "12 ", 1, true),
            (ArithResult::Value(13), "13 ".into())
        );
        assert_eq!(
            arith("a", "0007", 1, true),
            (ArithResult::Value(8), "8   ".into())
        );
        let padded = format!("{:025}", 41);
        assert_eq!(
            arith("a", &padded, 1, true),
            (ArithResult::Value(42), format!("42{}", " ".repeat(23)))
        );
        for bad in ["12abc", "", "18446744073709551616", "-5", "abc"] {
            assert_eq!(
                arith("a", bad, 1, true),
                (ArithResult::NonNumeric, bad.into())
            );
        }
        assert_eq!(s.arith(b"missing", 1, true, now), ArithResult::NotFound);
        assert_eq!(s.arith(b"missing", 1, false, now), ArithResult::NotFound);

        // Flags and deadline are kept, the CAS changes.
        s.store(Set, b"c", 77, 50, b"1", 0, now);
        let cas = hit(s.get(b"c", now)).cas;
        assert_eq!(s.arith(b"c", 1, true, now), ArithResult::Value(2));
        let v = hit(s.get(b"c", now));
        assert_eq!((&v.data[..], v.flags), (&b"2"[..], 77));
        assert_ne!(v.cas, cas);
        assert_eq!(s.get(b"c", 50), Lookup::Expired);
        assert_eq!(s.arith(b"c", 1, true, 50), ArithResult::NotFound);
        check(&s);
    }

    #[test]
    fn ttl_relative_and_absolute() {
        let s = store();
        let c = s.clock().clone();
        let now = c.now();
        set(&s, "forever", "v", now);
        s.store(Set, b"rel", 0, c.deadline(10, now), b"v", 0, now);
        s.store(Set, b"abs", 0, c.deadline(UNIX + 20, now), b"v", 0, now);
        s.store(Set, b"past", 0, c.deadline(-1, now), b"v", 0, now);
        s.store(Set, b"old", 0, c.deadline(UNIX - 1, now), b"v", 0, now);
        assert_eq!(s.get(b"past", now), Lookup::Expired);
        assert_eq!(s.get(b"past", now), Lookup::Miss);
        assert_eq!(s.get(b"old", now), Lookup::Expired);
        c.advance(9);
        assert!(matches!(s.get(b"rel", c.now()), Lookup::Hit(_)));
        c.advance(1);
        assert_eq!(s.get(b"rel", c.now()), Lookup::Expired);
        assert_eq!(s.get(b"rel", c.now()), Lookup::Miss);
        c.advance(9);
        assert!(matches!(s.get(b"abs", c.now()), Lookup::Hit(_)));
        c.advance(1);
        assert_eq!(s.get(b"abs", c.now()), Lookup::Expired);
        assert!(matches!(
            s.get(b"forever", c.now() + 1_000_000),
            Lookup::Hit(_)
        ));
        let st = s.stats();
        // past and old were never read; rel and abs were.
        assert_eq!((st.reclaimed, st.expired_unfetched), (4, 2));
        assert_eq!(st.curr_items, 1);
        assert!(!s.delete(b"rel", c.now()));
        check(&s);
    }

    #[test]
    fn touch_and_gat() {
        let s = store();
        let now = 2;
        assert!(!s.touch(b"k", 10, now));
        assert_eq!(s.get_and_touch(b"k", 10, now), Lookup::Miss);
        set(&s, "k", "v", now);
        assert!(s.touch(b"k", 10, now));
        assert_eq!(s.get(b"k", 10), Lookup::Expired);
        set(&s, "k", "v", now);
        let v = hit(s.get_and_touch(b"k", 20, now));
        assert_eq!(&v.data[..], b"v");
        assert!(matches!(s.get(b"k", 19), Lookup::Hit(_)));
        assert_eq!(s.get(b"k", 20), Lookup::Expired);
        // gat with an expired deadline returns the value, then it is gone.
        set(&s, "k", "v", now);
        assert_eq!(
            &hit(s.get_and_touch(b"k", clock::EXPIRED, now)).data[..],
            b"v"
        );
        assert_eq!(s.get(b"k", now), Lookup::Miss);
        set(&s, "k", "v", now);
        assert!(s.touch(b"k", clock::EXPIRED, now));
        assert_eq!(s.get(b"k", now), Lookup::Expired);
        check(&s);
    }

    #[test]
    fn delete() {
        let s = store();
        assert!(!s.delete(b"k", 2));
        set(&s, "k", "v", 2);
        assert!(s.delete(b"k", 2));
        assert!(!s.delete(b"k", 2));
        assert_eq!(s.get(b"k", 2), Lookup::Miss);
        assert_eq!(s.stats().curr_items, 0);
        check(&s);
        // A segment with nothing live in it goes once it is no longer the
        // one being written: only the index and the new head stay charged.
        let s = new_store(256 * 1024, true, true, 1);
        for i in 0..200 {
            s.store(Set, format!("k{i}").as_bytes(), 0, 0, &[7; 200], 0, 2);
        }
        let full = s.stats().bytes;
        assert_eq!(s.stats().evictions, 0);
        for i in 0..199 {
            assert!(s.delete(format!("k{i}").as_bytes(), 2));
        }
        assert!(s.stats().bytes < full / 2, "{} of {full}", s.stats().bytes);
        check(&s);
    }

    /// Room for exactly `n` items like `set(s, "kN", "0123456789")` (so
    /// small a limit that each has a segment of its own) and their index.
    fn room_for(n: usize) -> usize {
        let record = segment::PREFIX + item::encoded_len(2, 10, 0, 1);
        n * memory::segment_cost(record) + memory::index_cost(n)
    }

    #[test]
    fn eviction_spares_items_read_since_they_were_stored() {
        let s = new_store(room_for(3), true, true, 1);
        let mut now = 2;
        for k in ["k1", "k2", "k3"] {
            assert_eq!(set(&s, k, "0123456789", now), StoreResult::Stored);
        }
        // A read marks k1 active: eviction moves it to the front instead.
        assert!(value(&s, "k1", now).is_some());
        assert_eq!(set(&s, "k4", "0123456789", now), StoreResult::Stored);
        assert_eq!(s.get(b"k2", now), Lookup::Miss);
        assert_eq!(s.lock(0).lru_keys(), [&b"k4"[..], b"k1", b"k3"]);
        assert!(value(&s, "k1", now).is_some());
        now += shard::UPDATE_INTERVAL;
        assert!(value(&s, "k3", now).is_some());
        // Oldest first: k3 and k1, read since, are spared once more, so k4,
        // never read, goes.
        assert_eq!(set(&s, "k5", "0123456789", now), StoreResult::Stored);
        assert_eq!(s.get(b"k4", now), Lookup::Miss);
        for k in ["k1", "k3", "k5"] {
            assert!(value(&s, k, now).is_some(), "{k} was evicted");
        }
        let st = s.stats();
        assert_eq!(st.evictions, 2);
        assert_eq!(st.evicted_unfetched, 2);
        check(&s);
    }

    #[test]
    fn add_on_existing_bumps() {
        let s = new_store(room_for(2), true, true, 1);
        set(&s, "k1", "0123456789", 2);
        set(&s, "k2", "0123456789", 2);
        assert_eq!(
            s.store(Add, b"k1", 0, 0, b"0123456789", 0, 2),
            StoreResult::NotStored
        );
        set(&s, "k3", "0123456789", 2);
        assert_eq!(s.get(b"k2", 2), Lookup::Miss);
        assert!(value(&s, "k1", 2).is_some());
    }

    /// A small deterministic generator: no dependency, no flakiness.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn memory_stays_under_the_limit() {
        let limit = 256 * 1024;
        let s = new_store(limit, true, true, 16);
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut stored = 0u64;
        for n in 0..20_000 {
            let key = format!("key{}", rng.below(3000));
            let len = match rng.below(10) {
                0 => rng.below(20_000),
                _ => rng.below(600),
            } as usize;
            let v = vec![b'x'; len];
            let r = s.store(Set, key.as_bytes(), 0, 0, &v, 0, 2);
            assert_eq!(r, StoreResult::Stored);
            stored += 1;
            assert!(s.memory.used() <= limit, "over the limit after {n} sets");
            if rng.below(4) == 0 {
                s.get(key.as_bytes(), 2);
            }
        }
        let st = s.stats();
        assert!(st.evictions > 0);
        assert_eq!(st.total_items, stored);
        assert!(st.bytes <= limit as u64);
        // Most of the budget is in use: evictions free only what is needed.
        assert!(st.bytes > limit as u64 * 8 / 10, "{st:?}");
        // Segments evicted under a lock were handed over to be freed after it.
        for i in 0..16 {
            assert!(s.lock(i).garbage.is_empty(), "shard {i} kept garbage");
        }
        check(&s);
    }

    #[test]
    fn evicts_from_other_shards_when_its_own_is_empty() {
        // One key per shard would be luck; instead fill, then write one big
        // item that its own shard cannot make room for alone.
        let s = new_store(64 * 1024, true, true, 64);
        for i in 0..400 {
            s.store(Set, format!("k{i}").as_bytes(), 0, 0, &[1; 200], 0, 2);
        }
        assert!(s.stats().evictions > 0);
        let big = vec![2u8; 40 * 1024];
        assert_eq!(s.store(Set, b"big", 0, 0, &big, 0, 2), StoreResult::Stored);
        assert_eq!(hit(s.get(b"big", 2)).data, big);
        check(&s);
    }

    #[test]
    fn without_evictions_a_full_store_refuses() {
        let s = new_store(room_for(3), false, true, 1);
        for k in ["k1", "k2", "k3"] {
            assert_eq!(set(&s, k, "0123456789", 2), StoreResult::Stored);
        }
        assert_eq!(set(&s, "k4", "0123456789", 2), StoreResult::OutOfMemory);
        assert_eq!(s.get(b"k4", 2), Lookup::Miss);
        // A new version needs its memory before the old one goes (memcached
        // too allocates first), so a full store refuses it, and a failed
        // set drops the old value rather than leave it stale.
        assert_eq!(set(&s, "k1", "9876543210", 2), StoreResult::OutOfMemory);
        assert_eq!(s.get(b"k1", 2), Lookup::Miss);
        // With k1's memory free, k2 can grow only as far as that.
        assert_eq!(
            s.store(Replace, b"k2", 0, 0, &[0; 100], 0, 2),
            StoreResult::OutOfMemory
        );
        assert!(value(&s, "k2", 2).is_some());
        assert_eq!(
            s.store(Append, b"k2", 0, 0, &[0; 100], 0, 2),
            StoreResult::OutOfMemory
        );
        assert_eq!(
            s.store(Set, b"k2", 0, 0, &[0; 100], 0, 2),
            StoreResult::OutOfMemory
        );
        assert_eq!(s.get(b"k2", 2), Lookup::Miss);
        let st = s.stats();
        assert_eq!(st.evictions, 0);
        // Expired items still make room.
        s.touch(b"k3", 5, 2);
        assert_eq!(set(&s, "k5", "0123456789", 5), StoreResult::Stored);
        assert_eq!(set(&s, "k6", "0123456789", 5), StoreResult::Stored);
        assert_eq!(set(&s, "k7", "0123456789", 5), StoreResult::Stored);
        assert_eq!(s.get(b"k3", 5), Lookup::Miss);
        assert_eq!(set(&s, "k8", "0123456789", 5), StoreResult::OutOfMemory);
        assert_eq!(s.stats().reclaimed, 1);
        check(&s);
    }

    #[test]
    fn an_item_larger_than_the_limit_is_refused() {
        let s = new_store(64 * 1024, true, true, 4);
        set(&s, "k", "small", 2);
        let big = vec![0u8; 64 * 1024];
        assert_eq!(
            s.store(Set, b"k", 0, 0, &big, 0, 2),
            StoreResult::OutOfMemory
        );
        assert_eq!(s.get(b"k", 2), Lookup::Miss);
        assert_eq!(
            s.store(Add, b"j", 0, 0, &big, 0, 2),
            StoreResult::OutOfMemory
        );
        check(&s);
    }

    #[test]
    fn lowering_the_limit_evicts_down() {
        let s = new_store(MB, true, true, 8);
        for i in 0..2000 {
            s.store(Set, format!("k{i}").as_bytes(), 0, 0, &[0; 100], 0, 2);
        }
        let before = s.stats().curr_items;
        s.set_memory_limit(100 * 1024);
        let st = s.stats();
        assert!(st.bytes <= 100 * 1024);
        assert!(st.curr_items < before);
        assert_eq!(st.limit_maxbytes, 100 * 1024);
        check(&s);
    }

    #[test]
    fn sweep_reclaims_within_bounded_calls() {
        let s = new_store(MB, true, true, 4);
        let now = 2;
        for i in 0..400 {
            let deadline = if i % 2 == 0 { 10 } else { 0 };
            s.store(Set, format!("k{i}").as_bytes(), 0, deadline, b"v", 0, now);
        }
        assert_eq!(s.sweep(9, 1000), 0);
        // Records per shard are about 100; 25 per call needs at most a few
        // calls more than 100/25 to see them all.
        let mut reclaimed = 0;
        let mut calls = 0;
        while reclaimed < 200 {
            let r = s.sweep(10, 25);
            assert!(r <= 4 * 25);
            reclaimed += r;
            calls += 1;
            assert!(calls <= 10, "sweep does not make progress");
        }
        let st = s.stats();
        assert_eq!(
            (st.curr_items, st.reclaimed, st.expired_unfetched),
            (200, 200, 200)
        );
        assert_eq!(s.sweep(10, 1000), 0);
        check(&s);
    }

    #[test]
    fn flush_all_now() {
        let s = store();
        let c = s.clock().clone();
        c.advance(100);
        let now = c.now();
        for i in 0..100 {
            set(&s, &format!("k{i}"), "v", now);
        }
        s.flush_all(0, now);
        let st = s.stats();
        assert_eq!((st.curr_items, st.bytes), (0, 0));
        assert_eq!(s.get(b"k1", now), Lookup::Miss);
        // Stored in the same second, after the flush: visible.
        set(&s, "after", "v", now);
        assert!(value(&s, "after", now).is_some());
        assert!(value(&s, "after", now + 1000).is_some());
        // A deadline not after now is a flush now.
        s.flush_all(now, now);
        assert_eq!(s.stats().curr_items, 0);
        check(&s);
    }

    #[test]
    fn flush_all_delayed() {
        let s = store();
        let t = 100;
        set(&s, "before", "v", t);
        s.flush_all(t + 10, t);
        set(&s, "between", "v", t + 5);
        assert!(value(&s, "before", t + 5).is_some());
        assert!(value(&s, "between", t + 9).is_some());
        assert_eq!(s.stats().curr_items, 2);
        // At the deadline, everything last written before it is gone...
        set(&s, "at", "v", t + 10);
        assert_eq!(s.get(b"before", t + 10), Lookup::Flushed);
        assert_eq!(s.get(b"between", t + 10), Lookup::Flushed);
        assert_eq!(s.get(b"between", t + 10), Lookup::Miss);
        // ...and what is written from then on stays.
        assert!(value(&s, "at", t + 10).is_some());
        set(&s, "later", "v", t + 11);
        assert!(value(&s, "later", t + 100).is_some());
        assert!(value(&s, "at", t + 100).is_some());
        check(&s);
    }

    #[test]
    fn delayed_flush_reaches_unread_items_by_sweep() {
        let s = store();
        for i in 0..50 {
            set(&s, &format!("k{i}"), "v", 10);
        }
        s.flush_all(20, 10);
        assert_eq!(s.sweep(19, 100), 0);
        assert_eq!(s.sweep(20, 100), 50);
        assert_eq!(s.stats().curr_items, 0);
    }

    #[test]
    fn accounting_per_item() {
        // A 10-byte key and a 100-byte value with flags and CAS: an 11-byte
        // prefix, 2 + 10 + 4 + 8 + 100 = 124 item bytes, 8 of index.
        assert_eq!(Store::item_overhead(10, 100), 143);
        // The first item opens a segment (1 MiB over one shard: 16 KiB ones)
        // and the index; the next ones fill them.
        let s = new_store(MB, true, true, 1);
        s.store(Set, b"0123456789", 0, 0, &[0; 100], 0, 2);
        let first = memory::segment_cost(16 * 1024) + memory::index_cost(3);
        assert_eq!(s.stats().bytes, first as u64);
        s.store(Set, b"0123456780", 0, 0, &[0; 100], 0, 2);
        assert_eq!(s.stats().bytes, first as u64);
        // One past the segment's records opens another.
        for i in 0..16 * 1024 / 131 {
            s.store(Set, format!("{i:010}").as_bytes(), 0, 0, &[0; 100], 0, 2);
        }
        assert!(s.stats().bytes > (2 * memory::segment_cost(16 * 1024)) as u64);
        check(&s);
    }

    #[test]
    fn an_empty_store_is_small() {
        assert!(size_of::<Cell>() <= 320, "{}", size_of::<Cell>());
        let s = new_store(64 * MB, true, true, 256);
        assert_eq!(s.stats().bytes, 0);
        assert_eq!(s.config().shards, 256);
        assert_eq!(new_store(MB, true, true, 100).config().shards, 128);
        assert_eq!(new_store(MB, true, true, 0).config().shards, 1);
    }

    #[test]
    fn hits_share_the_stored_allocation() {
        let s = store();
        set(&s, "k", "value", 2);
        let a = hit(s.get(b"k", 2));
        let b = hit(s.get(b"k", 2));
        assert_eq!(a.data.as_ptr(), b.data.as_ptr());
        // The value read stays valid after the item is replaced or deleted.
        set(&s, "k", "other", 2);
        s.delete(b"k", 2);
        assert_eq!(&a.data[..], b"value");
    }

    #[test]
    fn many_threads_on_overlapping_keys() {
        let s = Arc::new(new_store(512 * 1024, true, true, 16));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let mut rng = Rng(0x1234_5678 + t);
                    for _ in 0..20_000 {
                        let k = rng.below(500);
                        let key = format!("key{k}");
                        match rng.below(10) {
                            0..=3 => {
                                // The value names its key, so a mix-up shows.
                                let mut v = key.clone().into_bytes();
                                v.resize(rng.below(2000) as usize + v.len(), b'.');
                                s.store(Set, key.as_bytes(), k as u32, 0, &v, 0, 2);
                            }
                            4 => {
                                s.store(Append, key.as_bytes(), 0, 0, b"+", 0, 2);
                            }
                            5 => {
                                s.delete(key.as_bytes(), 2);
                            }
                            6 => {
                                s.store(Set, b"counter", 0, 0, b"0", 0, 2);
                                s.arith(b"counter", 1, true, 2);
                            }
                            _ => {
                                if let Lookup::Hit(v) = s.get(key.as_bytes(), 2) {
                                    assert!(v.data.starts_with(key.as_bytes()));
                                    assert_eq!(v.flags, k as u32);
                                }
                            }
                        }
                        assert!(s.memory.used() <= s.memory.limit());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        check(&s);
        let st = s.stats();
        assert!(st.curr_items > 0 && st.bytes <= 512 * 1024);
    }
}

#[cfg(test)]
mod model_tests;
