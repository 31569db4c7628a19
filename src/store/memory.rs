//! What storage costs, and the one budget (`-m`) all shards draw from.
//!
//! A shard is charged for what it takes from the process, as closely as can
//! be known without asking the allocator: each segment's buffer (whole
//! pages, as `segment.rs` maps them, or for a small one a chunk rounded as
//! glibc malloc rounds: 8-byte chunk header, 16-byte steps, 32-byte
//! minimum), the `Bytes` owner that shares it, and its hash index's table. Records are not charged one
//! by one: a segment is charged whole from the moment it is opened, so the
//! space of deleted or replaced records counts until their segment goes.
//!
//! Only writes touch the shared counter; reads never do. It prices and
//! counts; which shard spends what, and what is evicted, it does not know.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::index::Index;
use super::segment::{MAP_MIN, mapped_len};

/// An item's share of its shard's hash index: a 4-byte location, one
/// control byte and one ghost byte per bucket, and two bytes (an overflow
/// count and padding) for every 14, at a load between 6/7 and 16/21 (the
/// index grows by an eighth): 7.2 to 8.1 bytes.
pub const INDEX_SHARE: usize = 8;

/// glibc's default `M_MMAP_THRESHOLD`.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// What `Bytes::from_owner` allocates beside the buffer: a reference count,
/// a drop function and the owner (pointer and length).
const OWNER_SIZE: usize = 32;

/// The memory glibc malloc takes for a request of `n` bytes.
pub fn malloc_size(n: usize) -> usize {
    if n + 8 >= MMAP_THRESHOLD {
        (n + 16).div_ceil(4096) * 4096
    } else {
        ((n + 8).div_ceil(16) * 16).max(32)
    }
}

/// What a segment buffer of `len` bytes costs: whole pages when mapped,
/// else a malloc chunk; and its owner's chunk.
pub fn segment_cost(len: usize) -> usize {
    let buffer = if len >= MAP_MIN {
        mapped_len(len)
    } else {
        malloc_size(len)
    };
    buffer + malloc_size(OWNER_SIZE)
}

/// The bucket count of a hash index able to hold `capacity` items without
/// growing: 7 for every 6 (0 for none).
pub fn index_buckets(capacity: usize) -> usize {
    Index::buckets_for(capacity)
}

/// What a hash index able to hold `capacity` items without growing costs,
/// with the ghost set sized by it: a 4-byte entry and a control byte a
/// bucket, an overflow count and a spare byte a group of 14, and a ghost
/// byte a bucket.
pub fn index_cost(capacity: usize) -> usize {
    let buckets = index_buckets(capacity);
    if buckets == 0 {
        return 0;
    }
    malloc_size(Index::bytes_for(capacity)) + malloc_size(buckets)
}

/// Bytes in use against the limit. Reserving is all-or-nothing, so the
/// count never passes the limit (except right after the limit is lowered,
/// until the store has evicted down to it).
#[derive(Debug)]
pub struct Memory {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Memory {
    pub fn new(limit: usize) -> Self {
        Memory {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Takes `n` bytes if they fit under the limit.
    pub fn try_reserve(&self, n: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|&t| t <= limit)
            })
            .is_ok()
    }

    pub fn release(&self, n: usize) {
        let before = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "released more than was reserved");
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// How far use is above the limit.
    pub fn excess(&self) -> usize {
        self.used().saturating_sub(self.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malloc_rounding() {
        assert_eq!(malloc_size(1), 32);
        assert_eq!(malloc_size(24), 32);
        assert_eq!(malloc_size(25), 48);
        assert_eq!(malloc_size(136), 144);
        assert_eq!(malloc_size(200_000), 200_704);
    }

    #[test]
    fn segment_and_index_costs() {
        // A 64 KiB segment: its pages and the owner's chunk; a small
        // buffer is a malloc chunk.
        assert_eq!(segment_cost(65536), 65536 + 48);
        assert_eq!(segment_cost(5000), 8192 + 48);
        assert_eq!(segment_cost(100), 112 + 48);
        assert_eq!(index_cost(0), 0);
        // Groups of 14 buckets, 12 items and 72 bytes each, any number;
        // a ghost byte a bucket.
        assert_eq!(index_cost(1), malloc_size(72) + malloc_size(14));
        assert_eq!(index_cost(12), malloc_size(72) + malloc_size(14));
        assert_eq!(index_cost(13), malloc_size(144) + malloc_size(28));
        assert_eq!(index_cost(36), malloc_size(216) + malloc_size(42));
        assert_eq!(index_buckets(12 * 1000 + 1), 14 * 1001);
    }

    #[test]
    fn reserve_is_all_or_nothing() {
        let m = Memory::new(100);
        assert!(m.try_reserve(60));
        assert!(!m.try_reserve(41));
        assert!(m.try_reserve(40));
        assert_eq!(m.used(), 100);
        m.release(50);
        m.set_limit(20);
        assert_eq!(m.excess(), 30);
    }
}
