//! A provided-buffer ring: buffers the kernel picks from when a multishot
//! receive completes, so no connection keeps a read buffer posted while it
//! waits. The worker copies each completed receive out and hands the
//! buffer back at once.
//!
//! The kernel takes posted buffers in ring order, so every buffer posted
//! becomes resident before long, whether or not a turn ever needed that
//! many. So the ring starts with few of its buffers posted and posts one
//! more each time a receive finds none left ([`BufRing::ran_dry`]): what
//! is resident follows the most any turn has needed, up to the ring's size.
//! The buffers not yet posted are reserved but never touched.
//!
//! Owns the ring memory and the buffers; knows nothing of connections.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, squeue};

/// One ring of up to `count` buffers of `len` bytes each, registered as
/// buffer group `group`.
pub struct BufRing {
    entries: *mut BufRingEntry,
    entries_len: usize,
    bufs: Vec<u8>,
    buf_len: usize,
    mask: u16,
    tail: u16,
    group: u16,
    /// Buffers handed to the kernel so far: ids `0..posted`. Each is either
    /// in the ring or being copied out by the worker, which gives it back
    /// at once; the others have never been touched.
    posted: u16,
}

impl BufRing {
    /// Maps the ring, registers it with `ring` and provides the first
    /// `first` of its `count` buffers.
    ///
    /// # Errors
    /// The kernel refused the mapping or the registration.
    pub fn new<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
        ring: &IoUring<S, C>,
        count: u16,
        first: u16,
        buf_len: usize,
        group: u16,
    ) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        assert!(
            (1..=count).contains(&first),
            "between one buffer and all of them posted first"
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
            // Zeroed, so the allocator maps fresh pages: none is resident
            // until the kernel writes a receive into it.
            bufs: vec![0; usize::from(count) * buf_len],
            buf_len,
            mask: count - 1,
            tail: 0,
            group,
            posted: 0,
        };
        // SAFETY: the mapping lives as long as `this`; the owner drops the
        // ring (which unregisters it) before `this`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(addr as u64, count, group, 0)?;
        }
        this.post_up_to(first);
        Ok(this)
    }

    /// Buffers posted so far.
    pub fn posted(&self) -> u16 {
        self.posted
    }

    /// A receive failed for want of a buffer (`ENOBUFS`): posts one more,
    /// up to the ring's size, so a turn as busy finds one for it next time.
    /// One a receive that ran dry, rather than doubling: a busy turn ends
    /// many receives at once, and the ring then grows by what the turn
    /// lacked. Returns whether it posted one.
    pub fn ran_dry(&mut self) -> bool {
        if self.posted > self.mask {
            return false;
        }
        self.post_up_to(self.posted + 1);
        true
    }

    fn post_up_to(&mut self, posted: u16) {
        while self.posted < posted {
            self.recycle(self.posted);
            self.posted += 1;
        }
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use io_uring::{IoUring, opcode, squeue, types};

    use super::*;

    /// One receive into a buffer of group 7: its result and buffer id.
    fn recv(ring: &mut IoUring, from: &UnixStream) -> (i32, Option<u16>) {
        let entry = opcode::Recv::new(types::Fd(from.as_raw_fd()), std::ptr::null_mut(), 64)
            .buf_group(7)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(1);
        // SAFETY: the entry names no memory of ours; the ring's buffers
        // live in `BufRing`, which outlives the wait below.
        unsafe { ring.submission().push(&entry).expect("room") };
        ring.submit_and_wait(1).expect("wait");
        let c = ring.completion().next().expect("a completion");
        (c.result(), cqueue::buffer_select(c.flags()))
    }

    #[test]
    fn only_posted_buffers_are_used_and_each_dry_receive_posts_one() {
        let Ok(mut ring) = IoUring::new(8) else {
            eprintln!("io_uring is not available here: nothing to test");
            return;
        };
        let mut bufs = BufRing::new(&ring, 4, 1, 64, 7).expect("a buffer ring");
        let (mut tx, rx) = UnixStream::pair().unwrap();

        tx.write_all(b"one").unwrap();
        assert_eq!(recv(&mut ring, &rx), (3, Some(0)));
        assert_eq!(bufs.get(0, 3), b"one");

        // Buffer 0 is still ours, and it was the only one posted.
        tx.write_all(b"two").unwrap();
        assert_eq!(recv(&mut ring, &rx), (-libc::ENOBUFS, None));
        assert!(bufs.ran_dry());
        assert_eq!(bufs.posted(), 2);
        assert_eq!(recv(&mut ring, &rx), (3, Some(1)));
        assert_eq!(bufs.get(1, 3), b"two");

        // Given back, the two are used in turn; the others stay untouched.
        bufs.recycle(0);
        bufs.recycle(1);
        for (round, want) in [0u16, 1, 0, 1].into_iter().enumerate() {
            tx.write_all(format!("r{round}").as_bytes()).unwrap();
            assert_eq!(recv(&mut ring, &rx), (2, Some(want)), "round {round}");
            bufs.recycle(want);
        }

        assert!(bufs.ran_dry());
        assert!(bufs.ran_dry());
        assert_eq!(bufs.posted(), 4);
        assert!(!bufs.ran_dry(), "no more than the ring holds");
        assert_eq!(bufs.posted(), 4);
    }
}
