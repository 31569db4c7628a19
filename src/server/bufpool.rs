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

use std::cell::RefCell;

use bytes::BytesMut;

/// The size of the buffers the drivers lend: a read takes up to this much
/// at once, as memcached's does, which decides how long a line without its
/// newline may grow before the connection is closed.
pub const BUF_SIZE: usize = 16 * 1024;

/// Free buffers kept per pool: enough for the connections one worker
/// serves at once, a bounded amount (1 MiB at 16 KiB) when all go quiet.
const KEEP: usize = 64;

/// Free buffers of one size.
pub struct BufPool {
    free: Vec<BytesMut>,
    size: usize,
}

impl BufPool {
    pub fn new(size: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            size,
        }
    }

    /// A buffer of the pool's size: new, or one given back (see
    /// [`BufPool::give`] for the room it shows).
    pub fn take(&mut self) -> BytesMut {
        self.free
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.size))
    }

    /// Takes back `buf` if it is empty, leaving an unallocated one in its
    /// place. A buffer that grew past twice the pool's size is freed rather
    /// than kept.
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
        }
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

/// [`BufPool::give`] to this thread's pool.
pub fn give_local(buf: &mut BytesMut) {
    LOCAL.with(|p| p.borrow_mut().give(buf));
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
}
