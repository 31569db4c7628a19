//! Replays the hit-ratio benchmark's cache-aside traffic (`loadgen bench
//! --scenarios f`) against an in-process store, deterministically, to rank
//! eviction changes in seconds: the same Zipf sampler, seeds, keys, flags
//! and value sizes as the load generator (its `sample.rs` and `proto.rs`
//! are compiled in), 50 connections taking turns one get at a time, each
//! miss followed by its set, over the store the daemon builds for
//! `-m 64 -t 2`. A run over sockets interleaves the connections by timing
//! and so differs a little from run to run; this one does not, so a
//! difference of a few hundredths of a point is the change's own.
//!
//!     cargo run --release --example hit_replay -- [f1 f2 ...] [--rounds N] [--mem MiB]
//!
//! Prints one line per workload and round: the hit ratio of the measured
//! gets (one-hit wonders excluded, as the benchmark counts them), items
//! held and evictions. It compares no server: memcached's figures come
//! from `loadgen bench`.

#[allow(dead_code)]
#[path = "../benches/loadgen/src/proto.rs"]
mod proto;
#[allow(dead_code)]
#[path = "../benches/loadgen/src/sample.rs"]
mod sample;

use std::time::Instant;

use clap::Parser;
use ferrocache::config::Cli;
use ferrocache::item_rules::StoreMode;
use ferrocache::store::{Clock, GetRequest, Lookup, Store, StoreRequest};

use proto::Values;
use sample::{Rng, Zipf};

/// The benchmark's settings (`loadgen bench` defaults).
const CONNS: u64 = 50;
const WARMUP_FACTOR: f64 = 4.0;
const MEASURED_GETS: u64 = 1_000_000;
const SCAN_PCT: u64 = 20;
const SCAN_RUN_STRIDE: u64 = 1 << 40;

/// (id, Zipf exponent, smallest value, largest value, one-hit wonders)
const WORKLOADS: [(&str, f64, usize, usize, bool); 6] = [
    ("f1", 0.99, 1000, 1000, false),
    ("f2", 0.99, 100, 2000, false),
    ("f3", 0.8, 1000, 1000, false),
    ("f4", 0.8, 100, 2000, false),
    ("f5", 0.99, 100, 100, false),
    ("f6", 0.99, 1000, 1000, true),
];

#[derive(Parser)]
struct Args {
    /// Workloads to replay (f1..f6); all if none.
    workloads: Vec<String>,
    /// Rounds per workload on the same store, each with the next seeds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Store memory, MiB (`-m`).
    #[arg(long, default_value_t = 64)]
    mem: u64,
}

/// One connection's request source, as the load generator's cache-aside
/// `Generator`: the same seed derivation and draws.
struct Conn {
    rng: Rng,
    scan_next: u64,
}

struct Counts {
    gets: u64,
    hits: u64,
}

fn main() {
    let args = Args::parse();
    for &(id, s, min, max, scan) in &WORKLOADS {
        if !args.workloads.is_empty() && !args.workloads.iter().any(|w| w == id) {
            continue;
        }
        let mem = args.mem.to_string();
        let cli = Cli::try_parse_from(["ferrocache", "-m", &mem, "-t", "2"]).expect("flags");
        let config = cli.validate().unwrap_or_else(|e| panic!("{}", e.0)).store;
        let store = Store::new(config, Clock::manual(1_700_000_000));
        let keys = (4.0 * (args.mem << 20) as f64 / ((min + max) as f64 / 2.0)).floor() as u64;
        let zipf = Zipf::new(keys, s);
        let values = Values::mixed(min, max);
        let warmup = (WARMUP_FACTOR * keys as f64).round() as u64;
        for round in 0..args.rounds {
            for measured in [false, true] {
                let seed = 2 * round as u64 + 1 + u64::from(measured);
                let run = 2 * round as u64 + u64::from(measured);
                let scan_start = keys + run * SCAN_RUN_STRIDE;
                let ops = if measured { MEASURED_GETS } else { warmup };
                let started = Instant::now();
                let c = replay(
                    &store,
                    &zipf,
                    &values,
                    seed,
                    scan.then_some(scan_start),
                    ops,
                );
                if measured {
                    let st = store.stats();
                    println!(
                        "{id} round {} hit ratio {:.3}% ({} gets)  items {}  evictions {}  {:.1} s",
                        round + 1,
                        c.hits as f64 * 100.0 / c.gets as f64,
                        c.gets,
                        st.curr_items,
                        st.evictions,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
}

/// `ops` gets split over the connections, which take turns; a miss is
/// followed at once by its set. With `scan`, a fifth of the gets are of
/// one-hit wonders numbered from it (not counted).
fn replay(
    store: &Store,
    zipf: &Zipf,
    values: &Values,
    seed: u64,
    scan: Option<u64>,
    ops: u64,
) -> Counts {
    let mut conns: Vec<Conn> = (0..CONNS)
        .map(|c| Conn {
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(c)),
            scan_next: scan.unwrap_or(0) + c,
        })
        .collect();
    let per_conn = ops.div_ceil(CONNS);
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut counts = Counts { gets: 0, hits: 0 };
    let now = 2;
    for _ in 0..per_conn {
        for conn in &mut conns {
            let (id, counted) = if scan.is_some() && conn.rng.below(100) < SCAN_PCT {
                let id = conn.scan_next;
                conn.scan_next += CONNS;
                (id, false)
            } else {
                (zipf.sample(&mut conn.rng) - 1, true)
            };
            key.clear();
            proto::push_key(&mut key, id);
            let hit = matches!(store.get(GetRequest::new(&key), now), Lookup::Hit(_));
            if counted {
                counts.gets += 1;
                counts.hits += u64::from(hit);
            }
            if !hit {
                value.clear();
                values.push(&mut value, id, 0);
                let flags = proto::flags_of(id);
                let req = StoreRequest::new(StoreMode::Set, &key, flags, 0, &value);
                store.store(req, now);
            }
        }
    }
    counts
}
