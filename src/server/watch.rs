//! memcached's `watch`: a live stream of log lines (fetches, stores,
//! deletions, evictions, connection events) to connections that asked for
//! it, in memcached's line format.
//!
//! The request path pays one relaxed atomic load per event while nobody
//! watches ([`Hub::wants`]). With watchers, an event is formatted once and
//! offered to each interested watcher's queue without waiting for anything:
//! the queues are lock-free channels bounded in bytes
//! (`-o watcher_logbuf_size`, as memcached's per-watcher buffer). A watcher
//! that does not keep up loses lines, and the next line that fits is
//! preceded by `skipped=N`, as in memcached. Joining and leaving take a
//! mutex that no request ever touches; a request reads the watcher slots
//! through atomics only.
//!
//! How a driver serves a watcher is the contract in `session.rs`
//! ([`Watcher`]). This module knows neither sockets nor the store.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// The streams, with memcached's bit values (`logger.h`).
pub const SYSEVENTS: u16 = 1 << 1;
pub const FETCHERS: u16 = 1 << 2;
pub const MUTATIONS: u16 = 1 << 3;
pub const CONNEVENTS: u16 = 1 << 5;
pub const EVICTIONS: u16 = 1 << 6;
pub const RAWCMDS: u16 = 1 << 9;
pub const PROXYREQS: u16 = 1 << 10;
pub const PROXYEVENTS: u16 = 1 << 11;
pub const PROXYUSER: u16 = 1 << 12;
pub const DELETIONS: u16 = 1 << 13;

/// memcached's names for the streams, in the order it matches them.
const STREAMS: &[(&[u8], u16)] = &[
    (b"rawcmds", RAWCMDS),
    (b"evictions", EVICTIONS),
    (b"fetchers", FETCHERS),
    (b"mutations", MUTATIONS),
    (b"sysevents", SYSEVENTS),
    (b"connevents", CONNEVENTS),
    (b"proxyreqs", PROXYREQS),
    (b"proxyevents", PROXYEVENTS),
    (b"proxyuser", PROXYUSER),
    (b"deletions", DELETIONS),
];

/// memcached's limit on watchers at once.
pub const WATCHER_LIMIT: usize = 20;

/// The streams `watch <names>` asks for; no names means `fetchers`.
/// memcached compares each name over its own length (`strncmp`), so a
/// prefix such as `fetch` selects the first stream it begins. `None`: a
/// name it does not know.
pub fn streams<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Option<u16> {
    let mut flags = 0;
    let mut any = false;
    for name in names {
        any = true;
        flags |= STREAMS
            .iter()
            .find(|(full, _)| full.starts_with(name))
            .map(|&(_, f)| f)?;
    }
    Some(if any { flags } else { FETCHERS })
}

/// Why [`Hub::join`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// `WATCHER_TOO_MANY log watcher limit reached`.
    TooMany,
}

/// One watcher's place: its queue, its flags (0: free) and its counts.
struct Slot {
    flags: AtomicU16,
    /// Lines with a smaller id were made before the watcher joined.
    min_gid: AtomicU64,
    /// Bytes queued and not yet drained.
    queued: AtomicUsize,
    /// Lines lost since the last one queued.
    skipped: AtomicU64,
    tx: mpsc::Sender<Bytes>,
    /// Held here while the slot is free, by the [`Watcher`] while not.
    rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    wake: Notify,
}

/// Every watcher of one server, and the counters `stats` shows.
pub struct Hub {
    /// The union of the watchers' flags.
    wanted: AtomicU16,
    slots: Box<[Slot]>,
    /// memcached's global log id, one per event.
    gid: AtomicU64,
    /// Bytes a watcher's queue may hold.
    capacity: usize,
    /// Serialises joins and leaves; requests never take it.
    members: Mutex<()>,
    /// `log_worker_written`, `log_watcher_sent`, `log_watcher_skipped`, `log_watchers`.
    written: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    watchers: AtomicU64,
}

/// What `stats` shows of the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub worker_written: u64,
    pub watcher_sent: u64,
    pub watcher_skipped: u64,
    pub watchers: u64,
}

impl Hub {
    /// A hub whose watchers may each have `capacity` bytes queued.
    pub fn new(capacity: usize) -> Hub {
        let slots = (0..WATCHER_LIMIT)
            .map(|_| {
                let (tx, rx) = mpsc::channel();
                Slot {
                    flags: AtomicU16::new(0),
                    min_gid: AtomicU64::new(0),
                    queued: AtomicUsize::new(0),
                    skipped: AtomicU64::new(0),
                    tx,
                    rx: Mutex::new(Some(rx)),
                    wake: Notify::new(),
                }
            })
            .collect();
        Hub {
            wanted: AtomicU16::new(0),
            slots,
            gid: AtomicU64::new(0),
            capacity: capacity.max(1),
            members: Mutex::new(()),
            written: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            watchers: AtomicU64::new(0),
        }
    }

    /// Whether anybody watches any of `streams`: the one check the request
    /// path pays when nobody does.
    #[inline]
    pub fn wants(&self, streams: u16) -> bool {
        self.wanted.load(Ordering::Relaxed) & streams != 0
    }

    /// Adds a watcher of `streams`. Its queue starts with memcached's `OK`.
    ///
    /// # Errors
    /// [`JoinError::TooMany`] with [`WATCHER_LIMIT`] watchers already.
    pub fn join(self: &Arc<Self>, streams: u16) -> Result<Watcher, JoinError> {
        let _members = self.members.lock().expect("watch members lock poisoned");
        let (slot, rx) = self
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                let mut rx = s.rx.lock().expect("watch slot lock poisoned");
                rx.take().map(|rx| (i, rx))
            })
            .ok_or(JoinError::TooMany)?;
        let s = &self.slots[slot];
        // Lines left by the slot's last watcher go unread.
        while let Ok(line) = rx.try_recv() {
            s.queued.fetch_sub(line.len(), Ordering::AcqRel);
        }
        s.skipped.store(0, Ordering::Relaxed);
        s.min_gid.store(
            self.gid.fetch_add(1, Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
        s.flags.store(streams, Ordering::Release);
        self.refresh_wanted();
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Ok(Watcher {
            hub: self.clone(),
            slot,
            rx: Some(Mutex::new(rx)),
        })
    }

    fn leave(&self, slot: usize, rx: mpsc::Receiver<Bytes>) {
        let _members = self.members.lock().expect("watch members lock poisoned");
        let s = &self.slots[slot];
        s.flags.store(0, Ordering::Release);
        self.refresh_wanted();
        *s.rx.lock().expect("watch slot lock poisoned") = Some(rx);
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }

    fn refresh_wanted(&self) {
        let all = self
            .slots
            .iter()
            .fold(0, |f, s| f | s.flags.load(Ordering::Relaxed));
        self.wanted.store(all, Ordering::Relaxed);
    }

    /// Sends one event of `stream` to its watchers: `render` writes the
    /// line after memcached's `ts=... gid=... ` and before its newline.
    /// Call it after [`Hub::wants`] said yes.
    pub fn log(&self, stream: u16, render: impl FnOnce(&mut Vec<u8>)) {
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Vec::with_capacity(160);
        // memcached prints the microseconds unpadded (`%d`).
        line.extend_from_slice(
            format!("ts={}.{} gid={gid} ", now.as_secs(), now.subsec_micros()).as_bytes(),
        );
        render(&mut line);
        line.push(b'\n');
        let line = Bytes::from(line);
        self.written.fetch_add(1, Ordering::Relaxed);
        for s in self.slots.iter() {
            let flags = s.flags.load(Ordering::Acquire);
            if flags & stream == 0 || gid < s.min_gid.load(Ordering::Relaxed) {
                continue;
            }
            self.offer(s, &line);
        }
    }

    /// Queues `line` for one watcher if it fits, else counts it skipped.
    fn offer(&self, s: &Slot, line: &Bytes) {
        if s.queued.load(Ordering::Acquire) + line.len() > self.capacity {
            s.skipped.fetch_add(1, Ordering::Relaxed);
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let skipped = s.skipped.swap(0, Ordering::Relaxed);
        let note = (skipped > 0).then(|| Bytes::from(format!("skipped={skipped}\n")));
        let len = line.len() + note.as_ref().map_or(0, Bytes::len);
        // Counted before it is sent, so the reader never subtracts first;
        // the reader waits only once this is back at 0 (see `Watcher`).
        let before = s.queued.fetch_add(len, Ordering::AcqRel);
        if let Some(note) = note {
            let _ = s.tx.send(note);
        }
        let _ = s.tx.send(line.clone());
        self.sent.fetch_add(1, Ordering::Relaxed);
        if before == 0 {
            s.wake.notify_one();
        }
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            worker_written: self.written.load(Ordering::Relaxed),
            watcher_sent: self.sent.load(Ordering::Relaxed),
            watcher_skipped: self.skipped.load(Ordering::Relaxed),
            watchers: self.watchers.load(Ordering::Relaxed),
        }
    }
}

/// How a lookup went, as `type=item_get ... status=` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    NotFound,
    Found,
    Flushed,
    Expired,
}

/// How a connection ended, as `type=conn_close ... reason=` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Error,
    Normal,
    IdleTimeout,
    Shutdown,
}

/// The client end of a connection, for `type=conn_*` lines: an address
/// (`rip`, `rport`, `transport=tcp`), or a unix socket (`rip=unix rport=0
/// transport=local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl Peer {
    fn render(&self, l: &mut Vec<u8>) {
        use std::io::Write;
        let _ = match self {
            Peer::Tcp(a) => write!(l, "rip={} rport={} transport=tcp", a.ip(), a.port()),
            Peer::Unix => write!(l, "rip=unix rport=0 transport=local"),
        };
    }
}

/// The lines of each stream, in memcached's format (`logger.c`). Callers
/// check [`Hub::wants`] first.
impl Hub {
    /// `type=item_get`: every lookup of a key, as memcached logs each
    /// `do_item_get` (a store, delete, touch or arithmetic looks first).
    pub fn item_get(&self, key: &[u8], status: FetchStatus, clsid: u32, cfd: i32, size: usize) {
        let status = match status {
            FetchStatus::NotFound => "not_found",
            FetchStatus::Found => "found",
            FetchStatus::Flushed => "flushed",
            FetchStatus::Expired => "expired",
        };
        self.log(FETCHERS, |l| {
            l.extend_from_slice(b"type=item_get key=");
            uriencode(key, l);
            let _ = std::io::Write::write_fmt(
                l,
                format_args!(" status={status} clsid={clsid} cfd={cfd} size={size}"),
            );
        });
    }

    /// `type=item_store`: a write's outcome. `status` and `cmd` are
    /// memcached's words (`stored`, `not_stored`, `exists`, `not_found`;
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`); `ttl` the
    /// seconds left (0: none).
    #[allow(clippy::too_many_arguments)]
    pub fn item_store(
        &self,
        key: &[u8],
        status: &str,
        cmd: &str,
        ttl: u32,
        clsid: u32,
        cfd: i32,
        size: usize,
    ) {
        self.log(MUTATIONS, |l| {
            l.extend_from_slice(b"type=item_store key=");
            uriencode(key, l);
            let _ = std::io::Write::write_fmt(
                l,
                format_args!(
                    " status={status} cmd={cmd} ttl={ttl} clsid={clsid} cfd={cfd} size={size}"
                ),
            );
        });
    }

    /// `type=deleted`: an item removed by `delete` or `md` (`cmd`).
    pub fn deleted(&self, key: &[u8], cmd: &str, clsid: u32, size: usize) {
        self.log(DELETIONS, |l| {
            l.extend_from_slice(b"type=deleted key=");
            uriencode(key, l);
            let _ =
                std::io::Write::write_fmt(l, format_args!(" cmd={cmd} clsid={clsid} size={size}"));
        });
    }

    /// `type=eviction`: a live item evicted for room. `ttl` is the seconds
    /// it had left, -1 for none; `la` the seconds since it was last used.
    pub fn eviction(&self, key: &[u8], fetched: bool, ttl: i64, la: u32, clsid: u32, size: usize) {
        let fetch = if fetched { "yes" } else { "no" };
        self.log(EVICTIONS, |l| {
            l.extend_from_slice(b"type=eviction key=");
            uriencode(key, l);
            let _ = std::io::Write::write_fmt(
                l,
                format_args!(" fetch={fetch} ttl={ttl} la={la} clsid={clsid} size={size}"),
            );
        });
    }

    /// `type=conn_new`.
    pub fn conn_new(&self, peer: Peer, cfd: i32) {
        self.log(CONNEVENTS, |l| {
            l.extend_from_slice(b"type=conn_new ");
            peer.render(l);
            let _ = std::io::Write::write_fmt(l, format_args!(" cfd={cfd}"));
        });
    }

    /// `type=conn_close`.
    pub fn conn_close(&self, peer: Peer, reason: CloseReason, cfd: i32) {
        let reason = match reason {
            CloseReason::Error => "error",
            CloseReason::Normal => "normal",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        };
        self.log(CONNEVENTS, |l| {
            l.extend_from_slice(b"type=conn_close ");
            peer.render(l);
            let _ = std::io::Write::write_fmt(l, format_args!(" reason={reason} cfd={cfd}"));
        });
    }
}

/// A connection that has become a watcher: its end of the queue. Dropping
/// it leaves the hub. See the driver contract in `session.rs`.
pub struct Watcher {
    hub: Arc<Hub>,
    slot: usize,
    /// In a mutex only so that a `Watcher` is `Sync`; reached through
    /// `&mut self`, it is never locked.
    rx: Option<Mutex<mpsc::Receiver<Bytes>>>,
}

/// What [`Watcher::drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Lines were appended: write them, then drain again.
    Lines,
    /// A line is being queued right now: drain again after a yield.
    InFlight,
    /// Nothing queued: wait for [`Watcher::ready`].
    Empty,
}

impl Watcher {
    /// Appends queued lines to `out`, whole, until it holds `max` bytes or
    /// more.
    pub fn drain(&mut self, out: &mut BytesMut, max: usize) -> Drained {
        let s = &self.hub.slots[self.slot];
        let rx = self
            .rx
            .as_mut()
            .expect("held until dropped")
            .get_mut()
            .expect("never locked");
        let start = out.len();
        while out.len() < max {
            let Ok(line) = rx.try_recv() else { break };
            out.extend_from_slice(&line);
            s.queued.fetch_sub(line.len(), Ordering::AcqRel);
        }
        if out.len() > start {
            Drained::Lines
        } else if s.queued.load(Ordering::Acquire) > 0 {
            Drained::InFlight
        } else {
            Drained::Empty
        }
    }

    /// Resolves once a line has been queued since the queue was last empty
    /// (a wake-up may be spurious: drain again and wait again). Any async
    /// executor can await it.
    pub async fn ready(&self) {
        self.hub.slots[self.slot].wake.notified().await;
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            let rx = rx.into_inner().unwrap_or_else(|p| p.into_inner());
            self.hub.leave(self.slot, rx);
        }
    }
}

/// memcached's `uriencode` of a key: letters, digits and `-._~` as they
/// are, every other byte as `%XX`.
pub fn uriencode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(capacity: usize) -> Arc<Hub> {
        Arc::new(Hub::new(capacity))
    }

    fn drained(w: &mut Watcher) -> String {
        let mut out = BytesMut::new();
        while w.drain(&mut out, usize::MAX) == Drained::Lines {}
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn stream_names_match_as_memcached_compares_them() {
        assert_eq!(streams([]), Some(FETCHERS));
        assert_eq!(
            streams([&b"mutations"[..], b"evictions"]),
            Some(MUTATIONS | EVICTIONS)
        );
        // strncmp over the given name's length: a prefix selects.
        assert_eq!(streams([&b"fetch"[..]]), Some(FETCHERS));
        assert_eq!(streams([&b"deletions"[..]]), Some(DELETIONS));
        assert_eq!(streams([&b"fetchersx"[..]]), None);
        assert_eq!(streams([&b"bogus"[..]]), None);
    }

    #[test]
    fn nobody_watching_wants_nothing_and_leaving_clears_it() {
        let h = hub(1024);
        assert!(!h.wants(FETCHERS));
        let w = h.join(FETCHERS | MUTATIONS).unwrap();
        assert!(h.wants(FETCHERS) && h.wants(MUTATIONS) && !h.wants(EVICTIONS));
        assert_eq!(h.stats().watchers, 1);
        drop(w);
        assert!(!h.wants(FETCHERS | MUTATIONS));
        assert_eq!(h.stats().watchers, 0);
    }

    #[test]
    fn lines_reach_only_watchers_of_their_stream() {
        let h = hub(1024);
        let mut f = h.join(FETCHERS).unwrap();
        let mut m = h.join(MUTATIONS).unwrap();
        h.log(FETCHERS, |l| l.extend_from_slice(b"type=item_get key=a"));
        let got = drained(&mut f);
        // Each join takes a log id too, as in memcached.
        assert!(got.starts_with("ts="), "{got}");
        assert!(got.ends_with(" gid=3 type=item_get key=a\n"), "{got}");
        assert_eq!(drained(&mut m), "");
        assert_eq!(f.drain(&mut BytesMut::new(), 10), Drained::Empty);
    }

    #[test]
    fn a_full_queue_skips_and_says_how_many_before_the_next_line() {
        let h = hub(200);
        let mut w = h.join(FETCHERS).unwrap();
        let body = [b'x'; 100];
        for _ in 0..5 {
            h.log(FETCHERS, |l| l.extend_from_slice(&body));
        }
        // One line of ~130 bytes fits in 200; the other four were skipped.
        let first = drained(&mut w);
        assert_eq!(first.lines().count(), 1, "{first}");
        assert_eq!(h.stats().watcher_skipped, 4);
        h.log(FETCHERS, |l| l.extend_from_slice(b"next"));
        let got = drained(&mut w);
        let lines: Vec<_> = got.lines().collect();
        assert_eq!(lines[0], "skipped=4");
        assert!(lines[1].ends_with(" next"), "{got}");
    }

    #[test]
    fn a_new_watcher_sees_nothing_from_before_it_joined() {
        let h = hub(4096);
        let old = h.join(FETCHERS).unwrap();
        h.log(FETCHERS, |l| l.extend_from_slice(b"old"));
        drop(old);
        let mut w = h.join(FETCHERS).unwrap();
        assert_eq!(drained(&mut w), "");
        h.log(FETCHERS, |l| l.extend_from_slice(b"new"));
        assert!(drained(&mut w).ends_with(" new\n"));
    }

    #[test]
    fn the_twenty_first_watcher_is_refused() {
        let h = hub(16);
        let all: Vec<_> = (0..WATCHER_LIMIT)
            .map(|_| h.join(FETCHERS).unwrap())
            .collect();
        assert_eq!(h.join(FETCHERS).err(), Some(JoinError::TooMany));
        drop(all);
        assert!(h.join(FETCHERS).is_ok());
    }

    #[test]
    fn ready_wakes_when_a_line_arrives() {
        let h = hub(1024);
        let mut w = h.join(FETCHERS).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h2 = h.clone();
            let t = tokio::spawn(async move { h2.log(FETCHERS, |l| l.extend_from_slice(b"x")) });
            w.ready().await;
            t.await.unwrap();
        });
        assert!(drained(&mut w).ends_with(" x\n"));
    }

    /// The line after `ts=... gid=N `.
    fn body(line: &str) -> &str {
        let mut parts = line.splitn(3, ' ');
        let ts = parts.next().unwrap();
        let gid = parts.next().unwrap();
        assert!(
            ts.starts_with("ts=") && ts[3..].split_once('.').is_some(),
            "{line}"
        );
        assert!(gid.starts_with("gid="), "{line}");
        parts.next().unwrap().trim_end_matches('\n')
    }

    #[test]
    fn each_event_in_memcacheds_format() {
        let h = hub(1 << 16);
        let mut w = h
            .join(FETCHERS | MUTATIONS | DELETIONS | EVICTIONS | CONNEVENTS)
            .unwrap();
        h.item_get(b"a b", FetchStatus::NotFound, 0, 26, 0);
        h.item_store(b"k", "stored", "set", 100, 1, 26, 2);
        h.deleted(b"k", "md", 1, 2);
        h.eviction(b"e", false, -1, 30, 1, 11000);
        let peer = Peer::Tcp("127.0.0.1:52176".parse().unwrap());
        h.conn_new(peer, 26);
        h.conn_close(peer, CloseReason::Normal, 26);
        h.conn_close(Peer::Unix, CloseReason::IdleTimeout, 27);
        let got = drained(&mut w);
        let bodies: Vec<_> = got.lines().map(body).collect();
        assert_eq!(
            bodies,
            [
                "type=item_get key=a%20b status=not_found clsid=0 cfd=26 size=0",
                "type=item_store key=k status=stored cmd=set ttl=100 clsid=1 cfd=26 size=2",
                "type=deleted key=k cmd=md clsid=1 size=2",
                "type=eviction key=e fetch=no ttl=-1 la=30 clsid=1 size=11000",
                "type=conn_new rip=127.0.0.1 rport=52176 transport=tcp cfd=26",
                "type=conn_close rip=127.0.0.1 rport=52176 transport=tcp reason=normal cfd=26",
                "type=conn_close rip=unix rport=0 transport=local reason=idle_timeout cfd=27",
            ]
        );
    }

    #[test]
    fn uriencode_keeps_unreserved_bytes_only() {
        let mut out = Vec::new();
        uriencode(b"a%20b-._~\xe9\x01 Z9", &mut out);
        assert_eq!(out, b"a%2520b-._~%E9%01%20Z9");
    }
}
