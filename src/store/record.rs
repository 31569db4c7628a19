//! What a record's prefix means, and a record about to be written.
//!
//! `segment.rs` says where the prefix fields sit; this module says what
//! they stand for: the state bits, the deadline and the access time, read
//! and written as one [`Meta`]. [`NewItem`] is an item on its way into a
//! shard, its bytes produced on demand (a write may retry), a large one
//! written before any lock is taken. Nothing here knows the index, the
//! segment table or eviction.

use super::item;
use super::segment::{HAS_DEADLINE, PREFIX_MAX, SegMem, prefix_len};
use super::segments::Layout;

/// Seconds between two refreshes of an item's access time on hits
/// (memcached's `ITEM_UPDATE_INTERVAL`), which `flush_all` and the meta
/// `l`/`la` read.
pub const UPDATE_INTERVAL: u32 = 60;

/// Record state bits (the first byte of a record).
/// Read since it was stored.
pub const FETCHED: u8 = 1;
/// Read since it was stored or last spared: eviction copies it forward once.
pub const ACTIVE: u8 = 2;
/// Marked stale by an invalidating delete or store (meta `X`).
pub const STALE: u8 = 4;
/// The recache token has been handed out (meta `W`, then `Z`).
pub const WIN: u8 = 8;
/// Replaced or removed: the space waits for its segment to go.
pub const DEAD: u8 = 16;
/// Read again while ACTIVE: with ACTIVE, a two-bit count of reads since
/// stored or last spared, so eviction spares a record read twice two times.
pub const HOT: u8 = 32;
/// Every state bit, with the layout's [`HAS_DEADLINE`]; any other is not a
/// record's.
pub const ALL_BITS: u8 = FETCHED | ACTIVE | STALE | WIN | DEAD | HOT | HAS_DEADLINE;

/// A record's changeable fields, read and written as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Relative seconds, 0 for never.
    pub deadline: u32,
    /// Last store or access refresh (memcached's `it->time`).
    pub time: u32,
    state: u8,
}

impl Meta {
    /// The fields of a record just written: no state bit set.
    pub fn new(deadline: u32, time: u32) -> Meta {
        Meta {
            deadline,
            time,
            state: 0,
        }
    }

    /// The fields of the record at `at`.
    #[inline]
    pub fn read(mem: &SegMem, at: usize) -> Meta {
        let (state, time, deadline) = mem.fields(at);
        Meta {
            deadline,
            time,
            state,
        }
    }

    /// Writes the fields; the record keeps its layout bit.
    ///
    /// # Panics
    /// A deadline for a record without the field (see [`Meta::try_write`]).
    #[inline]
    pub fn write(self, mem: &mut SegMem, at: usize) {
        mem.set_fields(at, self.state, self.time, self.deadline);
    }

    /// Writes the fields if the record at `at` has room for them where it
    /// is: it has a deadline field, or the deadline is 0. False, and
    /// nothing written, if not.
    #[inline]
    pub fn try_write(self, mem: &mut SegMem, at: usize) -> bool {
        mem.try_set_fields(at, self.state, self.time, self.deadline)
    }

    /// A hit: fetched and active (hot if it was active), and the access
    /// time refreshed if due.
    pub fn bump(&mut self, now: u32) {
        if self.has(ACTIVE) {
            self.set(HOT);
        }
        self.set(FETCHED | ACTIVE);
        if now >= self.time.saturating_add(UPDATE_INTERVAL) {
            self.time = now;
        }
    }

    pub fn has(&self, bit: u8) -> bool {
        self.state & bit != 0
    }

    pub fn set(&mut self, bit: u8) {
        self.state |= bit;
    }

    pub fn clear(&mut self, bit: u8) {
        self.state &= !bit;
    }

    pub fn bits(&self) -> u8 {
        self.state
    }

    /// Spared by eviction: one read fewer to its credit.
    pub fn spare(&mut self) {
        if self.has(HOT) {
            self.clear(HOT);
        } else {
            self.clear(ACTIVE);
        }
    }
}

/// What a new version written in place of `prev` keeps, as if memcached
/// had changed the item in place: the last access and the fetched, active,
/// stale and token bits.
pub fn keep_state(prev: Meta, new: &mut Meta) {
    new.time = prev.time;
    new.set(prev.bits() & (FETCHED | ACTIVE | HOT | STALE | WIN));
}

/// An item about to be stored: what it holds, and for a large one its
/// record already written into a segment of its own, before the lock.
pub struct NewItem<'a> {
    key: &'a [u8],
    key_binary: bool,
    flags: u32,
    /// A CAS it must carry (kept, or chosen by the client); `None`: the
    /// next one, which its place gives it.
    cas: Option<u64>,
    /// `cas` is a new one given by [`NewItem::carry_cas`], for one attempt.
    cas_issued: bool,
    fill: &'a dyn Fn(&mut [u8]),
    pub(super) item_len: usize,
    /// Too large to share a segment: it gets one of its own, and its
    /// record the deadline field whatever its deadline.
    large: bool,
    /// A large record's own segment, until it is placed.
    pub(super) solo: Option<SegMem>,
}

impl<'a> NewItem<'a> {
    /// `fill` writes the value; it may run more than once (a write that
    /// has to retry). Large items are written here, outside any lock.
    /// `cas`: one the item must have, or `None` for a new one.
    ///
    /// Inlined, the large case aside: built in its caller's frame, a small
    /// item is not moved by value on every write.
    #[inline]
    pub fn new(
        layout: Layout,
        key: &'a [u8],
        key_binary: bool,
        flags: u32,
        cas: Option<u64>,
        value_len: usize,
        fill: &'a dyn Fn(&mut [u8]),
    ) -> NewItem<'a> {
        let item_len = item::encoded_len(key.len(), value_len, flags, cas);
        let mut new = NewItem {
            key,
            key_binary,
            flags,
            cas,
            cas_issued: false,
            fill,
            item_len,
            large: false,
            solo: None,
        };
        if !layout.is_shared(new.record_len_max()) {
            new.write_solo();
        }
        new
    }

    /// Writes a large item into a segment of its own.
    #[cold]
    #[inline(never)]
    fn write_solo(&mut self) {
        self.large = true;
        let mut mem = SegMem::new(self.record_len_max());
        self.write_item(mem.bytes_mut(PREFIX_MAX, self.item_len));
        self.solo = Some(mem);
    }

    /// The length of its record with the deadline field: what it may take.
    pub fn record_len_max(&self) -> usize {
        PREFIX_MAX + self.item_len
    }

    /// Whether its record has the deadline field, given its deadline.
    pub(super) fn has_deadline(&self, deadline: u32) -> bool {
        self.large || deadline != 0
    }

    /// The length of its record, given its deadline.
    pub fn record_len(&self, deadline: u32) -> usize {
        prefix_len(self.has_deadline(deadline)) + self.item_len
    }

    /// Whether the item takes a new CAS when it is placed: from its place,
    /// or carried (see [`NewItem::carry_cas`]). A new attempt to place it
    /// takes a new one, so that it is newer than any stored meanwhile.
    pub(super) fn takes_new_cas(&mut self) -> bool {
        if self.cas_issued {
            self.cas_issued = false;
            self.cas = None;
            self.item_len -= item::CAS_LEN;
        }
        self.cas.is_none()
    }

    /// The CAS the item carries in its record, if any (else its place
    /// gives it one).
    pub(super) fn carried_cas(&self) -> Option<u64> {
        self.cas
    }

    /// Whether the item is to have the CAS its place gives it.
    pub(super) fn derives_cas(&self) -> bool {
        self.cas.is_none()
    }

    /// Makes a shared item carry `cas`, just issued, instead of taking its
    /// place's (for a place whose CAS would not be newer than the version
    /// it replaces).
    pub(super) fn carry_cas(&mut self, cas: u64) {
        debug_assert!(self.solo.is_none() && self.cas.is_none());
        self.cas = Some(cas);
        self.cas_issued = true;
        self.item_len += item::CAS_LEN;
    }

    pub(super) fn write_item(&self, dst: &mut [u8]) {
        item::write(dst, self.key, self.key_binary, self.flags, self.cas, |d| {
            (self.fill)(d)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::segment::PREFIX_MIN;
    use super::*;

    #[test]
    fn reads_count_to_two_and_each_spare_takes_one() {
        let mut m = Meta::new(0, 5);
        m.bump(5);
        assert!(m.has(FETCHED) && m.has(ACTIVE) && !m.has(HOT));
        m.spare();
        assert!(!m.has(ACTIVE) && m.has(FETCHED), "one read, one spare");
        m.bump(6);
        m.bump(7);
        m.bump(8);
        assert!(m.has(ACTIVE) && m.has(HOT), "the count stops at two");
        m.spare();
        assert!(m.has(ACTIVE) && !m.has(HOT));
        m.spare();
        assert!(!m.has(ACTIVE) && !m.has(HOT) && m.has(FETCHED));
        assert_eq!(m.time, 5, "hits within the update interval keep the time");
    }

    #[test]
    fn fields_are_written_where_the_record_has_room_for_them() {
        let mut mem = SegMem::new(64);
        mem.write_prefix(0, 0, None, 3, 10);
        mem.write_prefix(20, 0, Some(0), 3, 10);
        let mut m = Meta::read(&mem, 0);
        m.bump(100);
        assert!(m.try_write(&mut mem, 0));
        assert_eq!(Meta::read(&mem, 0), m);
        m.deadline = 50;
        assert!(!m.try_write(&mut mem, 0));
        assert_eq!(Meta::read(&mem, 0).deadline, 0, "nothing written");
        m.write(&mut mem, 20);
        let back = Meta::read(&mem, 20);
        assert_eq!((back.deadline, back.time), (50, 100));
        assert!(back.has(FETCHED) && back.has(HAS_DEADLINE));
        assert!(!Meta::read(&mem, 0).has(HAS_DEADLINE));
    }

    #[test]
    fn a_large_item_always_has_the_deadline_field() {
        let layout = Layout {
            segment_size: 1024,
            shared_max: 256,
        };
        let small = NewItem::new(layout, b"k", false, 0, None, 10, &|_| {});
        assert_eq!(small.record_len(0), PREFIX_MIN + small.item_len);
        assert_eq!(small.record_len(9), PREFIX_MAX + small.item_len);
        let large = NewItem::new(layout, b"k", false, 0, None, 300, &|_| {});
        assert!(large.solo.is_some());
        assert_eq!(large.record_len(0), PREFIX_MAX + large.item_len);
    }
}
