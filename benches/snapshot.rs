//! Warm-restart speed: a store filled to its `-m` (1 GiB by default) saved
//! to a snapshot file and loaded back, with 100-byte and with 1 KiB values.
//! Reports items/s and MiB/s of file for each. The file goes to /dev/shm
//! (tmpfs: the figure is the store's, not a disk's) unless
//! `FERRO_SNAPSHOT_DIR` names another directory; `FERRO_SNAPSHOT_MIB` sets
//! `-m` (default 1024).
//!
//! `cargo bench --bench snapshot`. Under `cargo test` (no `--bench`) it
//! runs once at `-m 16`, untimed in spirit, checking the round trip.
//! See benches/README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ferrocache::config::Cli;
use ferrocache::item_rules::StoreMode;
use ferrocache::store::{Clock, GetRequest, Lookup, Restore, Store, StoreRequest, StoreResult};

const UNIX: i64 = 1_700_000_000;
/// Timed runs of each; the table shows the fastest and the slowest.
const RUNS: usize = 3;

fn main() {
    let timed = std::env::args().any(|a| a == "--bench");
    let mib: usize = match std::env::var("FERRO_SNAPSHOT_MIB") {
        Ok(v) => v.parse().expect("FERRO_SNAPSHOT_MIB: a number"),
        Err(_) if timed => 1024,
        Err(_) => 16,
    };
    let dir = std::env::var_os("FERRO_SNAPSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
    let path = dir.join(format!("ferrocache-bench-{}.snapshot", std::process::id()));
    println!(
        "| values | items | file MiB | save s | save items/s | save MiB/s | load s | load items/s | load MiB/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for value_len in [100, 1024] {
        bench(mib, value_len, &path, if timed { RUNS } else { 1 });
    }
    let _ = std::fs::remove_file(&path);
}

/// The store the daemon builds for `-m mib -t 4`.
fn daemon_store(mib: usize) -> ferrocache::store::StoreConfig {
    let m = mib.to_string();
    let cli = Cli::try_parse_from(["ferrocache", "-m", &m, "-t", "4"]).expect("flags");
    cli.validate().expect("valid flags").store
}

/// Sets `key:0`, `key:1`, ... until the next would evict; returns the count.
fn fill(store: &Store, value_len: usize) -> u64 {
    let value = vec![b'v'; value_len];
    let now = store.clock().now();
    let limit = store.config().memory_limit as u64;
    let mut n = 0u64;
    // Stop short of the limit: a fill must not evict, and an index that
    // doubles takes a large step at once.
    while store.stats().bytes + limit / 32 < limit {
        for _ in 0..100 {
            let key = format!("key:{n}");
            let req = StoreRequest::new(StoreMode::Set, key.as_bytes(), 0, 0, &value);
            assert_eq!(store.store(req, now).0, StoreResult::Stored);
            n += 1;
        }
    }
    assert_eq!(store.stats().evictions, 0, "the fill evicted");
    n
}

fn bench(mib: usize, value_len: usize, path: &std::path::Path, runs: usize) {
    let config = daemon_store(mib);
    let store = Store::new(config.clone(), Clock::manual(UNIX));
    let items = fill(&store, value_len);
    let mut saves = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let saved = store.save(path).expect("save");
        assert_eq!(saved.items, items);
        bytes = saved.bytes;
        saves.push(saved.duration);
    }
    drop(store);
    let mut loads = Vec::new();
    for run in 0..runs {
        // The file is kept for the next run: a loaded store would remove
        // it only once it serves.
        let started = Instant::now();
        let (loaded, outcome) = Store::restore(config.clone(), Clock::manual(UNIX + 10), path);
        loads.push(started.elapsed());
        match outcome {
            Restore::Loaded(w) => assert_eq!(w.items, items),
            other => panic!("not loaded: {other:?}"),
        }
        if run == 0 {
            for i in (0..items).step_by((items / 1000).max(1) as usize) {
                let key = format!("key:{i}");
                let hit = loaded.get(GetRequest::new(key.as_bytes()), loaded.clock().now());
                assert!(matches!(hit, Lookup::Hit(ref h) if h.value.data.len() == value_len));
            }
        }
        drop(loaded);
    }
    let mib_file = bytes as f64 / (1 << 20) as f64;
    let span = |ds: &[Duration]| {
        let secs: Vec<f64> = ds.iter().map(Duration::as_secs_f64).collect();
        let (lo, hi) = secs
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        (lo, hi)
    };
    let (save_lo, save_hi) = span(&saves);
    let (load_lo, load_hi) = span(&loads);
    println!(
        "| {value_len} B | {items} | {mib_file:.0} | {save_lo:.2}-{save_hi:.2} | {:.2}M | {:.0} | {load_lo:.2}-{load_hi:.2} | {:.2}M | {:.0} |",
        items as f64 / save_lo / 1e6,
        mib_file / save_lo,
        items as f64 / load_lo / 1e6,
        mib_file / load_lo,
    );
}
