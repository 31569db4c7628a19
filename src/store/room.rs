//! Finding room for a new record in a shard: the head segment, a new
//! shared segment, or a large record's own; charging the store's budget for
//! it and, when the budget is spent, evicting (`evict.rs`) until it is not.
//! It decides where a record goes, not which records leave.

use std::hash::BuildHasher;

use bytes::Bytes;

use super::item;
use super::loc::{Loc, is_solo};
use super::memory;
use super::record::NewItem;
use super::segment::SegMem;
use super::segments::Queue;
use super::shard::{Ctx, Full, Shard, table_hash};

/// How many evictions one write may run before it gives up (only reached
/// with evictions off, when compaction frees too little each time).
const MAX_EVICTIONS_PER_WRITE: usize = 64;

/// The index grows by 1/INDEX_GROWTH_STEP of its capacity (and at least
/// one entry, which rounds up to a group of buckets). Smaller steps leave
/// a full store's index fuller (at least 1/(1 + 1/STEP) of its 6/7 maximum
/// load), for more rebuilding while the store fills: about STEP + 1
/// entries hashed again per item stored, only while the index grows.
const INDEX_GROWTH_STEP: usize = 8;

impl Shard {
    /// Gives a segment's memory back; returns it to be dropped unlocked
    /// (slices handed out keep it alive until they go).
    pub(super) fn free_segment(&mut self, node: u32, ctx: &Ctx) -> Option<Bytes> {
        let (mem, charge, _) = self.segs.detach(node);
        if !is_solo(node) && mem.len() == ctx.layout.segment_size {
            let Some(mem) = mem.recycle() else {
                // Readers hold it: the last of them frees it.
                self.unreserve(charge, ctx);
                return None;
            };
            if self.spare.is_none() {
                self.spare = Some((mem, charge));
                return None;
            }
            // Pooled, its charge stays reserved for whichever shard opens
            // it next.
            match ctx.pool.put(mem) {
                Ok(()) => {
                    self.bytes -= charge;
                    return None;
                }
                Err(mem) => {
                    self.unreserve(charge, ctx);
                    return Some(mem.into_bytes());
                }
            }
        }
        self.unreserve(charge, ctx);
        Some(mem.into_bytes())
    }

    /// Takes `need` bytes of the limit, evicting as needed. `protect` is
    /// never evicted, but may be moved: look it up again afterwards.
    /// With `spare_ok` (the need is a shared segment), a spare segment will
    /// do: then `Ok(false)`, nothing reserved; else `Ok(true)`.
    pub(super) fn make_room(
        &mut self,
        need: usize,
        protect: Option<Loc>,
        spare_ok: bool,
        ctx: &Ctx,
    ) -> Result<bool, Full> {
        for _ in 0..MAX_EVICTIONS_PER_WRITE {
            if spare_ok && self.spare.is_some() {
                return Ok(false);
            }
            if spare_ok && let Some(pooled) = self.take_pooled(ctx) {
                self.spare = Some(pooled);
                return Ok(false);
            }
            if ctx.memory.try_reserve(need) {
                self.bytes += need;
                return Ok(true);
            }
            if let Some((mem, charge)) = self.spare.take() {
                self.unreserve(charge, ctx);
                self.garbage.push(mem.into_bytes());
                continue;
            }
            if let Some(freed) = ctx.pool.release_one(ctx.memory) {
                self.garbage.push(freed);
                continue;
            }
            if self.evict_segment(protect, spare_ok, ctx).is_none() {
                break;
            }
        }
        Err(if ctx.evictions {
            Full::Elsewhere(need)
        } else {
            Full::NoMemory
        })
    }

    /// Gives back a charge taken by `make_room` and not used.
    pub(super) fn unreserve(&mut self, charge: usize, ctx: &Ctx) {
        ctx.memory.release(charge);
        self.bytes -= charge;
    }

    /// A pooled segment with its charge, now this shard's.
    pub(super) fn take_pooled(&mut self, ctx: &Ctx) -> Option<(SegMem, usize)> {
        let mem = ctx.pool.take()?;
        self.bytes += ctx.pool.charge();
        Some((mem, ctx.pool.charge()))
    }

    /// Opens `mem` (its charge taken) as queue `q`'s head; check
    /// [`Segments::can_open`] first. The old head is sealed, and freed if
    /// nothing in it lives.
    pub(super) fn open_head(&mut self, mem: SegMem, charge: usize, q: Queue, ctx: &Ctx) {
        let node = self.segs.take_node(false).expect("checked by can_open");
        if let Some(old) = self.segs.head(q) {
            self.segs.set_head(q, None);
            if self.segs.get(old).live == 0 {
                let garbage = self.free_segment(old, ctx);
                self.garbage.extend(garbage);
            }
        }
        // Records appended here take the sequence numbers of their
        // offsets, a range no other segment is given.
        let base = self.take_cas_seqs(mem.len());
        self.segs.install(node, mem, charge, q, base);
        self.segs.set_head(q, Some(node));
    }

    /// Finds room for a record in queue `q` and writes it, state clear,
    /// access time now, with the deadline field if `deadline` is not 0 or
    /// the record large; one that takes a new CAS takes it here. Returns
    /// where it is; it is not yet in the index or counted.
    pub(super) fn place(
        &mut self,
        new: &mut NewItem,
        deadline: u32,
        protect: Option<Loc>,
        q: Queue,
        ctx: &Ctx,
    ) -> Result<Loc, Full> {
        if new.takes_new_cas()
            && new.solo.is_none()
            && self.cas_rule.on
            && let Some(h) = self.segs.head(q)
            && let Some(old) = protect
        {
            // A new version must show a newer CAS than the one it replaces,
            // which may sit in a segment opened after this head (a record
            // moved by eviction carries its CAS to the main queue's head,
            // the other queue's head may be newer): then the item carries a
            // new CAS instead of its place's.
            let seg = self.segs.get(h);
            let len = new.record_len(deadline);
            if seg.used + len <= ctx.layout.segment_size
                && self.cas_reaches(old, seg.cas_base + seg.used as u64)
            {
                let cas = self.issue_cas();
                new.carry_cas(cas);
            }
        }
        let len = new.record_len(deadline);
        let loc = if new.solo.is_some() {
            let charge = memory::segment_cost(len);
            self.make_room(charge, protect, false, ctx)?;
            let Some(node) = self.segs.take_node(true) else {
                self.unreserve(charge, ctx);
                return Err(Full::NoMemory);
            };
            let mem = new.solo.take().expect("checked above");
            let base = self.take_cas_seqs(1);
            self.segs.install(node, mem, charge, q, base);
            self.segs.get_mut(node).used = len;
            Loc::solo(node)
        } else if let Some(loc) = self.segs.append_to_head(q, len, ctx.layout.segment_size) {
            loc
        } else {
            if !self.segs.can_open() {
                return Err(Full::NoMemory);
            }
            let size = ctx.layout.segment_size;
            let charge = memory::segment_cost(size);
            let reserved = self.make_room(charge, protect, true, ctx)?;
            // Eviction may have opened a head (to copy items forward into)
            // with room to spare.
            if let Some(loc) = self.segs.append_to_head(q, len, ctx.layout.segment_size) {
                if reserved {
                    self.unreserve(charge, ctx);
                }
                loc
            } else {
                let (mem, charge) = if reserved {
                    (SegMem::new(size), charge)
                } else {
                    self.spare.take().expect("make_room found a spare")
                };
                self.open_head(mem, charge, q, ctx);
                self.segs
                    .append_to_head(q, len, ctx.layout.segment_size)
                    .expect("a new segment takes any shared record")
            }
        };
        debug_assert!(
            !(new.derives_cas() && self.cas_rule.on) || self.placed_seq(loc) < self.cas_next,
            "a place outside the numbers given out"
        );
        let (node, at) = (loc.node(), loc.offset());
        let seg = self.segs.get_mut(node);
        seg.live += 1;
        seg.live_bytes += len;
        let mem = seg.mem_mut();
        let field = new.has_deadline(deadline).then_some(deadline);
        let prefix = mem.write_prefix(at, 0, field, ctx.now, new.item_len);
        if !is_solo(node) {
            new.write_item(mem.bytes_mut(at + prefix, new.item_len));
        }
        Ok(loc)
    }

    /// Makes sure the index can take one more entry, charging for its
    /// growth by a step first.
    pub(super) fn index_room(&mut self, ctx: &Ctx) -> Result<(), Full> {
        if !self.index.is_full() {
            return Ok(());
        }
        let cap = self.index.capacity();
        let grown = cap + cap / INDEX_GROWTH_STEP + 1;
        let need = memory::index_cost(grown).saturating_sub(self.index_charge);
        self.make_room(need, None, false, ctx)?;
        if !self.index.is_full() {
            // Eviction made room in the index as it is.
            self.unreserve(need, ctx);
            return Ok(());
        }
        self.index_charge += need;
        self.rehash_index(grown, ctx);
        self.fit_ghost();
        Ok(())
    }

    /// Rebuilds the index with room for `capacity` entries, each hashed
    /// again from its key.
    pub(super) fn rehash_index(&mut self, capacity: usize, ctx: &Ctx) {
        let segs = &self.segs;
        let hasher = ctx.hasher;
        self.index.rehash(capacity, |l| {
            table_hash(hasher.hash_one(item::key(segs.item(Loc(l)))))
        });
    }

    /// Sizes the ghost set by the index, as its charge assumes.
    pub(super) fn fit_ghost(&mut self) {
        self.ghost.resize(self.index.buckets());
    }
}
