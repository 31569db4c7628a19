//! Freed shared segments kept for any shard to open again.
//!
//! A segment dies when every record in it has been replaced or deleted,
//! and a writing shard opens a new one for every segment's worth of
//! writes. Under a replacing load the two happen about equally often, but
//! not in step within one shard, so a shard's own spare (see `Shard`)
//! missed a third of the opens: each miss mapped fresh pages, with a page
//! fault per 4 KiB, and the surplus deaths unmapped theirs, each unmap a
//! TLB flush on every core. Across all the shards deaths and opens even
//! out, so a small pool shared by them catches nearly all of both.
//!
//! A pooled segment keeps its charge against the limit: the memory is
//! still the process's. It belongs to no shard, and any write that finds
//! the limit reached gives pooled segments back before it evicts an item.
//! The lock is taken once per segment opened or freed, not per request.

use std::sync::Mutex;

use bytes::Bytes;

use super::memory::Memory;
use super::segment::SegMem;

/// Segments the pool keeps at most: 2 MiB at the largest segment size
/// (64 KiB). With 1 KiB values, 90% sets, 32 took the segments mapped
/// afresh from about 820 a second to 42, and the page faults from 13,000
/// to 700.
pub const POOL_MAX: usize = 32;

/// The pool's share of the limit at most, for a small store.
const LIMIT_SHARE: usize = 32;

/// Free segments of one size, each still charged `charge` bytes.
#[derive(Debug)]
pub struct SegPool {
    free: Mutex<Vec<SegMem>>,
    charge: usize,
    max: usize,
}

impl SegPool {
    /// A pool of segments that each cost `charge` against the limit, for a
    /// store with this limit.
    pub fn new(charge: usize, limit: usize) -> SegPool {
        let max = (limit / LIMIT_SHARE / charge.max(1)).min(POOL_MAX);
        SegPool {
            free: Mutex::new(Vec::with_capacity(max)),
            charge,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SegMem>> {
        // A panic while pushing or popping leaves the list whole.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What each pooled segment is charged.
    pub fn charge(&self) -> usize {
        self.charge
    }

    /// Keeps `mem`, no reader holding it, its charge staying reserved; or
    /// hands it back if the pool is full.
    pub fn put(&self, mem: SegMem) -> Result<(), SegMem> {
        let mut free = self.lock();
        if free.len() < self.max {
            free.push(mem);
            Ok(())
        } else {
            Err(mem)
        }
    }

    /// A pooled segment, its charge now the taker's.
    pub fn take(&self) -> Option<SegMem> {
        self.lock().pop()
    }

    /// Gives one pooled segment's charge back to `memory`, for memory
    /// wanted elsewhere; its buffer is returned, to be dropped (unmapped)
    /// outside any lock.
    pub fn release_one(&self, memory: &Memory) -> Option<Bytes> {
        let mem = self.lock().pop()?;
        memory.release(self.charge);
        Some(mem.into_bytes())
    }

    /// Bytes the pooled segments are charged.
    pub fn bytes(&self) -> usize {
        self.lock().len() * self.charge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_its_maximum_and_releases_charges() {
        let memory = Memory::new(1 << 30);
        let pool = SegPool::new(4096, 1 << 30);
        for _ in 0..POOL_MAX {
            assert!(memory.try_reserve(4096));
            assert!(pool.put(SegMem::new(4096)).is_ok());
        }
        assert!(pool.put(SegMem::new(4096)).is_err(), "full");
        assert_eq!(pool.bytes(), POOL_MAX * 4096);
        assert_eq!(memory.used(), POOL_MAX * 4096);
        let taken = pool.take().expect("one pooled");
        assert_eq!(taken.len(), 4096);
        assert!(pool.release_one(&memory).is_some());
        assert_eq!(memory.used(), (POOL_MAX - 1) * 4096, "one released");
        assert_eq!(pool.bytes(), (POOL_MAX - 2) * 4096);
        while pool.release_one(&memory).is_some() {}
        assert_eq!(memory.used(), 4096, "the taken one's charge is the taker's");
        assert!(pool.take().is_none());
    }

    #[test]
    fn a_small_store_pools_a_small_share() {
        let pool = SegPool::new(4096, 256 * 1024);
        assert!(pool.put(SegMem::new(4096)).is_ok());
        assert!(pool.put(SegMem::new(4096)).is_ok());
        assert!(pool.put(SegMem::new(4096)).is_err(), "1/32 of 256 KiB");
    }
}
