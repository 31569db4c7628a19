//! A provided-buffer ring: buffers the kernel picks from when a multishot
//! receive completes, so no connection keeps a read buffer posted while it
//! waits. The worker copies each completed receive out and hands the
//! buffer back at once.
//!
//! Owns the ring memory and the buffers; knows nothing of connections.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, squeue};

/// One ring of `count` buffers of `len` bytes each, registered as buffer
/// group `group`.
pub struct BufRing {
    entries: *mut BufRingEntry,
    entries_len: usize,
    bufs: Vec<u8>,
    buf_len: usize,
    mask: u16,
    tail: u16,
    group: u16,
}

impl BufRing {
    /// Maps the ring, registers it with `ring` and provides every buffer.
    ///
    /// # Errors
    /// The kernel refused the mapping or the registration.
    pub fn new<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        ring: &IoUring<S, C>,
        count: u16,
        buf_len: usize,
        group: u16,
    ) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let entries_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; the kernel requires the ring
        // to be page-aligned, which mmap guarantees.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut this = BufRing {
            entries: addr.cast(),
            entries_len,
            bufs: vec![0; usize::from(count) * buf_len],
            buf_len,
            mask: count - 1,
            tail: 0,
            group,
        };
        // SAFETY: the mapping lives as long as `this`; the owner drops the
        // ring (which unregisters it) before `this`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(addr as u64, count, group, 0)?;
        }
        for bid in 0..count {
            this.recycle(bid);
        }
        Ok(this)
    }

    /// The buffer group id to name in receive requests.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes the kernel put in buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.buf_len;
        &self.bufs[start..start + len.min(self.buf_len)]
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        let start = usize::from(bid) * self.buf_len;
        let addr = self.bufs[start..].as_mut_ptr() as u64;
        // SAFETY: the index is masked into the mapping; the kernel reads an
        // entry only once the tail published below covers it.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & self.mask));
            entry.set_addr(addr);
            entry.set_len(self.buf_len as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer registered.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
        }
    }
}
