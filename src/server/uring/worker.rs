//! One io_uring worker: a ring, a provided-buffer ring and the connections
//! it accepted, served by one thread.
//!
//! Each loop turn submits everything queued (receives re-armed, replies to
//! send, cancellations) and waits for completions with one `io_uring_enter`,
//! so however many connections a turn serves, it costs one system call.
//! Receives are multishot: armed once, they complete every time data
//! arrives, into a buffer the kernel picks from the buffer ring.
//!
//! Each connection is driven as `connection.rs` drives one: the bytes go
//! to its [`Session`], the replies it composes go out in one send, and
//! nothing new is handed to the session while a send is in flight, so
//! replies stay in order. Bytes received with nothing buffered before them
//! go to the session where the kernel put them; only what it leaves is
//! copied to the connection's read buffer. Knows nothing about requests.
//!
//! The sessions count into one tally of the worker's, added to the shared
//! stats once a turn, before the turn's replies are submitted: a client
//! that has its reply finds its request counted, from any connection.

use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::bufring::BufRing;
use crate::protocol::{ProtocolError, peek};
use crate::server::bufpool::{BUF_SIZE, BufPool};
use crate::server::connection::serve_watcher;
use crate::server::fd_limit::{self, AcceptPause};
use crate::server::session::{Next, Session, fit_read_buffer};
use crate::server::watch::{CONNEVENTS, CloseReason, Peer as Client};
use crate::server::{DRAIN_TIMEOUT, Flow, Shared};
use crate::stats::{ConnInfo, ConnState, LocalStats, Tally};
use crate::store::Prefetch;

/// A read buffer left larger than this by a large request is replaced once
/// the request is done (see `fit_read_buffer`).
const BUF_KEEP_MAX: usize = 64 * 1024;

/// Unprocessed input a connection may hold beyond the request being read
/// while its replies cannot be sent; past it, receiving pauses, so a client
/// that sends without reading cannot grow the buffer without bound.
const RECV_BACKLOG_MAX: usize = 256 * 1024;

/// The provided buffers: up to enough for every connection of a busy turn
/// to complete a receive; a turn that needs more re-arms the receives that
/// ran dry once the buffers are back. The kernel fills posted buffers in
/// ring order, so all the posted ones become resident: all 128 from the
/// start cost 2 MiB a worker whatever the load (256 held 8 MiB over `-m`
/// at two workers, an eighth of `-m 64`). So only `RECV_BUFS_FIRST` are
/// posted at first, and the ring posts one more each time a receive finds
/// none (`BufRing::ran_dry`). A buffer is 16 KiB, what memcached reads at
/// once; the line limits are the decoder's, whatever a receive brings.
const RECV_BUFS: u16 = 128;
const RECV_BUFS_FIRST: u16 = 16;
const RECV_BUF_LEN: usize = 16 * 1024;

/// Keys prefetched per turn at most: about what the first-level data cache
/// holds of their index groups and records, at three or four lines each.
const PREFETCH_MAX: usize = 64;

/// How often idle connections are looked for (`-o idle_timeout`).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What a completion is for: the top byte of its user data.
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
/// A paused listening socket's wait is over: accept again.
const OP_ACCEPT_RETRY: u64 = 6;

fn user_data(op: u64, slot: u32, generation: u32) -> u64 {
    op << 56 | u64::from(generation & 0x00ff_ffff) << 32 | u64::from(slot)
}

fn split(data: u64) -> (u64, u32, u32) {
    (
        data >> 56,
        (data & 0xffff_ffff) as u32,
        ((data >> 32) & 0x00ff_ffff) as u32,
    )
}

/// A listening socket as the worker sees it.
#[derive(Clone)]
pub struct Listening {
    pub fd: RawFd,
    /// `stats conns`' spelling of the listening address; for unix sockets
    /// also the peer's.
    pub addr: String,
    pub tcp: bool,
}

/// Sets up a ring the way the workers use it.
///
/// # Errors
/// The kernel refused (too old, or io_uring forbidden by a seccomp filter).
pub fn new_ring(entries: u32) -> io::Result<IoUring> {
    // Completions are only ever reaped by this one thread: the kernel can
    // then run their work when we wait, not by interrupting us.
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
        .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))
}

/// What a worker needs from the server.
pub struct Setup {
    pub shared: Arc<Shared>,
    pub listening: Vec<Listening>,
    /// Connections open across all workers, for `-c`.
    pub open: Arc<AtomicUsize>,
    /// Written to wake the worker: connections handed to it, or shutdown.
    pub wake: Arc<OwnedFd>,
    /// Connections other workers accepted for this one.
    pub inbox: Receiver<Handoff>,
    /// Every worker's inbox and wake-up, this one's included, in order.
    pub peers: Vec<Peer>,
    /// This worker's place in `peers`.
    pub index: usize,
    /// Set (before the wake-ups) when shutdown starts.
    pub stop: Arc<AtomicBool>,
    /// Where connections that become watchers are served from then on.
    pub runtime: tokio::runtime::Handle,
}

/// An accepted socket on its way to the worker that will serve it, with
/// the index of the listening socket it came from.
pub type Handoff = (OwnedFd, usize);

/// Where to hand a worker a connection.
#[derive(Clone)]
pub struct Peer {
    pub inbox: Sender<Handoff>,
    pub wake: Arc<OwnedFd>,
}

/// Wakes the worker behind `wake`.
pub fn wake(wake: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: an 8-byte write to an eventfd we hold.
    unsafe {
        libc::write(wake.as_raw_fd(), one.as_ptr().cast(), one.len());
    }
}

struct Conn {
    fd: OwnedFd,
    generation: u32,
    id: u64,
    session: Session,
    info: Arc<ConnInfo>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes of `wbuf` the kernel has sent; a send is in flight while
    /// `sending` (the buffer must then stay as it is).
    sent: usize,
    sending: bool,
    /// A multishot receive is armed (its last completion not yet seen).
    receiving: bool,
    /// A cancellation of the receive was asked for.
    cancelling: bool,
    /// Nothing more is read (the peer sent FIN, or shutdown started):
    /// close, for this reason, once what arrived is answered.
    ending: Option<&'static str>,
    /// Why the connection is closing, once it is.
    closing: Option<&'static str>,
    /// Queued to be driven this turn.
    queued: bool,
    /// When data last arrived (only kept with an idle timeout).
    active: Instant,
    open: Arc<AtomicUsize>,
    /// Accepted from a TCP listener (else a unix socket).
    tcp: bool,
    /// It asked to `watch`: once its `OK` is sent and its receive has
    /// ended, it is handed to a tokio task (see [`Worker::hand_off`]).
    watching: bool,
    /// Handed over: the task counts and lists it now, not this.
    handed_off: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.handed_off {
            return;
        }
        // Its counts are in the worker's tally (`Session::process_into`).
        let shared = self.session.shared();
        if shared.watch.wants(CONNEVENTS) {
            let reason = match self.closing.or(self.ending) {
                Some("idle timeout" | "idle timeout (client not reading)") => {
                    CloseReason::IdleTimeout
                }
                Some("shutdown") => CloseReason::Shutdown,
                Some("read error" | "write error" | "input memcached refuses") => {
                    CloseReason::Error
                }
                _ => CloseReason::Normal,
            };
            shared
                .watch
                .conn_close(client(&self.fd, self.tcp), reason, self.fd.as_raw_fd());
        }
        shared.stats.connection_closed();
        shared.conns.unregister(self.id);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Worker {
    // Declared first so it is dropped first: the kernel lets go of the
    // buffers and sockets below before they are freed.
    ring: IoUring,
    bufs: BufRing,
    shared: Arc<Shared>,
    listening: Vec<Listening>,
    open: Arc<AtomicUsize>,
    wake: Arc<OwnedFd>,
    inbox: Receiver<Handoff>,
    peers: Vec<Peer>,
    index: usize,
    /// Which worker gets the next connection accepted here.
    next_peer: usize,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
    conns: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    /// Submissions for the next turn.
    queue: Vec<squeue::Entry>,
    /// Connections to drive at the end of this turn.
    dirty: Vec<u32>,
    /// Connections that used their `-R` budget with input left: driven
    /// again next turn, after everyone else has had a go.
    yielded: VecDeque<(u32, u32)>,
    completions: Vec<(u64, i32, u32)>,
    /// The keys of this turn's received requests (buffer, offset, length)
    /// and, between the two passes of prefetching for them, their hashes.
    keys: Vec<(u16, usize, usize)>,
    prefetches: Vec<Prefetch>,
    /// Per listening socket: an accept is armed (its last completion not
    /// yet seen). While one is, the ring holds the listening socket open,
    /// even past the process's exit, so the worker waits for them all to
    /// end before it ends: a restart must be able to bind the port again.
    accepting: Vec<bool>,
    /// Per listening socket: its accepts paused for want of descriptors.
    accept_pause: Vec<AcceptPause>,
    /// How long such a pause lasts; the kernel reads it when the timeout
    /// is submitted.
    backoff: types::Timespec,
    /// Shutdown started: when the drain ends.
    draining: Option<Instant>,
    idle: Option<Duration>,
    last_idle_check: Instant,
    /// Read once per turn, and only when idle connections or the drain
    /// deadline need it.
    now: Instant,
    /// The store clock's `now` for `stats conns`, read once per turn
    /// rather than per request.
    clock: u32,
    /// Buffers lent to connections while they hold bytes (`bufpool.rs`).
    pool: BufPool,
    /// What this turn's connections counted, added to the shared stats at
    /// the end of the turn ([`Worker::flush_tally`]).
    tally: Tally,
}

impl Worker {
    /// # Errors
    /// The ring or its buffers could not be set up.
    pub fn new(setup: Setup) -> io::Result<Worker> {
        let ring = new_ring(1024)?;
        let bufs = BufRing::new(&ring, RECV_BUFS, RECV_BUFS_FIRST, RECV_BUF_LEN, 0)?;
        let idle = setup.shared.config.idle_timeout;
        let n = setup.listening.len();
        Ok(Worker {
            ring,
            bufs,
            shared: setup.shared,
            listening: setup.listening,
            open: setup.open,
            wake: setup.wake,
            inbox: setup.inbox,
            peers: setup.peers,
            index: setup.index,
            next_peer: setup.index,
            stop: setup.stop,
            runtime: setup.runtime,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            queue: Vec::with_capacity(256),
            dirty: Vec::with_capacity(256),
            yielded: VecDeque::new(),
            completions: Vec::with_capacity(256),
            keys: Vec::with_capacity(PREFETCH_MAX),
            prefetches: Vec::with_capacity(PREFETCH_MAX),
            accepting: vec![false; n],
            accept_pause: (0..n).map(|_| AcceptPause::default()).collect(),
            backoff: types::Timespec::from(fd_limit::ACCEPT_BACKOFF),
            draining: None,
            idle,
            last_idle_check: Instant::now(),
            now: Instant::now(),
            clock: 0,
            pool: BufPool::new(BUF_SIZE),
            tally: Tally::default(),
        })
    }

    /// Serves until shutdown has drained this worker's connections.
    pub fn run(mut self) {
        for i in 0..self.listening.len() {
            self.arm_accept(i);
        }
        self.arm_wake();
        loop {
            if let Err(e) = self.submit_and_wait() {
                tracing::error!(error = %e, "io_uring wait failed; closing this worker's connections");
                break;
            }
            if self.idle.is_some() || self.draining.is_some() {
                self.now = Instant::now();
            }
            self.clock = self.shared.store.clock().now();
            self.reap();
            // Those that yielded last turn go after the others' input.
            for _ in 0..self.yielded.len() {
                let Some((slot, generation)) = self.yielded.pop_front() else {
                    break;
                };
                if self.generations[slot as usize] == generation {
                    self.mark(slot);
                }
            }
            while let Some(slot) = self.dirty.pop() {
                if let Some(c) = self.conns[slot as usize].as_mut() {
                    c.queued = false;
                }
                self.drive(slot);
            }
            if self.idle.is_some() && self.now - self.last_idle_check >= IDLE_CHECK {
                self.kick_idle();
            }
            self.flush_tally();
            if let Some(deadline) = self.draining {
                if self.live == 0 && !self.accepting.contains(&true) {
                    break;
                }
                if self.now >= deadline {
                    tracing::warn!(
                        open = self.live,
                        "connections still open after the drain timeout"
                    );
                    break;
                }
            }
        }
        self.flush_tally();
        if self.live > 0 {
            // Requests may still be in flight on these sockets and buffers:
            // the process is ending, so leave them to it.
            for c in self.conns.drain(..).flatten() {
                std::mem::forget(c);
            }
            std::mem::forget(self);
        }
    }

    /// Submits the queued entries and waits for at least one completion
    /// (not at all when a yielded connection is waiting to run again).
    fn submit_and_wait(&mut self) -> io::Result<()> {
        let mut sq = self.ring.submission();
        for e in self.queue.drain(..) {
            // SAFETY: each entry's buffers live in the connection (or the
            // worker) until its completion is seen.
            while unsafe { sq.push(&e) }.is_err() {
                drop(sq);
                self.ring.submit()?;
                sq = self.ring.submission();
            }
        }
        drop(sq);
        let want = usize::from(self.yielded.is_empty());
        let timeout = match (self.draining, self.idle) {
            _ if want == 0 => None,
            (Some(deadline), _) => Some(deadline.saturating_duration_since(Instant::now())),
            (None, Some(_)) => Some(IDLE_CHECK),
            (None, None) => None,
        };
        let result = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submit_and_wait(want),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        self.prefetch(&completions);
        for &(data, result, flags) in &completions {
            let (op, slot, generation) = split(data);
            match op {
                OP_RECV => self.received(slot, generation, result, flags),
                OP_SEND => self.sent(slot, generation, result),
                OP_ACCEPT => self.accepted(slot as usize, result, flags),
                OP_ACCEPT_RETRY => self.accept_again(slot as usize),
                OP_WAKE => self.woken(flags),
                _ => {}
            }
        }
        completions.clear();
        self.completions = completions;
    }

    /// Starts the memory loads of the store lookups the received requests
    /// will make, for all of them before any runs, so that their cache
    /// misses overlap (see the store's `prefetch.rs`): requests from many
    /// connections, a pipeline, or a multi-get's keys. Not for one key
    /// alone, which would gain nothing.
    fn prefetch(&mut self, completions: &[(u64, i32, u32)]) {
        let keys = &mut self.keys;
        for &(data, result, flags) in completions {
            let (Some(bid), true) = (cqueue::buffer_select(flags), split(data).0 == OP_RECV) else {
                continue;
            };
            let Ok(len) = usize::try_from(result) else {
                continue;
            };
            let input = self.bufs.get(bid, len);
            peek::keys(input, PREFETCH_MAX - keys.len(), |key| {
                let at = key.as_ptr() as usize - input.as_ptr() as usize;
                keys.push((bid, at, key.len()));
            });
            if keys.len() == PREFETCH_MAX {
                break;
            }
        }
        if keys.len() >= 2 {
            let store = &self.shared.store;
            let prefetches = &mut self.prefetches;
            for &(bid, at, len) in keys.iter() {
                let key = &self.bufs.get(bid, at + len)[at..];
                prefetches.extend(store.prefetch_index(key));
            }
            for p in prefetches.drain(..) {
                store.prefetch_records(p);
            }
        }
        keys.clear();
    }

    /// The connection a completion is for, if it is still open; borrows
    /// only `conns`, so the worker's other fields stay usable beside it.
    fn conn(conns: &mut [Option<Conn>], slot: u32, generation: u32) -> Option<&mut Conn> {
        conns
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|c| c.generation == generation)
    }

    fn mark(&mut self, slot: u32) {
        if let Some(c) = self.conns[slot as usize].as_mut()
            && !c.queued
        {
            c.queued = true;
            self.dirty.push(slot);
        }
    }

    fn received(&mut self, slot: u32, generation: u32, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        let buffer = cqueue::buffer_select(flags);
        let idle = self.idle.is_some();
        let now = self.now;
        let bufs = &mut self.bufs;
        let pool = &mut self.pool;
        let Some(c) = self
            .conns
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation)
        else {
            if let Some(bid) = buffer {
                bufs.recycle(bid);
            }
            return;
        };
        if !more {
            c.receiving = false;
        }
        // Input handled where the kernel put it, when nothing is buffered
        // before it and the session can take it now.
        let mut direct = None;
        match result {
            n if n > 0 => {
                if let Some(bid) = buffer {
                    if c.closing.is_none() && c.ending.is_none() {
                        if c.rbuf.is_empty() && !c.queued && !c.sending && !c.watching {
                            direct = Some((bid, n as usize));
                        } else {
                            pool.lend(&mut c.rbuf);
                            c.rbuf.extend_from_slice(bufs.get(bid, n as usize));
                        }
                        self.tally.counts.bytes_read += n as u64;
                        if idle {
                            c.active = now;
                        }
                    }
                    if direct.is_none() {
                        bufs.recycle(bid);
                    }
                }
            }
            0 => {
                c.ending.get_or_insert("closed by peer");
            }
            e if -e == libc::ENOBUFS => {
                tracing::trace!(id = c.id, "no receive buffer");
                if bufs.ran_dry() {
                    tracing::debug!(
                        posted = bufs.posted(),
                        "receive buffers ran out: posting more"
                    );
                }
            }
            e if -e == libc::ECANCELED => {}
            e => {
                tracing::debug!(id = c.id, error = %io::Error::from_raw_os_error(-e), "read failed");
                c.closing.get_or_insert("read error");
            }
        }
        // Handled now, as the tokio driver handles each read: memcached's
        // rules that look at "the replies owed for this read" then see the
        // same reads. A connection still sending gets to it afterwards.
        if let Some((bid, n)) = direct {
            self.drive_from(slot, Some((bid, n)));
            self.bufs.recycle(bid);
        } else if let Some(c) = self.conns[slot as usize].as_mut()
            && !c.queued
        {
            self.drive(slot);
        }
        self.pause_if_flooded(slot);
    }

    fn sent(&mut self, slot: u32, generation: u32, result: i32) {
        let (idle, now) = (self.idle.is_some(), self.now);
        let Some(c) = Self::conn(&mut self.conns, slot, generation) else {
            return;
        };
        if result < 0 {
            tracing::debug!(id = c.id, error = %io::Error::from_raw_os_error(-result), "write failed");
            c.sending = false;
            c.wbuf.clear();
            c.closing.get_or_insert("write error");
        } else {
            c.sent += result as usize;
            self.tally.counts.bytes_written += result as u64;
            if idle && result > 0 {
                // Progress: a client that reads is not idle.
                c.active = now;
            }
            if c.sent < c.wbuf.len() {
                let entry = send_entry(c, slot);
                self.queue.push(entry);
                return;
            }
            c.sending = false;
            c.sent = 0;
            c.wbuf.clear();
        }
        // Driven next: that gives the empty buffers back.
        self.mark(slot);
    }

    /// Adds what this turn's connections counted to the shared stats. Runs
    /// before the turn's sends are submitted, so every reply a client has
    /// is counted by the time it can ask `stats` anywhere; a `stats` run
    /// in the turn adds the tally in itself (see `Session::process_into`).
    fn flush_tally(&mut self) {
        self.shared
            .stats
            .flush_tally(self.index as u64, &mut self.tally);
    }

    /// Hands the connection's input to its session, sends what it
    /// composed, and re-arms or closes as the outcome says.
    fn drive(&mut self, slot: u32) {
        self.drive_from(slot, None);
    }

    /// [`Worker::drive`]; with `received`, its input is that received
    /// buffer's first bytes instead of the read buffer (which is empty):
    /// the session runs on them where they are, and only what it leaves
    /// (a partial request, or requests past `-R` or a send) is copied to
    /// the read buffer. The caller recycles the buffer afterwards.
    fn drive_from(&mut self, slot: u32, received: Option<(u16, usize)>) {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return;
        };
        if c.sending {
            return;
        }
        let pool = &mut self.pool;
        let shared = &*self.shared;
        if c.watching {
            // Input after `watch` is read only to see the client go.
            c.rbuf.clear();
        }
        // Used its `-R` budget with requests left: driven again next turn,
        // which also closes it if the peer has gone (not before they ran).
        let mut yielded = false;
        if c.closing.is_none() && (received.is_some() || !c.rbuf.is_empty()) {
            let now = self.clock;
            c.info.set(ConnState::ParseCmd, now);
            pool.lend(&mut c.wbuf);
            // Everything received is handled (or the replies passed the
            // high-water mark: they go out and the rest follows once sent).
            let next = match received {
                Some((bid, n)) => {
                    debug_assert!(c.rbuf.is_empty(), "input would be out of order");
                    let mut input = self.bufs.get(bid, n);
                    let next =
                        c.session
                            .process_into(&mut input, &mut c.wbuf, now, &mut self.tally);
                    if !input.is_empty() {
                        pool.lend(&mut c.rbuf);
                        c.rbuf.extend_from_slice(input);
                    }
                    next
                }
                None => c
                    .session
                    .process_into(&mut c.rbuf, &mut c.wbuf, now, &mut self.tally),
            };
            let flow = match next {
                Next::Read | Next::Write => Flow::Continue,
                Next::Yield => {
                    self.yielded.push_back((slot, c.generation));
                    yielded = true;
                    Flow::Continue
                }
                Next::End(flow) => flow,
            };
            let wanted = c.session.read_limit().or(c.session.wanted_len());
            if c.rbuf.is_empty() && wanted.is_none() {
                // Back to the pool unless a request is still arriving.
                pool.give(&mut c.rbuf);
            }
            if c.rbuf.capacity() != 0 || wanted.is_some() {
                fit_read_buffer(&mut c.rbuf, wanted, BUF_SIZE, BUF_KEEP_MAX);
            }
            let waiting = if c.session.in_data_block() {
                ConnState::Nread
            } else {
                ConnState::Waiting
            };
            c.info.set(waiting, now);
            match flow {
                Flow::Continue => {}
                Flow::Close => c.closing = Some("closed by request"),
                Flow::Abort => c.closing = Some("input memcached refuses"),
                Flow::Shutdown { graceful } => {
                    tracing::info!(graceful, "shutdown requested by a client");
                    shared.shutdown.cancel();
                    c.closing = Some("shutdown command");
                }
                Flow::Watch => {
                    c.info.set(ConnState::Watch, now);
                    c.watching = true;
                }
            }
        }
        if !c.wbuf.is_empty() {
            c.sending = true;
            c.sent = 0;
            let entry = send_entry(c, slot);
            self.queue.push(entry);
            self.pause_if_flooded(slot);
            return;
        }
        pool.give(&mut c.wbuf);
        if yielded && c.closing.is_none() {
            return;
        }
        if c.watching && c.closing.is_none() && c.ending.is_none() {
            if !c.receiving {
                self.hand_off(slot);
            } else if !c.cancelling {
                c.cancelling = true;
                self.queue.push(cancel(OP_RECV, slot, c.generation));
            }
            return;
        }
        if c.closing.is_none() {
            c.closing = c.ending;
        }
        if c.closing.is_some() {
            self.close(slot);
        } else if !c.receiving && !c.cancelling {
            self.arm_recv(slot);
        } else if c.cancelling && !c.receiving {
            // The receive paused for backpressure has ended: resume.
            c.cancelling = false;
            self.arm_recv(slot);
        }
    }

    /// Stops receiving while a send is in flight if the input waiting
    /// behind it passes [`RECV_BACKLOG_MAX`]; `drive` resumes it.
    fn pause_if_flooded(&mut self, slot: u32) {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return;
        };
        // The length first: it rules out nearly every call.
        if c.rbuf.len() > RECV_BACKLOG_MAX
            && c.sending
            && c.receiving
            && !c.cancelling
            && c.rbuf.len() > c.session.wanted_len().unwrap_or(0) + RECV_BACKLOG_MAX
        {
            c.cancelling = true;
            self.queue.push(cancel(OP_RECV, slot, c.generation));
        }
    }

    /// Ends the connection once nothing of its is in flight any more.
    fn close(&mut self, slot: u32) {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return;
        };
        if c.sending {
            return;
        }
        if c.receiving {
            if !c.cancelling {
                c.cancelling = true;
                self.queue.push(cancel(OP_RECV, slot, c.generation));
            }
            return;
        }
        let mut c = self.conns[slot as usize].take().expect("checked above");
        self.pool.retire(&mut c.rbuf);
        self.pool.retire(&mut c.wbuf);
        tracing::debug!(
            id = c.id,
            reason = c.closing.unwrap_or(""),
            "connection closed"
        );
        // Dropping it closes the socket and updates the counts.
        drop(c);
        self.free.push(slot);
        self.live -= 1;
    }

    /// Gives a watcher, its `OK` sent and nothing of it in flight, to a
    /// tokio task: a watcher waits for lines on its queue, which a task
    /// awaits, and watchers are few, so the ring does not learn to.
    fn hand_off(&mut self, slot: u32) {
        let Some(mut c) = self.conns[slot as usize].take() else {
            return;
        };
        self.free.push(slot);
        self.live -= 1;
        // The task takes its buffers from its own thread's pool.
        self.pool.retire(&mut c.rbuf);
        self.pool.retire(&mut c.wbuf);
        // The descriptor goes to the task; the connection closes a
        // duplicate, so the task's number is the one `watch` lines showed.
        let dup = match c.fd.try_clone() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(id = c.id, error = %e, "could not hand a watcher over; closing it");
                return;
            }
        };
        let fd = std::mem::replace(&mut c.fd, dup);
        let Some(watcher) = c.session.take_watcher() else {
            return;
        };
        c.handed_off = true;
        // What it counted so far is in this turn's tally; the task counts
        // from zero.
        let local = LocalStats::default();
        let (id, tcp, open) = (c.id, c.tcp, c.open.clone());
        drop(c);
        let shared = self.shared.clone();
        let release = move || {
            open.fetch_sub(1, Ordering::Relaxed);
        };
        self.runtime.spawn(async move {
            if tcp {
                let std = std::net::TcpStream::from(fd);
                match std
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(std))
                {
                    Ok(s) => serve_watcher(s, shared, id, watcher, local, release).await,
                    Err(e) => unserved(&shared, id, &e, release),
                }
            } else {
                let std = std::os::unix::net::UnixStream::from(fd);
                match std
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixStream::from_std(std))
                {
                    Ok(s) => serve_watcher(s, shared, id, watcher, local, release).await,
                    Err(e) => unserved(&shared, id, &e, release),
                }
            }
        });
    }

    fn arm_recv(&mut self, slot: u32) {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return;
        };
        c.receiving = true;
        let entry = opcode::RecvMulti::new(types::Fd(c.fd.as_raw_fd()), self.bufs.group())
            .build()
            .user_data(user_data(OP_RECV, slot, c.generation));
        self.queue.push(entry);
    }

    /// Looks again after [`fd_limit::ACCEPT_BACKOFF`] whether listening
    /// socket `index` may accept.
    fn wait_to_accept(&mut self, index: usize) {
        let entry = opcode::Timeout::new(&self.backoff)
            .build()
            .user_data(user_data(OP_ACCEPT_RETRY, index as u32, 0));
        self.queue.push(entry);
    }

    /// A paused listening socket's wait is over: accept again if a
    /// connection has closed meanwhile, or wait again.
    fn accept_again(&mut self, index: usize) {
        if self.draining.is_some() || self.accepting[index] {
            return;
        }
        if self.accept_pause[index].may_resume(&self.shared.stats) {
            self.arm_accept(index);
        } else {
            self.wait_to_accept(index);
        }
    }

    fn arm_accept(&mut self, index: usize) {
        self.accepting[index] = true;
        let entry = opcode::AcceptMulti::new(types::Fd(self.listening[index].fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OP_ACCEPT, index as u32, 0));
        self.queue.push(entry);
    }

    fn arm_wake(&mut self) {
        // A poll, not a read: an eventfd read would be handed to a kernel
        // worker thread to block in.
        let entry = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.queue.push(entry);
    }

    /// The wake-up event fired: connections were handed over, or
    /// shutdown has started.
    fn woken(&mut self, flags: u32) {
        let mut count = [0u8; 8];
        // SAFETY: an 8-byte read from our non-blocking eventfd, to re-arm it.
        unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                count.as_mut_ptr().cast(),
                count.len(),
            );
        }
        if !cqueue::more(flags) {
            self.arm_wake();
        }
        while let Ok((fd, listener)) = self.inbox.try_recv() {
            self.serve_new(fd, listener);
        }
        if !self.stop.load(Ordering::Acquire) || self.draining.is_some() {
            return;
        }
        self.now = Instant::now();
        self.draining = Some(self.now + DRAIN_TIMEOUT);
        for (i, accepting) in self.accepting.iter().enumerate() {
            if *accepting {
                self.queue.push(
                    opcode::AsyncCancel::new(user_data(OP_ACCEPT, i as u32, 0))
                        .build()
                        .user_data(user_data(OP_CANCEL, 0, 0)),
                );
            }
        }
        // Like `connection.rs`: the requests already received are answered,
        // and nothing more is read.
        for slot in 0..self.conns.len() as u32 {
            if let Some(c) = self.conns[slot as usize].as_mut() {
                c.ending.get_or_insert("shutdown");
                self.mark(slot);
            }
        }
    }

    fn accepted(&mut self, index: usize, result: i32, flags: u32) {
        let ended = !cqueue::more(flags);
        if ended {
            self.accepting[index] = false;
        }
        if result < 0 && fd_limit::is_exhaustion(-result) && ended && self.draining.is_none() {
            // Armed again at once, the accept would fail again at once:
            // a core spun and the log flooded until a connection closed.
            let error = io::Error::from_raw_os_error(-result);
            self.accept_pause[index].begin(&self.shared.stats, &error);
            self.wait_to_accept(index);
            return;
        }
        if ended && self.draining.is_none() {
            self.arm_accept(index);
        }
        if result < 0 {
            if -result != libc::ECANCELED {
                tracing::warn!(error = %io::Error::from_raw_os_error(-result), "accept failed");
            }
            return;
        }
        // SAFETY: the kernel just handed us this new descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        if self.stopping() {
            return;
        }
        // The kernel wakes the first worker waiting on a listening socket,
        // so one worker accepts nearly everything: it deals the
        // connections out in turn.
        let target = self.next_peer;
        self.next_peer = (self.next_peer + 1) % self.peers.len();
        if target == self.index {
            self.serve_new(fd, index);
        } else {
            let peer = &self.peers[target];
            match peer.inbox.send((fd, index)) {
                Ok(()) => wake(&peer.wake),
                Err(back) => self.serve_new(back.0.0, index),
            }
        }
    }

    /// Whether shutdown has begun, though this worker may not have been
    /// woken for it yet: another may already be closing its connections,
    /// and a client that saw that must not be served here meanwhile.
    fn stopping(&self) -> bool {
        self.draining.is_some() || self.stop.load(Ordering::Acquire)
    }

    /// Starts serving a connection accepted from listening socket `index`.
    fn serve_new(&mut self, fd: OwnedFd, index: usize) {
        if self.stopping() {
            return;
        }
        let listening = self.listening[index].clone();
        let id = crate::server::listener::next_id();
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.shared.config.conn_limit {
            self.open.fetch_sub(1, Ordering::Relaxed);
            reject(&self.shared, &fd, id);
            return;
        }
        if listening.tcp {
            set_nodelay(&fd);
        }
        let (addr, local) = if listening.tcp {
            describe_tcp(&fd)
        } else {
            (listening.addr.clone(), listening.addr.clone())
        };
        let shared = &self.shared;
        shared.stats.connection_opened();
        let info = shared.conns.register(
            id,
            ConnInfo::new(fd.as_raw_fd(), addr, local, shared.store.clock().now()),
        );
        tracing::debug!(id, peer = %info.addr, "connection opened");
        if shared.watch.wants(CONNEVENTS) {
            shared
                .watch
                .conn_new(client(&fd, listening.tcp), fd.as_raw_fd());
        }
        let mut session = Session::new(shared.clone(), id);
        session.set_fd(fd.as_raw_fd());
        self.tally.counts.total_connections += 1;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                (self.conns.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize].wrapping_add(1) & 0x00ff_ffff;
        self.generations[slot as usize] = generation;
        self.conns[slot as usize] = Some(Conn {
            fd,
            generation,
            id,
            session,
            info,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            sent: 0,
            sending: false,
            receiving: false,
            cancelling: false,
            ending: None,
            closing: None,
            queued: false,
            active: self.now,
            open: self.open.clone(),
            tcp: listening.tcp,
            watching: false,
            handed_off: false,
        });
        self.live += 1;
        self.arm_recv(slot);
    }

    /// `-o idle_timeout`: closes connections that sent nothing for that
    /// long, unless a data block is being read or a reply is being sent.
    fn kick_idle(&mut self) {
        self.last_idle_check = self.now;
        let Some(limit) = self.idle else {
            return;
        };
        for slot in 0..self.conns.len() as u32 {
            let Some(c) = self.conns[slot as usize].as_mut() else {
                continue;
            };
            if c.closing.is_some() || self.now.duration_since(c.active) < limit {
                continue;
            }
            if c.sending {
                // A client that takes none of its replies for that long is
                // kicked too; the send is cancelled and its completion closes.
                self.tally.counts.idle_kicks += 1;
                c.closing = Some("idle timeout (client not reading)");
                self.queue.push(cancel(OP_SEND, slot, c.generation));
            } else if !c.session.in_data_block() {
                self.tally.counts.idle_kicks += 1;
                c.closing = Some("idle timeout");
                self.mark(slot);
            }
        }
        while let Some(slot) = self.dirty.pop() {
            if let Some(c) = self.conns[slot as usize].as_mut() {
                c.queued = false;
            }
            self.drive(slot);
        }
    }
}

/// Cancels the `op` request in flight for the connection in `slot`.
fn cancel(op: u64, slot: u32, generation: u32) -> squeue::Entry {
    opcode::AsyncCancel::new(user_data(op, slot, generation))
        .build()
        .user_data(user_data(OP_CANCEL, slot, generation))
}

fn send_entry(c: &Conn, slot: u32) -> squeue::Entry {
    let rest = &c.wbuf[c.sent..];
    opcode::Send::new(
        types::Fd(c.fd.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .flags(libc::MSG_NOSIGNAL)
    .build()
    .user_data(user_data(OP_SEND, slot, c.generation))
}

/// memcached answers a connection over `-c` at once and closes it.
fn reject(shared: &Shared, fd: &OwnedFd, id: u64) {
    let mut local = LocalStats {
        rejected_connections: 1,
        total_connections: 1,
        ..Default::default()
    };
    shared.stats.flush(id, &mut local);
    tracing::debug!(id, "connection refused: over the -c limit");
    let msg = format!("{}\r\n", ProtocolError::TooManyConnections.wire());
    // SAFETY: a plain send on a socket we own; a fresh socket's send buffer
    // has room for one line, and MSG_DONTWAIT means it never blocks.
    unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
    }
}

/// Replies are batched per turn already; Nagle would only add delay.
fn set_nodelay(fd: &OwnedFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on a socket we own.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The peer's and our address, in `stats conns`' `tcp:<ip>:<port>` form.
/// A watcher whose socket tokio would not take: closed, and counted so.
fn unserved(shared: &Shared, id: u64, e: &io::Error, release: impl FnOnce()) {
    tracing::warn!(id, error = %e, "could not serve a watcher; closed");
    shared.stats.connection_closed();
    shared.conns.unregister(id);
    release();
}

/// The client of a connection, as `watch connevents` lines show it.
fn client(fd: &OwnedFd, tcp: bool) -> Client {
    if !tcp {
        return Client::Unix;
    }
    // SAFETY: borrowed for one getter; ManuallyDrop keeps it from closing.
    let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd.as_raw_fd()) });
    stream.peer_addr().map_or(Client::Unix, Client::Tcp)
}

fn describe_tcp(fd: &OwnedFd) -> (String, String) {
    // SAFETY: borrowed for two getters; ManuallyDrop keeps it from closing.
    let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd.as_raw_fd()) });
    let show = |a: io::Result<std::net::SocketAddr>| {
        a.map_or_else(|_| "tcp:?".to_string(), |a| format!("tcp:{a}"))
    };
    (show(stream.peer_addr()), show(stream.local_addr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let d = user_data(OP_SEND, 123_456, 0x00ab_cdef);
        assert_eq!(split(d), (OP_SEND, 123_456, 0x00ab_cdef));
        assert_eq!(split(user_data(OP_WAKE, 0, 0)), (OP_WAKE, 0, 0));
    }
}
