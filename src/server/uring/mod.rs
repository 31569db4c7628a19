//! The io_uring driver: a thread per worker (`-t`), each with its own ring,
//! accepting on every listening socket, dealing the connections it accepts
//! out to the workers in turn, and serving those it is given to the end.
//! It drives each connection's [`Session`] as the tokio driver
//! (`connection.rs`) does; what differs is the cost: a loop turn submits
//! every receive re-armed and every reply of the turn, and waits for the
//! next completions, in one system call, where epoll pays a `read` and a
//! `write` per request. See `worker.rs`.
//!
//! Knows nothing about requests. TLS connections stay on the tokio driver,
//! and a connection that becomes a `watch` stream (output without input,
//! woken by its queue) is handed to a tokio task once its `OK` is sent.
//!
//! [`Session`]: crate::server::session::Session

mod bufring;
mod worker;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use io_uring::{Probe, opcode};

use super::{Listener, Shared};

/// Whether this kernel, and whatever filters the process's system calls,
/// let the workers set up their rings.
///
/// # Errors
/// What refused: `io_uring_setup` (often forbidden by container seccomp
/// profiles), or a kernel without multishot receive or buffer rings.
pub fn probe() -> io::Result<()> {
    let ring = worker::new_ring(8)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::Send::CODE, "send"),
        (opcode::AsyncCancel::CODE, "async cancel"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring without {name}"),
            ));
        }
    }
    bufring::BufRing::new(&ring, 2, 2, 64, 0).map(drop)
}

/// Serves `listeners` on `shared.config.threads` io_uring workers until
/// shutdown has drained them.
///
/// # Errors
/// A worker could not set up its ring; none is left running then.
pub async fn serve(listeners: &[Listener], shared: Arc<Shared>) -> io::Result<()> {
    let listening: Vec<worker::Listening> = listeners
        .iter()
        .map(|l| match l {
            Listener::Tcp(t) => worker::Listening {
                fd: t.as_raw_fd(),
                addr: l.describe(),
                tcp: true,
            },
            Listener::Unix(u) => worker::Listening {
                fd: u.as_raw_fd(),
                addr: l.describe(),
                tcp: false,
            },
        })
        .collect();
    let open = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let n = shared.config.threads.max(1);
    let mut peers = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        peers.push(worker::Peer {
            inbox: tx,
            wake: Arc::new(eventfd()?),
        });
        inboxes.push(rx);
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
    let mut threads = Vec::new();
    let mut go = Vec::new();
    let mut failed = None;
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let setup = worker::Setup {
            shared: shared.clone(),
            listening: listening.clone(),
            open: open.clone(),
            wake: peers[index].wake.clone(),
            inbox,
            peers: peers.clone(),
            index,
            stop: stop.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let ready = ready_tx.clone();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        go.push(go_tx);
        let thread = std::thread::Builder::new()
            .name(format!("ferrocache-uring-{index}"))
            .spawn(move || match worker::Worker::new(setup) {
                Ok(w) => {
                    let _ = ready.send(Ok(()));
                    drop(ready);
                    if go_rx.recv() == Ok(true) {
                        w.run();
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    // Each worker reports once, as soon as its ring is set up (or not):
    // a short wait, at start only. None accepts before all have their
    // rings: clients arriving at once could take every descriptor from
    // the workers still setting up.
    for _ in 0..threads.len() {
        if let Ok(Err(e)) = ready_rx.recv() {
            failed.get_or_insert(e);
        }
    }
    for g in go {
        let _ = g.send(failed.is_none());
    }
    if failed.is_none() {
        shared.shutdown.cancelled().await;
    }
    stop.store(true, Ordering::Release);
    for p in &peers {
        worker::wake(&p.wake);
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd creation; the descriptor is owned from here on.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
