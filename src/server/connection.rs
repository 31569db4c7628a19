//! One connection: read what has arrived, decode and execute every complete
//! request in it, and send all their replies with one write.
//!
//! Both buffers live as long as the connection and are reused, so a request
//! allocates nothing here. Commands borrow the read buffer; it is advanced
//! only after a command has run.

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Shared;
use super::execute::{Context, Flow, execute_frame};
use crate::auth;
use crate::protocol::codec::{Decode, Decoder};
use crate::protocol::{Command, Frame, Keys};
use crate::stats::{BatchKinds, CommandKind, ConnInfo, ConnState, Latency, LocalStats};

/// Starting size of each buffer, and the size a buffer that grew for one large
/// request is brought back to once it is empty, so idle connections stay small.
const BUF_SIZE: usize = 16 * 1024;
const BUF_KEEP_MAX: usize = 64 * 1024;

/// Replies are sent early once this much is buffered, so a client pipelining
/// thousands of gets does not make us hold all their replies at once.
const WRITE_HIGH_WATER: usize = 256 * 1024;

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
    // Processing time, only when /metrics is served: the clock is read when
    // a batch starts and ends (and around the rare mid-batch write or
    // yield), and the batch's time is shared among its commands. Counted
    // locally, flushed with the other counts.
    let timing = shared.timing;
    let mut latency = Latency::default();
    let mut kinds = BatchKinds::default();
    let mut local = LocalStats {
        total_connections: 1,
        ..Default::default()
    };
    tracing::debug!(id, peer = %info.addr, "connection opened");
    let mut rbuf = BytesMut::with_capacity(BUF_SIZE);
    let mut wbuf = BytesMut::with_capacity(BUF_SIZE);
    let mut decoder = Decoder::new(shared.config.limits);
    let idle = shared.config.idle_timeout;
    // One timer for the connection's life, pushed later at each read: a
    // later deadline is one atomic store, where a `timeout` per read put a
    // timer into the runtime's wheel and took it out again every request.
    let mut idle_timer = idle.map(|t| Box::pin(tokio::time::sleep(t)));
    let reqs_per_event = shared.config.reqs_per_event;
    // With -Y, until the client authenticates.
    let mut unauthenticated = shared
        .config
        .auth
        .clone()
        .map(|file| (file, auth::Pending::default()));

    // Every read waits on shutdown too. A fresh `cancelled()` per read
    // would lock the token and the waiter list that every connection
    // shares to register and again to deregister; the connection's own
    // child token, awaited through one future for its whole life,
    // registers once, and its locks are nobody else's.
    let mut shutdown = std::pin::pin!(shared.shutdown.child_token().cancelled_owned());

    let reason = loop {
        // A data block being read gets its whole size reserved at once (the
        // decoder bounds it by -I); otherwise grow by doubling.
        let want = decoder.wanted_len().unwrap_or(0).saturating_sub(rbuf.len());
        if want > 0 {
            rbuf.reserve(want);
        } else if rbuf.capacity() - rbuf.len() < BUF_SIZE / 4 {
            rbuf.reserve(rbuf.len().max(BUF_SIZE));
        }
        let read = async {
            match (idle, idle_timer.as_mut()) {
                // A connection in the middle of a data block is never idle-kicked.
                (Some(t), Some(timer)) if !decoder.in_data_block() => {
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
                local.idle_kicks += 1;
                break "idle timeout";
            }
            Ok(Ok(0)) => break "closed by peer",
            Ok(Ok(n)) => local.bytes_read += n as u64,
            Ok(Err(e)) => {
                tracing::debug!(id, error = %e, "read failed");
                break "read error";
            }
        }

        let mut flow = Flow::Continue;
        let mut handled = 0usize;
        let now = shared.store.clock().now();
        info.set(ConnState::ParseCmd, now);
        let mut busy_since = timing.then(Instant::now);
        let mut busy_ns = 0u64;
        loop {
            if let Some((file, pending)) = unauthenticated.as_mut() {
                match pending.step(&rbuf, file, &mut local) {
                    auth::Step::NeedMore => break,
                    auth::Step::Close => {
                        flow = Flow::Abort;
                        break;
                    }
                    auth::Step::Done {
                        consumed,
                        reply,
                        authenticated,
                    } => {
                        rbuf.advance(consumed);
                        if let Some(reply) = reply {
                            // memcached reuses one reply object until the
                            // client is authenticated, so of the replies to
                            // one read only the last is sent.
                            wbuf.clear();
                            wbuf.extend_from_slice(reply);
                        }
                        if authenticated {
                            unauthenticated = None;
                        }
                        continue;
                    }
                }
            }
            let consumed = match decoder.decode(&rbuf) {
                Decode::NeedMore => break,
                Decode::Frame { consumed, frame } => {
                    if let Some(frame) = frame {
                        tracing::trace!(id, request = %Shown(&rbuf[..consumed]), "request");
                        if timing {
                            kinds.add(CommandKind::of(&frame));
                        }
                        // One relaxed load of a flag that is rarely written;
                        // read per request so `stats detail on` applies from
                        // the next request, as in memcached.
                        let keys = if shared.detail.enabled() {
                            DetailKeys::of(&frame)
                        } else {
                            None
                        };
                        let reply_start = wbuf.len();
                        let mut cx = Context {
                            shared: &shared,
                            stats: &mut local,
                            now,
                        };
                        flow = execute_frame(frame, &mut cx, &mut wbuf);
                        handled += 1;
                        if let Some(keys) = keys {
                            keys.record(&shared, &wbuf[reply_start..]);
                        }
                        tracing::trace!(id, reply = %Shown(&wbuf[reply_start..]), "reply");
                    }
                    consumed
                }
            };
            rbuf.advance(consumed);
            if flow != Flow::Continue {
                break;
            }
            if wbuf.len() >= WRITE_HIGH_WATER {
                // Time spent sending or waiting is not processing time.
                busy_ns += elapsed_ns(busy_since);
                let failed = write(&mut stream, &mut wbuf, &mut local).await.is_err();
                busy_since = timing.then(Instant::now);
                if failed {
                    break;
                }
            }
            // memcached's -R: let other connections on this worker run.
            if handled >= reqs_per_event && !rbuf.is_empty() {
                handled = 0;
                local.conn_yields += 1;
                busy_ns += elapsed_ns(busy_since);
                tokio::task::yield_now().await;
                busy_since = timing.then(Instant::now);
            }
        }
        if timing {
            busy_ns += elapsed_ns(busy_since);
            latency.record_batch(&mut kinds, busy_ns);
        }

        if flow == Flow::Abort {
            wbuf.clear();
        }
        if write(&mut stream, &mut wbuf, &mut local).await.is_err() {
            break "write error";
        }
        shared.stats.flush(id, &mut local);
        shared.stats.flush_latency(id, &mut latency);
        let waiting = if decoder.in_data_block() {
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
    shared.stats.flush(id, &mut local);
    shared.stats.flush_latency(id, &mut latency);
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

fn elapsed_ns(since: Option<Instant>) -> u64 {
    since.map_or(0, |t| t.elapsed().as_nanos() as u64)
}

/// The keys `stats detail` counts for one request, taken before it runs.
enum DetailKeys<'a> {
    Get(Keys<'a>),
    Set(&'a [u8]),
    Delete(&'a [u8]),
}

impl<'a> DetailKeys<'a> {
    fn of(frame: &Frame<'a>) -> Option<Self> {
        match frame {
            Frame::Command(Command::Get { keys, .. } | Command::Gat { keys, .. }) => {
                Some(DetailKeys::Get(*keys))
            }
            Frame::Command(Command::Store { key, .. }) => Some(DetailKeys::Set(key)),
            Frame::Command(Command::Delete { key, .. }) => Some(DetailKeys::Delete(key)),
            _ => None,
        }
    }

    /// Counts the request. Which keys of a get hit is read back from its
    /// reply: hits come back as `VALUE <key> ...` in request order.
    fn record(self, shared: &Shared, reply: &[u8]) {
        match self {
            DetailKeys::Get(keys) => {
                let mut hits = ValueKeys(reply).peekable();
                for key in keys.iter() {
                    let hit = hits.peek() == Some(&key);
                    if hit {
                        hits.next();
                    }
                    shared.detail.record_get(key, hit);
                }
            }
            DetailKeys::Set(key) => shared.detail.record_set(key),
            DetailKeys::Delete(key) => shared.detail.record_delete(key),
        }
    }
}

/// The keys of the `VALUE <key> <flags> <bytes>[ <cas>]` blocks of a reply.
struct ValueKeys<'a>(&'a [u8]);

impl<'a> Iterator for ValueKeys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0.strip_prefix(b"VALUE ")?;
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let mut fields = rest[..eol].split(|&b| b == b' ');
        let key = fields.next()?;
        let bytes: usize = std::str::from_utf8(fields.nth(1)?).ok()?.parse().ok()?;
        self.0 = rest.get(eol + 2 + bytes + 2..)?;
        Some(key)
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
mod tests {
    use super::*;

    #[test]
    fn value_keys_walks_a_get_reply() {
        let reply = b"VALUE a 0 3\r\nx\r\n\r\nVALUE bb 5 0 77\r\n\r\nEND\r\n";
        let keys: Vec<&[u8]> = ValueKeys(reply).collect();
        assert_eq!(keys, vec![&b"a"[..], &b"bb"[..]]);
        assert_eq!(ValueKeys(b"END\r\n").count(), 0);
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(Shown(b"get a\r\n").to_string(), "get a\\r\\n");
        assert_eq!(Shown(&[0u8, b'x']).to_string(), "\\x00x");
        assert!(Shown(&[b'a'; 300]).to_string().ends_with("...(300 bytes)"));
    }
}
