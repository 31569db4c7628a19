//! The load itself: N connections, each keeping up to `depth` requests in
//! flight, checking every reply against what it expects.
//!
//! Each connection owns the keys `id ≡ conn (mod conns)` for the mixed
//! workloads, so it always knows the exact version a `get` must return
//! (a server handles one connection's requests in order). The cache-aside
//! workload shares keys between connections; its values never change, so
//! every hit is checked exactly as well. Its one-hit wonders (scan keys)
//! come from a range of ids above the Zipf keys that no request repeats, so
//! a hit on one is an error.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::hist::Histogram;
use crate::proto::{self, GetOutcome, Parsed, Values};
use crate::sample::{Rng, Zipf};

/// A server that stays silent this long has failed the run.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys in one multi-get at most.
pub const MAX_MULTI: usize = 16;
const READ_CHUNK: usize = 64 * 1024;
const MAX_READ_BUF: usize = 8 * 1024 * 1024;

/// What the connections do.
#[derive(Clone, Debug)]
pub enum Workload {
    /// Uniform keys in `0..keys`, `get_pct`% gets (of `multi` keys each),
    /// the rest sets. Every key is set to version 0 before the clock starts.
    Mixed {
        keys: u64,
        get_pct: u32,
        multi: usize,
    },
    /// Set keys `start..start + count` once each, in order.
    Fill { start: u64, count: u64 },
    /// Get keys `start..start + count` (as set by `Fill`); misses allowed.
    Scan { start: u64, count: u64 },
    /// Cache-aside over Zipf(`s`) keys in `0..keys`: get, and on a miss set
    /// the key's (never changing) value. With `scan_pct` > 0, that share of
    /// requests instead gets (a sure miss) and then sets a one-hit wonder: a
    /// key from `scan_start..` (at or above `keys`) that no connection ever
    /// uses again.
    CacheAside {
        keys: u64,
        s: f64,
        scan_pct: u32,
        scan_start: u64,
    },
}

/// When a connection issues requests and which of them count. The counts
/// are of requests, except in cache-aside, where they are of gets only, so
/// that two servers see the same gets in warm-up and measurement whatever
/// their hit ratios (each miss adds a set).
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Requests before this many (per connection) are warm-up.
    pub warmup_ops: u64,
    /// Requests issued before this instant are warm-up.
    pub warmup_until: Instant,
    /// No request is issued after this many (per connection)...
    pub max_ops: u64,
    /// ...or after this instant.
    pub until: Instant,
}

/// Counters of one connection, summed over all of them at the end.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub latency: Histogram,
    /// Measured requests completed.
    pub requests: u64,
    /// Measured key operations (a multi-get of 16 keys is 16).
    pub ops: u64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    /// Misses over the whole run, warm-up and preload included.
    pub all_misses: u64,
    pub sets: u64,
    /// Measured gets of one-hit-wonder keys (not in `gets`, `hits` or
    /// `misses`: each is a miss by construction).
    pub scan_gets: u64,
    /// Sets refused for lack of memory, over the whole run.
    pub refused: u64,
    pub first_send: Option<Instant>,
    pub last_done: Option<Instant>,
    pub errors: Vec<String>,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.latency.merge(&o.latency);
        self.requests += o.requests;
        self.ops += o.ops;
        self.gets += o.gets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.all_misses += o.all_misses;
        self.refused += o.refused;
        self.sets += o.sets;
        self.scan_gets += o.scan_gets;
        self.first_send = match (self.first_send, o.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_done = match (self.last_done, o.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.errors.extend(o.errors.iter().cloned());
    }
}

/// What a request in flight expects back. Kept inline (no allocation per
/// request): the in-flight queue is a reused ring of these.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
enum Kind {
    Set,
    Get {
        n: u8,
        /// A one-hit-wonder key: never set before, so it must miss.
        scan: bool,
        keys: [(u64, u32); MAX_MULTI],
    },
}

struct Pending {
    sent: Instant,
    measured: bool,
    kind: Kind,
}

/// The request source of one connection.
pub struct Generator {
    conn: u64,
    conns: u64,
    rng: Rng,
    values: Values,
    kind: GenKind,
    /// Sets owed after cache-aside misses, sent before anything new.
    followups: VecDeque<u64>,
}

enum GenKind {
    Mixed {
        versions: Vec<u32>,
        get_pct: u32,
        multi: usize,
    },
    Scan {
        next: u64,
        end: u64,
        get: bool,
    },
    CacheAside {
        zipf: Zipf,
        scan_pct: u32,
        /// The next one-hit wonder is `scan_next`; then `scan_next + conns`.
        scan_next: u64,
    },
}

impl Generator {
    pub fn new(workload: &Workload, conn: u64, conns: u64, seed: u64, values: Values) -> Generator {
        let kind = match *workload {
            Workload::Mixed {
                keys,
                get_pct,
                multi,
            } => {
                let owned = keys.saturating_sub(conn).div_ceil(conns);
                GenKind::Mixed {
                    versions: vec![0; owned as usize],
                    get_pct,
                    multi: multi.clamp(1, MAX_MULTI).min(owned as usize),
                }
            }
            Workload::Fill { start, count } | Workload::Scan { start, count } => GenKind::Scan {
                next: start + conn,
                end: start + count,
                get: matches!(workload, Workload::Scan { .. }),
            },
            Workload::CacheAside {
                keys,
                s,
                scan_pct,
                scan_start,
            } => {
                assert!(
                    scan_pct == 0 || scan_start >= keys,
                    "one-hit wonders must not overlap the Zipf keys"
                );
                GenKind::CacheAside {
                    zipf: Zipf::new(keys, s),
                    scan_pct: scan_pct.min(100),
                    // Connections take turns: ids ≡ conn (mod conns).
                    scan_next: scan_start + conn,
                }
            }
        };
        Generator {
            conn,
            conns,
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(conn)),
            values,
            kind,
            followups: VecDeque::new(),
        }
    }

    /// A generator that sets every key this connection owns to version 0:
    /// the preload of the mixed workloads.
    pub fn preload(&self) -> Option<Generator> {
        let GenKind::Mixed { versions, .. } = &self.kind else {
            return None;
        };
        Some(Generator {
            conn: self.conn,
            conns: self.conns,
            rng: self.rng.clone(),
            values: self.values.clone(),
            kind: GenKind::Scan {
                next: self.conn,
                end: self.conn + versions.len() as u64 * self.conns,
                get: false,
            },
            followups: VecDeque::new(),
        })
    }

    /// Whether `kind` counts towards the plan's request counts: in
    /// cache-aside only gets do, the sets after misses ride along.
    fn counts(&self, kind: &Kind) -> bool {
        !matches!((&self.kind, kind), (GenKind::CacheAside { .. }, Kind::Set))
    }

    /// True when a fill or scan has issued all its keys.
    pub fn is_exhausted(&self) -> bool {
        matches!(self.kind, GenKind::Scan { next, end, .. } if next >= end)
    }

    fn owned_id(&self, j: usize) -> u64 {
        self.conn + j as u64 * self.conns
    }

    /// Appends the next request to `out`; `None` when the workload is done.
    fn next(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        if let Some(id) = self.followups.pop_front() {
            proto::push_set(out, &self.values, id, 0);
            return Some(Kind::Set);
        }
        match &mut self.kind {
            GenKind::Scan { next, end, get } => {
                if *next >= *end {
                    return None;
                }
                let id = *next;
                *next += self.conns;
                if *get {
                    Some(get_kind(out, &[(id, 0)], false))
                } else {
                    proto::push_set(out, &self.values, id, 0);
                    Some(Kind::Set)
                }
            }
            GenKind::CacheAside {
                zipf,
                scan_pct,
                scan_next,
            } => {
                // No draw without scans, so plain cache-aside keeps the key
                // sequence it always had for a seed.
                if *scan_pct > 0 && self.rng.below(100) < u64::from(*scan_pct) {
                    let id = *scan_next;
                    *scan_next += self.conns;
                    return Some(get_kind(out, &[(id, 0)], true));
                }
                // Rank 1 is the hottest; ranks map to ids 0..keys.
                let id = zipf.sample(&mut self.rng) - 1;
                Some(get_kind(out, &[(id, 0)], false))
            }
            GenKind::Mixed {
                versions,
                get_pct,
                multi,
            } => {
                let owned = versions.len();
                if owned == 0 {
                    return None;
                }
                if self.rng.below(100) < u64::from(*get_pct) {
                    let mut keys = [(0u64, 0u32); MAX_MULTI];
                    let mut n = 0;
                    // Distinct keys; with owned >= multi this ends quickly, and
                    // the bound keeps it finite regardless.
                    for _ in 0..*multi * 64 {
                        if n == *multi {
                            break;
                        }
                        let j = self.rng.below(owned as u64) as usize;
                        let id = self.conn + j as u64 * self.conns;
                        if keys[..n].iter().all(|&(k, _)| k != id) {
                            keys[n] = (id, versions[j]);
                            n += 1;
                        }
                    }
                    Some(get_kind(out, &keys[..n], false))
                } else {
                    let j = self.rng.below(owned as u64) as usize;
                    versions[j] = versions[j].wrapping_add(1);
                    let version = versions[j];
                    let id = self.owned_id(j);
                    proto::push_set(out, &self.values, id, version);
                    Some(Kind::Set)
                }
            }
        }
    }

    fn on_get(&mut self, keys: &[(u64, u32)], outcome: GetOutcome) {
        if let GenKind::CacheAside { .. } = self.kind
            && outcome.misses > 0
        {
            self.followups.push_back(keys[0].0);
        }
    }
}

fn get_kind(out: &mut Vec<u8>, keys: &[(u64, u32)], scan: bool) -> Kind {
    let mut ids = [0u64; MAX_MULTI];
    let mut arr = [(0u64, 0u32); MAX_MULTI];
    for (i, &k) in keys.iter().enumerate() {
        ids[i] = k.0;
        arr[i] = k;
    }
    proto::push_get(out, &ids[..keys.len()]);
    Kind::Get {
        n: keys.len() as u8,
        scan,
        keys: arr,
    }
}

/// One client connection with its buffers.
pub struct Conn {
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    filled: usize,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            wbuf: Vec::with_capacity(READ_CHUNK),
            rbuf: vec![0; READ_CHUNK],
            filled: 0,
        })
    }

    /// Runs `gen` under `plan` with up to `depth` requests in flight,
    /// adding to `stats`. A reply that is not exactly right ends the
    /// connection's run with an error (the stream can't be trusted after).
    pub async fn drive(
        &mut self,
        generator: &mut Generator,
        plan: &Plan,
        depth: usize,
        stats: &mut Stats,
    ) {
        if let Err(e) = self.drive_inner(generator, plan, depth.max(1), stats).await {
            stats
                .errors
                .push(format!("connection {}: {e}", generator.conn));
        }
    }

    async fn drive_inner(
        &mut self,
        generator: &mut Generator,
        plan: &Plan,
        depth: usize,
        stats: &mut Stats,
    ) -> Result<(), String> {
        let mut inflight: VecDeque<Pending> = VecDeque::with_capacity(depth);
        let mut issued: u64 = 0;
        let mut issuing = true;
        loop {
            let batch_start = inflight.len();
            if issuing {
                let now = Instant::now();
                if now >= plan.until || issued >= plan.max_ops {
                    issuing = false;
                }
                while issuing && inflight.len() < depth {
                    let Some(kind) = generator.next(&mut self.wbuf) else {
                        issuing = false;
                        break;
                    };
                    let measured = issued >= plan.warmup_ops && now >= plan.warmup_until;
                    inflight.push_back(Pending {
                        sent: now,
                        measured,
                        kind,
                    });
                    issued += u64::from(generator.counts(&kind));
                    if issued >= plan.max_ops {
                        issuing = false;
                    }
                }
            }
            if !self.wbuf.is_empty() {
                // Stamp the new requests just before they go out.
                let now = Instant::now();
                for p in inflight.iter_mut().skip(batch_start) {
                    p.sent = now;
                }
                timeout(IO_TIMEOUT, self.stream.write_all(&self.wbuf))
                    .await
                    .map_err(|_| "write timed out".to_string())?
                    .map_err(|e| format!("write: {e}"))?;
                self.wbuf.clear();
            }
            if inflight.is_empty() {
                if issuing {
                    continue;
                }
                return Ok(());
            }
            if self.filled == self.rbuf.len() {
                if self.rbuf.len() >= MAX_READ_BUF {
                    return Err("reply larger than the read buffer".into());
                }
                self.rbuf.resize(self.rbuf.len() * 2, 0);
            }
            let n = timeout(IO_TIMEOUT, self.stream.read(&mut self.rbuf[self.filled..]))
                .await
                .map_err(|_| {
                    format!(
                        "no reply within {IO_TIMEOUT:?} ({} requests in flight)",
                        inflight.len()
                    )
                })?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "server closed the connection with {} requests in flight",
                    inflight.len()
                ));
            }
            self.filled += n;
            let done_at = Instant::now();
            let mut pos = 0;
            while let Some(p) = inflight.front() {
                let buf = &self.rbuf[pos..self.filled];
                let (used, keys, outcome) = match &p.kind {
                    Kind::Set => match proto::parse_stored(buf)? {
                        Parsed::Incomplete => break,
                        Parsed::Done(used, stored) => {
                            stats.refused += u64::from(!stored);
                            (used, 0, None)
                        }
                    },
                    Kind::Get { n, scan, keys } => {
                        match proto::parse_get(buf, &keys[..*n as usize], &generator.values)? {
                            Parsed::Incomplete => break,
                            Parsed::Done(_, o) if *scan && o.hits > 0 => {
                                return Err(format!(
                                    "get of one-hit-wonder key {} hit, though it was never set",
                                    keys[0].0
                                ));
                            }
                            Parsed::Done(used, o) => (used, *n as u64, Some(o)),
                        }
                    }
                };
                pos += used;
                let p = inflight.pop_front().expect("front exists");
                if let Some(o) = outcome {
                    let scan = matches!(p.kind, Kind::Get { scan: true, .. });
                    if p.measured && scan {
                        stats.scan_gets += keys;
                    } else if p.measured {
                        stats.gets += keys;
                        stats.hits += u64::from(o.hits);
                        stats.misses += u64::from(o.misses);
                    }
                    if !scan {
                        stats.all_misses += u64::from(o.misses);
                    }
                    if let Kind::Get { n, keys, .. } = &p.kind {
                        generator.on_get(&keys[..*n as usize], o);
                    }
                } else if p.measured {
                    stats.sets += 1;
                }
                if p.measured {
                    stats.requests += 1;
                    stats.ops += keys.max(1);
                    stats
                        .latency
                        .record(done_at.duration_since(p.sent).as_nanos() as u64);
                    stats.first_send = Some(stats.first_send.map_or(p.sent, |f| f.min(p.sent)));
                    stats.last_done = Some(done_at);
                }
            }
            if pos > 0 {
                self.rbuf.copy_within(pos..self.filled, 0);
                self.filled -= pos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn cache_aside(keys: u64, scan_pct: u32, scan_start: u64) -> Workload {
        Workload::CacheAside {
            keys,
            s: 0.99,
            scan_pct,
            scan_start,
        }
    }

    /// What one generator asks for: (is a get, one-hit wonder, key id) per
    /// request, every get answered as a miss (so every get is followed by
    /// its set, as against an empty cache).
    fn requests(
        workload: &Workload,
        conn: u64,
        conns: u64,
        seed: u64,
        n: usize,
    ) -> Vec<(bool, bool, u64)> {
        let mut generator = Generator::new(workload, conn, conns, seed, Values::new(100));
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..n {
            out.clear();
            match generator.next(&mut out).expect("cache-aside never ends") {
                Kind::Get { n, scan, keys } => {
                    assert_eq!(n, 1);
                    seen.push((true, scan, keys[0].0));
                    generator.on_get(&keys[..1], GetOutcome { hits: 0, misses: 1 });
                }
                Kind::Set => {
                    let text = std::str::from_utf8(&out[..out.len().min(40)]).unwrap_or("");
                    let id = text
                        .strip_prefix("set key:")
                        .and_then(|t| t.split(' ').next())
                        .and_then(|t| t.parse().ok())
                        .expect("a set of key:<id>");
                    seen.push((false, false, id));
                }
            }
        }
        seen
    }

    #[test]
    fn one_hit_wonders_never_overlap_the_zipf_keys_nor_repeat() {
        let keys = 10_000;
        let conns = 7;
        let workload = cache_aside(keys, 20, keys);
        let mut scan_ids = HashSet::new();
        let mut scan_gets = 0;
        let mut zipf_gets = 0;
        for conn in 0..conns {
            let reqs = requests(&workload, conn, conns, 1, 20_000);
            for w in reqs.windows(2) {
                // Each miss is followed by the set of the same key.
                if w[0].0 {
                    assert_eq!(w[1], (false, false, w[0].2));
                }
            }
            for (get, scan, id) in reqs {
                if !get {
                    continue;
                }
                if scan {
                    scan_gets += 1;
                    assert!(id >= keys, "one-hit wonder {id} inside the Zipf keys");
                    assert!(scan_ids.insert(id), "one-hit wonder {id} used twice");
                } else {
                    zipf_gets += 1;
                    assert!(id < keys, "Zipf key {id} outside 0..{keys}");
                }
            }
        }
        // About 20% of the gets (70,000 in all) are one-hit wonders.
        let share = scan_gets as f64 / (scan_gets + zipf_gets) as f64;
        assert!((0.19..0.21).contains(&share), "share {share}");
    }

    #[test]
    fn one_hit_wonders_start_where_told() {
        let reqs = requests(&cache_aside(100, 50, 1 << 40), 3, 4, 9, 1000);
        let scans: Vec<u64> = reqs.iter().filter(|r| r.1).map(|r| r.2).collect();
        assert!(scans.len() > 100);
        for (j, id) in scans.iter().enumerate() {
            assert_eq!(*id, (1 << 40) + 3 + 4 * j as u64);
        }
    }

    #[test]
    #[should_panic(expected = "must not overlap")]
    fn one_hit_wonders_inside_the_zipf_keys_are_refused() {
        let _ = Generator::new(&cache_aside(100, 10, 99), 0, 1, 1, Values::new(100));
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        let workload = cache_aside(1000, 20, 1000);
        assert_eq!(
            requests(&workload, 2, 5, 3, 5000),
            requests(&workload, 2, 5, 3, 5000)
        );
        assert_ne!(
            requests(&workload, 2, 5, 3, 5000),
            requests(&workload, 2, 5, 4, 5000)
        );
    }

    /// A minimal text-protocol server on loopback: `get` and `set` of one
    /// key, holding at most `capacity` items (the oldest set goes first).
    async fn toy_server(capacity: usize) -> SocketAddr {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Blocks as a get returns them, by key; keys in the order set.
        type Items = (HashMap<Vec<u8>, Vec<u8>>, VecDeque<Vec<u8>>);
        let items: Arc<Mutex<Items>> = Arc::default();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let items = items.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let mut out = Vec::new();
                        while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
                            let words: Vec<&str> = line.split(' ').collect();
                            let mut used = eol + 2;
                            if words[0] == "get" {
                                let items = items.lock().unwrap();
                                if let Some(v) = items.0.get(words[1].as_bytes()) {
                                    out.extend_from_slice(v);
                                }
                                out.extend_from_slice(b"END\r\n");
                            } else {
                                let len: usize = words[4].parse().unwrap();
                                if buf.len() < used + len + 2 {
                                    break;
                                }
                                let mut block =
                                    format!("VALUE {} {} {len}\r\n", words[1], words[2])
                                        .into_bytes();
                                block.extend_from_slice(&buf[used..used + len + 2]);
                                used += len + 2;
                                let mut items = items.lock().unwrap();
                                let key = words[1].as_bytes().to_vec();
                                if items.0.insert(key.clone(), block).is_none() {
                                    items.1.push_back(key);
                                }
                                while items.1.len() > capacity {
                                    let old = items.1.pop_front().unwrap();
                                    items.0.remove(&old);
                                }
                                out.extend_from_slice(b"STORED\r\n");
                            }
                            buf.drain(..used);
                        }
                        if sock.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Cache-aside against a server: warm-up then measured gets, as `run`.
    async fn measure(addr: SocketAddr, workload: &Workload, conns: u64) -> Stats {
        let far = Instant::now() + Duration::from_secs(60);
        let plan = Plan {
            warmup_ops: 300,
            warmup_until: Instant::now(),
            max_ops: 300 + 500,
            until: far,
        };
        let mut total = Stats::default();
        for c in 0..conns {
            let mut generator = Generator::new(workload, c, conns, 7, Values::mixed(100, 300));
            let mut conn = Conn::connect(addr).await.unwrap();
            let mut stats = Stats::default();
            conn.drive(&mut generator, &plan, 4, &mut stats).await;
            total.merge(&stats);
        }
        total
    }

    #[test]
    fn cache_aside_measures_the_same_gets_whatever_the_hit_ratio() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let workload = cache_aside(2000, 20, 2000);
            // One server holds nearly nothing, the other everything.
            let small = measure(toy_server(10).await, &workload, 3).await;
            let large = measure(toy_server(1_000_000).await, &workload, 3).await;
            for s in [&small, &large] {
                assert!(s.errors.is_empty(), "{:?}", s.errors);
                // 500 measured gets a connection, of Zipf keys or one-hit
                // wonders; the sets after misses come on top.
                assert_eq!(s.gets + s.scan_gets, 3 * 500);
            }
            assert_eq!(small.gets, large.gets);
            assert_eq!(small.scan_gets, large.scan_gets);
            assert!(small.sets > large.sets);
            assert!(
                small.hits * 4 < large.hits,
                "{} vs {}",
                small.hits,
                large.hits
            );
        });
    }

    #[test]
    fn a_hit_on_a_one_hit_wonder_fails_the_run() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let addr = toy_server(1_000_000).await;
            // Someone else set the keys the one-hit wonders will use.
            let fill = Workload::Fill {
                start: 2000,
                count: 100,
            };
            let mut generator = Generator::new(&fill, 0, 1, 1, Values::mixed(100, 300));
            let mut conn = Conn::connect(addr).await.unwrap();
            let mut stats = Stats::default();
            let plan = Plan {
                warmup_ops: 0,
                warmup_until: Instant::now(),
                max_ops: u64::MAX,
                until: Instant::now() + Duration::from_secs(60),
            };
            conn.drive(&mut generator, &plan, 4, &mut stats).await;
            assert!(stats.errors.is_empty(), "{:?}", stats.errors);
            let stats = measure(addr, &cache_aside(2000, 50, 2000), 1).await;
            assert_eq!(stats.errors.len(), 1);
            assert!(stats.errors[0].contains("never set"), "{:?}", stats.errors);
        });
    }

    #[test]
    fn without_scans_cache_aside_only_draws_zipf_keys() {
        let reqs = requests(&cache_aside(1000, 0, 0), 0, 1, 1, 5000);
        assert!(reqs.iter().all(|&(_, scan, id)| !scan && id < 1000));
        // The key sequence is the plain Zipf one for this connection's seed.
        let zipf = Zipf::new(1000, 0.99);
        let mut rng = Rng::new(1u64.wrapping_mul(1_000_003));
        for (_, _, id) in reqs.iter().filter(|r| r.0) {
            assert_eq!(*id, zipf.sample(&mut rng) - 1);
        }
    }
}
