//! Microbenchmarks of the item store at growing item counts: get hit and
//! miss, set over an existing key, set that evicts, and the expiry sweep.
//! The point is the curve, not one figure: the cost per operation should
//! stay flat from 10^3 to 10^7 items.
//!
//! `cargo bench --bench store`; `FERRO_BENCH_MAX_ITEMS` caps the item
//! counts (default 10^7). See benches/README.md.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrocache::config::Cli;
use ferrocache::item_rules::StoreMode;
use ferrocache::store::{Clock, GetRequest, Lookup, Store, StoreConfig, StoreRequest, StoreResult};
use ferrocache::test_rng::Rng;

const VALUE: &[u8; 100] = &[b'v'; 100];

/// Relative seconds: the manual clock starts at 2. Every item gets the same
/// deadline so that, read at `NOW`, all are live, and swept at `DEADLINE`,
/// all are dead, without writing the store again between the phases.
const NOW: u32 = 2;
const DEADLINE: u32 = 1_000;

/// Items the daemon's sweeper looks at per shard and per tick.
const SWEEP_BUDGET: usize = 256;

const DEFAULT_MAX_ITEMS: u64 = 10_000_000;

/// A key built outside the timed loop: formatting one costs about as much
/// as a hash lookup, and would blur the figure.
#[derive(Clone, Copy)]
struct Key {
    len: u8,
    bytes: [u8; 23],
}

impl Key {
    /// `prefix` (4 bytes) followed by `n` in decimal, as clients name keys.
    fn new(prefix: &[u8; 4], mut n: u64) -> Key {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut bytes = [0u8; 23];
        bytes[..4].copy_from_slice(prefix);
        let len = 4 + digits.len() - at;
        bytes[4..len].copy_from_slice(&digits[at..]);
        Key {
            len: len as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

fn set(store: &Store, key: &[u8]) -> StoreResult {
    let req = StoreRequest::new(StoreMode::Set, key, 0, DEADLINE, VALUE);
    store.store(req, NOW).0
}

/// The store the daemon builds for `-m` just large enough for `n` items:
/// its shard count and anything else it derives from the memory limit
/// (segment sizes, say) follow the daemon's rules as they change. `-t 4`,
/// memcached's default, so the shard count does not depend on the machine.
fn daemon_config(n: u64) -> StoreConfig {
    let key_len = Key::new(b"key:", n - 1).len as usize;
    // A quarter to spare: the fill must not evict.
    let bytes = n as usize * Store::item_overhead(key_len, VALUE.len()) / 4 * 5;
    // -m 2 is the least that the default item size limit (1 MiB) allows.
    let megabytes = bytes.div_ceil(1 << 20).max(2).to_string();
    let cli = Cli::try_parse_from(["ferrocache", "-m", &megabytes, "-t", "4"])
        .unwrap_or_else(|e| panic!("-m {megabytes}: {e}"));
    match cli.validate() {
        Ok(config) => config.store,
        Err(e) => panic!("-m {megabytes}: {}", e.0),
    }
}

/// One store of `n` items (`key:0` .. `key:<n-1>`), shared by all the
/// benchmarks of that count: filling 10^7 items takes seconds.
struct Fixture {
    store: Store,
    n: u64,
    /// A limit the benchmarks cannot reach, for those that must not evict.
    /// A log-structured store takes new space for every overwrite and gets
    /// it back only when a whole segment is dead: a few seconds of random
    /// overwrites at 10^6 items grow it by about twice its size.
    roomy: usize,
    rng: Rng,
    /// The next never-used key number, for writes that must add a key.
    next_new: u64,
    /// Hits leave items ACTIVE, and eviction would then time their second
    /// chances too; the eviction benchmark rewrites every key first.
    read_since_rewrite: bool,
    /// Evictions and sweeps replace keys: from then on a random `key:<i>`
    /// below `n` may be gone.
    all_keys_present: bool,
    /// Items the sweep reclaimed that have not been put back yet.
    swept_owed: usize,
    sweep_ready: bool,
    /// Item count and evictions when the eviction benchmark began.
    evict_start: Option<(u64, u64)>,
}

impl Fixture {
    fn new(n: u64) -> Fixture {
        let started = Instant::now();
        let config = daemon_config(n);
        let (limit, shards) = (config.memory_limit, config.shards);
        let roomy = limit * 4 + (1 << 30);
        let store = Store::new(config, Clock::manual(1_700_000_000));
        write_all(&store, n);
        let stats = store.stats();
        assert_eq!((stats.curr_items, stats.evictions), (n, 0), "fill");
        store.set_memory_limit(roomy);
        let mut rng = Rng::new(0x5eed_0000_0000_0000 ^ n);
        for _ in 0..1000 {
            let i = rng.below(n);
            let hit = store.get(GetRequest::new(Key::new(b"key:", i).as_bytes()), NOW);
            assert!(matches!(hit, Lookup::Hit(_)), "key:{i} missing after fill");
            let miss = store.get(GetRequest::new(Key::new(b"mis:", i).as_bytes()), NOW);
            assert_eq!(miss, Lookup::Miss, "mis:{i}");
        }
        eprintln!(
            "store: {n} items filled in {:.1} s: {:.1} MiB of -m {}, {shards} shards",
            started.elapsed().as_secs_f64(),
            stats.bytes as f64 / f64::from(1 << 20),
            limit >> 20
        );
        Fixture {
            store,
            n,
            roomy,
            rng,
            next_new: n,
            // The checks above read 1000 keys.
            read_since_rewrite: true,
            all_keys_present: true,
            swept_owed: 0,
            sweep_ready: false,
            evict_start: None,
        }
    }
}

/// A key never stored before: `next` counts up from n.
fn new_key(next: &mut u64) -> Key {
    let key = Key::new(b"key:", *next);
    *next += 1;
    key
}

fn write_all(store: &Store, n: u64) {
    for i in 0..n {
        let r = set(store, Key::new(b"key:", i).as_bytes());
        assert_eq!(r, StoreResult::Stored, "key:{i}");
    }
}

/// One cache line of a pointer chase: where the next read goes.
#[repr(align(64))]
struct Line {
    next: usize,
}

/// `lines` cache lines linked in one random cycle (Sattolo's shuffle), so
/// that each read depends on the last and none is predictable: the cost of
/// one random memory access over that much memory.
fn chain(lines: usize, rng: &mut Rng) -> Vec<Line> {
    let mut next: Vec<u32> = (0..lines as u32).collect();
    for i in (1..lines).rev() {
        next.swap(i, rng.below(i as u64) as usize);
    }
    next.into_iter()
        .map(|n| Line { next: n as usize })
        .collect()
}

/// The item counts to run: powers of ten from 10^3 up to
/// `FERRO_BENCH_MAX_ITEMS`. Under `cargo test` (criterion's test mode,
/// an unoptimised build) only the smallest, so that the benchmarks are
/// checked on every test run without filling gigabytes.
fn item_counts() -> Vec<u64> {
    let max = match std::env::var("FERRO_BENCH_MAX_ITEMS") {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse::<u64>()
            .ok()
            .filter(|&m| m > 0)
            .unwrap_or_else(|| panic!("FERRO_BENCH_MAX_ITEMS={v:?}: want a positive count")),
        Err(_) => DEFAULT_MAX_ITEMS,
    };
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let max = if benchmarking { max } else { max.min(1000) };
    let counts: Vec<u64> = (3..=7)
        .map(|e| 10u64.pow(e))
        .filter(|&n| n <= max)
        .collect();
    if counts.is_empty() { vec![max] } else { counts }
}

fn store_benches(c: &mut Criterion) {
    for n in item_counts() {
        let mut fixture: Option<Fixture> = None;
        bench_n(c, n, &mut fixture);
        if let Some(f) = fixture {
            let started = Instant::now();
            drop(f);
            eprintln!(
                "store: {n} items freed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// The benchmarks for one item count, in an order that each leaves the
/// store as the next expects: reads and overwrites keep every key, the
/// eviction benchmark replaces keys, and the sweep empties and refills.
/// The store is built on first use, so a filter that skips every benchmark
/// of a count skips its fill too.
fn bench_n(c: &mut Criterion, n: u64, fixture: &mut Option<Fixture>) {
    let id = BenchmarkId::from_parameter(n);
    let one = Throughput::Elements(1);

    // The yardstick for the rest: past the caches, the store's figures can
    // only stay flat in memory accesses, and this is the price of one over
    // as much memory as the store of n items takes. Built and freed before
    // the store, so the two never take memory at once.
    let bytes =
        n as usize * Store::item_overhead(Key::new(b"key:", n - 1).len as usize, VALUE.len());
    let mut lines: Option<Vec<Line>> = None;
    let mut g = c.benchmark_group("mem_latency");
    g.throughput(one.clone());
    g.bench_function(id.clone(), |b| {
        let lines = lines.get_or_insert_with(|| chain(bytes.div_ceil(64), &mut Rng::new(n)));
        let mut at = 0;
        b.iter(|| {
            at = lines[at].next;
            at
        })
    });
    g.finish();
    drop(lines);

    let mut g = c.benchmark_group("get_hit");
    g.throughput(one.clone());
    g.bench_function(id.clone(), |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(n));
        assert!(
            f.all_keys_present,
            "get_hit must run before keys are replaced"
        );
        f.read_since_rewrite = true;
        let (store, rng) = (&f.store, &mut f.rng);
        b.iter_batched(
            || Key::new(b"key:", rng.below(n)),
            |key| {
                black_box(store.get(GetRequest::new(key.as_bytes()), NOW));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Same key lengths as the hits, but never stored.
    let mut g = c.benchmark_group("get_miss");
    g.throughput(one.clone());
    g.bench_function(id.clone(), |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(n));
        let (store, rng) = (&f.store, &mut f.rng);
        b.iter_batched(
            || Key::new(b"mis:", rng.below(n)),
            |key| {
                black_box(store.get(GetRequest::new(key.as_bytes()), NOW));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Under a limit it cannot reach: nothing is evicted, whether the store
    // rewrites the item in place or writes a new copy and drops the old.
    let evictions_before = fixture.as_ref().map(|f| f.store.stats().evictions);
    let mut g = c.benchmark_group("set_overwrite");
    g.throughput(one.clone());
    g.bench_function(id.clone(), |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(n));
        let (store, rng) = (&f.store, &mut f.rng);
        b.iter_batched(
            || Key::new(b"key:", rng.below(n)),
            |key| black_box(set(store, key.as_bytes())),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    if let Some(f) = fixture.as_ref() {
        let stats = f.store.stats();
        assert_eq!(
            stats.evictions,
            evictions_before.unwrap_or(0),
            "set_overwrite evicted"
        );
        assert_eq!(stats.curr_items, n, "set_overwrite changed the item count");
    }

    // New keys into a store whose limit is cut to what its n items take:
    // each set makes room, so on average it evicts one item (a store may
    // evict in batches, say a segment at a time).
    let mut sets = 0u64;
    let mut g = c.benchmark_group("set_evict");
    g.throughput(one.clone());
    g.bench_function(id.clone(), |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(n));
        if f.read_since_rewrite {
            let started = Instant::now();
            write_all(&f.store, f.n);
            f.read_since_rewrite = false;
            eprintln!(
                "store: {n} items rewritten in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        if f.evict_start.is_none() {
            let stats = f.store.stats();
            f.store.set_memory_limit(stats.bytes as usize);
            f.evict_start = Some((stats.curr_items, stats.evictions));
            f.all_keys_present = false;
        }
        let (store, next_new) = (&f.store, &mut f.next_new);
        b.iter_batched(
            || {
                sets += 1;
                new_key(next_new)
            },
            |key| black_box(set(store, key.as_bytes())),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    if let Some((f, (items, evictions))) = fixture
        .as_ref()
        .and_then(|f| Some((f, f.evict_start?)))
        .filter(|_| sets > 0)
    {
        let stats = f.store.stats();
        // A store that only grew did not evict: the figure would be a
        // plain insert's.
        assert!(
            stats.curr_items <= items + items / 4 + 1024,
            "{sets} new keys took the store from {items} to {} items",
            stats.curr_items
        );
        eprintln!(
            "store: set_evict/{n}: {sets} sets, {} evictions, {} items",
            stats.evictions - evictions,
            stats.curr_items
        );
        f.store.set_memory_limit(f.roomy);
    }

    // Every item is dead at DEADLINE. One sweep call is the daemon's tick:
    // up to SWEEP_BUDGET items looked at in every shard. The figure is per
    // item reclaimed, so that counts with different numbers of shards, or
    // a call that reclaims the whole of a small store, compare. What a
    // call reclaimed is stored again (untimed, under a limit it cannot
    // reach) before the next, so the store keeps its n items.
    let mut g = c.benchmark_group("sweep_expired");
    g.throughput(one);
    g.bench_function(id, |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(n));
        if !f.sweep_ready {
            f.store.set_memory_limit(f.roomy);
            f.all_keys_present = false;
            f.sweep_ready = true;
        }
        b.iter_custom(|items| {
            let mut timed = Duration::ZERO;
            let mut reclaimed = 0u64;
            // A call may find only space already reclaimed, but not for long.
            let mut idle = 0;
            while reclaimed < items {
                for _ in 0..std::mem::take(&mut f.swept_owed) {
                    let key = new_key(&mut f.next_new);
                    assert_eq!(set(&f.store, key.as_bytes()), StoreResult::Stored);
                }
                let started = Instant::now();
                let r = f.store.sweep(DEADLINE, SWEEP_BUDGET);
                timed += started.elapsed();
                idle = if r == 0 { idle + 1 } else { 0 };
                assert!(idle < 10_000, "the sweep stopped reclaiming at {n} items");
                f.swept_owed = r;
                reclaimed += r as u64;
            }
            timed.mul_f64(items as f64 / reclaimed as f64)
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = store_benches
}
criterion_main!(benches);
