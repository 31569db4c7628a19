//! One connection's protocol state, without its socket (sans-IO).
//!
//! [`Session::process`] takes the bytes that have arrived and appends the
//! replies to send: it decodes every complete request, executes it and
//! composes its reply. The tokio driver (`connection.rs`), the fuzz targets
//! and the tests all call this one function, so none of them keeps its own
//! copy of the decode → execute loop, and another I/O driver needs none.
//!
//! It holds what memcached keeps per connection: the framing state (text or
//! binary, picked from the first byte under `-B auto`), the
//! authentication state (`-Y`), the counts not yet added to the shared
//! stats (unless the driver keeps them: [`Session::process_into`]), and
//! the `-R` budget. It never blocks and never touches a socket;
//! reads, writes, timeouts, TLS and shutdown are the driver's.
//!
//! # Watchers: the driver's contract
//!
//! After `watch`, [`Session::process`] returns `Next::End(Flow::Watch)`
//! with memcached's `OK` in the write buffer, and the connection is a log
//! stream from then on: it takes no more requests. The driver takes the
//! [`Watcher`] with [`Session::take_watcher`] and, until it ends the
//! connection, repeats:
//!
//! 1. [`Watcher::drain`] appends whole lines to its write buffer (up to the
//!    size it asks for) and says what it found:
//!    - `Lines`: write the buffer out, with the same idle timeout as any
//!      write, then drain again;
//!    - `InFlight`: a line is being queued this instant: yield, drain again;
//!    - `Empty`: wait for [`Watcher::ready`], a future any executor can
//!      await, together with the socket becoming readable.
//! 2. Bytes the client sends are read and dropped, as memcached ignores
//!    them; end of stream or an error ends the watcher. So does shutdown.
//!
//! Requests never wait for a watcher: each event goes into a queue bounded
//! in bytes, and a watcher that falls behind loses lines (`skipped=N`).
//! Dropping the [`Watcher`] leaves the stream.

use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::execute::execute_frame;
use super::held::Held;
use super::watch::Watcher;
use super::{Context, Flow, Shared};
use crate::auth::{self, AuthFile};
use crate::config::BindingProtocol;
use crate::hotkeys::Sampler;
use crate::protocol::binary::{self, BinaryOp, REQUEST_MAGIC};
use crate::protocol::codec::{Decode, Decoder};
use crate::protocol::{Frame, ProtocolError, Request};
use crate::sasl::SaslConn;
use crate::stats::{BatchKinds, CommandKind, LocalStats, Tally};

/// Replies are sent early once this much is buffered, so a client pipelining
/// thousands of gets does not make us hold all their replies at once.
pub const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Sizes a driver's read buffer after [`Session::process`] to what the
/// connection is charged for. A data block being read (`wanted`, from
/// [`Session::read_limit`], else [`Session::wanted_len`]) gets that size at
/// once: the session has charged it to `-m`, and growing by doubling as it
/// arrived could take twice that. A buffer left much larger than that (the capacity of a large
/// block already handled, kept for a short remainder) is replaced by one of
/// `small` bytes, or as much as it holds.
pub fn fit_read_buffer(rbuf: &mut BytesMut, wanted: Option<usize>, small: usize, keep_max: usize) {
    let wanted = wanted.unwrap_or(0);
    if rbuf.capacity() > 2 * wanted.max(keep_max) {
        let mut fresh = BytesMut::with_capacity(wanted.max(small).max(rbuf.len()));
        fresh.extend_from_slice(rbuf);
        *rbuf = fresh;
    }
    rbuf.reserve(wanted.saturating_sub(rbuf.len()));
}

/// The bytes a session reads requests from: the driver's read buffer, or
/// the slice a read landed in (whatever is left of it, the driver keeps).
pub trait Input: std::ops::Deref<Target = [u8]> {
    /// Drops the first `n` bytes, which the session is done with.
    fn consume(&mut self, n: usize);
}

impl Input for BytesMut {
    fn consume(&mut self, n: usize) {
        self.advance(n);
    }
}

impl Input for &[u8] {
    fn consume(&mut self, n: usize) {
        *self = &self[n..];
    }
}

/// What the driver does after [`Session::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Every complete request is handled: send the replies, read more.
    Read,
    /// The replies are due before more requests run (they passed
    /// [`WRITE_HIGH_WATER`], or a binary Noop asked for them, as memcached
    /// flushes then): send them, then call again.
    Write,
    /// `-R` requests were handled and more are buffered: let the other
    /// connections run, then call again.
    Yield,
    /// The connection ends as `Flow` says (never `Flow::Continue`). For
    /// [`Flow::Abort`] the write buffer has been emptied already.
    End(Flow),
}

/// Sees each request and its reply; the fuzz targets check replies with it.
/// The server's own sessions use `()`, which compiles to nothing.
pub trait Observer {
    /// Called before `frame` runs.
    fn request(&mut self, _frame: &Frame<'_>, _shared: &Shared) {}
    /// Called after it ran, with the bytes it appended.
    fn reply(&mut self, _reply: &[u8], _shared: &Shared) {}
}

impl Observer for () {}

/// Which protocol a connection speaks, and its framing state.
enum Framing {
    /// `-B auto` before the first byte: 0x80 picks binary, anything else text.
    Negotiating,
    Text(Decoder),
    Binary(binary::decode::Decoder),
}

impl Framing {
    fn new(shared: &Shared) -> Self {
        match shared.config.binding_protocol {
            BindingProtocol::Ascii => Framing::text(shared),
            BindingProtocol::Binary => Framing::binary(shared),
            BindingProtocol::Auto => Framing::Negotiating,
        }
    }

    fn text(shared: &Shared) -> Self {
        Framing::Text(Decoder::new(shared.config.limits))
    }

    fn binary(shared: &Shared) -> Self {
        // With -S the SASL opcodes are requests and nothing else runs
        // before one succeeds; without, memcached answers them as unknown.
        let sasl = shared.config.sasl.is_some();
        Framing::Binary(binary::decode::Decoder::new(shared.config.limits, sasl))
    }
}

/// The protocol state of one connection.
pub struct Session {
    shared: Arc<Shared>,
    /// For log lines.
    id: u64,
    framing: Framing,
    /// With `-Y`, until the client authenticates.
    unauthenticated: Option<(Arc<AuthFile>, auth::Pending)>,
    /// With `-S`: the binary connection's SASL state.
    sasl: SaslConn,
    /// Counts not yet added to the shared stats; see [`Session::flush_stats`].
    /// [`Session::process_into`] counts into the driver's tally instead.
    pub stats: LocalStats,
    kinds: BatchKinds,
    /// Requests handled since the driver last read or yielded (`-R`).
    handled: usize,
    /// Which requests the hot-key top-K counts.
    sampler: Sampler,
    /// The connection's descriptor, for `watch` lines (`cfd=`); -1 unknown.
    fd: i32,
    /// Set once `watch` made this connection a watcher.
    watcher: Option<Watcher>,
    /// The items the replies in the write buffer hold.
    held: Held,
    /// Bytes of `-m` reserved for the data block being read (0: none); see
    /// [`Session::wanted_len`]. Given back when the block is done with or
    /// the session is dropped.
    incoming: usize,
}

impl Session {
    pub fn new(shared: Arc<Shared>, id: u64) -> Self {
        let unauthenticated = shared
            .config
            .auth
            .clone()
            .map(|file| (file, auth::Pending::default()));
        Session {
            framing: Framing::new(&shared),
            shared,
            id,
            unauthenticated,
            sasl: SaslConn::default(),
            stats: LocalStats::default(),
            kinds: BatchKinds::default(),
            handled: 0,
            // Connections start their sampling at different points.
            sampler: Sampler::new(id as u32 ^ (id >> 32) as u32),
            fd: -1,
            watcher: None,
            held: Held::default(),
            incoming: 0,
        }
    }

    /// The connection's descriptor, which `watch` lines show as `cfd=`.
    pub fn set_fd(&mut self, fd: i32) {
        self.fd = fd;
    }

    /// After `Next::End(Flow::Watch)`: the watcher the driver now serves
    /// (see the module documentation).
    pub fn take_watcher(&mut self) -> Option<Watcher> {
        self.watcher.take()
    }

    /// Handles the complete requests at the front of `rbuf`, advancing it
    /// past them, and appends their replies to `wbuf`.
    pub fn process(&mut self, rbuf: &mut BytesMut, wbuf: &mut BytesMut) -> Next {
        let now = self.shared.store.clock().now();
        self.process_inner(rbuf, wbuf, now, &mut (), None)
    }

    /// [`Session::process`] at the store clock's `now`, which the driver
    /// read for this read already: one clock read per read, not two.
    pub fn process_at(&mut self, rbuf: &mut BytesMut, wbuf: &mut BytesMut, now: u32) -> Next {
        self.process_inner(rbuf, wbuf, now, &mut (), None)
    }

    /// [`Session::process_at`], counting into the driver's `tally` rather
    /// than the session's own counts: a driver that serves many
    /// connections at once gathers theirs in one tally and adds it to the
    /// shared stats once for all of them ([`crate::stats::Stats::flush_tally`]).
    /// A `stats` request adds the tally in before it reads the shared
    /// stats, so it sees every request counted there so far.
    ///
    /// `input` is the read buffer, or a slice of bytes the driver holds
    /// elsewhere (where a receive landed), which it is advanced through:
    /// the requests it completes are handled straight from there, and the
    /// driver keeps what is left (a partial request, or requests not yet
    /// due) in its read buffer, as if it had all been read into it. A
    /// slice needs nothing buffered before it.
    pub fn process_into(
        &mut self,
        input: &mut impl Input,
        wbuf: &mut BytesMut,
        now: u32,
        tally: &mut Tally,
    ) -> Next {
        self.process_inner(input, wbuf, now, &mut (), Some(tally))
    }

    /// [`Session::process`], showing each request and reply to `observer`.
    pub fn process_observed(
        &mut self,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        observer: &mut impl Observer,
    ) -> Next {
        let now = self.shared.store.clock().now();
        self.process_inner(rbuf, wbuf, now, observer, None)
    }

    fn process_inner(
        &mut self,
        rbuf: &mut impl Input,
        wbuf: &mut BytesMut,
        now: u32,
        observer: &mut impl Observer,
        mut tally: Option<&mut Tally>,
    ) -> Next {
        // Processing time, only when /metrics is served: the clock is read
        // when a call starts and ends, and the time is shared among the
        // requests it handled, so a pipelined batch pays for two reads.
        // The CPU's cycle counter where it is steady: reading it costs a few
        // instructions, where the system clock costs about a hundred.
        let started = self.shared.ticks.as_ref().map(quanta::Clock::raw);
        let counts = tally.as_deref_mut().map(|t| &mut t.counts);
        let next = self.run(rbuf, wbuf, now, observer, counts);
        // The driver writes the replies out before it calls again.
        self.held.clear();
        if let (Some(t), Some(clock)) = (started, self.shared.ticks.as_ref()) {
            let ns = clock.delta_as_nanos(t, clock.raw());
            match tally {
                Some(tally) => tally.record_batch(&mut self.kinds, ns),
                None => self.shared.stats.record_batch(self.id, &mut self.kinds, ns),
            }
        }
        if next == Next::End(Flow::Abort) {
            wbuf.clear();
        }
        if matches!(next, Next::Read | Next::Yield) {
            self.handled = 0;
        }
        next
    }

    fn run(
        &mut self,
        rbuf: &mut impl Input,
        wbuf: &mut BytesMut,
        now: u32,
        observer: &mut impl Observer,
        counts: Option<&mut LocalStats>,
    ) -> Next {
        let shared = &*self.shared;
        let stats = match counts {
            Some(counts) => counts,
            None => &mut self.stats,
        };
        loop {
            if let Some((file, pending)) = self.unauthenticated.as_mut() {
                match pending.step(rbuf, file, stats) {
                    auth::Step::NeedMore => return Next::Read,
                    auth::Step::Close => return Next::End(Flow::Abort),
                    auth::Step::Done {
                        consumed,
                        reply,
                        authenticated,
                    } => {
                        rbuf.consume(consumed);
                        if let Some(reply) = reply {
                            // memcached reuses one reply object until the
                            // client is authenticated, so of the replies to
                            // one read only the last is sent.
                            wbuf.clear();
                            wbuf.extend_from_slice(reply);
                        }
                        if authenticated {
                            self.unauthenticated = None;
                        }
                        continue;
                    }
                }
            }
            // A data block not yet all here is charged to -m from now until
            // it is done with, as memcached allocates its item on the line.
            let incoming = &mut self.incoming;
            let mut admit = |n: usize| {
                let more = n.saturating_sub(*incoming);
                let ok = shared.store.reserve_incoming(more, now);
                if ok {
                    *incoming += more;
                }
                ok
            };
            let decoded = match &mut self.framing {
                Framing::Text(d) => d.decode_admitting(rbuf, &mut admit),
                Framing::Binary(d) => d.decode_admitting(rbuf, &mut admit),
                Framing::Negotiating => {
                    let Some(&first) = rbuf.first() else {
                        return Next::Read;
                    };
                    self.framing = if first == REQUEST_MAGIC {
                        Framing::binary(shared)
                    } else {
                        Framing::text(shared)
                    };
                    continue;
                }
            };
            // memcached sends what it owes at once after a binary Noop.
            let mut flush = false;
            if self.incoming > 0 && !matches!(decoded, Decode::NeedMore) {
                // The block is here: from now on the store charges the item
                // (or nothing, if it is refused).
                shared
                    .store
                    .release_incoming(std::mem::take(&mut self.incoming));
            }
            let (consumed, flow) = match decoded {
                Decode::NeedMore => return Next::Read,
                Decode::Frame {
                    consumed,
                    frame: None,
                } => (consumed, Flow::Continue),
                // Borrowed, not moved out: see `execute_frame`.
                Decode::Frame {
                    consumed,
                    frame: Some(ref frame),
                } => {
                    let id = self.id;
                    if let Frame::Request(Request::Binary(binary::BinaryCommand {
                        op: BinaryOp::SaslAuth { .. },
                        ..
                    })) = frame
                    {
                        // The data holds the password: the header only.
                        let header = &rbuf[..consumed.min(binary::HEADER_LEN)];
                        tracing::trace!(id, request = %Shown(header), "SASL request, data not shown");
                    } else {
                        tracing::trace!(id, request = %Shown(&rbuf[..consumed]), "request");
                    }
                    if shared.timing {
                        self.kinds.add(kind_of(frame));
                    }
                    observer.request(frame, shared);
                    flush = matches!(
                        frame,
                        Frame::Request(Request::Binary(binary::BinaryCommand {
                            op: BinaryOp::Noop,
                            ..
                        }))
                    );
                    if let Frame::Error {
                        error: ProtocolError::RetrievalKeyTooLong,
                        ..
                    } = frame
                    {
                        // memcached releases every reply the connection
                        // still owes for this read.
                        wbuf.clear();
                    }
                    let reply_start = wbuf.len();
                    // Only a later request of this batch can find what
                    // this one's replies hold (see `Held`).
                    self.held.set_last(rbuf.len() == consumed);
                    let mut cx = Context {
                        shared,
                        stats,
                        now,
                        sampler: &mut self.sampler,
                        fd: self.fd,
                        watcher: &mut self.watcher,
                        sasl: &mut self.sasl,
                        held: &mut self.held,
                    };
                    let flow = execute_frame(frame, &mut cx, wbuf);
                    if let Framing::Binary(d) = &mut self.framing {
                        // What a SASL request did decides what may follow.
                        d.set_authenticated(self.sasl.is_authenticated());
                    }
                    self.handled += 1;
                    let reply = &wbuf[reply_start..];
                    observer.reply(reply, shared);
                    tracing::trace!(id, reply = %Shown(reply), "reply");
                    (consumed, flow)
                }
            };
            debug_assert!(consumed > 0, "the decoder made no progress");
            rbuf.consume(consumed);
            if flow != Flow::Continue {
                return Next::End(flow);
            }
            if wbuf.len() >= WRITE_HIGH_WATER || (flush && !rbuf.is_empty()) {
                return Next::Write;
            }
            // memcached's -R: let other connections on this worker run.
            if self.handled >= shared.config.reqs_per_event && !rbuf.is_empty() {
                stats.conn_yields += 1;
                return Next::Yield;
            }
        }
    }

    /// The server this session belongs to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// True while a data block is being read or swallowed: the connection
    /// is not idle, and `stats conns` shows it reading data.
    pub fn in_data_block(&self) -> bool {
        match &self.framing {
            Framing::Text(d) => d.in_data_block(),
            Framing::Binary(d) => d.in_data_block(),
            Framing::Negotiating => false,
        }
    }

    /// How many bytes the read buffer must hold before the pending request
    /// can be decoded, when that is known; bounded by `-I`.
    pub fn wanted_len(&self) -> Option<usize> {
        match &self.framing {
            Framing::Text(d) => d.wanted_len(),
            Framing::Binary(d) => d.wanted_len(),
            Framing::Negotiating => None,
        }
    }

    /// How many bytes the read buffer may hold before [`Session::process`]
    /// runs again, when that is bounded: while a data block is charged to
    /// `-m` as it arrives (an item memcached reads in chunks), what has been
    /// charged so far, which is always more than is buffered. The driver
    /// reads no further, so nothing past the charge is held.
    pub fn read_limit(&self) -> Option<usize> {
        match self.wanted_len() {
            Some(wanted) if self.incoming > 0 && self.incoming < wanted => Some(self.incoming),
            _ => None,
        }
    }

    /// Adds the counts kept since the last call to the shared stats.
    pub fn flush_stats(&mut self) {
        self.shared.stats.flush(self.id, &mut self.stats);
    }
}

impl Drop for Session {
    /// A connection that ends in the middle of a data block (closed,
    /// aborted, shut down, or unwound by a panic) gives its charge back.
    fn drop(&mut self) {
        if self.incoming > 0 {
            self.shared.store.release_incoming(self.incoming);
        }
    }
}

/// What a decoded frame counts as in the processing-time histogram.
fn kind_of(frame: &Frame<'_>) -> CommandKind {
    match frame {
        Frame::Request(cmd) => match cmd {
            Request::Get { .. } => CommandKind::Get,
            Request::Gat { .. } => CommandKind::Gat,
            Request::Store { .. } => CommandKind::Set,
            Request::Delete { .. } => CommandKind::Delete,
            Request::Arith { incr: true, .. } => CommandKind::Incr,
            Request::Arith { incr: false, .. } => CommandKind::Decr,
            Request::Touch { .. } => CommandKind::Touch,
            Request::FlushAll { .. } => CommandKind::FlushAll,
            Request::MetaNoop => CommandKind::Meta,
            Request::Binary(b) => match b.op {
                BinaryOp::Get => CommandKind::Get,
                BinaryOp::Gat { .. } => CommandKind::Gat,
                BinaryOp::Touch { .. } => CommandKind::Touch,
                BinaryOp::Store { .. } => CommandKind::Set,
                BinaryOp::Delete => CommandKind::Delete,
                BinaryOp::Arith { incr: true, .. } => CommandKind::Incr,
                BinaryOp::Arith { incr: false, .. } => CommandKind::Decr,
                BinaryOp::Flush { .. } => CommandKind::FlushAll,
                _ => CommandKind::Other,
            },
            _ => CommandKind::Other,
        },
        Frame::Rejected(_) | Frame::Error { .. } | Frame::BinaryRefusal(_) => CommandKind::Error,
        Frame::Close => CommandKind::Other,
    }
}

/// Request or reply bytes for the log: printable ASCII as is, the rest
/// escaped, cut after a few hundred bytes.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        for &b in self.0.iter().take(MAX) {
            match b {
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        if self.0.len() > MAX {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Session {
    /// Handles `input` as one read, then everything it completes, and returns
    /// the replies: how the executors' unit tests talk to the server.
    pub fn exchange(&mut self, input: &[u8]) -> String {
        let mut rbuf = BytesMut::from(input);
        let mut wbuf = BytesMut::new();
        while let Next::Write | Next::Yield = self.process(&mut rbuf, &mut wbuf) {}
        assert!(
            rbuf.is_empty() || self.in_data_block(),
            "left over: {:?}",
            String::from_utf8_lossy(&rbuf)
        );
        String::from_utf8_lossy(&wbuf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::watch::Drained;

    /// Two sessions on one fresh server.
    fn two_sessions() -> (Session, Session) {
        two_sessions_with(&[])
    }

    fn two_sessions_with(args: &[&str]) -> (Session, Session) {
        use clap::Parser;
        let args = std::iter::once("ferrocache").chain(args.iter().copied());
        let config = crate::config::Cli::try_parse_from(args)
            .unwrap()
            .validate()
            .unwrap();
        let store = crate::store::Store::new(
            config.store.clone(),
            crate::store::Clock::manual(1_700_000_000),
        );
        let shared = Arc::new(Shared::new(config, store, 1));
        (Session::new(shared.clone(), 1), Session::new(shared, 2))
    }

    #[test]
    fn watch_hands_the_driver_a_watcher_and_takes_no_more_requests() {
        let (mut watcher, mut client) = two_sessions();
        watcher.set_fd(7);
        client.set_fd(9);
        let mut rbuf = BytesMut::from(&b"watch fetchers\r\nget a\r\n"[..]);
        let mut wbuf = BytesMut::new();
        let next = watcher.process(&mut rbuf, &mut wbuf);
        assert_eq!(next, Next::End(Flow::Watch));
        assert_eq!(&wbuf[..], b"OK\r\n");
        // What followed `watch` is not run.
        assert_eq!(&rbuf[..], b"get a\r\n");
        let mut w = watcher.take_watcher().expect("a watcher");
        let mut out = BytesMut::new();
        assert_eq!(w.drain(&mut out, 1024), Drained::Empty);

        assert_eq!(client.exchange(b"get a\r\n"), "END\r\n");
        assert_eq!(w.drain(&mut out, 1024), Drained::Lines);
        let line = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            line.ends_with(" type=item_get key=a status=not_found clsid=0 cfd=9 size=0\n"),
            "{line}"
        );
    }

    /// Feeds `input` as one read and returns the replies and what is left
    /// buffered.
    fn feed(session: &mut Session, rbuf: &mut BytesMut, input: &[u8]) -> String {
        rbuf.extend_from_slice(input);
        let mut wbuf = BytesMut::new();
        while let Next::Write | Next::Yield = session.process(rbuf, &mut wbuf) {}
        String::from_utf8_lossy(&wbuf).into_owned()
    }

    #[test]
    fn a_block_still_arriving_is_charged_and_one_without_room_is_swallowed() {
        let (mut a, mut b) = two_sessions_with(&["-m", "2"]);
        let mut c = Session::new(a.shared().clone(), 3);
        let (mut ra, mut rb, mut rc) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
        // a's and c's blocks take most of the two megabytes as they arrive.
        let line = b"set k 0 0 1000000\r\n";
        assert_eq!(feed(&mut a, &mut ra, line), "");
        assert_eq!(feed(&mut a, &mut ra, &[b'a'; 999_000]), "");
        assert!(a.in_data_block());
        assert_eq!(feed(&mut c, &mut rc, b"set c 0 0 1000000\r\n"), "");
        assert_eq!(feed(&mut c, &mut rc, &[b'c'; 999_000]), "");
        // b's cannot have room too: refused, and swallowed as it comes
        // (nothing of it stays buffered).
        let bline = b"set b 0 0 1000000\r\n";
        assert_eq!(feed(&mut b, &mut rb, bline), "");
        assert_eq!(feed(&mut b, &mut rb, &[b'b'; 300_000]), "");
        assert!(rb.is_empty());
        let mut rest = vec![b'b'; 700_000];
        rest.extend_from_slice(b"\r\nget b\r\n");
        assert_eq!(
            feed(&mut b, &mut rb, &rest),
            "SERVER_ERROR Out of memory during read\r\nEND\r\n"
        );
        // a's block completes and is stored: its charge becomes the item's.
        let mut rest = vec![b'a'; 1000];
        rest.extend_from_slice(b"\r\n");
        assert_eq!(feed(&mut a, &mut ra, &rest), "STORED\r\n");
        assert!(!a.in_data_block());
        // A block that dies with its connection gives its charge back.
        drop(c);
        assert_eq!(feed(&mut b, &mut rb, bline), "");
        let mut rest = vec![b'c'; 1_000_000];
        rest.extend_from_slice(b"\r\n");
        assert_eq!(feed(&mut b, &mut rb, &rest), "STORED\r\n");
        let stats = b.shared().store.stats();
        assert!(stats.bytes <= stats.limit_maxbytes, "{stats:?}");
    }

    #[test]
    fn a_binary_value_without_room_is_out_of_memory_and_swallowed() {
        let (mut a, mut b) = two_sessions_with(&["-m", "2", "-B", "binary"]);
        let mut rb = BytesMut::new();
        let packet = |op: u8, key: &[u8], vlen: u32| {
            let mut p = vec![REQUEST_MAGIC, op, 0, key.len() as u8, 8, 0, 0, 0];
            p.extend_from_slice(&(8 + key.len() as u32 + vlen).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 9]);
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(key);
            p
        };
        let mut c = Session::new(a.shared().clone(), 3);
        let (mut ra, mut rc) = (BytesMut::new(), BytesMut::new());
        assert_eq!(feed(&mut a, &mut ra, &packet(0x01, b"k", 1_000_000)), "");
        assert_eq!(feed(&mut a, &mut ra, &[0; 999_000]), "");
        assert!(a.in_data_block());
        assert_eq!(feed(&mut c, &mut rc, &packet(0x01, b"c", 1_000_000)), "");
        assert_eq!(feed(&mut c, &mut rc, &[0; 999_000]), "");
        assert_eq!(feed(&mut b, &mut rb, &packet(0x01, b"j", 1_000_000)), "");
        // Refused part-way, as memcached runs out reading it in chunks.
        assert_eq!(feed(&mut b, &mut rb, &[0; 300_000]), "");
        assert!(rb.is_empty());
        let mut wbuf = BytesMut::new();
        rb.extend_from_slice(&[0; 700_000]);
        while let Next::Write | Next::Yield = b.process(&mut rb, &mut wbuf) {}
        assert!(rb.is_empty());
        // Status 0x82 and memcached's text for a value it reads in chunks,
        // with the request's opcode and opaque.
        assert_eq!(&wbuf[..12], &[0x81, 0x01, 0, 0, 0, 0, 0, 0x82, 0, 0, 0, 25]);
        assert_eq!(&wbuf[12..16], &[0, 0, 0, 9]);
        assert_eq!(&wbuf[24..], b"Out of memory during read");
    }

    #[test]
    fn a_slice_is_handled_where_it_is_and_the_rest_left_to_the_driver() {
        let (mut a, mut b) = two_sessions_with(&["-R", "2"]);
        let mut wbuf = BytesMut::new();
        // A whole set and the start of a get: the set runs, the partial
        // get is left for the driver's read buffer, where it completes.
        let mut tally = Tally::default();
        let mut input: &[u8] = b"set k 0 0 1\r\nx\r\nget ";
        assert_eq!(
            a.process_into(&mut input, &mut wbuf, 0, &mut tally),
            Next::Read
        );
        assert_eq!(input, b"get ");
        let mut rbuf = BytesMut::from(input);
        rbuf.extend_from_slice(b"k\r\n");
        assert_eq!(a.process(&mut rbuf, &mut wbuf), Next::Read);
        assert_eq!(&wbuf[..], b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
        // A data block cut short is left whole, line included.
        wbuf.clear();
        let mut input: &[u8] = b"set j 0 0 3\r\nab";
        assert_eq!(
            a.process_into(&mut input, &mut wbuf, 0, &mut tally),
            Next::Read
        );
        assert_eq!((input, &wbuf[..]), (&b"set j 0 0 3\r\nab"[..], &b""[..]));
        assert!(a.in_data_block());
        // -R: what the budget held back stays in the slice.
        let mut input: &[u8] = b"get k\r\nget k\r\nget k\r\n";
        assert_eq!(
            b.process_into(&mut input, &mut wbuf, 0, &mut tally),
            Next::Yield
        );
        assert_eq!(input, b"get k\r\n");
    }

    /// The value of `name` in a `stats` reply.
    fn stat_in(reply: &str, name: &str) -> u64 {
        let prefix = format!("STAT {name} ");
        reply
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {reply}"))
    }

    #[test]
    fn sessions_counting_into_one_tally_are_all_seen_by_stats_once() {
        let (mut a, mut b) = two_sessions();
        let shared = a.shared().clone();
        let mut tally = Tally::default();
        let mut wbuf = BytesMut::new();
        // One turn: a sets and gets, b gets twice, all into the tally.
        let mut input: &[u8] = b"set k 0 0 1\r\nx\r\nget k\r\n";
        assert_eq!(
            a.process_into(&mut input, &mut wbuf, 0, &mut tally),
            Next::Read
        );
        let mut rbuf = BytesMut::from(&b"get k\r\nget nope\r\n"[..]);
        assert_eq!(
            b.process_into(&mut rbuf, &mut wbuf, 0, &mut tally),
            Next::Read
        );
        assert!(a.stats.is_zero() && b.stats.is_zero());
        assert_eq!(shared.stats.snapshot().cmd_get, 0, "not flushed yet");
        assert_eq!(tally.counts.cmd_get, 3);
        // A `stats` in the same turn adds the tally in before reading.
        wbuf.clear();
        let mut input: &[u8] = b"stats\r\n";
        a.process_into(&mut input, &mut wbuf, 0, &mut tally);
        let reply = String::from_utf8_lossy(&wbuf).into_owned();
        assert_eq!(stat_in(&reply, "cmd_get"), 3);
        assert_eq!(stat_in(&reply, "get_hits"), 2);
        assert_eq!(stat_in(&reply, "get_misses"), 1);
        assert_eq!(stat_in(&reply, "cmd_set"), 1);
        // The end of the turn adds nothing twice.
        shared.stats.flush_tally(0, &mut tally);
        let s = shared.stats.snapshot();
        assert_eq!((s.cmd_get, s.get_hits, s.cmd_set), (3, 2, 1));
        // `stats reset` drops from `stats` what the tally held, but the
        // totals /metrics exports keep it.
        let mut input: &[u8] = b"get k\r\nstats reset\r\nget k\r\n";
        b.process_into(&mut input, &mut wbuf, 0, &mut tally);
        shared.stats.flush_tally(0, &mut tally);
        assert_eq!(shared.stats.snapshot().cmd_get, 1);
        assert_eq!(shared.stats.totals().cmd_get, 5);
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(Shown(b"get a\r\n").to_string(), "get a\\r\\n");
        assert_eq!(Shown(&[0u8, b'x']).to_string(), "\\x00x");
        assert!(Shown(&[b'a'; 300]).to_string().ends_with("...(300 bytes)"));
    }
}
