//! The counters behind `stats`, with memcached's names, and the per-command
//! processing-time histogram behind `/metrics`.
//!
//! A connection counts into a plain [`LocalStats`] while it works through a
//! batch of requests and adds them into the shared [`Stats`] once per batch,
//! so the request path touches no shared cache line; a batch's processing
//! time goes straight into the shared histogram ([`Stats::record_batch`]).
//! A driver that serves many connections per wake-up (io_uring) gathers
//! all their counts and times in one [`Tally`] and adds it once per turn
//! ([`Stats::flush_tally`]): with one request per connection, that turns
//! a handful of atomic additions per request into a handful per turn.
//! The shared side is spread over a few padded slots, summed when someone
//! asks.
//!
//! `stats` and `/metrics` read the same slots, so the two views cannot drift:
//! `/metrics` exports the totals since start (Prometheus counters must not go
//! down), `stats` the totals less those at the last `stats reset`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `Slot::add`'s body: counters four at a time, then the rest one by one.
macro_rules! add_by_fours {
    ($slot:ident, $l:ident; $a:ident, $b:ident, $c:ident, $d:ident $(, $rest:ident)*) => {
        if ($l.$a | $l.$b | $l.$c | $l.$d) != 0 {
            add_by_fours!($slot, $l; $a);
            add_by_fours!($slot, $l; $b);
            add_by_fours!($slot, $l; $c);
            add_by_fours!($slot, $l; $d);
        }
        add_by_fours!($slot, $l; $($rest),*);
    };
    ($slot:ident, $l:ident; $($name:ident),*) => {
        $(if $l.$name != 0 {
            $slot.$name.fetch_add($l.$name, Ordering::Relaxed);
        })*
    };
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Per-connection counts for one batch; plain integers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct LocalStats {
            $(pub $name: u64,)*
        }

        /// Shared counts, one slot of atomics.
        #[derive(Debug, Default)]
        struct Slot {
            $($name: AtomicU64,)*
        }

        impl Slot {
            /// Adds the non-zero counts. A batch changes a handful of
            /// counters, so four at a time are tested together before any
            /// is looked at alone.
            fn add(&self, l: &LocalStats) {
                add_by_fours!(self, l; $($name),*);
            }

            fn read_into(&self, out: &mut LocalStats) {
                $(out.$name = out.$name.wrapping_add(self.$name.load(Ordering::Relaxed));)*
            }

        }

        impl LocalStats {
            /// Every counter with its memcached name.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }

            /// Each counter less `base`'s (wrapping, as counters do).
            fn minus(&self, base: &LocalStats) -> LocalStats {
                LocalStats {
                    $($name: self.$name.wrapping_sub(base.$name),)*
                }
            }
        }
    };
}

counters!(
    // What nearly every request changes comes first: `Slot::add` tests
    // counters four at a time and skips each group of zeroes at once.
    cmd_get,
    get_hits,
    get_misses,
    bytes_read,
    bytes_written,
    cmd_set,
    cmd_touch,
    touch_hits,
    touch_misses,
    delete_hits,
    delete_misses,
    cmd_meta,
    total_connections,
    rejected_connections,
    cmd_flush,
    get_expired,
    get_flushed,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    ssl_handshake_errors,
    idle_kicks,
    conn_yields,
    listen_disabled_num,
    time_in_listen_disabled_us,
);

impl LocalStats {
    pub fn is_zero(&self) -> bool {
        *self == LocalStats::default()
    }
}

/// Upper bounds of the processing-time buckets, in nanoseconds: 1 µs to
/// 100 ms. A command usually takes a few microseconds; the top buckets
/// catch lock waits and huge multi-gets.
pub const LATENCY_BOUNDS_NS: [u64; 13] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    100_000_000,
];

/// Buckets per command kind: the bounds above, then +Inf.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// The commands the histogram tells apart; the label is `command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Get,
    Gat,
    Set,
    Delete,
    Incr,
    Decr,
    Touch,
    FlushAll,
    Meta,
    Other,
    /// A request answered with an error line (bad format, too large...).
    Error,
}

impl CommandKind {
    pub const ALL: [CommandKind; 11] = [
        CommandKind::Get,
        CommandKind::Gat,
        CommandKind::Set,
        CommandKind::Delete,
        CommandKind::Incr,
        CommandKind::Decr,
        CommandKind::Touch,
        CommandKind::FlushAll,
        CommandKind::Meta,
        CommandKind::Other,
        CommandKind::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CommandKind::Get => "get",
            CommandKind::Gat => "gat",
            CommandKind::Set => "set",
            CommandKind::Delete => "delete",
            CommandKind::Incr => "incr",
            CommandKind::Decr => "decr",
            CommandKind::Touch => "touch",
            CommandKind::FlushAll => "flush_all",
            CommandKind::Meta => "meta",
            CommandKind::Other => "other",
            CommandKind::Error => "error",
        }
    }
}

const KINDS: usize = CommandKind::ALL.len();

/// The bucket that holds a command that took `ns` nanoseconds.
fn bucket_of(ns: u64) -> usize {
    LATENCY_BOUNDS_NS
        .iter()
        .position(|&bound| ns <= bound)
        .unwrap_or(LATENCY_BOUNDS_NS.len())
}

/// Shares a batch's `ns` evenly among its commands: `f(kind, each, n)` for
/// each kind it ran, `n` commands of `each` nanoseconds. Two clock reads
/// per batch instead of one per command.
#[inline]
fn share_batch(batch: &BatchKinds, ns: u64, mut f: impl FnMut(CommandKind, u64, u64)) {
    if batch.total == 0 {
        return;
    }
    let each = ns / u64::from(batch.total);
    if !batch.mixed {
        let kind = CommandKind::ALL[usize::from(batch.first)];
        f(kind, each, u64::from(batch.total));
    } else {
        for kind in CommandKind::ALL {
            let n = batch.counts[kind as usize];
            if n != 0 {
                f(kind, each, u64::from(n));
            }
        }
    }
}

/// How many commands of each kind one batch ran.
#[derive(Debug, Default, Clone)]
pub struct BatchKinds {
    counts: [u32; KINDS],
    total: u32,
    /// The kind of the first command, and whether any other kind followed:
    /// a batch of one kind (nearly all) is recorded without a scan.
    first: u8,
    mixed: bool,
}

impl BatchKinds {
    #[inline]
    pub fn add(&mut self, kind: CommandKind) {
        let k = kind as u8;
        if self.total == 0 {
            self.first = k;
        } else if self.first != k {
            self.mixed = true;
        }
        self.counts[kind as usize] += 1;
        self.total += 1;
    }
}

/// Shared processing-time counts, summed over slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Per kind, per bucket (not cumulative).
    pub buckets: [[u64; LATENCY_BUCKETS]; KINDS],
    pub sum_ns: [u64; KINDS],
}

/// Processing-time counts not yet added to the shared histogram, with a
/// bit for each kind and bucket touched, so adding them in visits only
/// those (a turn of gets touches one or two cells).
#[derive(Debug, Clone)]
struct LatencyTally {
    buckets: [[u64; LATENCY_BUCKETS]; KINDS],
    sum_ns: [u64; KINDS],
    /// Bit `k`: kind `k` has counts here.
    kinds: u16,
    /// Per kind, bit `b`: bucket `b` has counts here.
    cells: [u16; KINDS],
}

const _: () = assert!(KINDS <= 16 && LATENCY_BUCKETS <= 16, "the masks are u16");

impl Default for LatencyTally {
    fn default() -> Self {
        LatencyTally {
            buckets: [[0; LATENCY_BUCKETS]; KINDS],
            sum_ns: [0; KINDS],
            kinds: 0,
            cells: [0; KINDS],
        }
    }
}

impl LatencyTally {
    #[inline]
    fn add(&mut self, kind: CommandKind, ns: u64, n: u64) {
        let (k, b) = (kind as usize, bucket_of(ns));
        self.buckets[k][b] += n;
        self.sum_ns[k] = self.sum_ns[k].wrapping_add(ns.wrapping_mul(n));
        self.kinds |= 1 << k;
        self.cells[k] |= 1 << b;
    }
}

/// Counts and processing times not yet added to the shared [`Stats`]: what
/// an io_uring worker gathers from every connection it drives in one loop
/// turn, then adds with [`Stats::flush_tally`]. Plain integers; owned by
/// one thread.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The counters; the executors count into these through `Context`.
    pub counts: LocalStats,
    latency: LatencyTally,
}

impl Tally {
    /// Counts a batch that took `ns` nanoseconds, as
    /// [`Stats::record_batch`] does, and clears `batch`.
    #[inline]
    pub fn record_batch(&mut self, batch: &mut BatchKinds, ns: u64) {
        if batch.total == 0 {
            return;
        }
        share_batch(batch, ns, |kind, each, n| self.latency.add(kind, each, n));
        *batch = BatchKinds::default();
    }
}

#[derive(Debug)]
struct LatencySlot {
    buckets: [[AtomicU64; LATENCY_BUCKETS]; KINDS],
    sum_ns: [AtomicU64; KINDS],
}

impl Default for LatencySlot {
    fn default() -> Self {
        LatencySlot {
            buckets: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            sum_ns: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct PaddedSlot {
    counters: Slot,
    latency: LatencySlot,
}

/// Shared counters, plus the gauges of open connections and of accept
/// loops paused.
#[derive(Debug)]
pub struct Stats {
    slots: Box<[PaddedSlot]>,
    curr_connections: AtomicU64,
    /// Accept loops waiting out a lack of file descriptors, and since
    /// when any has been: one episode to `stats`, however many loops
    /// (memcached turns all its listeners off at once).
    paused_accepts: Mutex<(u64, Option<std::time::Instant>)>,
    /// Connections closed since the start: a paused accept loop waits
    /// for this to move.
    closed_connections: AtomicU64,
    /// The totals at the last `stats reset`.
    baseline: Mutex<LocalStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(16)
    }
}

impl Stats {
    /// `slots` spreads writers; connection `n` writes to slot `n % slots`,
    /// `slots` rounded up to a power of two.
    pub fn new(slots: usize) -> Self {
        Stats {
            slots: (0..slots.max(1).next_power_of_two())
                .map(|_| PaddedSlot::default())
                .collect(),
            curr_connections: AtomicU64::new(0),
            paused_accepts: Mutex::new((0, None)),
            closed_connections: AtomicU64::new(0),
            baseline: Mutex::new(LocalStats::default()),
        }
    }

    fn slot(&self, conn_id: u64) -> &PaddedSlot {
        // A mask, not `%`: this runs twice a request, and a division by a
        // length not known at compile time is tens of cycles.
        &self.slots[(conn_id as usize) & (self.slots.len() - 1)]
    }

    /// Adds a batch's counts and zeroes them for the next batch.
    pub fn flush(&self, conn_id: u64, local: &mut LocalStats) {
        self.slot(conn_id).counters.add(local);
        *local = LocalStats::default();
    }

    /// Adds a tally's counts and times under `key` (which spreads writers
    /// over the slots, as a connection id does) and zeroes it.
    pub fn flush_tally(&self, key: u64, tally: &mut Tally) {
        self.flush(key, &mut tally.counts);
        let t = &mut tally.latency;
        if t.kinds == 0 {
            return;
        }
        let slot = &self.slot(key).latency;
        let mut kinds = std::mem::take(&mut t.kinds);
        while kinds != 0 {
            let k = kinds.trailing_zeros() as usize;
            kinds &= kinds - 1;
            let mut cells = std::mem::take(&mut t.cells[k]);
            while cells != 0 {
                let b = cells.trailing_zeros() as usize;
                cells &= cells - 1;
                slot.buckets[k][b]
                    .fetch_add(std::mem::take(&mut t.buckets[k][b]), Ordering::Relaxed);
            }
            slot.sum_ns[k].fetch_add(std::mem::take(&mut t.sum_ns[k]), Ordering::Relaxed);
        }
    }

    /// Counts one command that took `ns` nanoseconds.
    pub fn record_latency(&self, conn_id: u64, kind: CommandKind, ns: u64) {
        self.record_latency_n(conn_id, kind, ns, 1);
    }

    /// Counts `n` commands of one kind that took `ns` nanoseconds each.
    fn record_latency_n(&self, conn_id: u64, kind: CommandKind, ns: u64, n: u64) {
        let slot = &self.slot(conn_id).latency;
        let k = kind as usize;
        slot.buckets[k][bucket_of(ns)].fetch_add(n, Ordering::Relaxed);
        slot.sum_ns[k].fetch_add(ns.wrapping_mul(n), Ordering::Relaxed);
    }

    /// Counts a batch that took `ns` nanoseconds to process, sharing the
    /// time evenly among its commands, and clears `batch`. Two clock reads
    /// per batch instead of one per command, and the shared counts are
    /// added to at once: a connection keeps no histogram of its own to
    /// fold in later, which cost more than the two atomic additions.
    pub fn record_batch(&self, conn_id: u64, batch: &mut BatchKinds, ns: u64) {
        if batch.total == 0 {
            return;
        }
        share_batch(batch, ns, |kind, each, n| {
            self.record_latency_n(conn_id, kind, each, n)
        });
        *batch = BatchKinds::default();
    }

    /// Totals since start, never reset: what `/metrics` exports.
    pub fn totals(&self) -> LocalStats {
        let mut out = LocalStats::default();
        for s in self.slots.iter() {
            s.counters.read_into(&mut out);
        }
        out
    }

    /// Totals since the last `stats reset`: what `stats` shows.
    pub fn snapshot(&self) -> LocalStats {
        let base = *self.baseline.lock().expect("stats baseline lock poisoned");
        self.totals().minus(&base)
    }

    /// `stats reset`: `stats` counts from zero again; `/metrics` keeps
    /// counting, as Prometheus counters must.
    pub fn reset(&self) {
        let now = self.totals();
        *self.baseline.lock().expect("stats baseline lock poisoned") = now;
    }

    /// Processing-time counts since start, summed over slots.
    pub fn latency(&self) -> LatencySnapshot {
        let mut out = LatencySnapshot {
            buckets: [[0; LATENCY_BUCKETS]; KINDS],
            sum_ns: [0; KINDS],
        };
        for s in self.slots.iter() {
            for k in 0..KINDS {
                for b in 0..LATENCY_BUCKETS {
                    out.buckets[k][b] += s.latency.buckets[k][b].load(Ordering::Relaxed);
                }
                out.sum_ns[k] =
                    out.sum_ns[k].wrapping_add(s.latency.sum_ns[k].load(Ordering::Relaxed));
            }
        }
        out
    }

    pub fn connection_opened(&self) {
        self.curr_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.curr_connections.fetch_sub(1, Ordering::Relaxed);
        self.closed_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed since the start.
    pub fn closed_connections(&self) -> u64 {
        self.closed_connections.load(Ordering::Relaxed)
    }

    pub fn curr_connections(&self) -> u64 {
        self.curr_connections.load(Ordering::Relaxed)
    }

    /// An accept loop stopped taking connections for a while. The first
    /// to stop starts an episode (`listen_disabled_num`).
    pub fn accept_paused(&self) {
        let mut paused = self.paused_accepts.lock().expect("paused lock poisoned");
        if paused.0 == 0 {
            paused.1 = Some(std::time::Instant::now());
            let mut l = LocalStats {
                listen_disabled_num: 1,
                ..LocalStats::default()
            };
            self.flush(0, &mut l);
        }
        paused.0 += 1;
    }

    /// An accept loop takes connections again. The last to resume ends
    /// the episode (`time_in_listen_disabled_us`).
    pub fn accept_resumed(&self) {
        let mut paused = self.paused_accepts.lock().expect("paused lock poisoned");
        paused.0 = paused.0.saturating_sub(1);
        if paused.0 == 0
            && let Some(since) = paused.1.take()
        {
            let mut l = LocalStats {
                time_in_listen_disabled_us: since.elapsed().as_micros() as u64,
                ..LocalStats::default()
            };
            self.flush(0, &mut l);
        }
    }

    /// `accepting_conns`: no accept loop is paused.
    pub fn accepting_conns(&self) -> bool {
        self.paused_accepts.lock().expect("paused lock poisoned").0 == 0
    }
}

/// What `stats conns` shows of one open connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub fd: i32,
    /// `tcp:<ip>:<port>` or `unix:<path>`, as memcached prints them.
    pub addr: String,
    pub listen_addr: String,
    /// Store clock seconds of the last batch of commands.
    last_cmd: AtomicU32,
    state: AtomicU8,
}

/// memcached's connection states that apply here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Waiting for a request.
    Waiting = 0,
    /// Running a batch of requests.
    ParseCmd = 1,
    /// Waiting for the rest of a data block.
    Nread = 2,
    /// A log stream (`watch`).
    Watch = 3,
}

impl ConnInfo {
    pub fn new(fd: i32, addr: String, listen_addr: String, now: u32) -> Self {
        ConnInfo {
            fd,
            addr,
            listen_addr,
            last_cmd: AtomicU32::new(now),
            state: AtomicU8::new(ConnState::Waiting as u8),
        }
    }

    /// Called once per batch by the connection itself; two plain stores
    /// to a line no other connection writes.
    #[inline]
    pub fn set(&self, state: ConnState, now: u32) {
        self.state.store(state as u8, Ordering::Relaxed);
        if state == ConnState::ParseCmd {
            self.last_cmd.store(now, Ordering::Relaxed);
        }
    }

    pub fn last_cmd(&self) -> u32 {
        self.last_cmd.load(Ordering::Relaxed)
    }

    pub fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "conn_parse_cmd",
            2 => "conn_nread",
            3 => "conn_watch",
            _ => "conn_waiting",
        }
    }
}

/// The open connections, for `stats conns`. Touched on open and close only.
#[derive(Debug, Default)]
pub struct Conns {
    open: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
}

impl Conns {
    pub fn register(&self, id: u64, info: ConnInfo) -> Arc<ConnInfo> {
        let info = Arc::new(info);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, info.clone());
        info
    }

    pub fn unregister(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Every open connection, by file descriptor.
    pub fn list(&self) -> Vec<Arc<ConnInfo>> {
        let mut v: Vec<_> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.fd);
        v
    }
}

/// Counts of one key prefix, for `stats detail dump`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrefixCounts {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

/// The most prefixes `stats detail` keeps; keys with new prefixes beyond
/// it are not counted, so a client cannot grow this without bound.
pub const DETAIL_MAX_PREFIXES: usize = 65_536;

/// `stats detail on|off|dump`: per-prefix counts of gets, hits, sets and
/// deletes, the prefix being the key up to its first ':' (memcached's
/// default delimiter). Keys without one are not counted, as in memcached.
/// Off by default; when off, connections check one flag per batch and
/// record nothing.
#[derive(Debug, Default)]
pub struct Detail {
    enabled: AtomicBool,
    prefixes: Mutex<HashMap<Vec<u8>, PrefixCounts>>,
}

impl Detail {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    fn with(&self, key: &[u8], f: impl FnOnce(&mut PrefixCounts)) {
        let Some(end) = key.iter().position(|&b| b == b':') else {
            return;
        };
        let prefix = &key[..end];
        let mut map = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(prefix) {
            f(c);
        } else if map.len() < DETAIL_MAX_PREFIXES {
            f(map.entry(prefix.to_vec()).or_default());
        }
    }

    pub fn record_get(&self, key: &[u8], hit: bool) {
        self.with(key, |c| {
            c.get += 1;
            c.hit += u64::from(hit);
        });
    }

    pub fn record_set(&self, key: &[u8]) {
        self.with(key, |c| c.set += 1);
    }

    pub fn record_delete(&self, key: &[u8]) {
        self.with(key, |c| c.del += 1);
    }

    /// Every prefix seen, sorted.
    pub fn dump(&self) -> Vec<(Vec<u8>, PrefixCounts)> {
        let map = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort();
        v
    }

    /// `stats reset` forgets the prefixes, as memcached's does.
    pub fn clear(&self) {
        self.prefixes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The process's user and system CPU time so far, as `getrusage` gives
/// them (seconds, microseconds); zero if it fails.
pub fn cpu_times() -> (libc::timeval, libc::timeval) {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        let zero = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        return (zero, zero);
    }
    (ru.ru_utime, ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_sum_across_slots_and_reset_clears() {
        let s = Stats::new(4);
        for conn in 0..10 {
            let mut l = LocalStats {
                cmd_get: 2,
                get_hits: 1,
                ..Default::default()
            };
            s.flush(conn, &mut l);
            assert!(l.is_zero());
        }
        let snap = s.snapshot();
        assert_eq!(snap.cmd_get, 20);
        assert_eq!(snap.get_hits, 10);
        s.reset();
        assert!(s.snapshot().is_zero());
        // The totals /metrics exports keep counting across a reset.
        assert_eq!(s.totals().cmd_get, 20);
        let mut l = LocalStats {
            cmd_get: 1,
            ..Default::default()
        };
        s.flush(3, &mut l);
        assert_eq!(s.snapshot().cmd_get, 1);
        assert_eq!(s.totals().cmd_get, 21);
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let s = Stats::new(2);
        s.record_latency(1, CommandKind::Get, 800);
        s.record_latency(1, CommandKind::Get, 1_000);
        s.record_latency(2, CommandKind::Get, 1_001);
        s.record_latency(1, CommandKind::Set, 5_000_000_000);
        let snap = s.latency();
        let get = CommandKind::Get as usize;
        let set = CommandKind::Set as usize;
        assert_eq!(snap.buckets[get][0], 2);
        assert_eq!(snap.buckets[get][1], 1);
        assert_eq!(snap.sum_ns[get], 2_801);
        assert_eq!(snap.buckets[set][LATENCY_BUCKETS - 1], 1);
        assert_eq!(
            snap.buckets[set][..LATENCY_BUCKETS - 1].iter().sum::<u64>(),
            0
        );
    }

    #[test]
    fn a_batch_shares_its_time_among_its_commands() {
        let s = Stats::new(2);
        let mut b = BatchKinds::default();
        b.add(CommandKind::Get);
        b.add(CommandKind::Get);
        b.add(CommandKind::Set);
        s.record_batch(1, &mut b, 6_000);
        assert_eq!(b.total, 0);
        let get = CommandKind::Get as usize;
        let set = CommandKind::Set as usize;
        let snap = s.latency();
        assert_eq!(snap.buckets[get][1], 2); // 2 µs each: the 2.5 µs bucket
        assert_eq!(snap.sum_ns[get], 4_000);
        assert_eq!(snap.buckets[set][1], 1);
        assert_eq!(snap.sum_ns[set], 2_000);
        assert_eq!(snap.buckets.iter().flatten().sum::<u64>(), 3);
    }

    #[test]
    fn a_batch_of_one_kind_counts_each_command() {
        let s = Stats::new(2);
        let mut b = BatchKinds::default();
        for _ in 0..4 {
            b.add(CommandKind::Delete);
        }
        s.record_batch(1, &mut b, 40_000);
        let del = CommandKind::Delete as usize;
        let snap = s.latency();
        assert_eq!(snap.buckets[del][3], 4); // 10 µs each
        assert_eq!(snap.sum_ns[del], 40_000);
        assert_eq!(snap.buckets.iter().flatten().sum::<u64>(), 4);
        // The next batch starts afresh: one get is not taken for a delete.
        b.add(CommandKind::Get);
        s.record_batch(1, &mut b, 500);
        assert_eq!(s.latency().buckets[CommandKind::Get as usize][0], 1);
        assert_eq!(s.latency().buckets[del][3], 4);
    }

    #[test]
    fn a_tally_adds_what_direct_recording_would_once_and_only_once() {
        let (direct, tallied) = (Stats::new(4), Stats::new(4));
        let mut tally = Tally::default();
        let mut b = BatchKinds::default();
        // Batches of several connections in one turn: one kind, mixed
        // kinds, the same cell twice, and times in different buckets.
        let batches: [(&[CommandKind], u64); 4] = [
            (&[CommandKind::Get], 800),
            (
                &[CommandKind::Get, CommandKind::Set, CommandKind::Get],
                9_000,
            ),
            (&[CommandKind::Get], 900),
            (&[CommandKind::Error], 7_000_000_000),
        ];
        for (conn, (kinds, ns)) in batches.iter().enumerate() {
            for &k in *kinds {
                b.add(k);
            }
            let mut copy = b.clone();
            direct.record_batch(conn as u64, &mut copy, *ns);
            tally.record_batch(&mut b, *ns);
            assert_eq!(b.total, 0);
            tally.counts.cmd_get += kinds.len() as u64;
        }
        tallied.flush_tally(0, &mut tally);
        assert_eq!(tallied.latency(), direct.latency());
        assert_eq!(tallied.totals().cmd_get, 6);
        // Flushed means emptied: a second flush adds nothing.
        assert!(tally.counts.is_zero());
        tallied.flush_tally(1, &mut tally);
        assert_eq!(tallied.latency(), direct.latency());
        assert_eq!(tallied.totals().cmd_get, 6);
        // And the tally is reused from a clean start, cells it held
        // before included.
        for (kind, ns) in [(CommandKind::Delete, 3_000), (CommandKind::Get, 800)] {
            b.add(kind);
            let mut copy = b.clone();
            direct.record_batch(7, &mut copy, ns);
            tally.record_batch(&mut b, ns);
        }
        tallied.flush_tally(2, &mut tally);
        assert_eq!(tallied.latency(), direct.latency());
    }

    #[test]
    fn detail_counts_by_prefix_and_skips_keys_without_one() {
        let d = Detail::default();
        d.record_get(b"foo:1", true);
        d.record_get(b"foo:2", false);
        d.record_set(b"a:b:c");
        d.record_delete(b"foo:3");
        d.record_get(b"bar", true);
        d.record_get(b":x", false);
        let dump = d.dump();
        assert_eq!(
            dump,
            vec![
                (
                    b"".to_vec(),
                    PrefixCounts {
                        get: 1,
                        ..Default::default()
                    }
                ),
                (
                    b"a".to_vec(),
                    PrefixCounts {
                        set: 1,
                        ..Default::default()
                    }
                ),
                (
                    b"foo".to_vec(),
                    PrefixCounts {
                        get: 2,
                        hit: 1,
                        set: 0,
                        del: 1
                    }
                ),
            ]
        );
        d.clear();
        assert!(d.dump().is_empty());
    }

    #[test]
    fn field_names_are_memcached_names() {
        let names: Vec<_> = LocalStats::default().fields().map(|(n, _)| n).collect();
        assert!(names.contains(&"get_hits"));
        assert!(names.contains(&"cas_badval"));
    }
}
