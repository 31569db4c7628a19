//! The load itself: N connections, each keeping up to `depth` requests in
//! flight, checking every reply against what it expects.
//!
//! Each connection owns the keys `id ≡ conn (mod conns)` for the mixed
//! workloads, so it always knows the exact version a `get` must return
//! (a server handles one connection's requests in order). The cache-aside
//! workload shares keys between connections; its values never change, so
//! every hit is checked exactly as well.

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
    /// the key's (never changing) value.
    CacheAside { keys: u64, s: f64 },
}

/// When a connection issues requests and which of them count.
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
            Workload::CacheAside { keys, s } => GenKind::CacheAside {
                zipf: Zipf::new(keys, s),
            },
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
                    Some(get_kind(out, &[(id, 0)]))
                } else {
                    proto::push_set(out, &self.values, id, 0);
                    Some(Kind::Set)
                }
            }
            GenKind::CacheAside { zipf } => {
                // Rank 1 is the hottest; ranks map to ids 0..keys.
                let id = zipf.sample(&mut self.rng) - 1;
                Some(get_kind(out, &[(id, 0)]))
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
                    Some(get_kind(out, &keys[..n]))
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

fn get_kind(out: &mut Vec<u8>, keys: &[(u64, u32)]) -> Kind {
    let mut ids = [0u64; MAX_MULTI];
    let mut arr = [(0u64, 0u32); MAX_MULTI];
    for (i, &k) in keys.iter().enumerate() {
        ids[i] = k.0;
        arr[i] = k;
    }
    proto::push_get(out, &ids[..keys.len()]);
    Kind::Get {
        n: keys.len() as u8,
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
                    issued += 1;
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
                    Kind::Get { n, keys } => {
                        match proto::parse_get(buf, &keys[..*n as usize], &generator.values)? {
                            Parsed::Incomplete => break,
                            Parsed::Done(used, o) => (used, *n as u64, Some(o)),
                        }
                    }
                };
                pos += used;
                let p = inflight.pop_front().expect("front exists");
                if let Some(o) = outcome {
                    stats.all_misses += u64::from(o.misses);
                    if p.measured {
                        stats.gets += keys;
                        stats.hits += u64::from(o.hits);
                        stats.misses += u64::from(o.misses);
                    }
                    if let Kind::Get { n, keys } = &p.kind {
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
