//! The item store: a memcached-shaped API over many independently locked
//! shards, each an LRU with TTL expiry, under one memory limit.
//!
//! The store knows nothing of the wire protocol: callers hand it keys, values,
//! flags and deadlines already converted by [`clock`], and get back outcomes
//! that `server::execute` turns into replies.
//!
//! IMPLEMENTATION NOTE FOR THE HELPER: the signatures below are the contract
//! with the server; the bodies are yours (see shard.rs, lru.rs, item.rs,
//! memory.rs).

pub mod clock;

use bytes::Bytes;

pub use clock::Clock;

use crate::protocol::StoreMode;

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
