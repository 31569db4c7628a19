//! Connection buffers lent while a connection has bytes in them.
//!
//! A connection waiting for its next request needs no buffer: keeping a
//! read and a write buffer for each cost about 12 KiB of resident memory
//! per waiting connection, where memcached, which lends its read buffers
//! from a per-thread cache the same way, spends about 3.5. A web server's
//! workers keep their connections open between requests, so with a
//! thousand of them that was 10 MiB beside `-m`. A driver takes a buffer
//! when bytes arrive or replies are composed and gives it back once it is
//! empty; the free ones are reused, so a request still allocates nothing.
//!
//! `stats` shows what the pools hold as memcached shows its read buffer
//! cache (`read_buf_count`, `read_buf_bytes`, `read_buf_bytes_free`):
//! memcached lends its response objects from that cache too, and its
//! protocol.txt calls them "read/resp buffers", so write buffers count
//! here as well. Each pool keeps plain counts and publishes them to its
//! own [`Gauge`], which only `stats` reads: the buffers allocated and not
//! yet freed when one is allocated or freed (rare once warm), the free
//! ones with a relaxed store, a plain store on a line no other thread
//! writes, when one is taken or given. Nothing locks or read-modify-writes
//! per request. A buffer may be taken from one thread's pool and given to
//! another's (a tokio task moves between threads), so a pool's own
//! allocated count may go below zero; the sum over the pools is exact.

use std::cell::RefCell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

/// The size of the buffers the drivers lend: a read takes up to this much
/// at once, as memcached's does, which decides how long a line without its
/// newline may grow before the connection is closed.
pub const BUF_SIZE: usize = 16 * 1024;

/// Free buffers kept per pool while it serves: enough for the connections
/// one worker serves at once, so a busy worker allocates nothing.
const KEEP: usize = 64;

/// Free buffers kept per pool once every connection that took one has
/// given it back and one of them has closed (see [`BufPool::retire`]).
pub const KEEP_IDLE: usize = 4;

/// Buffers a pool must free at once before it asks the allocator to give
/// its free pages back to the kernel (`malloc_trim`): a walk over every
/// arena, worth it after a burst, not for a buffer or two.
const TRIM_MIN: usize = 16;

/// What one pool has allocated and holds free, as `stats` reads it.
#[derive(Default)]
struct Gauge {
    /// Buffers this pool allocated less those it freed.
    count: AtomicIsize,
    /// Buffers in its free list.
    free: AtomicIsize,
}

/// Every pool's gauge, kept after its pool ends: a buffer it allocated may
/// still be lent, and is counted as freed wherever it ends.
static GAUGES: Mutex<Vec<Arc<Gauge>>> = Mutex::new(Vec::new());

/// The buffers of every pool, in memcached's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Buffers allocated and not freed: lent or free (`read_buf_count`).
    pub count: u64,
    /// Their bytes, at [`BUF_SIZE`] each as memcached counts its fixed
    /// size (`read_buf_bytes`); one grown for a large request counts once.
    pub bytes: u64,
    /// Bytes of those sitting free in the pools (`read_buf_bytes_free`).
    pub bytes_free: u64,
}

/// Sums every pool's gauge. Pools change theirs as `stats` reads them, so a
/// buffer moving between two pools may show in neither or both for an
/// instant; the counts never go below zero.
pub fn totals() -> Totals {
    let (mut count, mut free) = (0isize, 0isize);
    for g in GAUGES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        count += g.count.load(Ordering::Relaxed);
        free += g.free.load(Ordering::Relaxed);
    }
    let count = count.max(0) as u64;
    let free = (free.max(0) as u64).min(count);
    Totals {
        count,
        bytes: count * BUF_SIZE as u64,
        bytes_free: free * BUF_SIZE as u64,
    }
}

/// Free buffers of one size.
///
/// The drivers give back only buffers a pool lent them (a connection's
/// buffers start unallocated and are only ever taken from a pool); one
/// that grew is still that buffer. A connection that ends gives back what
/// it holds ([`BufPool::retire`]), so the counts stay exact.
pub struct BufPool {
    free: Vec<BytesMut>,
    size: usize,
    /// Buffers allocated less freed, as published in `gauge`.
    count: isize,
    gauge: Arc<Gauge>,
}

impl BufPool {
    pub fn new(size: usize) -> BufPool {
        let gauge = Arc::new(Gauge::default());
        GAUGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(gauge.clone());
        BufPool {
            free: Vec::new(),
            size,
            count: 0,
            gauge,
        }
    }

    /// A buffer of the pool's size: new, or one given back (see
    /// [`BufPool::give`] for the room it shows).
    pub fn take(&mut self) -> BytesMut {
        match self.free.pop() {
            Some(b) => {
                self.publish_free();
                b
            }
            None => {
                self.counted(1);
                BytesMut::with_capacity(self.size)
            }
        }
    }

    /// Gives `buf` one of the pool's buffers if it has none (it was given
    /// back, or never had one).
    pub fn lend(&mut self, buf: &mut BytesMut) {
        if buf.capacity() == 0 {
            *buf = self.take();
        }
    }

    /// Takes back `buf` if it is empty, leaving an unallocated one in its
    /// place. A buffer that grew past twice the pool's size is freed rather
    /// than kept, as is one past the [`KEEP`] free ones.
    ///
    /// A buffer is kept as it is: its view may have moved past consumed
    /// bytes, so it shows less room than it has. The drivers reserve what
    /// they need before use, which moves the view of an empty buffer back
    /// to the start of its allocation without allocating; doing that here,
    /// on every return, cost a hundred instructions a request.
    pub fn give(&mut self, buf: &mut BytesMut) {
        if !buf.is_empty() || buf.capacity() == 0 {
            return;
        }
        let b = std::mem::take(buf);
        if self.free.len() < KEEP && b.capacity() <= 2 * self.size {
            self.free.push(b);
            self.publish_free();
        } else {
            self.counted(-1);
        }
    }

    /// [`BufPool::give`] whatever `buf` still holds: for a connection that
    /// ends, whose unread input and unsent replies are dropped with it.
    ///
    /// When that leaves nothing of the pool's lent, the burst that needed
    /// its free buffers is over: all but [`KEEP_IDLE`] are freed, and their
    /// pages given back. Without this a pool kept the 64 buffers of its
    /// busiest moment for good (1 to 2 MiB a worker, after a pipelined fill
    /// by 50 clients), as glibc keeps freed chunks resident in its arenas.
    /// Connections that stay open never get here, so a steady load, however
    /// busy, allocates nothing; a closing connection costs one comparison.
    pub fn retire(&mut self, buf: &mut BytesMut) {
        buf.clear();
        self.give(buf);
        if self.count <= self.free.len() as isize && self.free.len() > KEEP_IDLE {
            self.shrink(KEEP_IDLE);
        }
    }

    /// Frees the free buffers past `keep`; after many, returns the
    /// allocator's free pages to the kernel.
    fn shrink(&mut self, keep: usize) {
        let freed = self.free.len().saturating_sub(keep);
        self.free.truncate(keep);
        self.counted(-(freed as isize));
        self.publish_free();
        if freed >= TRIM_MIN {
            trim_allocator();
        }
    }

    /// Buffers allocated (`delta` > 0) or freed, as `stats` counts them.
    fn counted(&mut self, delta: isize) {
        self.count += delta;
        self.gauge.count.store(self.count, Ordering::Relaxed);
    }

    fn publish_free(&self) {
        self.gauge
            .free
            .store(self.free.len() as isize, Ordering::Relaxed);
    }
}

/// Asks glibc to hand the free pages of its arenas back to the kernel: a
/// freed buffer's pages otherwise stay resident until the arena reuses them,
/// and glibc trims an arena by itself only from its top.
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; 0 keeps no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for BufPool {
    /// Frees the free buffers, and counts them freed.
    fn drop(&mut self) {
        self.counted(-(self.free.len() as isize));
        self.free.clear();
        self.publish_free();
    }
}

thread_local! {
    /// The tokio driver's pool: one a worker thread, as its tasks run on
    /// whichever thread takes them.
    static LOCAL: RefCell<BufPool> = RefCell::new(BufPool::new(BUF_SIZE));
}

/// [`BufPool::take`] from this thread's pool.
pub fn take_local() -> BytesMut {
    LOCAL.with(|p| p.borrow_mut().take())
}

/// [`BufPool::lend`] from this thread's pool.
pub fn lend_local(buf: &mut BytesMut) {
    LOCAL.with(|p| p.borrow_mut().lend(buf));
}

/// [`BufPool::give`] to this thread's pool.
pub fn give_local(buf: &mut BytesMut) {
    LOCAL.with(|p| p.borrow_mut().give(buf));
}

/// [`BufPool::retire`] to this thread's pool.
pub fn retire_local(buf: &mut BytesMut) {
    LOCAL.with(|p| p.borrow_mut().retire(buf));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn a_buffer_given_back_is_lent_again_without_allocating() {
        let mut pool = BufPool::new(1024);
        let mut b = pool.take();
        assert!(b.capacity() >= 1024);
        let at = b.as_ptr();
        b.extend_from_slice(b"get k\r\n");
        pool.give(&mut b);
        assert!(b.capacity() >= 1024, "not taken while it holds bytes");
        assert_eq!(&b[..], b"get k\r\n");
        b.advance(7);
        pool.give(&mut b);
        assert_eq!(b.capacity(), 0, "an empty buffer is taken back");
        let mut again = pool.take();
        again.reserve(1024);
        assert_eq!(again.as_ptr(), at, "the same allocation, from its start");
        assert!(again.capacity() >= 1024);
    }

    #[test]
    fn grown_buffers_and_a_full_pool_free_instead() {
        let mut pool = BufPool::new(1024);
        let mut big = BytesMut::with_capacity(64 * 1024);
        pool.give(&mut big);
        assert_eq!(big.capacity(), 0);
        assert!(pool.free.is_empty(), "a grown buffer is not kept");
        for _ in 0..KEEP + 5 {
            let mut b = BytesMut::with_capacity(1024);
            pool.give(&mut b);
        }
        assert_eq!(pool.free.len(), KEEP);
        let mut none = BytesMut::new();
        pool.give(&mut none);
        assert_eq!(pool.free.len(), KEEP, "an unallocated buffer is not kept");
    }

    #[test]
    fn the_last_connection_closing_frees_all_but_keep_idle() {
        let mut pool = BufPool::new(1024);
        let mut lent: Vec<BytesMut> = (0..40).map(|_| pool.take()).collect();
        let mut last = lent.pop().expect("40 taken");
        let mut open = lent.pop().expect("39 left");
        for b in &mut lent {
            pool.give(b);
        }
        assert_eq!(counts(&pool), (40, 38), "given back while busy: kept");

        // A connection closes while another still holds a buffer: kept.
        last.extend_from_slice(b"get k");
        pool.retire(&mut last);
        assert_eq!(counts(&pool), (40, 39));

        // The last one lent comes back as its connection closes.
        pool.retire(&mut open);
        assert_eq!(counts(&pool), (KEEP_IDLE as isize, KEEP_IDLE as isize));
        assert_eq!(pool.free.len(), KEEP_IDLE);

        // Fewer than that free: nothing to free.
        let mut a = pool.take();
        let mut b = pool.take();
        pool.give(&mut a);
        pool.retire(&mut b);
        assert_eq!(pool.free.len(), KEEP_IDLE);
    }

    fn counts(pool: &BufPool) -> (isize, isize) {
        (
            pool.gauge.count.load(Ordering::Relaxed),
            pool.gauge.free.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn the_gauge_counts_allocated_and_free_buffers() {
        let mut pool = BufPool::new(1024);
        let mut a = pool.take();
        let mut b = pool.take();
        assert_eq!(counts(&pool), (2, 0), "two allocated, both lent");
        pool.give(&mut a);
        assert_eq!(counts(&pool), (2, 1), "one back in the free list");
        let mut c = pool.take();
        assert_eq!(counts(&pool), (2, 0), "reused: nothing allocated");
        b.extend_from_slice(b"set k 0 0 5\r\n");
        pool.give(&mut b);
        assert_eq!(counts(&pool), (2, 0), "one holding bytes stays lent");
        pool.retire(&mut b);
        assert_eq!(counts(&pool), (2, 1), "a closing connection's comes back");
        c.reserve(64 * 1024);
        pool.give(&mut c);
        assert_eq!(counts(&pool), (1, 1), "one grown past the limit is freed");

        // Taken from one pool and given to another: each pool's count is
        // off by one, their sum is not.
        let mut other = BufPool::new(1024);
        let mut moved = pool.take();
        other.give(&mut moved);
        assert_eq!(counts(&pool), (1, 0));
        assert_eq!(counts(&other), (0, 1));
        let mut again = other.take();
        again.reserve(64 * 1024);
        other.give(&mut again);
        assert_eq!(counts(&other), (-1, 0));

        let mut kept = pool.take();
        pool.give(&mut kept);
        assert_eq!(counts(&pool), (2, 1));
        let gauge = pool.gauge.clone();
        drop(pool);
        assert_eq!(
            (
                gauge.count.load(Ordering::Relaxed),
                gauge.free.load(Ordering::Relaxed)
            ),
            (1, 0),
            "a pool that ends frees its free buffers"
        );
    }
}
