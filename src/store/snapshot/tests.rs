//! Snapshots written and read back in memory: what comes back, what
//! expires meanwhile, and every kind of file that must not load.

use std::collections::HashMap;

use super::format::{FILE_HEADER_LEN, SEGMENT_HEADER_LEN, SHARD_HEADER_LEN};
use super::*;
use crate::item_rules::StoreMode::*;
use crate::store::segment::{HAS_DEADLINE, PREFIX_MIN};
use crate::store::tests::{check, cmd, get};
use crate::store::{Lookup, StoreResult};
use crate::test_rng::Rng;

const UNIX: i64 = 1_700_000_000;
const MB: usize = 1 << 20;

fn config(limit: usize, cas: bool) -> StoreConfig {
    StoreConfig {
        memory_limit: limit,
        evictions: true,
        cas_enabled: cas,
        shards: 16,
        item_size_max: MB,
    }
}

fn save(s: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    s.write_snapshot(&mut out).unwrap();
    out
}

fn load(cfg: StoreConfig, clock: Clock, file: &[u8]) -> Result<Store, Invalid> {
    Store::read_snapshot(cfg, clock, &mut &file[..])
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    value: Vec<u8>,
    flags: u32,
    cas: u64,
}

fn seen(s: &Store, key: &[u8]) -> Option<Seen> {
    match get(s, key, s.clock().now()) {
        Lookup::Hit(h) => Some(Seen {
            value: h.value.data.to_vec(),
            flags: h.value.flags,
            cas: h.value.cas,
        }),
        _ => None,
    }
}

/// A store holding items of many sizes (shared and of their own),
/// flags, deadlines and CAS values, some replaced and deleted; the keys.
fn filled(cfg: StoreConfig, clock: &Clock) -> (Store, Vec<Vec<u8>>) {
    let s = Store::new(cfg, clock.clone());
    let now = clock.now();
    let mut rng = Rng::new(17);
    let mut keys = Vec::new();
    for i in 0..3000u32 {
        let key = format!("key:{i}").into_bytes();
        let len = match i % 7 {
            0 => 0,
            1 => 1,
            2 => 100,
            3 => 1000,
            4 => 5000,
            5 => 70_000,
            _ => rng.below(3000) as usize,
        };
        let len = if i % 97 == 0 { 900_000 } else { len };
        let value: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
        let flags = if i % 3 == 0 { 0 } else { rng.next_u64() as u32 };
        let deadline = if i % 5 == 0 { now + 10_000 } else { 0 };
        assert_eq!(
            cmd(&s, Set, &key, flags, deadline, &value, 0, now),
            StoreResult::Stored
        );
        keys.push(key);
    }
    // Replaced and deleted records leave dead ones behind in the segments.
    for i in (0..3000).step_by(11) {
        cmd(&s, Set, &keys[i], 1, 0, b"again", 0, now);
    }
    for i in (0..3000).step_by(13) {
        s.delete(crate::store::DeleteRequest::new(&keys[i]), now);
    }
    (s, keys)
}

#[test]
fn every_item_comes_back_with_its_value_flags_and_cas() {
    for cas in [true, false] {
        let clock = Clock::manual(UNIX);
        let (s, keys) = filled(config(64 * MB, cas), &clock);
        let before: HashMap<_, _> = keys.iter().map(|k| (k.clone(), seen(&s, k))).collect();
        let file = save(&s);
        let later = Clock::manual(UNIX + 30);
        let t = load(config(64 * MB, cas), later, &file).unwrap();
        check(&t);
        assert_eq!(t.stats().curr_items, s.stats().curr_items);
        for k in &keys {
            assert_eq!(seen(&t, k), before[k], "{}", String::from_utf8_lossy(k));
        }
        // CAS numbering goes on in each shard (its index is in the low
        // bits): no value handed out before comes back.
        let mut max_cas = [0u64; 16];
        for v in before.values().flatten() {
            let shard = (v.cas % 16) as usize;
            max_cas[shard] = max_cas[shard].max(v.cas);
        }
        let now = t.clock().now();
        for i in 0..100 {
            let k = format!("new:{i}");
            cmd(&t, Set, k.as_bytes(), 0, 0, b"v", 0, now);
            let cas = seen(&t, k.as_bytes()).unwrap().cas;
            if cas_enabled(&t) {
                let before = max_cas[(cas % 16) as usize];
                assert!(cas > before, "{cas} after {before}");
            } else {
                assert_eq!(cas, 0);
            }
        }
        // The loaded store writes, evicts and saves again as any other.
        check(&t);
        let again = load(config(64 * MB, cas), Clock::manual(UNIX + 60), &save(&t)).unwrap();
        assert_eq!(again.stats().curr_items, t.stats().curr_items);
    }
}

fn cas_enabled(s: &Store) -> bool {
    s.config().cas_enabled
}

#[test]
fn an_empty_store_round_trips() {
    let s = Store::new(config(8 * MB, true), Clock::manual(UNIX));
    let t = load(config(8 * MB, true), Clock::manual(UNIX + 1), &save(&s)).unwrap();
    assert_eq!(t.stats().curr_items, 0);
    check(&t);
}

#[test]
fn deadlines_keep_their_wall_clock_time_and_what_ran_out_meanwhile_is_gone() {
    let clock = Clock::manual(UNIX);
    clock.advance(1000);
    let s = Store::new(config(8 * MB, true), clock.clone());
    let now = clock.now();
    cmd(&s, Set, b"short", 0, clock.deadline(100, now), b"a", 0, now);
    cmd(&s, Set, b"long", 0, clock.deadline(1000, now), b"b", 0, now);
    cmd(&s, Set, b"forever", 0, 0, b"c", 0, now);
    let absolute = clock.unix_now() + 700;
    cmd(
        &s,
        Set,
        b"abs",
        0,
        clock.deadline(absolute, now),
        b"d",
        0,
        now,
    );
    let long_until = clock.to_unix(s.peek(b"long", now).unwrap().deadline);
    let file = save(&s);
    // Down for 500 s: a new process, a new clock.
    let later = Clock::manual(clock.unix_now() + 500);
    let t = load(config(8 * MB, true), later.clone(), &file).unwrap();
    let now = later.now();
    assert_eq!(seen(&t, b"short"), None);
    let long = t.peek(b"long", now).unwrap();
    assert_eq!(later.to_unix(long.deadline), long_until);
    assert_eq!(long.deadline - now, 500, "remaining TTL");
    assert_eq!(t.peek(b"forever", now).unwrap().deadline, 0);
    assert_eq!(
        later.to_unix(t.peek(b"abs", now).unwrap().deadline),
        absolute
    );
    assert_eq!(t.stats().curr_items, 3);
    check(&t);
    // The rest runs out on the new clock.
    later.advance(200);
    assert_eq!(seen(&t, b"abs"), None);
    later.advance(300);
    assert_eq!(seen(&t, b"long"), None);
    assert!(seen(&t, b"forever").is_some());
}

#[test]
fn a_pending_flush_survives_and_one_that_came_meanwhile_has_flushed() {
    let clock = Clock::manual(UNIX);
    let s = Store::new(config(8 * MB, true), clock.clone());
    let now = clock.now();
    cmd(&s, Set, b"old", 0, 0, b"x", 0, now);
    s.flush(clock.deadline(300, now), now);
    let file = save(&s);
    // Back within the delay: still there until the flush time.
    let soon = Clock::manual(UNIX + 100);
    let t = load(config(8 * MB, true), soon.clone(), &file).unwrap();
    assert!(seen(&t, b"old").is_some());
    soon.advance(199);
    assert!(seen(&t, b"old").is_some());
    soon.advance(1);
    assert_eq!(seen(&t, b"old"), None);
    // Back after it: flushed, and new items are not.
    let late = Clock::manual(UNIX + 400);
    let t = load(config(8 * MB, true), late.clone(), &file).unwrap();
    assert_eq!(t.stats().curr_items, 0);
    let now = late.now();
    cmd(&t, Set, b"new", 0, 0, b"y", 0, now);
    assert!(seen(&t, b"new").is_some());
}

/// Where each block of a snapshot starts, and the end.
fn boundaries(file: &[u8], shards: usize) -> Vec<usize> {
    let mut at = FILE_HEADER_LEN;
    let mut out = vec![0, at];
    for _ in 0..shards {
        let h = ShardHeader::read(&mut &file[at..]).unwrap();
        at += SHARD_HEADER_LEN;
        out.push(at);
        for _ in 0..h.segments {
            let g = SegmentHeader::read(&mut &file[at..]).unwrap();
            at += SEGMENT_HEADER_LEN;
            out.push(at);
            at += g.used as usize;
            out.push(at);
        }
    }
    out.push(file.len());
    out
}

fn refused(file: &[u8]) -> String {
    match load(config(8 * MB, true), Clock::manual(UNIX + 5), file) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

fn small_file() -> Vec<u8> {
    let clock = Clock::manual(UNIX);
    let s = Store::new(config(8 * MB, true), clock.clone());
    let now = clock.now();
    for i in 0..200 {
        let v = vec![b'v'; if i % 50 == 0 { 20_000 } else { i }];
        cmd(&s, Set, format!("k{i}").as_bytes(), i as u32, 0, &v, 0, now);
    }
    save(&s)
}

#[test]
fn a_file_cut_at_any_block_boundary_or_anywhere_is_refused() {
    let file = small_file();
    let cuts = boundaries(&file, 16);
    assert!(cuts.len() > 40, "{} blocks", cuts.len());
    assert!(load(config(8 * MB, true), Clock::manual(UNIX + 5), &file).is_ok());
    for &cut in &cuts[..cuts.len() - 1] {
        let why = refused(&file[..cut]);
        let expected = if cut == 0 {
            "the file is empty"
        } else {
            "the file is truncated"
        };
        assert_eq!(why, expected, "cut at {cut}");
    }
    for cut in (1..file.len()).step_by(7) {
        assert_eq!(
            refused(&file[..cut]),
            "the file is truncated",
            "cut at {cut}"
        );
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let file = small_file();
    let mut rng = Rng::new(99);
    for _ in 0..600 {
        let mut bad = file.clone();
        let at = rng.below(bad.len() as u64) as usize;
        bad[at] ^= 1 << rng.below(8);
        let why = refused(&bad);
        assert!(
            why.contains("checksum")
                || why.contains("version")
                || why.contains("not a ferrocache")
                || why.contains("trailer"),
            "byte {at}: {why}"
        );
    }
    let mut longer = file.clone();
    longer.push(0);
    assert_eq!(refused(&longer), "bytes follow the end of the snapshot");
}

#[test]
fn a_file_from_other_settings_or_a_newer_format_is_refused() {
    let file = small_file();
    let other_m = load(config(16 * MB, true), Clock::manual(UNIX + 5), &file);
    assert_eq!(
        other_m.err().unwrap().to_string(),
        "saved with -m 8, started with -m 16: the layout differs"
    );
    let other_c = load(config(8 * MB, false), Clock::manual(UNIX + 5), &file);
    assert!(other_c.err().unwrap().to_string().contains("CAS"));
    let other_i = StoreConfig {
        item_size_max: 2 * MB,
        ..config(8 * MB, true)
    };
    let why = load(other_i, Clock::manual(UNIX + 5), &file).err().unwrap();
    assert!(why.to_string().contains("-I"), "{why}");
    // Version 1 kept a CAS in every item and none in segment headers;
    // version 2, a deadline in every record.
    for other in [1u32, 2, 5] {
        let mut file = file.clone();
        file[8..12].copy_from_slice(&other.to_le_bytes());
        assert_eq!(
            refused(&file),
            format!("format version {other}; this build reads versions 3 to 4")
        );
    }
    assert_eq!(refused(b""), "the file is empty");
    assert_eq!(
        load(config(8 * MB, true), Clock::manual(UNIX - 100), &file)
            .err()
            .unwrap()
            .to_string(),
        "saved later than the clock says it is now: the clock went back"
    );
}

/// Checksums that hold over records that do not: a file crafted to pass
/// them must still be refused, without a panic.
#[test]
fn records_that_pass_the_checksums_are_still_checked() {
    let file = small_file();
    let cuts = boundaries(&file, 16);
    // The first shared segment's body (a large record's own segment has
    // no record length to spoil): its header ends at one boundary, the
    // body at the next.
    let (start, end) = (0..cuts.len() - 1)
        .map(|i| (cuts[i], cuts[i + 1]))
        .find(|&(a, b)| {
            b - a > SEGMENT_HEADER_LEN
                && a >= SEGMENT_HEADER_LEN
                && SegmentHeader::read(&mut &file[a - SEGMENT_HEADER_LEN..a])
                    .is_ok_and(|h| h.kind == format::SHARED)
        })
        .unwrap();
    // A segment's body changed: its header's checksum made to match again.
    let reseal = |bad: &mut Vec<u8>, start: usize, end: usize| {
        let h = SegmentHeader::read(&mut &bad[start - SEGMENT_HEADER_LEN..start]).unwrap();
        let mut out = Vec::new();
        SegmentHeader {
            body_crc: crc32fast::hash(&bad[start..end]),
            ..h
        }
        .write(&mut out)
        .unwrap();
        bad[start - SEGMENT_HEADER_LEN..start].copy_from_slice(&out);
    };
    // A record length past the segment, an unknown state bit, an item
    // header past its record (the first record has no deadline field).
    let cases: [(usize, &[u8]); 3] = [(1, &[0xff, 0xff]), (0, &[0x80]), (PREFIX_MIN + 1, &[0x80])];
    for (offset, bytes) in cases {
        let mut bad = file.clone();
        bad[start + offset..start + offset + bytes.len()].copy_from_slice(bytes);
        reseal(&mut bad, start, end);
        let why = refused(&bad);
        assert!(why.starts_with("malformed"), "{why}");
    }
    // A large record always has its deadline field.
    let (start, end) = (0..cuts.len() - 1)
        .map(|i| (cuts[i], cuts[i + 1]))
        .find(|&(a, b)| {
            a >= SEGMENT_HEADER_LEN
                && SegmentHeader::read(&mut &file[a - SEGMENT_HEADER_LEN..a])
                    .is_ok_and(|h| h.kind == format::SOLO && h.used as usize == b - a)
        })
        .unwrap();
    let mut bad = file.clone();
    assert_ne!(bad[start] & HAS_DEADLINE, 0);
    bad[start] &= !HAS_DEADLINE;
    reseal(&mut bad, start, end);
    assert_eq!(
        refused(&bad),
        "malformed: a large record without its deadline field"
    );
}

#[test]
fn a_snapshot_needing_more_than_the_limit_is_refused() {
    // The same settings, but the budget already spent elsewhere: the
    // reader refuses the first segment it cannot pay for.
    let file = small_file();
    let header = FileHeader::read(&mut &file[..]).unwrap();
    let s = Store::with_seed(
        config(8 * MB, true),
        Clock::manual(UNIX + 5),
        header.hash_seed,
    );
    assert!(s.memory.try_reserve(8 * MB - 4096));
    let (tx, _rx) = std::sync::mpsc::sync_channel(16);
    let why = read_sections(&s, &mut &file[FILE_HEADER_LEN..], &tx).expect_err("refused");
    assert!(matches!(why, Invalid::DoesNotFit), "{why}");
    // And the indexing side refuses an index it cannot pay for.
    let s = Store::with_seed(
        config(8 * MB, true),
        Clock::manual(UNIX + 5),
        header.hash_seed,
    );
    assert!(s.memory.try_reserve(8 * MB));
    let section = Section {
        index: 0,
        header: ShardHeader {
            index: 0,
            cas_next: 1,
            segments: 0,
            items: 1000,
        },
        segments: Vec::new(),
    };
    let mut shard = s.lock(0);
    let mut load = ShardLoad {
        store: &s,
        index: 0,
        shard: &mut shard,
        rebase: &Rebase::new(&header, s.clock()),
        seen: 0,
    };
    assert!(matches!(load.run(section), Err(Invalid::DoesNotFit)));
}

#[test]
fn save_writes_beside_the_path_and_renames() {
    let dir = std::env::temp_dir().join(format!("ferrocache-snap-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cache");
    let clock = Clock::manual(UNIX);
    let (s, keys) = filled(config(64 * MB, true), &clock);
    let saved = s.save(&path).unwrap();
    assert_eq!(saved.items, s.stats().curr_items);
    assert_eq!(saved.bytes, fs::metadata(&path).unwrap().len());
    assert!(!temp_path(&path).exists());
    let (t, outcome) = Store::restore(config(64 * MB, true), Clock::manual(UNIX + 1), &path);
    let Restore::Loaded(w) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(w.items, s.stats().curr_items);
    assert_eq!(t.warm_start(), Some(w));
    assert_eq!(seen(&t, &keys[1]), seen(&s, &keys[1]));
    discard(&path).unwrap();
    let (t, outcome) = Store::restore(config(64 * MB, true), Clock::manual(UNIX + 1), &path);
    assert!(matches!(outcome, Restore::Missing), "{outcome:?}");
    assert_eq!(t.warm_start(), None);
    // A refused file leaves an empty store and the file in place.
    fs::write(&path, b"junk").unwrap();
    let (t, outcome) = Store::restore(config(64 * MB, true), Clock::manual(UNIX + 1), &path);
    assert!(matches!(outcome, Restore::Refused(Invalid::NotASnapshot)));
    assert_eq!(t.stats().curr_items, 0);
    // A save into a directory that does not exist fails and leaves nothing.
    let nowhere = dir.join("missing").join("cache");
    assert!(s.save(&nowhere).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

/// A writer that fails after `left` bytes: a disk that fills up.
struct Failing {
    left: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_is_reported() {
    let clock = Clock::manual(UNIX);
    let (s, _) = filled(config(64 * MB, true), &clock);
    for left in [0, 10, 100, 70_000, 1_000_000] {
        assert!(s.write_snapshot(&mut Failing { left }).is_err());
    }
}
