//! The tokio driver of one connection: read what has arrived, hand it to the
//! connection's [`Session`], and send all the replies it composed with one
//! write. Timeouts, shutdown and `stats conns` bookkeeping live here;
//! everything about requests lives in the session. A connection that
//! became a watcher (`watch`) is served here as `session.rs` describes.
//!
//! `-o idle_timeout` closes a connection that waited that long for a
//! request, and one whose client has read nothing of our replies for that
//! long (a write that makes no progress), so a client that pipelines
//! requests and never reads cannot hold its connection and buffers forever.
//!
//! A connection holds its buffers while it has bytes in them: one waiting
//! for its next request has given them back to its thread's pool
//! (`bufpool.rs`) and waits for readiness alone; the buffers are reused, so
//! a request allocates nothing here. Requests borrow the read buffer; the
//! session advances it only after a request has run.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::time::Sleep;

use super::bufpool::{self, BUF_SIZE};
use super::session::{Next, Session, fit_read_buffer};
use super::shutdown_wait::ShutdownWait;
use super::watch::{CONNEVENTS, CloseReason, Drained, Peer, Watcher};
use super::{Flow, Shared};
use crate::stats::{ConnInfo, ConnState, LocalStats};

/// How much of a watcher's queue is moved to its write buffer at a time.
const WATCH_CHUNK: usize = 64 * 1024;
/// How long a woken watcher lets lines gather before it writes, as
/// memcached's logger thread polls no more often than every millisecond.
/// One write per line would fill the socket's buffer with a few hundred
/// lines (each write costs a buffer's worth of overhead), where batched
/// writes let it hold thousands.
const WATCH_BATCH: Duration = Duration::from_millis(1);

/// A buffer that grew past this for one large request is replaced by one of
/// [`BUF_SIZE`] once it is empty (TLS connections, which keep theirs).
const BUF_KEEP_MAX: usize = 64 * 1024;

/// A connected socket, and what `stats conns` shows of it.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin {
    /// Whether the connection gives its buffers back while it waits. TLS
    /// keeps them: its reads may be satisfied from what the TLS layer holds,
    /// which readiness of the socket does not show.
    const LENDS_BUFFERS: bool;
    /// Waits until a read would not block (bytes, the end, or an error).
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_;
    /// Reads what has arrived without waiting, after
    /// [`Socket::wait_readable`]: `WouldBlock` if nothing had after all.
    fn try_read_buf(&self, buf: &mut BytesMut) -> std::io::Result<usize>;
    /// The descriptor, the peer's address and the listening address, in
    /// memcached's `tcp:<ip>:<port>` / `unix:<path>` spelling.
    fn describe(&self) -> (i32, String, String);
    /// The client, as `watch connevents` lines show it.
    fn peer(&self) -> Peer;
}

impl Socket for tokio::net::TcpStream {
    const LENDS_BUFFERS: bool = true;

    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        // The reader's own waker slot, as a read uses: `readable()` queues
        // a waiter under the registration's lock, 800 instructions more a
        // request.
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        drained_read(
            buf,
            |f| self.try_io(Interest::READABLE, f),
            |b| Self::try_read_buf(self, b),
        )
    }

    fn describe(&self) -> (i32, String, String) {
        let show = |a: std::io::Result<std::net::SocketAddr>| {
            a.map_or_else(|_| "tcp:?".to_string(), |a| format!("tcp:{a}"))
        };
        (
            self.as_raw_fd(),
            show(self.peer_addr()),
            show(self.local_addr()),
        )
    }

    fn peer(&self) -> Peer {
        self.peer_addr().map_or(Peer::Unix, Peer::Tcp)
    }
}

impl Socket for tokio::net::UnixStream {
    const LENDS_BUFFERS: bool = true;

    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        // The reader's own waker slot, as a read uses: `readable()` queues
        // a waiter under the registration's lock, 800 instructions more a
        // request.
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        drained_read(
            buf,
            |f| self.try_io(Interest::READABLE, f),
            |b| Self::try_read_buf(self, b),
        )
    }

    fn describe(&self) -> (i32, String, String) {
        let path = self
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix:?".into());
        (self.as_raw_fd(), path.clone(), path)
    }

    fn peer(&self) -> Peer {
        Peer::Unix
    }
}

impl Socket for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    const LENDS_BUFFERS: bool = false;

    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        std::future::ready(Ok(()))
    }

    fn try_read_buf(&self, _: &mut BytesMut) -> std::io::Result<usize> {
        // Never called: a TLS connection keeps its buffers, and its bytes
        // may wait in the TLS layer, which only an async read reaches.
        Err(std::io::ErrorKind::WouldBlock.into())
    }

    fn describe(&self) -> (i32, String, String) {
        self.get_ref().0.describe()
    }

    fn peer(&self) -> Peer {
        self.get_ref().0.peer()
    }
}

/// A non-blocking read into `buf` through `read`, inside `try_io` (the
/// socket's own, which forgets the readiness when its closure says
/// `WouldBlock`). A read that leaves room in the buffer has drained the
/// socket, so the readiness is forgotten then too, as tokio's async read
/// does: otherwise the next wait would return at once, and the connection
/// would take a buffer only to find nothing and hold it while it waits.
fn drained_read(
    buf: &mut BytesMut,
    try_io: impl FnOnce(&mut dyn FnMut() -> std::io::Result<usize>) -> std::io::Result<usize>,
    mut read: impl FnMut(&mut BytesMut) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let mut drained = 0;
    let result = try_io(&mut || {
        let room = buf.capacity() - buf.len();
        let n = read(buf)?;
        if n > 0 && n < room {
            drained = n;
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
        other => other,
    }
}

/// Why a connection ended: the log's words and `watch connevents`' reason.
type End = (&'static str, CloseReason);

/// A write that did not complete.
enum WriteFailed {
    /// The client read nothing for `idle_timeout`.
    Idle,
    Io,
}

impl WriteFailed {
    fn end(self, local: &mut LocalStats) -> End {
        match self {
            WriteFailed::Idle => {
                local.idle_kicks += 1;
                (
                    "idle timeout (client not reading)",
                    CloseReason::IdleTimeout,
                )
            }
            WriteFailed::Io => ("write error", CloseReason::Error),
        }
    }
}

/// Counts the connection in `curr_connections` and lists it in `stats conns`
/// for exactly its lifetime, even if its task ends by a panic.
struct Open<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> Open<'a> {
    fn new(shared: &'a Shared, id: u64) -> Self {
        shared.stats.connection_opened();
        Open { shared, id }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.shared.stats.connection_closed();
        self.shared.conns.unregister(self.id);
    }
}

pub(super) async fn serve<S: Socket>(mut stream: S, shared: Arc<Shared>, id: u64) {
    let _open = Open::new(&shared, id);
    let (fd, addr, listen_addr) = stream.describe();
    let info = shared.conns.register(
        id,
        ConnInfo::new(fd, addr, listen_addr, shared.store.clock().now()),
    );
    tracing::debug!(id, peer = %info.addr, "connection opened");
    let peer = stream.peer();
    if shared.watch.wants(CONNEVENTS) {
        shared.watch.conn_new(peer, fd);
    }
    let mut session = Session::new(shared.clone(), id);
    session.set_fd(fd);
    session.stats.total_connections = 1;
    // TLS keeps its buffers for the connection's life; they come from the
    // pool all the same, so `stats` counts them.
    let (mut rbuf, mut wbuf) = if S::LENDS_BUFFERS {
        (BytesMut::new(), BytesMut::new())
    } else {
        (bufpool::take_local(), bufpool::take_local())
    };
    let idle = shared.config.idle_timeout;
    // One timer for the connection's life, pushed later at each read: a
    // later deadline is one atomic store, where a `timeout` per read put a
    // timer into the runtime's wheel and took it out again every request.
    let mut idle_timer = idle.map(|t| Box::pin(tokio::time::sleep(t)));

    // Every read waits on shutdown too. A fresh `cancelled()` per read
    // would lock the token and the waiter list that every connection
    // shares to register and again to deregister; the connection's own
    // child token, awaited through one future for its whole life,
    // registers once, and its locks are nobody else's. `ShutdownWait`
    // looks at that token only once it has been woken by it.
    let mut shutdown = std::pin::pin!(ShutdownWait::new(shared.shutdown.child_token()));

    let (reason, close) = loop {
        // A data block being read gets its whole size reserved at once (the
        // decoder bounds it by -I, the session charges it to -m), or while
        // it is charged as it arrives, what is charged, and no more is read;
        // otherwise grow by doubling.
        let limit = session.read_limit();
        let wanted = limit.or(session.wanted_len());
        let in_data_block = session.in_data_block();
        let read = async {
            // A waiting connection has no buffer: one is lent once bytes
            // are here.
            let lent = rbuf.capacity() == 0;
            if lent {
                stream.wait_readable().await?;
                rbuf = bufpool::take_local();
            }
            let want = wanted.unwrap_or(0).saturating_sub(rbuf.len());
            if want > 0 {
                rbuf.reserve(want);
            } else if rbuf.capacity() - rbuf.len() < BUF_SIZE / 4 {
                rbuf.reserve(rbuf.len().max(BUF_SIZE));
            }
            if lent && limit.is_none() {
                // Read at once, on the readiness just seen: an async read
                // would poll for it a second time.
                match stream.try_read_buf(&mut rbuf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    read => return read,
                }
            }
            match limit {
                // Never 0, which would read as end of stream: the charge is
                // always past what is buffered.
                Some(l) => {
                    let room = l.saturating_sub(rbuf.len()).max(1);
                    stream.read_buf(&mut (&mut rbuf).limit(room)).await
                }
                None => stream.read_buf(&mut rbuf).await,
            }
        };
        let read = async {
            match (idle, idle_timer.as_mut()) {
                // A connection in the middle of a data block is never idle-kicked.
                (Some(t), Some(timer)) if !in_data_block => {
                    timer.as_mut().reset(tokio::time::Instant::now() + t);
                    tokio::select! {
                        biased;
                        r = read => Ok(r),
                        () = timer.as_mut() => Err(()),
                    }
                }
                _ => Ok(read.await),
            }
        };
        let n = tokio::select! {
            biased;
            () = &mut shutdown => break ("shutdown", CloseReason::Shutdown),
            r = read => r,
        };
        match n {
            Err(()) => {
                session.stats.idle_kicks += 1;
                break ("idle timeout", CloseReason::IdleTimeout);
            }
            Ok(Ok(0)) => break ("closed by peer", CloseReason::Normal),
            Ok(Ok(n)) => session.stats.bytes_read += n as u64,
            Ok(Err(e)) => {
                tracing::debug!(id, error = %e, "read failed");
                break ("read error", CloseReason::Error);
            }
        }

        let mut now = shared.store.clock().now();
        info.set(ConnState::ParseCmd, now);
        bufpool::lend_local(&mut wbuf);
        let flow = loop {
            match session.process_at(&mut rbuf, &mut wbuf, now) {
                Next::Read => break Ok(Flow::Continue),
                Next::Write => {
                    let sent = write(
                        &mut stream,
                        &mut wbuf,
                        &mut session.stats,
                        idle,
                        &mut idle_timer,
                    );
                    if let Err(e) = sent.await {
                        break Err(e);
                    }
                }
                Next::Yield => {
                    tokio::task::yield_now().await;
                    now = shared.store.clock().now();
                }
                Next::End(flow) => break Ok(flow),
            }
        };
        let flow = match flow {
            Ok(flow) => flow,
            Err(e) => break e.end(&mut session.stats),
        };
        let sent = write(
            &mut stream,
            &mut wbuf,
            &mut session.stats,
            idle,
            &mut idle_timer,
        );
        if let Err(e) = sent.await {
            break e.end(&mut session.stats);
        }
        session.flush_stats();
        let waiting = if session.in_data_block() {
            ConnState::Nread
        } else {
            ConnState::Waiting
        };
        info.set(waiting, now);
        let wanted = session.read_limit().or(session.wanted_len());
        if S::LENDS_BUFFERS {
            // Both back to the pool unless a request is still arriving.
            if rbuf.is_empty() && wanted.is_none() {
                bufpool::give_local(&mut rbuf);
            }
            bufpool::give_local(&mut wbuf);
        } else {
            if rbuf.is_empty() && rbuf.capacity() > BUF_KEEP_MAX {
                rbuf = BytesMut::with_capacity(BUF_SIZE);
            }
            if wbuf.capacity() > BUF_KEEP_MAX {
                wbuf = BytesMut::with_capacity(BUF_SIZE);
            }
        }
        fit_read_buffer(&mut rbuf, wanted, BUF_SIZE, BUF_KEEP_MAX);
        match flow {
            Flow::Continue => {}
            Flow::Close => break ("closed by request", CloseReason::Normal),
            Flow::Abort => break ("input memcached refuses", CloseReason::Error),
            Flow::Shutdown { graceful } => {
                tracing::info!(graceful, "shutdown requested by a client");
                shared.shutdown.cancel();
                break ("shutdown command", CloseReason::Normal);
            }
            Flow::Watch => {
                info.set(ConnState::Watch, now);
                let watcher = session.take_watcher().expect("watch sets the watcher");
                let mut w = Watching {
                    stream: &mut stream,
                    rbuf: &mut rbuf,
                    wbuf: &mut wbuf,
                    local: &mut session.stats,
                    idle,
                    idle_timer: &mut idle_timer,
                };
                break w.serve(watcher, shutdown.as_mut()).await;
            }
        }
    };
    let _ = stream.shutdown().await;
    bufpool::retire_local(&mut rbuf);
    bufpool::retire_local(&mut wbuf);
    session.flush_stats();
    if shared.watch.wants(CONNEVENTS) {
        shared.watch.conn_close(peer, close, fd);
    }
    tracing::debug!(id, reason, "connection closed");
}

/// A connection another driver served until it became a watcher, from
/// then on served here: the io_uring driver hands its watchers over, since
/// a watcher waits on its queue, which a task awaits. `OK` has been sent;
/// the connection is counted open and listed in `stats conns` (ended here),
/// and `release` gives back the driver's `-c` slot.
pub(super) async fn serve_watcher<S: Socket>(
    mut stream: S,
    shared: Arc<Shared>,
    id: u64,
    watcher: Watcher,
    mut local: LocalStats,
    release: impl FnOnce(),
) {
    let _open = Open {
        shared: &shared,
        id,
    };
    let (fd, ..) = stream.describe();
    let peer = stream.peer();
    let idle = shared.config.idle_timeout;
    let mut idle_timer = idle.map(|t| Box::pin(tokio::time::sleep(t)));
    let mut shutdown = std::pin::pin!(ShutdownWait::new(shared.shutdown.child_token()));
    let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
    let mut w = Watching {
        stream: &mut stream,
        rbuf: &mut rbuf,
        wbuf: &mut wbuf,
        local: &mut local,
        idle,
        idle_timer: &mut idle_timer,
    };
    let (reason, close) = w.serve(watcher, shutdown.as_mut()).await;
    let _ = stream.shutdown().await;
    bufpool::retire_local(&mut rbuf);
    bufpool::retire_local(&mut wbuf);
    shared.stats.flush(id, &mut local);
    release();
    if shared.watch.wants(CONNEVENTS) {
        shared.watch.conn_close(peer, close, fd);
    }
    tracing::debug!(id, reason, "connection closed");
}

/// A connection that became a watcher, served as `session.rs` describes.
struct Watching<'a, S> {
    stream: &'a mut S,
    rbuf: &'a mut BytesMut,
    wbuf: &'a mut BytesMut,
    local: &'a mut LocalStats,
    idle: Option<Duration>,
    idle_timer: &'a mut Option<Pin<Box<Sleep>>>,
}

impl<S: Socket> Watching<'_, S> {
    async fn serve(
        &mut self,
        mut watcher: Watcher,
        mut shutdown: Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> End {
        // Input is read only to see the client go, and dropped. Both
        // buffers are the pool's, held until the connection ends.
        self.rbuf.clear();
        bufpool::lend_local(self.rbuf);
        bufpool::lend_local(self.wbuf);
        loop {
            match watcher.drain(self.wbuf, WATCH_CHUNK) {
                Drained::Lines => {
                    let sent = write(
                        self.stream,
                        self.wbuf,
                        self.local,
                        self.idle,
                        self.idle_timer,
                    );
                    if let Err(e) = sent.await {
                        return e.end(self.local);
                    }
                    continue;
                }
                Drained::InFlight => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Drained::Empty => {}
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return ("shutdown", CloseReason::Shutdown),
                () = watcher.ready() => tokio::time::sleep(WATCH_BATCH).await,
                r = self.stream.read_buf(self.rbuf) => match r {
                    Ok(0) => return ("closed by peer", CloseReason::Normal),
                    Ok(n) => {
                        self.local.bytes_read += n as u64;
                        self.rbuf.clear();
                    }
                    Err(_) => return ("read error", CloseReason::Error),
                },
            }
        }
    }
}

/// Sends all of `wbuf`. With an idle timeout, a client that takes none of
/// it for that long fails the write: the timer is pushed on at each
/// write that makes progress, as it is at each read.
async fn write<S>(
    stream: &mut S,
    wbuf: &mut BytesMut,
    local: &mut LocalStats,
    idle: Option<Duration>,
    idle_timer: &mut Option<Pin<Box<Sleep>>>,
) -> Result<(), WriteFailed>
where
    S: AsyncWrite + Unpin,
{
    while !wbuf.is_empty() {
        let n = match (idle, idle_timer.as_mut()) {
            (Some(t), Some(timer)) => {
                timer.as_mut().reset(tokio::time::Instant::now() + t);
                tokio::select! {
                    biased;
                    r = stream.write(wbuf) => r,
                    () = timer.as_mut() => return Err(WriteFailed::Idle),
                }
            }
            _ => stream.write(wbuf).await,
        };
        match n {
            Ok(0) | Err(_) => return Err(WriteFailed::Io),
            Ok(n) => {
                local.bytes_written += n as u64;
                wbuf.advance(n);
            }
        }
    }
    wbuf.clear();
    Ok(())
}
