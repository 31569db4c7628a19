//! A shard's segment table: how segments are sized ([`Layout`]), which ids
//! are in use and which are free, their order from newest to oldest, the
//! two queues a segment belongs to ([`Queue`]), and each queue's head, the
//! shared segment its appends go to.
//!
//! It hands out and takes back ids and memory and keeps the orders; it
//! does not decide what to evict, charge the budget, or know the index.

use super::hint::prefetch;
use super::list::{self, Links, List, Nodes};
use super::loc::{Loc, SHARED_IDS, SOLO_BIT, is_solo};
use super::memory;
use super::segment::SegMem;

/// How segments are sized; fixed for a store's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes in a shared segment (at most 64 KiB: offsets are 16 bits).
    pub segment_size: usize,
    /// Records up to this size share segments; larger ones get their own.
    pub shared_max: usize,
}

impl Layout {
    /// Segments small enough that a shard has many (eviction frees a small
    /// share at a time) and large enough that their tail waste is small.
    pub fn for_share(shard_share: usize) -> Layout {
        let want = (shard_share / 64).clamp(1024, 64 * 1024);
        let segment_size = 1 << (usize::BITS - 1 - want.leading_zeros());
        // A record copied under the lock is at most 4 KiB; one that needs
        // more than a quarter of a segment would waste too much of its tail.
        let shared_max = if segment_size * 4 <= shard_share.max(1) {
            (segment_size / 4).min(4096)
        } else {
            0
        };
        Layout {
            segment_size,
            shared_max,
        }
    }

    pub fn is_shared(&self, record_len: usize) -> bool {
        record_len <= self.shared_max
    }

    /// What storing a record of this length may need to reserve.
    pub fn cost(&self, record_len: usize) -> usize {
        if self.is_shared(record_len) {
            memory::segment_cost(self.segment_size)
        } else {
            memory::segment_cost(record_len)
        }
    }
}

/// Which of a shard's two FIFO queues a segment is in (S3-FIFO, SOSP'23):
/// new keys go to the small probation queue, and only those read while
/// there, or seen again soon after leaving it (the ghost set), reach the
/// main queue. One-hit wonders and scans then pass through a twentieth of
/// the memory instead of pushing the working set out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Small = 0,
    Main = 1,
}

/// One segment: a shared one receiving appends or sealed, or a large
/// record's own. A vacant entry has no memory and chains its table's free
/// list through `links.next`.
///
/// Two cache lines exactly: a lookup reads the buffer's address from one
/// and a replacing write updates the live counts in the other, so that
/// [`Segments::prefetch`] can start loading both.
#[derive(Debug)]
#[repr(align(64))]
pub struct Segment {
    pub mem: Option<SegMem>,
    /// Bytes written.
    pub used: usize,
    /// Live records, and their bytes.
    pub live: u32,
    pub live_bytes: usize,
    /// What it is charged against the memory limit.
    pub charge: usize,
    /// Which use of its node this is, so a sweep that stopped inside it
    /// can tell whether it is still the segment it was walking.
    pub epoch: u32,
    pub queue: Queue,
    /// The CAS sequence number of a record at offset 0: a record that
    /// carries no CAS of its own has this plus its offset (see `Shard::cas`).
    pub cas_base: u64,
    /// Place in the shard's age order.
    pub links: Links,
    /// Place in its queue's order.
    qlinks: Links,
}

const _: () = assert!(std::mem::size_of::<Segment>() == 128);

impl Segment {
    fn vacant(next_free: u32) -> Segment {
        let mut links = Links::detached();
        links.set_next(next_free);
        Segment {
            mem: None,
            used: 0,
            live: 0,
            live_bytes: 0,
            charge: 0,
            epoch: 0,
            queue: Queue::Main,
            cas_base: 0,
            links,
            qlinks: Links::detached(),
        }
    }

    pub fn mem(&self) -> &SegMem {
        self.mem.as_ref().expect("a segment in use has memory")
    }

    pub fn mem_mut(&mut self) -> &mut SegMem {
        self.mem.as_mut().expect("a segment in use has memory")
    }
}

/// Shared segments, then segments of their own, as one id space for the
/// age list.
#[derive(Debug, Default)]
struct Tables {
    shared: Vec<Segment>,
    solo: Vec<Segment>,
}

impl Tables {
    fn get(&self, node: u32) -> &Segment {
        if is_solo(node) {
            &self.solo[(node - SHARED_IDS) as usize]
        } else {
            &self.shared[node as usize]
        }
    }

    fn get_mut(&mut self, node: u32) -> &mut Segment {
        if is_solo(node) {
            &mut self.solo[(node - SHARED_IDS) as usize]
        } else {
            &mut self.shared[node as usize]
        }
    }
}

impl Nodes for Tables {
    fn links(&self, i: u32) -> &Links {
        &self.get(i).links
    }
    fn links_mut(&mut self, i: u32) -> &mut Links {
        &mut self.get_mut(i).links
    }
}

/// The same table seen through the queue links.
struct QueueNodes<'a>(&'a mut Tables);

impl Nodes for QueueNodes<'_> {
    fn links(&self, i: u32) -> &Links {
        &self.0.get(i).qlinks
    }
    fn links_mut(&mut self, i: u32) -> &mut Links {
        &mut self.0.get_mut(i).qlinks
    }
}

/// The segment table of one shard.
#[derive(Debug)]
pub struct Segments {
    tables: Tables,
    free_shared: u32,
    free_solo: u32,
    /// Segments from the newest (head of the list) to the oldest.
    order: List,
    /// Each queue's segments, newest to oldest, and their charges.
    queues: [List; 2],
    queue_bytes: [usize; 2],
    /// Each queue's shared segment that appends go to.
    heads: [Option<u32>; 2],
    /// Segments installed so far, for their epochs.
    pub installs: u32,
}

impl Default for Segments {
    fn default() -> Self {
        Self::new()
    }
}

impl Segments {
    /// An empty table allocates nothing.
    pub const fn new() -> Segments {
        Segments {
            tables: Tables {
                shared: Vec::new(),
                solo: Vec::new(),
            },
            free_shared: list::NIL,
            free_solo: list::NIL,
            order: List::new(),
            queues: [List::new(), List::new()],
            queue_bytes: [0, 0],
            heads: [None, None],
            installs: 0,
        }
    }

    pub fn get(&self, node: u32) -> &Segment {
        self.tables.get(node)
    }

    pub fn get_mut(&mut self, node: u32) -> &mut Segment {
        self.tables.get_mut(node)
    }

    /// Nodes ever used: shared ones, and segments of their own.
    pub fn node_counts(&self) -> (usize, usize) {
        (self.tables.shared.len(), self.tables.solo.len())
    }

    /// The length of the record at `at` in segment `node`.
    #[inline]
    pub fn record_len(&self, node: u32, at: usize) -> usize {
        let mem = self.get(node).mem();
        if is_solo(node) {
            mem.len()
        } else {
            mem.shared_record_len(at)
        }
    }

    /// Where the item of the record at `at` in segment `node` starts in
    /// the segment, and its length. Always inlined: it is a few loads on
    /// every lookup, which thin LTO otherwise leaves out of line in some
    /// builds.
    #[inline(always)]
    pub fn item_span(&self, node: u32, at: usize) -> (usize, usize) {
        let mem = self.get(node).mem();
        if is_solo(node) {
            let start = at + mem.prefix_len(at);
            (start, mem.len() - start)
        } else {
            let (prefix, len) = mem.shared_item_span(at);
            (at + prefix, len)
        }
    }

    /// The immutable item bytes of a record.
    #[inline]
    pub fn item(&self, loc: Loc) -> &[u8] {
        let node = loc.node();
        let (start, len) = self.item_span(node, loc.offset());
        self.get(node).mem().bytes(start, len)
    }

    /// Starts loading the record at `loc` (an index entry's, so a live
    /// record's): its prefix, key and the first bytes of its value.
    #[inline]
    pub fn prefetch(&self, loc: Loc) {
        let seg = self.get(loc.node());
        prefetch(std::ptr::from_ref(seg).cast::<u8>().wrapping_add(64));
        seg.mem().prefetch(loc.offset());
    }

    /// The oldest segment.
    pub fn oldest(&self) -> Option<u32> {
        self.order.tail()
    }

    /// The segment next newer than `node`.
    pub fn newer(&self, node: u32) -> Option<u32> {
        self.order.newer(&self.tables, node)
    }

    /// The newest segment.
    pub fn newest(&self) -> Option<u32> {
        self.order.head()
    }

    /// The oldest segment of a queue.
    pub fn oldest_in(&self, q: Queue) -> Option<u32> {
        self.queues[q as usize].tail()
    }

    /// The segment next newer than `node` in its queue.
    #[cfg(test)]
    pub fn newer_in(&self, node: u32) -> Option<u32> {
        let p = self.get(node).qlinks.prev();
        (p != list::NIL).then_some(p)
    }

    /// What a queue's segments are charged.
    pub fn queue_bytes(&self, q: Queue) -> usize {
        self.queue_bytes[q as usize]
    }

    /// The segment a queue's appends go to.
    pub fn head(&self, q: Queue) -> Option<u32> {
        self.heads[q as usize]
    }

    pub fn set_head(&mut self, q: Queue, node: Option<u32>) {
        self.heads[q as usize] = node;
    }

    /// Whether appends go to this segment.
    pub fn is_head(&self, node: u32) -> bool {
        self.heads.contains(&Some(node))
    }

    /// Whether a new shared segment could be given a node.
    pub fn can_open(&self) -> bool {
        self.free_shared != list::NIL || self.tables.shared.len() < SHARED_IDS as usize
    }

    /// Takes a segment out of the age list and its table; returns its
    /// memory, its charge (still on the books) and how much of it is written.
    pub fn detach(&mut self, node: u32) -> (SegMem, usize, usize) {
        self.order.unlink(&mut self.tables, node);
        let q = self.get(node).queue as usize;
        self.queues[q].unlink(&mut QueueNodes(&mut self.tables), node);
        self.queue_bytes[q] -= self.get(node).charge;
        if self.heads[q] == Some(node) {
            self.heads[q] = None;
        }
        let free = if is_solo(node) {
            &mut self.free_solo
        } else {
            &mut self.free_shared
        };
        let seg = self.tables.get_mut(node);
        let mem = seg.mem.take().expect("a detached segment had memory");
        let (charge, used) = (seg.charge, seg.used);
        *seg = Segment::vacant(*free);
        *free = node;
        (mem, charge, used)
    }

    /// A vacant node for a new segment, if the id space has one left.
    pub fn take_node(&mut self, solo: bool) -> Option<u32> {
        let free = if solo {
            self.free_solo
        } else {
            self.free_shared
        };
        if free != list::NIL {
            let next = self.get(free).links.next();
            if solo {
                self.free_solo = next;
            } else {
                self.free_shared = next;
            }
            return Some(free);
        }
        let (table, base, max) = if solo {
            (&mut self.tables.solo, SHARED_IDS, SOLO_BIT)
        } else {
            (&mut self.tables.shared, 0, SHARED_IDS)
        };
        let node = base + table.len() as u32;
        if node >= max {
            return None;
        }
        table.push(Segment::vacant(list::NIL));
        Some(node)
    }

    /// Puts memory in a node as the newest segment, and the newest of
    /// queue `queue`, its records' CAS numbered from `cas_base`.
    pub fn install(&mut self, node: u32, mem: SegMem, charge: usize, queue: Queue, cas_base: u64) {
        self.installs = self.installs.wrapping_add(1);
        let seg = self.tables.get_mut(node);
        *seg = Segment {
            mem: Some(mem),
            used: 0,
            live: 0,
            live_bytes: 0,
            charge,
            epoch: self.installs,
            queue,
            cas_base,
            links: Links::detached(),
            qlinks: Links::detached(),
        };
        self.order.push_front(&mut self.tables, node);
        self.queues[queue as usize].push_front(&mut QueueNodes(&mut self.tables), node);
        self.queue_bytes[queue as usize] += charge;
    }

    /// Space for `len` bytes at the end of queue `q`'s head, if it has it.
    pub fn append_to_head(&mut self, q: Queue, len: usize, segment_size: usize) -> Option<Loc> {
        let h = self.heads[q as usize]?;
        let seg = self.get_mut(h);
        if seg.used + len > segment_size {
            return None;
        }
        let at = seg.used;
        seg.used += len;
        Some(Loc::shared(h, at))
    }
}
