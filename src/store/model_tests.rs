//! Model test: random command sequences against the store and against a
//! plain `HashMap` that says what each command must do.
//!
//! With room for everything, the two agree on every reply. With a small
//! memory limit the store may have evicted what the model still holds, so
//! a miss is allowed where the model has a hit (the model then forgets the
//! key), but a hit must always carry exactly the value, flags and CAS the
//! model says. Either way the store's structure is checked after every
//! command. The clock is manual and only moves forward.

use std::collections::HashMap;

use super::tests::{check, cmd, gat, get, incr_decr, remove};
use super::*;
use crate::item_rules::StoreMode::*;
use crate::test_rng::Rng;

const UNIX: i64 = 1_700_000_000;

#[derive(Debug, Clone)]
struct MItem {
    value: Vec<u8>,
    flags: u32,
    /// Relative deadline, 0 for none.
    deadline: u32,
    /// Last store or LRU bump, for `flush_all` with a delay.
    time: u32,
    /// The CAS value, once a `gets` has shown it.
    cas: Option<u64>,
    /// CAS values this key has had; a new write must not reuse one.
    old_cas: Vec<u64>,
}

/// The reference: what memcached's documented semantics say.
struct Model {
    items: HashMap<Vec<u8>, MItem>,
    oldest_live: u32,
}

impl Model {
    fn live(&self, key: &[u8], now: u32) -> Option<&MItem> {
        let it = self.items.get(key)?;
        let expired = it.deadline != 0 && it.deadline <= now;
        let flushed =
            self.oldest_live != 0 && self.oldest_live < now && it.time <= self.oldest_live;
        (!expired && !flushed).then_some(it)
    }

    /// Drops a dead item, as the store does when it runs into one.
    fn settle(&mut self, key: &[u8], now: u32) {
        if self.live(key, now).is_none() {
            self.items.remove(key);
        }
    }

    /// A hit refreshes an item's time at most once a minute, as the store's LRU bump does.
    fn hit(&mut self, key: &[u8], now: u32) {
        let it = self.items.get_mut(key).expect("a live item");
        if now >= it.time.saturating_add(record::UPDATE_INTERVAL) {
            it.time = now;
        }
    }

    fn write(&mut self, key: &[u8], value: Vec<u8>, flags: u32, deadline: u32, now: u32) {
        let mut old_cas = Vec::new();
        if let Some(old) = self.items.remove(key) {
            old_cas = old.old_cas;
            old_cas.extend(old.cas);
        }
        self.items.insert(
            key.to_vec(),
            MItem {
                value,
                flags,
                deadline,
                time: now,
                cas: None,
                old_cas,
            },
        );
    }
}

/// strtoull as PROTOCOL.md section 6 describes it, written independently of the store's.
fn model_counter(v: &[u8]) -> Option<u64> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let t = &v[v.iter().take_while(|b| space(b)).count()..];
    let (neg, t) = match t.first() {
        Some(b'+') => (false, &t[1..]),
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let digits = t.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    if let Some(b) = t.get(digits)
        && !(space(b) || *b == 0)
    {
        return None;
    }
    let n: u64 = std::str::from_utf8(&t[..digits]).ok()?.parse().ok()?;
    if neg {
        let n = n.wrapping_neg();
        return ((n as i64) >= 0).then_some(n);
    }
    Some(n)
}

const KEYS: &[&[u8]] = &[
    b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"counter", b"n1", b"n2", b"a\tb", b"a\rb",
    b"\x01", b"k:1", b"k:2", b"k:3", b"k:4", b"k:5", b"k:6", b"k:7", b"k:8", b"k:9", b"long",
];

fn gen_value(rng: &mut Rng, big: bool) -> Vec<u8> {
    const SHAPES: &[&[u8]] = &[
        b"",
        b"0",
        b"12",
        b" 7",
        b"7 ",
        b"0007",
        b"abc",
        b"12abc",
        b"-5",
        b"-0",
        b"+9",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99",
        b"100",
    ];
    match rng.below(6) {
        0..=2 => rng.pick(SHAPES).to_vec(),
        3 => (0..rng.below(40))
            .map(|_| b'a' + rng.below(26) as u8)
            .collect(),
        4 => (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect(),
        _ => {
            let n = if big {
                2000 + rng.below(6000)
            } else {
                rng.below(900)
            };
            vec![b'x' + rng.below(3) as u8; n as usize]
        }
    }
}

fn gen_exptime(rng: &mut Rng, clock: &Clock) -> i64 {
    match rng.below(12) {
        0 => 1 + rng.below(4) as i64,
        1 => -1,
        2 => clock.unix_now() + 2 + rng.below(3) as i64,
        3 => clock.unix_now() - 10,
        4 => 2_592_000,
        _ => 0,
    }
}

/// With `restarts`, the store is now and then saved and loaded again into
/// a new store whose clock goes on from the old one's after a downtime
/// (and the model's clock with it), in the middle of the sequence.
fn run(seed: u64, ops: usize, limit: usize, shards: usize, exact: bool, restarts: bool) -> Stats {
    let mut clock = Clock::manual(UNIX);
    let mut s = Store::new(
        StoreConfig {
            memory_limit: limit,
            evictions: true,
            cas_enabled: true,
            shards,
            // The model has no item size limit: appends may grow freely.
            item_size_max: 1 << 30,
        },
        clock.clone(),
    );
    let mut m = Model {
        items: HashMap::new(),
        oldest_live: 0,
    };
    let mut rng = Rng::new(seed | 1);
    let mut stats = Stats::default();
    for op in 0..ops {
        if rng.below(20) == 0 {
            clock.advance(*rng.pick(&[0, 1, 1, 2, 3, 61]));
        }
        if restarts && rng.below(500) == 0 {
            let mut file = Vec::new();
            s.write_snapshot(&mut file).expect("writes to memory");
            let downtime = *rng.pick(&[0, 1, 3, 61]);
            let next = Clock::manual_resumed(clock.process_started(), clock.now() + downtime);
            s = Store::read_snapshot(s.config().clone(), next.clone(), &mut &file[..])
                .unwrap_or_else(|e| panic!("seed {seed:#x}, op {op}: {e}"));
            clock = next;
            stats.restarts += 1;
            check(&s);
        }
        let now = clock.now();
        // Under eviction, many more keys than fit.
        let key: Vec<u8> = if exact || rng.below(2) == 0 {
            rng.pick(KEYS).to_vec()
        } else {
            format!("p:{}", rng.below(400)).into_bytes()
        };
        let key = &key[..];
        let ctx = || {
            format!(
                "seed {seed:#x}, op {op}, key {:?}",
                String::from_utf8_lossy(key)
            )
        };
        m.settle(key, now);
        let had = m.live(key, now).cloned();
        match rng.below(100) {
            // Storage commands.
            0..=44 => {
                let mode = *rng.pick(&[Set, Set, Set, Add, Replace, Append, Prepend, Cas, Cas]);
                let value = gen_value(&mut rng, !exact);
                let flags = *rng.pick(&[0, 1, 42, 512, 65_535, 65_536, u32::MAX]);
                let deadline = clock.deadline(gen_exptime(&mut rng, &clock) as i32 as i64, now);
                let cas_unique = match (&had, rng.below(4)) {
                    (Some(MItem { cas: Some(c), .. }), 0..=2) => *c,
                    (_, 0) => 0,
                    _ => rng.next_u64() | 1 << 63,
                };
                let got = cmd(&s, mode, key, flags, deadline, &value, cas_unique, now);
                let want = match (mode, &had) {
                    (Add, Some(_)) | (Replace | Append | Prepend, None) => StoreResult::NotStored,
                    (Cas, None) => StoreResult::NotFound,
                    (Cas, Some(it)) if it.cas != Some(cas_unique) => StoreResult::Exists,
                    _ => StoreResult::Stored,
                };
                stats.stores += 1;
                if got != want {
                    // Only an eviction the model did not see may explain a difference.
                    let evicted = !exact
                        && had.is_some()
                        && matches!(
                            (mode, got),
                            (Add, StoreResult::Stored)
                                | (Replace | Append | Prepend, StoreResult::NotStored)
                                | (Cas, StoreResult::NotFound)
                        );
                    let oom = !exact && got == StoreResult::OutOfMemory;
                    assert!(
                        evicted || oom,
                        "{}: {mode:?} gave {got:?}, model {want:?}",
                        ctx()
                    );
                    if evicted {
                        stats.evicted_seen += 1;
                        m.items.remove(key);
                    }
                    if oom && mode == Set {
                        m.items.remove(key);
                    }
                    if oom {
                        stats.oom += 1;
                    }
                }
                if got == StoreResult::Stored {
                    match mode {
                        Append | Prepend => {
                            let it = had.expect("append to a live item");
                            let joined = if mode == Append {
                                [&it.value[..], &value[..]].concat()
                            } else {
                                [&value[..], &it.value[..]].concat()
                            };
                            // Flags and deadline are kept.
                            m.write(key, joined, it.flags, it.deadline, now);
                        }
                        _ => m.write(key, value, flags, deadline, now),
                    }
                }
                if mode == Add && got == StoreResult::NotStored {
                    stats.add_refused += 1;
                }
            }
            // Reads.
            45..=69 => {
                let touch = rng.below(4) == 0;
                let deadline = clock.deadline(gen_exptime(&mut rng, &clock), now);
                let got = if touch {
                    gat(&s, key, deadline, now)
                } else {
                    get(&s, key, now)
                };
                stats.reads += 1;
                match (got, &had) {
                    (Lookup::Hit(Hit { value: v, .. }), Some(it)) => {
                        stats.hits += 1;
                        assert_eq!(v.data[..], it.value[..], "{}: value", ctx());
                        assert_eq!(v.flags, it.flags, "{}: flags", ctx());
                        if let Some(c) = it.cas {
                            assert_eq!(v.cas, c, "{}: cas", ctx());
                        } else {
                            assert!(
                                v.cas != 0 && !it.old_cas.contains(&v.cas),
                                "{}: a CAS value reused after a write: {}",
                                ctx(),
                                v.cas
                            );
                        }
                        m.items.get_mut(key).expect("live").cas = Some(v.cas);
                        m.hit(key, now);
                        if touch {
                            if deadline == clock::EXPIRED {
                                m.items.remove(key);
                            } else {
                                m.items.get_mut(key).expect("live").deadline = deadline;
                            }
                        }
                    }
                    (Lookup::Hit(v), None) => panic!("{}: a hit on nothing: {v:?}", ctx()),
                    (_, None) => {}
                    (miss, Some(_)) => {
                        assert!(!exact, "{}: {miss:?}, model has {had:?}", ctx());
                        stats.evicted_seen += 1;
                        m.items.remove(key);
                    }
                }
            }
            // incr / decr.
            70..=79 => {
                let incr = rng.below(2) == 0;
                let delta = *rng.pick(&[0, 1, 5, 100, u64::MAX]);
                let got = incr_decr(&s, key, delta, incr, now);
                let want = match &had {
                    None => Err(ArithResult::NotFound),
                    Some(it) => match model_counter(&it.value) {
                        None => Err(ArithResult::NonNumeric),
                        Some(n) if incr => Ok(n.wrapping_add(delta)),
                        Some(n) => Ok(n.saturating_sub(delta)),
                    },
                };
                stats.ariths += 1;
                if got != want {
                    assert!(
                        !exact && had.is_some() && got == Err(ArithResult::NotFound),
                        "{}: {} {delta} gave {got:?}, model {want:?}",
                        ctx(),
                        if incr { "incr" } else { "decr" }
                    );
                    stats.evicted_seen += 1;
                    m.items.remove(key);
                }
                if let Ok(n) = got {
                    let it = had.expect("a live counter");
                    let digits = n.to_string().into_bytes();
                    let mut v = digits.clone();
                    // A shorter result is padded in place to the old length.
                    if digits.len() < it.value.len() {
                        v.resize(it.value.len(), b' ');
                    }
                    m.write(key, v, it.flags, it.deadline, now);
                }
            }
            // touch.
            80..=84 => {
                let deadline = clock.deadline(gen_exptime(&mut rng, &clock), now);
                let got = s.touch(key, deadline, now);
                if got != had.is_some() {
                    assert!(!exact && !got, "{}: touch gave {got}", ctx());
                    stats.evicted_seen += 1;
                    m.items.remove(key);
                }
                if got {
                    m.hit(key, now);
                    m.items.get_mut(key).expect("live").deadline = deadline;
                }
            }
            // delete.
            85..=94 => {
                let got = remove(&s, key, now);
                if got != had.is_some() {
                    assert!(!exact && !got, "{}: delete gave {got}", ctx());
                    stats.evicted_seen += 1;
                }
                m.items.remove(key);
            }
            // flush_all, now or later; rare under eviction, where it would
            // empty the store before it fills.
            95..=96 if exact || rng.below(20) == 0 => {
                // A flush moves the cutoff that hides items. One that moves
                // it later makes items hidden by the old cutoff but not yet
                // reclaimed visible again (memcached does the same, it
                // checks the cutoff on access); which ones depends on what
                // the sweep has reached. Reclaim them all first, so that
                // both sides forget the same items.
                s.sweep(now, usize::MAX);
                let keys: Vec<Vec<u8>> = m.items.keys().cloned().collect();
                for k in keys {
                    m.settle(&k, now);
                }
                if rng.below(2) == 0 {
                    s.flush(0, now);
                    m.items.clear();
                    m.oldest_live = now.saturating_sub(1);
                } else {
                    let deadline = clock.deadline(1 + rng.below(3) as i64, now);
                    s.flush(deadline, now);
                    m.oldest_live = deadline - 1;
                }
                stats.flushes += 1;
            }
            // The background sweep: invisible to clients.
            _ => {
                s.sweep(now, 1 + rng.below(64) as usize);
            }
        }
        check(&s);
    }
    stats.evictions = s.stats().evictions;
    stats
}

#[derive(Debug, Default)]
struct Stats {
    stores: u64,
    reads: u64,
    hits: u64,
    ariths: u64,
    flushes: u64,
    add_refused: u64,
    oom: u64,
    evicted_seen: u64,
    evictions: u64,
    restarts: u64,
}

#[test]
fn agrees_with_the_model_when_nothing_is_evicted() {
    for seed in [1, 0xdead_beef, 0x1234_5678_9abc] {
        let st = run(seed, 20_000, 64 << 20, 16, true, false);
        assert_eq!(st.evictions, 0, "{st:?}");
        // The run exercised what it is meant to.
        eprintln!("no eviction, seed {seed:#x}: {st:?}");
        assert!(
            st.hits > 500 && st.add_refused > 50 && st.flushes > 50,
            "{st:?}"
        );
        assert!(st.ariths > 1000, "{st:?}");
    }
}

#[test]
fn never_returns_a_wrong_value_under_eviction() {
    for (seed, shards) in [(7, 1), (0xfeed, 4), (0xabcdef, 16)] {
        let st = run(seed, 20_000, 96 * 1024, shards, false, false);
        eprintln!("eviction, seed {seed:#x}, {shards} shards: {st:?}");
        assert!(st.evictions > 100, "{st:?}");
        assert!(st.hits > 500, "{st:?}");
    }
}

#[test]
fn agrees_with_the_model_across_restarts() {
    for (seed, limit, exact) in [(3, 64 << 20, true), (0xbeef, 96 * 1024, false)] {
        let st = run(seed, 20_000, limit, 4, exact, true);
        eprintln!("restarts, seed {seed:#x}: {st:?}");
        assert!(st.restarts > 20 && st.hits > 500, "{st:?}");
    }
}

/// A panic while a shard is locked (a bug elsewhere, caught by the task that
/// ran it) must not turn every later request on that shard into a failure:
/// std's lock would report poisoning forever.
#[test]
fn a_panic_under_a_shard_lock_leaves_the_store_serving() {
    let s = Store::new(
        StoreConfig {
            memory_limit: 1 << 20,
            evictions: true,
            cas_enabled: true,
            shards: 4,
            item_size_max: 1 << 20,
        },
        Clock::manual(UNIX),
    );
    let now = s.clock().now();
    for k in KEYS {
        assert_eq!(cmd(&s, Set, k, 0, 0, k, 0, now), StoreResult::Stored);
    }
    std::thread::scope(|sc| {
        for i in 0..s.cells.len() {
            let s = &s;
            let r = sc
                .spawn(move || {
                    let _guard = s.lock(i);
                    panic!("a bug while shard {i} is locked");
                })
                .join();
            assert!(r.is_err());
            assert!(s.cells[i].shard.is_poisoned());
        }
    });
    for k in KEYS {
        match get(&s, k, now) {
            Lookup::Hit(h) => assert_eq!(&h.value.data[..], *k),
            other => panic!("{k:?}: {other:?}"),
        }
        assert_eq!(cmd(&s, Append, k, 0, 0, b"+", 0, now), StoreResult::Stored);
        assert!(remove(&s, k, now));
    }
    check(&s);
    assert_eq!(s.stats().curr_items, 0);
}
