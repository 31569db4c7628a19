//! One connection: read what has arrived, decode and execute every complete
//! request in it, and send all their replies with one write.
//!
//! Both buffers live as long as the connection and are reused, so a request
//! allocates nothing here. Commands borrow the read buffer; it is advanced
//! only after a command has run.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Shared;
use super::execute::{Context, Flow, execute_frame};
use crate::protocol::codec::{Decode, Decoder};
use crate::stats::LocalStats;

/// Starting size of each buffer, and the size a buffer that grew for one large
/// request is brought back to once it is empty, so idle connections stay small.
const BUF_SIZE: usize = 16 * 1024;
const BUF_KEEP_MAX: usize = 64 * 1024;

/// Replies are sent early once this much is buffered, so a client pipelining
/// thousands of gets does not make us hold all their replies at once.
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Counts the connection in `curr_connections` for exactly its lifetime,
/// even if its task ends by a panic.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.stats.connection_opened();
        Open(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.stats.connection_closed();
    }
}

pub(super) async fn serve<S>(mut stream: S, shared: Arc<Shared>, id: u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _open = Open::new(&shared);
    let mut local = LocalStats {
        total_connections: 1,
        ..Default::default()
    };
    tracing::debug!(id, "connection opened");
    let mut rbuf = BytesMut::with_capacity(BUF_SIZE);
    let mut wbuf = BytesMut::with_capacity(BUF_SIZE);
    let mut decoder = Decoder::new(shared.config.limits);
    let idle = shared.config.idle_timeout;
    let reqs_per_event = shared.config.reqs_per_event;

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
            match idle {
                // A connection in the middle of a data block is never idle-kicked.
                Some(t) if !decoder.in_data_block() => {
                    tokio::time::timeout(t, stream.read_buf(&mut rbuf)).await
                }
                _ => Ok(stream.read_buf(&mut rbuf).await),
            }
        };
        let n = tokio::select! {
            _ = shared.shutdown.cancelled() => break "shutdown",
            r = read => r,
        };
        match n {
            Err(_elapsed) => {
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
        loop {
            let consumed = match decoder.decode(&rbuf) {
                Decode::NeedMore => break,
                Decode::Frame { consumed, frame } => {
                    if let Some(frame) = frame {
                        tracing::trace!(id, ?frame, "request");
                        let mut cx = Context {
                            shared: &shared,
                            stats: &mut local,
                            now,
                        };
                        flow = execute_frame(frame, &mut cx, &mut wbuf);
                        handled += 1;
                    }
                    consumed
                }
            };
            rbuf.advance(consumed);
            if flow != Flow::Continue {
                break;
            }
            if wbuf.len() >= WRITE_HIGH_WATER
                && write(&mut stream, &mut wbuf, &mut local).await.is_err()
            {
                break;
            }
            // memcached's -R: let other connections on this worker run.
            if handled >= reqs_per_event && !rbuf.is_empty() {
                handled = 0;
                local.conn_yields += 1;
                tokio::task::yield_now().await;
            }
        }

        if write(&mut stream, &mut wbuf, &mut local).await.is_err() {
            break "write error";
        }
        shared.stats.flush(id, &mut local);
        if rbuf.is_empty() && rbuf.capacity() > BUF_KEEP_MAX {
            rbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        if wbuf.capacity() > BUF_KEEP_MAX {
            wbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        match flow {
            Flow::Continue => {}
            Flow::Close => break "closed by request",
            Flow::Shutdown { graceful } => {
                tracing::info!(graceful, "shutdown requested by a client");
                shared.shutdown.cancel();
                break "shutdown command";
            }
        }
    };
    let _ = stream.shutdown().await;
    shared.stats.flush(id, &mut local);
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
