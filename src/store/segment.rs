//! Segment memory: where item records live, and the record layout.
//!
//! A shard packs small records one after another into fixed-size segments
//! (memcached's slab pages without the size classes: no rounding per item,
//! no per-item allocation), and gives each large record a segment of its own
//! built before the lock is taken. A segment's buffer is shared as one
//! [`Bytes`], so a hit hands out a slice of it by bumping one reference
//! count, and a segment that leaves the shard lives on until the last reply
//! that points into it has been written.
//!
//! A record is `[state u8][item_len u16][time u32][deadline u32][item]`,
//! where the item is the immutable encoding of `item.rs` and the deadline
//! field is there only if the state's [`HAS_DEADLINE`] bit is set: most
//! items never expire, and 4 bytes is 3% of a small one. A record gets the
//! field when it is written with a deadline (a large record always has it,
//! as 4 bytes do not matter there), and keeps or lacks it for its life,
//! since it decides where the item starts; giving a deadline to a record
//! without the field means writing it again. The prefix changes in place
//! under the shard lock and is never handed out; the item bytes are written
//! once, before the record can be found, and never change after, so
//! readers holding slices never see a write. This module knows bytes and
//! offsets: what the state bits mean is `record.rs`, which segment is which
//! `segments.rs`.

use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

use super::hint::prefetch;

/// Bytes of a record before its item, without the deadline field and
/// with it.
pub const PREFIX_MIN: usize = 7;
pub const PREFIX_MAX: usize = PREFIX_MIN + 4;

/// The state bit saying the record has its deadline field. Fixed when the
/// record is written: [`SegMem::set_state`] keeps it as it is.
pub const HAS_DEADLINE: u8 = 64;

/// The prefix length of a record with or without the deadline field.
pub const fn prefix_len(has_deadline: bool) -> usize {
    if has_deadline { PREFIX_MAX } else { PREFIX_MIN }
}

/// Offsets of the prefix fields; the deadline last, so the others stay put.
const STATE: usize = 0;
const ITEM_LEN: usize = 1;
const TIME: usize = 3;
const DEADLINE: usize = 7;

/// Buffers from this size up are mapped from the kernel, whole pages, and
/// unmapped when freed. Segments come and go all the time, from every
/// worker thread; through malloc they would scatter free chunks over its
/// per-thread arenas, where the next segment often cannot use them: with
/// -m 64 that kept about 8 MiB more resident than the limit.
pub const MAP_MIN: usize = 4096;

/// The memory a buffer of `len` bytes is given.
pub fn mapped_len(len: usize) -> usize {
    len.div_ceil(4096) * 4096
}

/// The owner behind a segment's `Bytes`: a buffer written through a raw
/// pointer by the shard that holds it, read through slices by everyone.
struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
}

impl Buffer {
    /// A zeroed buffer: mapped pages from [`MAP_MIN`] up, else the heap.
    fn new(len: usize) -> Buffer {
        if len < MAP_MIN {
            let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
            let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).expect("a heap pointer");
            return Buffer { ptr, len };
        }
        // SAFETY: an anonymous private mapping asks nothing of the caller;
        // the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len(len),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let layout = std::alloc::Layout::from_size_align(len, 4096).expect("a page layout");
            std::alloc::handle_alloc_error(layout);
        }
        let ptr = NonNull::new(p.cast::<u8>()).expect("mmap returned a mapping");
        Buffer { ptr, len }
    }
}

// The buffer is plain bytes; who may write which bytes is the shard's rule
// (see the module doc), enforced by its lock.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        // Only called by `Bytes::from_owner`, once per use of the buffer,
        // while no one else can see it (new, or recycled unshared).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.len < MAP_MIN {
            let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
            // SAFETY: made by `Box::into_raw` of a slice this long in `new`.
            drop(unsafe { Box::from_raw(slice) });
        } else {
            // SAFETY: mapped this long in `new`; no `Bytes` refers to it
            // any more, or this would not run.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), mapped_len(self.len)) };
        }
    }
}

/// What a segment's `Bytes` own: the buffer, through an `Arc` the shard
/// keeps too, so that it can tell when no reader holds a slice any more
/// and the buffer can be written from the start again.
struct Shared(Arc<Buffer>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// A segment's buffer: shared for reading, written by its shard.
pub struct SegMem {
    shared: Bytes,
    buffer: Arc<Buffer>,
    ptr: NonNull<u8>,
    len: usize,
}

impl std::fmt::Debug for SegMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegMem").field("len", &self.len).finish()
    }
}

// See `Buffer`.
unsafe impl Send for SegMem {}
unsafe impl Sync for SegMem {}

impl SegMem {
    /// A zeroed buffer of `len` bytes (`len > 0`).
    pub fn new(len: usize) -> SegMem {
        assert!(len > 0, "an empty segment");
        let buffer = Arc::new(Buffer::new(len));
        let ptr = buffer.ptr;
        let shared = Bytes::from_owner(Shared(Arc::clone(&buffer)));
        SegMem {
            shared,
            buffer,
            ptr,
            len,
        }
    }

    /// The same buffer, to be written over from the start, if no reader
    /// holds a slice of it; else `None`, and the last reader frees it.
    pub fn recycle(self) -> Option<SegMem> {
        let SegMem {
            shared,
            mut buffer,
            ptr,
            len,
        } = self;
        drop(shared);
        // `get_mut` synchronises with the readers' drops, so their reads
        // happen before our writes.
        Arc::get_mut(&mut buffer)?;
        let shared = Bytes::from_owner(Shared(Arc::clone(&buffer)));
        Some(SegMem {
            shared,
            buffer,
            ptr,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn bytes(&self, at: usize, len: usize) -> &[u8] {
        assert!(at + len <= self.len, "read past the segment");
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), len) }
    }

    /// Starts loading the two cache lines from `at` on; any `at` will do.
    #[inline]
    pub fn prefetch(&self, at: usize) {
        let p = self.ptr.as_ptr().cast_const().wrapping_add(at);
        prefetch(p);
        prefetch(p.wrapping_add(64));
    }

    /// Bytes to write. Only for a record's prefix or for space no record
    /// has been published in yet: other threads may be reading the rest.
    #[inline]
    pub fn bytes_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "write past the segment");
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), len) }
    }

    /// A shared slice, for a reader to keep after the lock is released.
    pub fn share(&self, at: usize, len: usize) -> Bytes {
        self.shared.slice(at..at + len)
    }

    /// The whole buffer as shared bytes: dropping it frees the memory once
    /// no reader holds a slice of it.
    pub fn into_bytes(self) -> Bytes {
        self.shared
    }

    /// The state byte, [`HAS_DEADLINE`] included.
    #[inline]
    pub fn state(&self, rec: usize) -> u8 {
        self.bytes(rec + STATE, 1)[0]
    }

    /// Sets the state bits, keeping [`HAS_DEADLINE`] as it is.
    pub fn set_state(&mut self, rec: usize, state: u8) {
        let b = &mut self.bytes_mut(rec + STATE, 1)[0];
        *b = (state & !HAS_DEADLINE) | (*b & HAS_DEADLINE);
    }

    /// Whether the record has its deadline field.
    #[inline]
    pub fn has_deadline(&self, rec: usize) -> bool {
        self.state(rec) & HAS_DEADLINE != 0
    }

    /// Where the record's item starts, relative to the record.
    #[inline]
    pub fn prefix_len(&self, rec: usize) -> usize {
        prefix_len(self.has_deadline(rec))
    }

    /// The item length a shared record stores.
    pub fn item_len(&self, rec: usize) -> usize {
        u16::from_le_bytes(self.bytes(rec + ITEM_LEN, 2).try_into().expect("2 bytes")) as usize
    }

    /// The whole length of a shared record: prefix and item.
    pub fn shared_record_len(&self, rec: usize) -> usize {
        let (prefix, item) = self.shared_item_span(rec);
        prefix + item
    }

    /// The changeable fields at once, one bounds check for the hot path:
    /// state, time and deadline (0 without the field).
    #[inline]
    pub fn fields(&self, rec: usize) -> (u8, u32, u32) {
        let state = self.state(rec);
        let has = state & HAS_DEADLINE != 0;
        let p = self.bytes(rec, prefix_len(has));
        let time = u32::from_le_bytes(p[TIME..TIME + 4].try_into().expect("4 bytes"));
        let deadline = if has {
            u32::from_le_bytes(p[DEADLINE..DEADLINE + 4].try_into().expect("4 bytes"))
        } else {
            0
        };
        (state, time, deadline)
    }

    /// Writes the changeable fields at once, keeping [`HAS_DEADLINE`].
    ///
    /// # Panics
    /// A deadline other than 0 for a record without the field: such a
    /// record must be written again with one.
    #[inline]
    pub fn set_fields(&mut self, rec: usize, state: u8, time: u32, deadline: u32) {
        assert!(
            self.try_set_fields(rec, state, time, deadline),
            "a deadline for a record without the field"
        );
    }

    /// [`SegMem::set_fields`] if the record has room for the deadline;
    /// false, and nothing written, if it has not.
    #[inline]
    pub fn try_set_fields(&mut self, rec: usize, state: u8, time: u32, deadline: u32) -> bool {
        let has = self.has_deadline(rec);
        if !has && deadline != 0 {
            return false;
        }
        let p = self.bytes_mut(rec, prefix_len(has));
        p[STATE] = (state & !HAS_DEADLINE) | (p[STATE] & HAS_DEADLINE);
        p[TIME..TIME + 4].copy_from_slice(&time.to_le_bytes());
        if has {
            p[DEADLINE..DEADLINE + 4].copy_from_slice(&deadline.to_le_bytes());
        }
        true
    }

    /// Where a shared record's item starts, relative to the record, and
    /// its length.
    #[inline]
    pub fn shared_item_span(&self, rec: usize) -> (usize, usize) {
        let p = self.bytes(rec, ITEM_LEN + 2);
        let len = u16::from_le_bytes([p[ITEM_LEN], p[ITEM_LEN + 1]]) as usize;
        (prefix_len(p[STATE] & HAS_DEADLINE != 0), len)
    }

    /// Writes a whole prefix, with the deadline field if `deadline` is
    /// given; returns its length, where the item starts.
    pub fn write_prefix(
        &mut self,
        rec: usize,
        state: u8,
        deadline: Option<u32>,
        time: u32,
        item_len: usize,
    ) -> usize {
        let len = prefix_len(deadline.is_some());
        let p = self.bytes_mut(rec, len);
        p[STATE] = match deadline {
            Some(_) => state | HAS_DEADLINE,
            None => state & !HAS_DEADLINE,
        };
        let short = u16::try_from(item_len).unwrap_or(0);
        p[ITEM_LEN..ITEM_LEN + 2].copy_from_slice(&short.to_le_bytes());
        p[TIME..TIME + 4].copy_from_slice(&time.to_le_bytes());
        if let Some(d) = deadline {
            p[DEADLINE..DEADLINE + 4].copy_from_slice(&d.to_le_bytes());
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_and_mapped_buffers_start_zeroed_and_hold_writes() {
        for len in [1, MAP_MIN - 1, MAP_MIN, 65536, 100_000] {
            let mut m = SegMem::new(len);
            assert!(m.bytes(0, len).iter().all(|&b| b == 0));
            m.bytes_mut(len - 1, 1)[0] = 9;
            let tail = m.share(len - 1, 1);
            drop(m);
            assert_eq!(&tail[..], [9]);
        }
    }

    #[test]
    fn a_buffer_is_recycled_only_once_no_reader_holds_it() {
        let mut m = SegMem::new(MAP_MIN);
        m.bytes_mut(0, 3).copy_from_slice(b"abc");
        let reader = m.share(0, 3);
        assert!(m.recycle().is_none());
        assert_eq!(&reader[..], b"abc");
        let m = SegMem::new(MAP_MIN);
        let ptr = m.bytes(0, 1).as_ptr();
        drop(m.share(0, 1));
        let mut again = m.recycle().expect("nobody reads it");
        assert_eq!(again.bytes(0, 1).as_ptr(), ptr);
        again.bytes_mut(0, 1)[0] = 1;
    }

    #[test]
    fn prefix_round_trips_and_slices_outlive_the_segment() {
        let mut m = SegMem::new(64);
        assert_eq!(m.write_prefix(3, 5, Some(7), 9, 20), PREFIX_MAX);
        assert_eq!(m.fields(3), (5 | HAS_DEADLINE, 9, 7));
        assert_eq!(m.item_len(3), 20);
        assert_eq!(m.shared_record_len(3), PREFIX_MAX + 20);
        assert_eq!(m.shared_item_span(3), (PREFIX_MAX, 20));
        m.bytes_mut(3 + PREFIX_MAX, 4).copy_from_slice(b"abcd");
        let slice = m.share(3 + PREFIX_MAX, 4);
        m.set_fields(3, 1, 12, 11);
        assert_eq!(m.fields(3), (1 | HAS_DEADLINE, 12, 11));
        m.set_state(3, 2);
        m.set_fields(3, 2, 12, 0);
        assert!(m.has_deadline(3), "a deadline of 0 is stored in the field");
        assert_eq!(m.fields(3), (2 | HAS_DEADLINE, 12, 0));
        drop(m);
        assert_eq!(&slice[..], b"abcd");
    }

    #[test]
    fn a_record_without_a_deadline_has_a_shorter_prefix_and_keeps_it() {
        let mut m = SegMem::new(64);
        m.bytes_mut(0, 64).fill(0xff);
        assert_eq!(m.write_prefix(2, 3, None, 9, 20), PREFIX_MIN);
        assert_eq!(m.fields(2), (3, 9, 0));
        assert_eq!(m.prefix_len(2), PREFIX_MIN);
        assert_eq!(m.shared_record_len(2), PREFIX_MIN + 20);
        assert_eq!(m.shared_item_span(2), (PREFIX_MIN, 20));
        assert_eq!(
            m.bytes(2 + PREFIX_MIN, 1),
            [0xff],
            "the item's bytes untouched"
        );
        m.set_state(2, 1 | HAS_DEADLINE);
        m.set_fields(2, 4 | HAS_DEADLINE, 10, 0);
        assert_eq!(m.fields(2), (4, 10, 0));
        assert_eq!(m.prefix_len(2), PREFIX_MIN);
        assert_eq!(m.bytes(2 + PREFIX_MIN, 1), [0xff], "still untouched");
        m.write_prefix(30, 1 | HAS_DEADLINE, None, 4, 0);
        assert!(!m.has_deadline(30), "the field follows the deadline given");
    }

    #[test]
    #[should_panic(expected = "without the field")]
    fn a_deadline_cannot_be_set_where_there_is_no_field() {
        let mut m = SegMem::new(32);
        m.write_prefix(0, 0, None, 1, 4);
        m.set_fields(0, 0, 1, 10);
    }
}
