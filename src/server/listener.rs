//! Binding the listening sockets and accepting connections under the `-c` cap.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::connection;
use super::fd_limit::{self, AcceptPause};
use crate::config::{Config, Listen};
use crate::protocol::ProtocolError;

/// How long a client gets to finish the TLS handshake; until then the
/// connection holds one of the `-c` slots.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// What it listens on, for the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| format!("tcp:{a}")),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

/// Binds every address the configuration names. Must run inside a tokio runtime.
///
/// # Errors
/// The first address that cannot be bound, with the reason.
pub fn bind(config: &Config) -> io::Result<Vec<Listener>> {
    match &config.listen {
        Listen::Tcp(addrs) => addrs
            .iter()
            .map(|addr| {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(*addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("failed to listen on {addr}: {e}"))
                })?;
                Ok(Listener::Tcp(socket.listen(config.backlog)?))
            })
            .collect(),
        Listen::Unix { path, mask } => {
            // A stale socket file from an earlier run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
                let _ = std::fs::remove_file(path);
            }
            let l = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mask))?;
            Ok(vec![Listener::Unix(l)])
        }
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A new connection's id, unique across listeners and drivers.
pub(super) fn next_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

pub(super) async fn accept_loop(listener: Listener, shared: Arc<Shared>, tracker: TaskTracker) {
    let permits = Arc::new(Semaphore::new(shared.config.conn_limit));
    let mut pause = AcceptPause::default();
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = accept(&listener) => r,
        };
        // Both may be ready at once, and select! picks at random.
        if shared.shutdown.is_cancelled() {
            return;
        }
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                if e.raw_os_error().is_some_and(fd_limit::is_exhaustion) {
                    pause.begin(&shared.stats, &e);
                } else {
                    // A client that gave up before it was accepted, and the like.
                    tracing::debug!(error = %e, "accept failed");
                }
                // Either way not at once: an error that stays would spin.
                loop {
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(fd_limit::ACCEPT_BACKOFF) => {}
                    }
                    if pause.may_resume(&shared.stats) {
                        break;
                    }
                }
                continue;
            }
        };
        let id = next_id();
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    match stream {
                        Stream::Tcp(s) => match shared.config.tls.as_ref() {
                            Some(tls) => {
                                let handshake = tokio::time::timeout(
                                    HANDSHAKE_TIMEOUT,
                                    tls.acceptor().accept(s),
                                );
                                let handshake = tokio::select! {
                                    _ = shared.shutdown.cancelled() => return,
                                    h = handshake => h,
                                };
                                match handshake {
                                    // Boxed: inline, the TLS stream and its
                                    // connection's state made every task, TLS
                                    // or not, 5 KiB where 1.5 serves the rest.
                                    Ok(Ok(s)) => Box::pin(connection::serve(s, shared, id)).await,
                                    failed => {
                                        let error = match failed {
                                            Ok(Err(e)) => e.to_string(),
                                            _ => "timed out".into(),
                                        };
                                        tracing::debug!(id, error, "TLS handshake failed");
                                        let mut local = crate::stats::LocalStats {
                                            ssl_handshake_errors: 1,
                                            total_connections: 1,
                                            ..Default::default()
                                        };
                                        shared.stats.flush(id, &mut local);
                                    }
                                }
                            }
                            None => connection::serve(s, shared, id).await,
                        },
                        Stream::Unix(s) => connection::serve(s, shared, id).await,
                    }
                });
            }
            Err(_) => {
                // memcached answers the connection over the limit at once and closes it.
                let mut local = crate::stats::LocalStats {
                    rejected_connections: 1,
                    total_connections: 1,
                    ..Default::default()
                };
                shared.stats.flush(id, &mut local);
                tracing::debug!(id, "connection refused: over the -c limit");
                if shared.config.tls.is_some() && matches!(stream, Stream::Tcp(_)) {
                    // A TLS client cannot read a plain-text reply: just close.
                    continue;
                }
                tracker.spawn(async move {
                    let msg = format!("{}\r\n", ProtocolError::TooManyConnections.wire());
                    let write = async {
                        match stream {
                            Stream::Tcp(mut s) => s.write_all(msg.as_bytes()).await,
                            Stream::Unix(mut s) => s.write_all(msg.as_bytes()).await,
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                });
            }
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            // Replies are batched per read already; Nagle would only add delay.
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Listener::Unix(l) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}
