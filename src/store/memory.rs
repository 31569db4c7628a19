//! What an item costs, and the one budget (`-m`) all shards draw from.
//!
//! An item is charged what it really takes from the process, as closely as
//! can be known without asking the allocator:
//!
//! - its allocation ([`alloc_cost`]): the encoded item (see `item.rs`) plus
//!   the `Bytes` reference count, rounded as glibc malloc rounds (8-byte
//!   chunk header, 16-byte steps, 32-byte minimum, whole pages from the mmap
//!   threshold up); for items kept in a `Vec`, also the 24-byte shared header
//!   that `Bytes` allocates for it;
//! - its slot in the shard's slab (48 bytes), plus the slab's spare capacity
//!   (it grows by a quarter, so on average an eighth of a slot is spare);
//! - its share of the shard's hash index: 4 bytes of slot number and 1
//!   control byte per bucket, at a load between 7/16 and 7/8: about 8 bytes.
//!
//! Only writes touch the shared counter; reads never do.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::item;
use super::shard::Entry;

/// Slab slot, slab spare capacity and index share of one item.
pub const SLOT_COST: usize = size_of::<Entry>() + size_of::<Entry>() / 8 + INDEX_SHARE;

/// An item's share of its shard's hash index, amortised over the load factor.
pub const INDEX_SHARE: usize = 8;

/// What `Bytes` allocates to share a `Vec` (pointer, capacity, count).
const SHARED_HEADER: usize = 24;

/// glibc's default `M_MMAP_THRESHOLD`.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// The memory glibc malloc takes for a request of `n` bytes.
pub fn malloc_size(n: usize) -> usize {
    if n + 8 >= MMAP_THRESHOLD {
        (n + 16).div_ceil(4096) * 4096
    } else {
        ((n + 8).div_ceil(16) * 16).max(32)
    }
}

/// The heap memory of an encoded item of `len` bytes.
pub fn alloc_cost(len: usize) -> usize {
    if len <= item::INLINE_MAX {
        malloc_size(item::inline_size(len))
    } else {
        malloc_size(len) + malloc_size(SHARED_HEADER)
    }
}

/// Everything an encoded item of `len` bytes costs while it is stored.
pub fn item_cost(len: usize) -> usize {
    alloc_cost(len) + SLOT_COST
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
    fn slot_is_48_bytes() {
        // Option<Bytes> (32, its vtable reference is the niche) + deadline,
        // access time and links (16).
        assert_eq!(size_of::<Entry>(), 48);
        assert_eq!(SLOT_COST, 62);
    }

    #[test]
    fn malloc_rounding() {
        assert_eq!(malloc_size(1), 32);
        assert_eq!(malloc_size(24), 32);
        assert_eq!(malloc_size(25), 48);
        assert_eq!(malloc_size(136), 144);
        assert_eq!(malloc_size(200_000), 200_704);
    }

    #[test]
    fn inline_items_fill_their_chunk() {
        // 8-byte count + 128-byte array + 8-byte chunk header = 144.
        assert_eq!(alloc_cost(120), 144);
        assert_eq!(alloc_cost(113), 144);
        assert_eq!(alloc_cost(112), 128);
        // Past the inline limit: Vec data + shared header.
        assert_eq!(alloc_cost(513), 528 + 32);
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
