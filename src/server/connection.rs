//! The tokio driver of one connection: read what has arrived, hand it to the
//! connection's [`Session`], and send all the replies it composed with one
//! write. Timeouts, shutdown and `stats conns` bookkeeping live here;
//! everything about requests lives in the session.
//!
//! Both buffers live as long as the connection and are reused, so a request
//! allocates nothing here. Requests borrow the read buffer; the session
//! advances it only after a request has run.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::{Next, Session};
use super::{Flow, Shared};
use crate::stats::{ConnInfo, ConnState, LocalStats};

/// Starting size of each buffer, and the size a buffer that grew for one large
/// request is brought back to once it is empty, so idle connections stay small.
const BUF_SIZE: usize = 16 * 1024;
const BUF_KEEP_MAX: usize = 64 * 1024;

/// A connected socket, and what `stats conns` shows of it.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin {
    /// The descriptor, the peer's address and the listening address, in
    /// memcached's `tcp:<ip>:<port>` / `unix:<path>` spelling.
    fn describe(&self) -> (i32, String, String);
}

impl Socket for tokio::net::TcpStream {
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
}

impl Socket for tokio::net::UnixStream {
    fn describe(&self) -> (i32, String, String) {
        let path = self
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix:?".into());
        (self.as_raw_fd(), path.clone(), path)
    }
}

impl Socket for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn describe(&self) -> (i32, String, String) {
        self.get_ref().0.describe()
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
    let mut session = Session::new(shared.clone(), id);
    session.stats.total_connections = 1;
    let mut rbuf = BytesMut::with_capacity(BUF_SIZE);
    let mut wbuf = BytesMut::with_capacity(BUF_SIZE);
    let idle = shared.config.idle_timeout;
    // One timer for the connection's life, pushed later at each read: a
    // later deadline is one atomic store, where a `timeout` per read put a
    // timer into the runtime's wheel and took it out again every request.
    let mut idle_timer = idle.map(|t| Box::pin(tokio::time::sleep(t)));

    // Every read waits on shutdown too. A fresh `cancelled()` per read
    // would lock the token and the waiter list that every connection
    // shares to register and again to deregister; the connection's own
    // child token, awaited through one future for its whole life,
    // registers once, and its locks are nobody else's.
    let mut shutdown = std::pin::pin!(shared.shutdown.child_token().cancelled_owned());

    let reason = loop {
        // A data block being read gets its whole size reserved at once (the
        // decoder bounds it by -I); otherwise grow by doubling.
        let want = session.wanted_len().unwrap_or(0).saturating_sub(rbuf.len());
        if want > 0 {
            rbuf.reserve(want);
        } else if rbuf.capacity() - rbuf.len() < BUF_SIZE / 4 {
            rbuf.reserve(rbuf.len().max(BUF_SIZE));
        }
        let read = async {
            match (idle, idle_timer.as_mut()) {
                // A connection in the middle of a data block is never idle-kicked.
                (Some(t), Some(timer)) if !session.in_data_block() => {
                    timer.as_mut().reset(tokio::time::Instant::now() + t);
                    tokio::select! {
                        biased;
                        r = stream.read_buf(&mut rbuf) => Ok(r),
                        () = timer.as_mut() => Err(()),
                    }
                }
                _ => Ok(stream.read_buf(&mut rbuf).await),
            }
        };
        let n = tokio::select! {
            biased;
            () = &mut shutdown => break "shutdown",
            r = read => r,
        };
        match n {
            Err(()) => {
                session.stats.idle_kicks += 1;
                break "idle timeout";
            }
            Ok(Ok(0)) => break "closed by peer",
            Ok(Ok(n)) => session.stats.bytes_read += n as u64,
            Ok(Err(e)) => {
                tracing::debug!(id, error = %e, "read failed");
                break "read error";
            }
        }

        let now = shared.store.clock().now();
        info.set(ConnState::ParseCmd, now);
        let flow = loop {
            match session.process(&mut rbuf, &mut wbuf) {
                Next::Read => break Flow::Continue,
                Next::Write => {
                    if write(&mut stream, &mut wbuf, &mut session.stats)
                        .await
                        .is_err()
                    {
                        break Flow::Continue;
                    }
                }
                Next::Yield => tokio::task::yield_now().await,
                Next::End(flow) => break flow,
            }
        };
        if write(&mut stream, &mut wbuf, &mut session.stats)
            .await
            .is_err()
        {
            break "write error";
        }
        session.flush_stats();
        let waiting = if session.in_data_block() {
            ConnState::Nread
        } else {
            ConnState::Waiting
        };
        info.set(waiting, now);
        if rbuf.is_empty() && rbuf.capacity() > BUF_KEEP_MAX {
            rbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        if wbuf.capacity() > BUF_KEEP_MAX {
            wbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        match flow {
            Flow::Continue => {}
            Flow::Close => break "closed by request",
            Flow::Abort => break "input memcached refuses",
            Flow::Shutdown { graceful } => {
                tracing::info!(graceful, "shutdown requested by a client");
                shared.shutdown.cancel();
                break "shutdown command";
            }
        }
    };
    let _ = stream.shutdown().await;
    session.flush_stats();
    tracing::debug!(id, reason, "connection closed");
}

async fn write<S>(
    stream: &mut S,
    wbuf: &mut BytesMut,
    local: &mut LocalStats,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if wbuf.is_empty() {
        return Ok(());
    }
    stream.write_all(wbuf).await?;
    local.bytes_written += wbuf.len() as u64;
    wbuf.clear();
    Ok(())
}
