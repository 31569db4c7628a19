//! The server: listeners, connections, and the glue between the protocol and
//! the store.
//!
//! - `listener.rs`: binding, the accept loop and the connection cap.
//! - `connection.rs`: the tokio driver of one connection: reads, writes,
//!   timeouts, shutdown; nothing about commands.
//! - `uring/`: the io_uring driver: the same job for every connection of
//!   a worker thread, with fewer system calls (`--io-driver`).
//! - `session.rs`: sans-IO: one connection's protocol state, turning a read
//!   buffer into replies in a write buffer (auth, framing, `-R` budget).
//! - `watch.rs`: `watch`, the live log stream: the watchers' bounded
//!   queues and memcached's line formats; `watch_events.rs` what the
//!   executor tells it.
//! - `execute.rs`: the one executor: a decoded request (classic, meta or
//!   binary, the last in `execute/binary.rs`)
//!   against the store, its outcomes reported as typed replies;
//!   `stats_reply/` the `stats` sub-commands; `admin.rs` the slab, LRU and
//!   crawler admin commands; `held.rs` the items unsent replies hold.
//!
//! [`run`] serves until [`Shared::shutdown`] is cancelled (a signal, or the
//! `shutdown` command), then waits a bounded time for connections to finish
//! the replies they owe.

mod admin;
#[cfg(test)]
mod binary_tests;
pub(crate) mod bufpool;
mod connection;
mod execute;
pub mod fd_limit;
mod held;
mod listener;
#[cfg(test)]
mod meta_tests;
#[cfg(test)]
mod sasl_tests;
pub mod session;
mod shutdown_wait;
mod stats_reply;
mod uring;
pub mod watch;
mod watch_events;

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use listener::{Listener, bind};

use crate::config::{Config, IoDriver};
use crate::hotkeys::{HotKeys, Sampler};
use crate::metrics;
use crate::protocol::reply::{Reply, Wire};
use crate::sasl::SaslConn;
use crate::stats::{Conns, Detail, LocalStats, Stats};
use crate::store::{Store, StoreStats};

/// How long connections get to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the expiry sweep runs, and how many slots it looks at per shard.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const SWEEP_BUDGET_PER_SHARD: usize = 256;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send what is buffered, then close (`quit`).
    Close,
    /// Close without sending the replies still buffered: memcached drops the
    /// connection, and the replies it owed for the same read, on an over-long
    /// line or an HTTP request line.
    Abort,
    /// Close, and stop the server (`shutdown` with `-A`).
    Shutdown {
        graceful: bool,
    },
    /// The connection became a watcher (`watch`): send what is buffered,
    /// then stream its log lines; see `session.rs`.
    Watch,
}

/// The per-connection view the executors work with.
pub struct Context<'a> {
    pub shared: &'a Shared,
    pub stats: &'a mut LocalStats,
    /// The store clock's `now`, read once per batch.
    pub now: u32,
    /// Which of this connection's requests the hot-key top-K counts.
    pub sampler: &'a mut Sampler,
    /// The connection's descriptor (`cfd=` in `watch` lines).
    pub fd: i32,
    /// Set by `watch`: the connection's end of its log queue.
    pub watcher: &'a mut Option<watch::Watcher>,
    /// The connection's SASL state (`-S`).
    pub sasl: &'a mut SaslConn,
    /// The items this connection's unsent replies hold.
    pub held: &'a mut held::Held,
}

/// Where one request's replies go: each is composed into the write buffer
/// as it is reported, in the request's wire format.
pub struct Replies<'a> {
    wire: Wire<'a>,
    out: &'a mut BytesMut,
}

impl<'a> Replies<'a> {
    #[inline]
    pub fn new(wire: Wire<'a>, out: &'a mut BytesMut) -> Self {
        Replies { wire, out }
    }

    #[inline]
    pub fn send(&mut self, reply: Reply<'_>) {
        self.wire.compose(&reply, self.out);
    }

    /// One `STAT <name> <value>` line.
    pub fn stat(&mut self, name: &str, value: impl fmt::Display) {
        self.send(Reply::Stat(name, &value));
    }

    /// Whether replies to earlier requests of this read are still buffered.
    pub fn owes_earlier(&self) -> bool {
        !self.out.is_empty()
    }
}

/// Everything the connections share.
pub struct Shared {
    pub store: Store,
    pub stats: Stats,
    pub config: Config,
    /// Cancelled to stop the server.
    pub shutdown: CancellationToken,
    /// How many listening sockets there are; memcached counts them as connections.
    pub listeners: usize,
    /// The listening sockets as `stats conns` shows them: descriptor, address.
    pub listening: Mutex<Vec<(i32, String)>>,
    /// Open connections, for `stats conns`.
    pub conns: Conns,
    /// `stats detail on|off|dump`.
    pub detail: Detail,
    /// The hottest keys (`stats hotkeys`, `ferrocache_hot_key_*`).
    pub hot: HotKeys,
    /// memcached's verbosity: `-v` at start, then the `verbosity` command;
    /// `stats settings` shows it.
    pub verbosity: AtomicU8,
    /// What the slab, LRU and crawler admin commands set.
    pub tunables: admin::Tunables,
    /// Whether connections time each command (only when /metrics is served).
    pub timing: bool,
    /// The clock that times them, when they do.
    pub ticks: Option<quanta::Clock>,
    /// `watch`: the watchers and their queues.
    pub watch: Arc<watch::Hub>,
    /// The store's counters at the last `stats reset`.
    store_baseline: Mutex<StoreStats>,
}

impl Shared {
    pub fn new(config: Config, mut store: Store, listeners: usize) -> Self {
        let watch = Arc::new(watch::Hub::new(config.watcher_buf));
        store.set_eviction_log(Arc::new(EvictionWatch {
            hub: watch.clone(),
            limits: config.limits,
        }));
        let stats = Stats::new(config.threads.max(1) * 4);
        let mut first = crate::stats::LocalStats {
            total_connections: listeners as u64,
            ..Default::default()
        };
        stats.flush(0, &mut first);
        let hot_keys = config.hot_keys;
        let verbose = config.verbose;
        let tunables = admin::Tunables::new(&config.tuning);
        Shared {
            store,
            stats,
            timing: config.metrics_listen.is_some(),
            ticks: config.metrics_listen.is_some().then(quanta::Clock::new),
            config,
            shutdown: CancellationToken::new(),
            listeners,
            listening: Mutex::new(Vec::new()),
            conns: Conns::default(),
            detail: Detail::default(),
            tunables,
            verbosity: AtomicU8::new(verbose),
            hot: HotKeys::new(hot_keys),
            watch,
            store_baseline: Mutex::new(StoreStats::default()),
        }
    }

    /// The store's counters, less those before the last `stats reset`.
    pub fn store_stats(&self) -> StoreStats {
        let mut s = self.store.stats();
        let base = *self.store_baseline.lock().expect("baseline lock poisoned");
        s.total_items = s.total_items.saturating_sub(base.total_items);
        s.evictions = s.evictions.saturating_sub(base.evictions);
        s.reclaimed = s.reclaimed.saturating_sub(base.reclaimed);
        s.expired_unfetched = s.expired_unfetched.saturating_sub(base.expired_unfetched);
        s.evicted_unfetched = s.evicted_unfetched.saturating_sub(base.evicted_unfetched);
        s
    }

    /// `stats reset`: counters start again from zero; gauges stay.
    pub fn reset_stats(&self) {
        self.stats.reset();
        self.detail.clear();
        *self.store_baseline.lock().expect("baseline lock poisoned") = self.store.stats();
    }
}

/// `watch evictions` lines, from the store's evictions.
struct EvictionWatch {
    hub: Arc<watch::Hub>,
    limits: crate::item_rules::Limits,
}

impl crate::store::EvictionLog for EvictionWatch {
    fn wanted(&self) -> bool {
        self.hub.wants(watch::EVICTIONS)
    }

    fn evicted(&self, e: &crate::store::Evicted<'_>) {
        let size = self
            .limits
            .item_total_size(e.key.len(), e.value_len, e.flags);
        let ttl = e.ttl.map_or(-1, i64::from);
        let clsid = stats_reply::slab_class(size);
        self.hub
            .eviction(e.key, e.fetched, ttl, e.idle, clsid, e.value_len);
    }
}

impl metrics::Source for Shared {
    fn view(&self) -> metrics::View<'_> {
        metrics::View {
            stats: &self.stats,
            store: &self.store,
            detail: &self.detail,
            conn_limit: self.config.conn_limit,
            timing: self.timing,
            hot: &self.hot,
            hot_key_labels: self.config.metrics_hot_keys,
        }
    }
}

/// What drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Tokio,
    IoUring,
}

/// The driver `--io-driver` asks for, where the system allows it; logs
/// which one runs, once.
///
/// # Errors
/// `--io-driver io-uring` where io_uring cannot be set up.
pub fn choose_driver(config: &Config) -> Result<Driver, crate::Error> {
    let threads = config.threads;
    if config.io_driver == IoDriver::Tokio {
        tracing::info!(driver = "tokio", threads, "io driver chosen by --io-driver");
        return Ok(Driver::Tokio);
    }
    if config.tls.is_some() {
        tracing::info!(
            driver = "tokio",
            threads,
            "io driver: tokio, which serves TLS (-Z) connections"
        );
        return Ok(Driver::Tokio);
    }
    match uring::probe() {
        Ok(()) => {
            tracing::info!(driver = "io-uring", threads, "io driver: io_uring");
            Ok(Driver::IoUring)
        }
        Err(e) if config.io_driver == IoDriver::Auto => {
            tracing::info!(
                driver = "tokio",
                threads,
                reason = %e,
                "io driver: tokio, as io_uring is unavailable"
            );
            Ok(Driver::Tokio)
        }
        Err(e) => Err(format!("--io-driver io-uring: io_uring is unavailable: {e}").into()),
    }
}

/// Serves on `listeners` with `driver` until `shared.shutdown` is
/// cancelled, then drains.
///
/// # Errors
/// The io_uring workers could not be set up.
pub async fn run(
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    driver: Driver,
) -> Result<(), crate::Error> {
    let tracker = TaskTracker::new();

    let sweeper = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let now = shared.store.clock().now();
                        shared.store.sweep(now, SWEEP_BUDGET_PER_SHARD);
                    }
                }
            }
        })
    };

    *shared.listening.lock().expect("listening lock poisoned") = listeners
        .iter()
        .map(|l| {
            let fd = match l {
                Listener::Tcp(t) => t.as_raw_fd(),
                Listener::Unix(u) => u.as_raw_fd(),
            };
            (fd, l.describe())
        })
        .collect();
    if driver == Driver::IoUring {
        let served = uring::serve(&listeners, shared.clone()).await;
        shared.shutdown.cancel();
        let _ = sweeper.await;
        return served.map_err(|e| format!("io_uring driver: {e}").into());
    }
    let accepts: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(listener::accept_loop(l, shared.clone(), tracker.clone())))
        .collect();
    shared.shutdown.cancelled().await;
    for a in accepts {
        let _ = a.await;
    }
    let _ = sweeper.await;
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the drain timeout"
        );
    }
    Ok(())
}
