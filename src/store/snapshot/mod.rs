//! Warm restart: the store written to a file on a graceful stop and read
//! back on the next start (`-e PATH`).
//!
//! Saving writes each shard's segments as they are, oldest first, with no
//! per-item work: dead records go along and are skipped on loading. The
//! file is written beside its final name, synced, then renamed over it, so
//! a crash while saving leaves the previous file or none, never half of
//! one. Loading checks everything before it trusts it (see `format.rs`);
//! while one thread reads and checks a shard's segments, another rebuilds
//! the index of the shard before from its records, rebases their times onto
//! the new process's clock (an item keeps its deadline in wall-clock time:
//! one that ran out while the server was down is gone) and restores the CAS
//! counters and a pending `flush_all`. It loads into a new store, so a file
//! refused halfway leaves nothing behind; the caller then starts empty.
//! A loaded file is removed ([`discard`]) once the server is up: if the
//! process later dies without saving, the next start must not bring back
//! items deleted or changed since.
//!
//! The hash seed is kept, so that a key hashes to the shard and bucket it
//! was saved in; a store with a different shard count or segment layout
//! (other `-m`, `-I`, `-C`, or `-t` where it changes the shard count) does
//! not load the file.

mod format;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use format::Invalid;
use format::{Counted, FileHeader, Fingerprint, SegmentHeader, ShardHeader, Trailer};

use super::loc::Loc;
use super::record::{ALL_BITS, DEAD, Meta};
use super::segment::{PREFIX_MAX, SegMem};
use super::segments::Queue;
use super::shard::{Shard, table_hash};
use super::{Clock, Store, StoreConfig, clock, item, memory};

/// How the last start went, when it loaded a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmStart {
    /// Items loaded (live ones; those that expired meanwhile are not counted).
    pub items: u64,
    /// Bytes read.
    pub bytes: u64,
    /// From opening the file to the store being ready.
    pub duration: Duration,
}

/// What [`Store::restore`] found.
#[derive(Debug)]
pub enum Restore {
    Loaded(WarmStart),
    /// No file at the path: a first start.
    Missing,
    /// A file that does not load, and why; the store starts empty.
    Refused(Invalid),
}

/// What [`Store::save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub items: u64,
    pub bytes: u64,
    pub duration: Duration,
}

/// Writes go through a buffer this large: headers are gathered in it, and a
/// full shared segment (64 KiB at most) is as large, so it goes straight
/// to the file without a copy. Reads are not buffered: each body is read
/// straight into its segment, and a header costs one small read.
const WRITE_BUFFER: usize = 64 * 1024;

/// Slack over `-I` a large record's segment may have: its prefix, item
/// header and key.
const RECORD_OVERHEAD_MAX: usize = 1024;

/// Where a save writes before the rename.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Removes a loaded snapshot, durably: if the process later dies without
/// saving, the next start must not bring back items deleted or changed
/// since.
///
/// # Errors
/// Failing to remove the file or to sync its directory.
pub fn discard(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(path)
}

/// Whether a save to `path` could create its file: creates the temporary
/// file beside it and removes it again. For a start to warn early, rather
/// than the stop to fail.
///
/// # Errors
/// Why the file cannot be created.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let tmp = temp_path(path);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    fs::remove_file(&tmp)
}

/// Makes a rename or removal in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl Store {
    /// The settings a snapshot must have been made with to load here.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            memory_limit: self.config.memory_limit as u64,
            item_size_max: self.config.item_size_max as u64,
            cas_enabled: self.config.cas_enabled,
            shards: self.cells.len() as u32,
            segment_size: self.layout.segment_size as u32,
            shared_max: self.layout.shared_max as u32,
        }
    }

    /// What the snapshot this store was loaded from held; `None` if it
    /// started empty.
    pub fn warm_start(&self) -> Option<WarmStart> {
        self.warm
    }

    /// Writes the store to `path`: to a temporary file beside it, synced,
    /// then renamed over it and the directory synced. Meant for a store no
    /// request uses any more (it locks one shard at a time, so writes made
    /// meanwhile land in the file or not, shard by shard).
    ///
    /// # Errors
    /// Any failure to write, sync or rename; `path` is then untouched and
    /// the temporary file removed.
    pub fn save(&self, path: &Path) -> io::Result<Saved> {
        let started = Instant::now();
        let tmp = temp_path(path);
        let written = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut w = Counted {
                inner: BufWriter::with_capacity(WRITE_BUFFER, file),
                bytes: 0,
            };
            let items = self.write_snapshot(&mut w)?;
            let file = w.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok::<_, io::Error>((items, w.bytes))
        })();
        let (items, bytes) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(Saved {
            items,
            bytes,
            duration: started.elapsed(),
        })
    }

    /// Writes the snapshot format to `w`; returns the live items written.
    ///
    /// # Errors
    /// What `w` returns.
    pub fn write_snapshot(&self, w: &mut impl Write) -> io::Result<u64> {
        let fingerprint = self.fingerprint();
        FileHeader {
            fingerprint,
            hash_seed: self.seed,
            process_started: self.clock.process_started(),
            saved_at: self.clock.unix_now(),
            oldest_live: self.oldest_live.load(Ordering::Relaxed),
        }
        .write(w, fingerprint.shards)?;
        let (mut segments, mut items) = (0u64, 0u64);
        let mut nodes = Vec::new();
        for i in 0..self.cells.len() {
            let shard = self.lock(i);
            nodes.clear();
            let mut at = shard.segs.oldest();
            while let Some(node) = at {
                if shard.segs.get(node).live > 0 {
                    nodes.push(node);
                }
                at = shard.segs.newer(node);
            }
            ShardHeader {
                index: i as u32,
                cas_next: shard.cas_next,
                segments: nodes.len() as u32,
                items: shard.len,
            }
            .write(w)?;
            for &node in &nodes {
                let seg = shard.segs.get(node);
                let body = seg.mem().bytes(0, seg.used);
                SegmentHeader {
                    kind: if super::loc::is_solo(node) {
                        format::SOLO
                    } else {
                        format::SHARED
                    },
                    used: seg.used as u32,
                    cas_base: seg.cas_base,
                    body_crc: crc32fast::hash(body),
                }
                .write(w)?;
                w.write_all(body)?;
            }
            segments += nodes.len() as u64;
            items += u64::from(shard.len);
        }
        Trailer { segments, items }.write(w)?;
        w.flush()?;
        Ok(items)
    }

    /// A store for `config` loaded from the snapshot at `path` if there is
    /// one that loads, else an empty one, and what happened. Once the store
    /// serves, remove a loaded file with [`discard`].
    pub fn restore(config: StoreConfig, clock: Clock, path: &Path) -> (Store, Restore) {
        let started = Instant::now();
        // What a save cut short by a crash left beside it: never loaded,
        // and as large as the cache.
        let _ = fs::remove_file(temp_path(path));
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return (Store::new(config, clock), Restore::Missing);
            }
            Err(e) => return (Store::new(config, clock), Restore::Refused(Invalid::Io(e))),
        };
        let mut r = CountedRead {
            inner: file,
            bytes: 0,
        };
        match Store::read_snapshot(config.clone(), clock.clone(), &mut r) {
            Ok(mut store) => {
                let warm = WarmStart {
                    items: store.cells.iter().map(|c| c.shard_len()).sum(),
                    bytes: r.bytes,
                    duration: started.elapsed(),
                };
                store.warm = Some(warm);
                (store, Restore::Loaded(warm))
            }
            Err(why) => (Store::new(config, clock), Restore::Refused(why)),
        }
    }

    /// Reads a snapshot into a new store for `config`.
    ///
    /// # Errors
    /// Why the input is not a snapshot this store can load.
    pub fn read_snapshot(
        config: StoreConfig,
        clock: Clock,
        r: &mut impl Read,
    ) -> Result<Store, Invalid> {
        let header = FileHeader::read(r)?;
        let store = Store::with_seed(config, clock, header.hash_seed);
        if let Some(why) = header.fingerprint.mismatch(&store.fingerprint()) {
            return Err(why);
        }
        // Two clocks read in the same second may differ by a second each way.
        if header.saved_at > store.clock.unix_now() + 2 {
            return Err(Invalid::ClockWentBack);
        }
        let rebase = Rebase::new(&header, &store.clock);
        store
            .oldest_live
            .store(rebase.oldest_live, Ordering::Relaxed);
        // Two threads: this one reads and checks segments, the other
        // indexes them, a shard at a time, so that the copy from the file
        // and the checksums overlap with the hashing.
        let (segments, items) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Section>(SECTIONS_IN_FLIGHT);
            let indexer = scope.spawn(|| {
                let mut items = 0;
                for section in rx {
                    let mut shard = store.lock(section.index);
                    let mut load = ShardLoad {
                        store: &store,
                        index: section.index,
                        shard: &mut shard,
                        rebase: &rebase,
                        seen: 0,
                    };
                    load.run(section)?;
                    items += load.seen;
                }
                Ok::<u64, Invalid>(items)
            });
            let read = read_sections(&store, r, &tx);
            drop(tx);
            let indexed = indexer.join().expect("the indexing thread does not panic");
            // The reader stops when the indexer does: its error is the cause.
            match (read, indexed) {
                (_, Err(e)) | (Err(e), _) => Err(e),
                (Ok(segments), Ok(items)) => Ok((segments, items)),
            }
        })?;
        let trailer = Trailer::read(r)?;
        if (trailer.segments, trailer.items) != (segments, items) {
            return Err(Invalid::Malformed(format!(
                "the trailer counts {} segments and {} items, the file holds {segments} and {items}",
                trailer.segments, trailer.items
            )));
        }
        Ok(store)
    }
}

/// How many shards' segments may wait, read, for the indexing thread.
const SECTIONS_IN_FLIGHT: usize = 4;

/// One shard's section of the file, read and checked.
struct Section {
    index: usize,
    header: ShardHeader,
    segments: Vec<ReadSegment>,
}

/// A segment read and checked.
struct ReadSegment {
    /// Its memory, its charge taken.
    mem: SegMem,
    used: usize,
    /// Whether it holds one large record.
    solo: bool,
    cas_base: u64,
}

/// Reads every shard's section, checking headers, lengths and checksums,
/// and hands each to `tx`; returns the segment count.
fn read_sections(
    store: &Store,
    r: &mut impl Read,
    tx: &std::sync::mpsc::SyncSender<Section>,
) -> Result<u64, Invalid> {
    let mut segments = 0u64;
    for i in 0..store.cells.len() {
        let header = ShardHeader::read(r)?;
        if header.index != i as u32 {
            return Err(Invalid::Malformed(format!(
                "shard {} where shard {i} belongs",
                header.index
            )));
        }
        if header.cas_next == 0 {
            return Err(Invalid::Malformed("a CAS counter of 0".into()));
        }
        // Not sized by the header's count: each segment is charged first.
        let mut section = Section {
            index: i,
            header,
            segments: Vec::new(),
        };
        for _ in 0..header.segments {
            section.segments.push(read_segment(store, r)?);
        }
        segments += u64::from(header.segments);
        if tx.send(section).is_err() {
            // The indexing thread stopped on an error; it reports it.
            return Ok(segments);
        }
    }
    Ok(segments)
}

/// Reads one segment: its header, its length against the layout, its
/// memory charged to the budget before it is allocated, its checksum.
fn read_segment(store: &Store, r: &mut impl Read) -> Result<ReadSegment, Invalid> {
    let h = SegmentHeader::read(r)?;
    let layout = store.layout;
    let used = h.used as usize;
    let solo = h.kind == format::SOLO;
    let size = if solo {
        let max = store.config.item_size_max + RECORD_OVERHEAD_MAX;
        if used <= layout.shared_max || used <= PREFIX_MAX || used > max {
            return Err(Invalid::Malformed(format!(
                "a large record of {used} bytes"
            )));
        }
        used
    } else {
        if used == 0 || used > layout.segment_size {
            return Err(Invalid::Malformed(format!("a segment of {used} bytes")));
        }
        layout.segment_size
    };
    if !store.memory.try_reserve(memory::segment_cost(size)) {
        return Err(Invalid::DoesNotFit);
    }
    let mut mem = SegMem::new(size);
    r.read_exact(mem.bytes_mut(0, used))?;
    h.check_body(mem.bytes(0, used))?;
    Ok(ReadSegment {
        mem,
        used,
        solo,
        cas_base: h.cas_base,
    })
}

impl super::Cell {
    fn shard_len(&self) -> u64 {
        let shard = self.shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.len() as u64
    }
}

/// A reader that counts the bytes through it.
struct CountedRead<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for CountedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The saving process's relative times moved onto this one's clock.
struct Rebase {
    /// Add to a saved relative time to get one of this process.
    delta: i64,
    now: u32,
    /// The saved flush cutoff on this clock, if a flush had come by now:
    /// items last stored or bumped at or before it are gone.
    flushed_before: Option<i64>,
    /// A flush still pending, for the store (0: none).
    oldest_live: u32,
}

impl Rebase {
    fn new(header: &FileHeader, clock: &Clock) -> Rebase {
        let delta = header.process_started - clock.process_started();
        let now = clock.now();
        let (mut flushed_before, mut oldest_live) = (None, 0);
        if header.oldest_live != 0 {
            let cutoff = i64::from(header.oldest_live) + delta;
            if cutoff < i64::from(now) {
                flushed_before = Some(cutoff);
            } else {
                oldest_live = cutoff.min(i64::from(u32::MAX)) as u32;
            }
        }
        Rebase {
            delta,
            now,
            flushed_before,
            oldest_live,
        }
    }

    /// The record's fields on this clock, or `None` if it is dead by now.
    fn apply(&self, mut m: Meta) -> Option<Meta> {
        let time = i64::from(m.time) + self.delta;
        if self.flushed_before.is_some_and(|cutoff| time <= cutoff) {
            return None;
        }
        if m.deadline != 0 {
            if m.deadline == clock::EXPIRED {
                return None;
            }
            let deadline = i64::from(m.deadline) + self.delta;
            if deadline <= i64::from(self.now) {
                return None;
            }
            m.deadline = deadline.min(i64::from(u32::MAX)) as u32;
        }
        // Stored before this process began: as far back as its clock goes.
        m.time = time.clamp(0, i64::from(self.now)) as u32;
        Some(m)
    }
}

/// Loading one shard's section.
struct ShardLoad<'a, 'b> {
    store: &'a Store,
    index: usize,
    shard: &'b mut Shard,
    rebase: &'a Rebase,
    /// Records live when saved (some may have expired since).
    seen: u64,
}

impl ShardLoad<'_, '_> {
    fn reserve(&mut self, charge: usize) -> Result<(), Invalid> {
        if !self.store.memory.try_reserve(charge) {
            return Err(Invalid::DoesNotFit);
        }
        self.shard.bytes += charge;
        Ok(())
    }

    fn run(&mut self, section: Section) -> Result<(), Invalid> {
        // The index sized once for the saved count, charged before it is
        // allocated: a count the memory limit cannot pay for is refused.
        let hint = section.header.items as usize;
        let charge = memory::index_cost(hint);
        self.reserve(charge)?;
        self.shard.index_charge = charge;
        let hasher = &self.store.hasher;
        let Shard { index, segs, .. } = &mut *self.shard;
        index.rehash(hint, |l| {
            table_hash(hasher.hash_one(item::key(segs.item(Loc(l)))))
        });
        self.shard.cas_next = section.header.cas_next;
        for ReadSegment {
            mem,
            used,
            solo,
            cas_base,
        } in section.segments
        {
            // Charged by the reader.
            let charge = memory::segment_cost(mem.len());
            self.shard.bytes += charge;
            let Some(node) = self.shard.segs.take_node(solo) else {
                self.store.memory.release(charge);
                self.shard.bytes -= charge;
                return Err(Invalid::Malformed(
                    "more segments than a shard can have".into(),
                ));
            };
            // Which queue a segment was in is not kept: all come back in
            // the main queue, as a warm cache's survivors.
            self.shard
                .segs
                .install(node, mem, charge, Queue::Main, cas_base);
            self.shard.segs.get_mut(node).used = used;
            self.adopt(node, solo, used)?;
        }
        // A count below the truth grew the table past its charge.
        let grown = memory::index_cost(self.shard.index.capacity());
        if grown > self.shard.index_charge {
            self.reserve(grown - self.shard.index_charge)?;
            self.shard.index_charge = grown;
        }
        self.shard.fit_ghost();
        // Appends go on in the newest segment if it is a shared one.
        if let Some(node) = self.shard.segs.newest()
            && !super::loc::is_solo(node)
        {
            self.shard.segs.set_head(Queue::Main, Some(node));
        }
        Ok(())
    }

    /// Indexes the live records of a segment just read, rebased; marks
    /// those dead by now; frees the segment if none is left.
    fn adopt(&mut self, node: u32, solo: bool, used: usize) -> Result<(), Invalid> {
        let hasher = &self.store.hasher;
        let cas_on = self.store.config.cas_enabled;
        let Shard {
            index,
            segs,
            len,
            cas_next,
            ..
        } = &mut *self.shard;
        let (mut live, mut live_bytes) = (0u32, 0usize);
        let mut at = 0;
        while at < used {
            let mem = segs.get(node).mem();
            // Its state byte says how long its prefix is.
            let prefix = mem.prefix_len(at);
            if used - at < prefix {
                return Err(Invalid::Malformed(
                    "a record cut by its segment's end".into(),
                ));
            }
            if solo && prefix != PREFIX_MAX {
                return Err(Invalid::Malformed(
                    "a large record without its deadline field".into(),
                ));
            }
            let rec_len = if solo {
                used
            } else {
                prefix + mem.item_len(at)
            };
            if rec_len > used - at {
                return Err(Invalid::Malformed(
                    "a record cut by its segment's end".into(),
                ));
            }
            let item = mem.bytes(at + prefix, rec_len - prefix);
            if !item::is_well_formed(item) {
                return Err(Invalid::Malformed("an impossible item header".into()));
            }
            // A CAS taken from the record's place was handed out before
            // the counter's next one.
            let cas_base = segs.get(node).cas_base;
            if cas_on
                && item::header(item).cas.is_none()
                && cas_base.saturating_add(at as u64) >= *cas_next
            {
                return Err(Invalid::Malformed("a CAS not yet handed out".into()));
            }
            let m = Meta::read(mem, at);
            if m.bits() & !ALL_BITS != 0 {
                return Err(Invalid::Malformed("an impossible record state".into()));
            }
            let this = at;
            at += rec_len;
            if m.has(DEAD) {
                continue;
            }
            self.seen += 1;
            let mem = segs.get_mut(node).mem_mut();
            let Some(m) = self.rebase.apply(m) else {
                mem.set_state(this, m.bits() | DEAD);
                continue;
            };
            m.write(mem, this);
            let key = item::key(segs.get(node).mem().bytes(this + prefix, rec_len - prefix));
            let hash = hasher.hash_one(key);
            if self.store.shard_of(hash) != self.index {
                return Err(Invalid::Malformed("a key in another key's shard".into()));
            }
            let loc = Loc::at(node, this);
            let seg_view = &*segs;
            let hash = table_hash(hash);
            if index
                .find(hash, |l| item::key(seg_view.item(Loc(l))) == key)
                .is_some()
            {
                return Err(Invalid::Malformed("a key stored twice".into()));
            }
            index.insert_unique(hash, loc.0, |l| {
                table_hash(hasher.hash_one(item::key(seg_view.item(Loc(l)))))
            });
            *len += 1;
            live += 1;
            live_bytes += rec_len;
        }
        if live == 0 {
            let (mem, charge, _) = self.shard.segs.detach(node);
            self.store.memory.release(charge);
            self.shard.bytes -= charge;
            drop(mem);
            return Ok(());
        }
        let seg = self.shard.segs.get_mut(node);
        seg.live = live;
        seg.live_bytes = live_bytes;
        Ok(())
    }
}
