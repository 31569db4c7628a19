//! Eviction and the sweep: which records leave a shard when memory runs
//! out, and the background reclaiming of dead ones.
//!
//! Segments are in two FIFO queues (S3-FIFO, SOSP'23; see `segments.rs`).
//! When memory runs out, the oldest segment of the small queue goes while
//! that queue holds a twentieth of the shard or more, else the oldest of
//! the main queue; either way a whole segment, no per-item allocation or LRU
//! links. Its live records that were read since written or last spared
//! (the ACTIVE bit) are copied forward into the main queue's head: all of
//! them from the small queue (promotion), up to 7/8 of a segment's worth
//! from the main queue (another chance: a record read twice since it was
//! last spared, HOT, is spared twice; one read once and larger than the
//! shard's average item, with odds of the average over its size, see
//! [`size_odds`]). The others are evicted, and those leaving the small
//! queue, or the main queue after being read there once at least, are
//! remembered in the ghost set, so that a key written again soon after
//! goes straight to the main queue. So a one-hit
//! wonder costs the small queue a slot for a while, not the working set
//! its place. With evictions off (`-M`), running out of memory compacts
//! instead: the oldest segment with dead space is rewritten without it, and
//! a write is refused only when no segment has any. Nothing here knows
//! requests or the budget's other shards.

use super::ghost::size_odds;
use super::item;
use super::loc::{Loc, SHARED_IDS, is_solo};
use super::memory;
use super::record::{ACTIVE, DEAD, FETCHED, HOT, Meta};
use super::segment::{SegMem, prefix_len};
use super::segments::Queue;
use super::shard::{Ctx, Shard, table_hash};

/// The small queue's share of a shard is 1/SMALL_SHARE. S3-FIFO's paper
/// takes a tenth; on the hit-ratio benchmark's Zipf traffic (`cargo run
/// --release --example hit_replay`) a twentieth gained 0.1 to 0.3 points
/// on every workload, the one-hit wonders' included: the main queue gets
/// the memory, and keys read twice come back through the ghost set. Less
/// gained a little more, but then probation is down to two or three
/// segments, and an item written just before one of them goes may be
/// evicted before anybody could read it.
const SMALL_SHARE: usize = 20;

impl Shard {
    /// Frees one segment from the cold end. With evictions on, the oldest
    /// of the queue [`Shard::victim`] picks: its dead records go, its live
    /// ones are evicted except ACTIVE ones, which are copied forward to the
    /// main queue (see the module's comment for how many). With them off,
    /// the oldest segment with dead space is compacted. Returns the bytes
    /// given back, or `None` if there was nothing to free. With `park`, the
    /// victim may become the shard's spare segment instead of being given
    /// back (for a write here that wants a new segment).
    pub fn evict_segment(&mut self, protect: Option<Loc>, park: bool, ctx: &Ctx) -> Option<usize> {
        if !park && let Some((mem, charge)) = self.spare.take() {
            // Memory wanted elsewhere: the spare goes before any item does.
            self.unreserve(charge, ctx);
            self.garbage.push(mem.into_bytes());
            return Some(charge);
        }
        let victim = if ctx.evictions {
            self.victim()?
        } else {
            self.compactable(ctx)?
        };
        let on_probation = self.segs.get(victim).queue == Queue::Small;
        let cas_base = self.segs.get(victim).cas_base;
        let (mem, charge, used) = self.segs.detach(victim);
        if is_solo(victim) {
            let solo = (mem, cas_base);
            return Some(self.evict_solo(victim, solo, charge, protect, on_probation, ctx));
        }
        // The victim's charge pays for the segment its survivors move to.
        let mut budget = charge;
        let average = self.average_cost();
        // Main-queue survivors may fill 7/8 of a segment, so that each
        // eviction frees at least an eighth of one: a write needs a bounded
        // number. (Sparing only half, as before, cost 2 points of hit ratio
        // on Zipf traffic, where most of the main queue is read.)
        let mut keep_max = if ctx.evictions && !on_probation {
            ctx.layout.segment_size * 7 / 8
        } else {
            usize::MAX
        };
        let mut at = 0;
        while at < used {
            let this = at;
            let (prefix, item_len) = mem.shared_item_span(this);
            let len = prefix + item_len;
            at += len;
            let m = Meta::read(&mem, this);
            if m.has(DEAD) {
                continue;
            }
            let old = Loc::shared(victim, this);
            let item = mem.bytes(this + prefix, len - prefix);
            let hash = ctx.hash(item::key(item));
            let dead = ctx.dead(m).is_some();
            // What the record takes where it goes: a moved record carries
            // its CAS, and has a deadline field only if it has a deadline.
            let carry = self.carried_cas(item, cas_base + this as u64);
            let moved_len = moved_len(item, carry, m);
            let keep = !dead
                && (!ctx.evictions
                    || Some(old) == protect
                    || (moved_len <= keep_max
                        && self.earned_a_move(m, on_probation, moved_len, average, hash)));
            let moved = if keep {
                keep_max = keep_max.saturating_sub(moved_len);
                self.copy_forward(item, m, carry, &mut budget, ctx)
            } else {
                None
            };
            match moved {
                Some(new) => self.relocate(hash, old, new),
                None => {
                    if !dead {
                        self.count_eviction(item, m, ctx);
                        self.remember(m, on_probation, hash);
                    }
                    self.drop_record(hash, old, m, dead);
                }
            }
        }
        let size = ctx.layout.segment_size;
        let seg_charge = memory::segment_cost(size);
        if park && self.spare.is_none() && budget >= seg_charge && mem.len() == size {
            // Readers holding it (recycle fails) free it when they are done.
            if let Some(mem) = mem.recycle() {
                self.spare = Some((mem, seg_charge));
                budget -= seg_charge;
            }
        } else {
            self.garbage.push(mem.into_bytes());
        }
        self.unreserve(budget, ctx);
        Some(budget)
    }

    /// The segment to evict: the small queue's oldest while that queue's
    /// segments are charged 1/[`SMALL_SHARE`] of the shard's or more (or
    /// the main queue is empty), else the main queue's oldest.
    fn victim(&self) -> Option<u32> {
        let small = self.segs.queue_bytes(Queue::Small);
        let main = self.segs.queue_bytes(Queue::Main);
        match (
            self.segs.oldest_in(Queue::Small),
            self.segs.oldest_in(Queue::Main),
        ) {
            (Some(s), Some(m)) => Some(if small * SMALL_SHARE >= small + main {
                s
            } else {
                m
            }),
            (s, m) => s.or(m),
        }
    }

    /// [`Shard::evict_segment`] for a large record's own segment: kept (the
    /// same memory back as the newest segment of the main queue, no copy,
    /// its CAS numbering kept) or dropped.
    pub(super) fn evict_solo(
        &mut self,
        victim: u32,
        (mem, cas_base): (SegMem, u64),
        charge: usize,
        protect: Option<Loc>,
        on_probation: bool,
        ctx: &Ctx,
    ) -> usize {
        let m = Meta::read(&mem, 0);
        let prefix = mem.prefix_len(0);
        let item = mem.bytes(prefix, mem.len() - prefix);
        let hash = ctx.hash(item::key(item));
        let old = Loc::solo(victim);
        let dead = ctx.dead(m).is_some();
        let keep = !dead
            && (!ctx.evictions
                || Some(old) == protect
                || self.earned_a_move(m, on_probation, mem.len(), self.average_cost(), hash));
        if keep && let Some(node) = self.segs.take_node(true) {
            let len = mem.len();
            self.segs.install(node, mem, charge, Queue::Main, cas_base);
            let seg = self.segs.get_mut(node);
            seg.used = len;
            seg.live = 1;
            seg.live_bytes = len;
            let mut spared = m;
            spared.spare();
            self.set_meta(Loc::solo(node), spared);
            self.relocate(hash, old, Loc::solo(node));
            return 0;
        }
        if !dead {
            self.count_eviction(item, m, ctx);
            self.remember(m, on_probation, hash);
        }
        self.drop_record(hash, old, m, dead);
        self.unreserve(charge, ctx);
        self.garbage.push(mem.into_bytes());
        charge
    }

    /// Whether a live record of `len` bytes in a victim segment was read
    /// enough to be copied forward rather than evicted: read since it was
    /// stored or last spared, and then any from probation, one read twice
    /// from the main queue, or one read once with the size odds.
    fn earned_a_move(
        &self,
        m: Meta,
        on_probation: bool,
        len: usize,
        average: usize,
        hash: u64,
    ) -> bool {
        m.has(ACTIVE)
            && (on_probation || m.has(HOT) || size_odds(len, average, hash, self.cas_next))
    }

    /// Puts an evicted key in the ghost set if it left probation, or the
    /// main queue after being read there.
    fn remember(&mut self, m: Meta, on_probation: bool, hash: u64) {
        if on_probation || m.has(FETCHED) {
            self.ghost.insert(hash);
        }
    }

    /// What a live record costs here on average, its share of the
    /// segments and the index: the yardstick of [`size_odds`].
    pub(super) fn average_cost(&self) -> usize {
        self.bytes / (self.len as usize).max(1)
    }

    /// Points the index entry of a moved record at its new place.
    pub(super) fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        self.moves += 1;
        let slot = self
            .index
            .find_mut(table_hash(hash), |l| l == old.0)
            .expect("a live record is indexed");
        *slot = new.0;
    }

    /// Takes a record of a detached segment out of the index, counted as
    /// reclaimed if `dead` (a live one's eviction is counted by
    /// [`Shard::count_eviction`]).
    pub(super) fn drop_record(&mut self, hash: u64, old: Loc, m: Meta, dead: bool) {
        if dead {
            self.count_reclaimed(m);
        }
        self.unindex(old, hash);
    }

    /// Counts the eviction of a live record, its `item` and fields `m`,
    /// and tells the eviction log.
    pub(super) fn count_eviction(&mut self, item: &[u8], m: Meta, ctx: &Ctx) {
        log_eviction(item, m, ctx);
        let c = &mut self.counters;
        c.evictions += 1;
        if !m.has(FETCHED) {
            c.evicted_unfetched += 1;
        }
        if m.deadline != 0 {
            c.evicted_nonzero += 1;
        }
        c.last_evicted_at = ctx.now;
        c.last_evicted_age = ctx.now.saturating_sub(m.time);
    }

    /// With evictions off: the oldest segment worth compacting, one whose
    /// dead space could hold any shared record and the CAS each live record
    /// may have to carry once moved (so its live records fit in one new
    /// segment), or a large record's own segment whose item is dead.
    pub(super) fn compactable(&self, ctx: &Ctx) -> Option<u32> {
        let worth = ctx.layout.shared_max.max(1);
        let mut at = self.segs.oldest();
        while let Some(node) = at {
            let seg = self.segs.get(node);
            let found = if is_solo(node) {
                ctx.dead(Meta::read(seg.mem(), 0)).is_some()
            } else {
                seg.used - seg.live_bytes >= worth + item::CAS_LEN * seg.live as usize
                    && !self.segs.is_head(node)
            };
            if found {
                return Some(node);
            }
            at = self.segs.newer(node);
        }
        None
    }

    /// Copies a live record of a detached shared segment, its `item` and
    /// fields `m`, to the main queue's head, paying for a new segment out
    /// of `budget`; the copy carries `carry`, the CAS its place gave it (see
    /// [`Shard::carried_cas`]), and a deadline field only if its deadline
    /// is not 0. `None` if there is no room for it.
    ///
    /// Promotions from the small queue are not capped, and the CAS each
    /// carries can make them outgrow the victim's segment when nearly all
    /// of it was read: the last ones are then evicted, as ghosts, so a
    /// write of them goes straight to the main queue.
    pub(super) fn copy_forward(
        &mut self,
        item: &[u8],
        m: Meta,
        carry: Option<u64>,
        budget: &mut usize,
        ctx: &Ctx,
    ) -> Option<Loc> {
        let len = moved_len(item, carry, m);
        let main = Queue::Main;
        let loc = match self.segs.append_to_head(main, len, ctx.layout.segment_size) {
            Some(loc) => loc,
            None => {
                if !self.segs.can_open() {
                    return None;
                }
                let size = ctx.layout.segment_size;
                let (mem, charge) = if let Some(spare) = self.spare.take() {
                    spare
                } else if let Some(pooled) = self.take_pooled(ctx) {
                    pooled
                } else {
                    let charge = memory::segment_cost(size);
                    if *budget < charge {
                        return None;
                    }
                    *budget -= charge;
                    (SegMem::new(size), charge)
                };
                self.open_head(mem, charge, main, ctx);
                self.segs
                    .append_to_head(main, len, ctx.layout.segment_size)?
            }
        };
        let (node, to) = (loc.node(), loc.offset());
        let seg = self.segs.get_mut(node);
        seg.live += 1;
        seg.live_bytes += len;
        let mem = seg.mem_mut();
        let mut spared = m;
        spared.spare();
        let field = (m.deadline != 0).then_some(m.deadline);
        let item_len = len - prefix_len(field.is_some());
        let prefix = mem.write_prefix(to, spared.bits(), field, m.time, item_len);
        let dst = mem.bytes_mut(to + prefix, item_len);
        match carry {
            Some(cas) => item::write_carrying(dst, item, cas),
            None => dst.copy_from_slice(item),
        }
        Some(loc)
    }

    /// The CAS a record must carry when it moves from its place, sequence
    /// number `seq`: the one that place gave it, if it carries none yet.
    fn carried_cas(&self, item: &[u8], seq: u64) -> Option<u64> {
        (self.cas_rule.on && item::header(item).cas.is_none()).then(|| self.cas_rule.value(seq))
    }

    /// Reclaims dead records, looking at up to `budget` records from where
    /// the last sweep stopped. Returns how many it reclaimed.
    pub fn sweep(&mut self, budget: usize, ctx: &Ctx) -> usize {
        let (shared, solo) = self.segs.node_counts();
        let total = shared + solo;
        let (mut looked, mut reclaimed, mut moves) = (0, 0, 0);
        while looked < budget && moves <= total {
            let (p, epoch, at) = self.cursor;
            let p = p as usize % total.max(1);
            let node = if p < shared {
                p as u32
            } else {
                SHARED_IDS + (p - shared) as u32
            };
            let seg = (total > 0).then(|| self.segs.get(node));
            let at = match seg {
                Some(seg) if seg.mem.is_some() && seg.epoch == epoch && at < seg.used => at,
                Some(seg) if seg.mem.is_some() && seg.epoch != epoch && seg.used > 0 => {
                    self.cursor = (p as u32, seg.epoch, 0);
                    0
                }
                _ => {
                    // Done with this node (or there is none): the next one.
                    moves += 1;
                    if total == 0 {
                        break;
                    }
                    let next = ((p + 1) % total) as u32;
                    self.cursor = (next, 0, 0);
                    continue;
                }
            };
            let len = self.segs.record_len(node, at);
            self.cursor.2 = at + len;
            looked += 1;
            let m = Meta::read(self.segs.get(node).mem(), at);
            if m.has(DEAD) || ctx.dead(m).is_none() {
                continue;
            }
            let loc = Loc::at(node, at);
            let hash = ctx.hash(item::key(self.item(loc)));
            let freed = self.reclaim(loc, hash, ctx);
            self.garbage.extend(freed);
            reclaimed += 1;
        }
        reclaimed
    }
}

/// The length of a shared record moved with fields `m`, carrying `carry`.
fn moved_len(item: &[u8], carry: Option<u64>, m: Meta) -> usize {
    prefix_len(m.deadline != 0) + item.len() + carry.map_or(0, |_| item::CAS_LEN)
}

/// Tells the eviction log, if anybody listens, of the live `item` evicted.
fn log_eviction(item: &[u8], m: Meta, ctx: &Ctx) {
    let Some(log) = ctx.evictions_log.filter(|l| l.wanted()) else {
        return;
    };
    let header = item::header(item);
    log.evicted(&super::Evicted {
        key: item::key(item),
        flags: header.flags,
        value_len: item.len() - header.value_start,
        fetched: m.has(FETCHED),
        ttl: (m.deadline != 0).then(|| m.deadline.wrapping_sub(ctx.now)),
        idle: ctx.now.saturating_sub(m.time),
    });
}
