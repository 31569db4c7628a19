//! The snapshot file format, and reading it without trusting it.
//!
//! A snapshot is a sequence of blocks, each a fixed-size header closed by
//! its CRC-32, some followed by a body with its CRC-32 in the header:
//!
//! ```text
//! file header   magic "FERROSNP", format version, the fingerprint of the
//!               settings that decide the layout (shard count included),
//!               the hash seed, the clock (process start, save time),
//!               flush_all's oldest_live; CRC
//! per shard     shard index, next CAS sequence, segment count, live items;
//!   header      CRC
//! per segment   kind (shared or a large record's own), bytes used, its
//!   header      CAS base (the sequence number a record at offset 0 that
//!               carries no CAS has), the body's CRC; CRC
//!   body        the segment's bytes as the store keeps them
//! trailer       magic "FERROEND", segments and live items in the file; CRC
//! ```
//!
//! Integers are little-endian. Every header is checked against its CRC
//! before any field of it is used, every body against its CRC before any
//! record in it is read, and every length against the layout before
//! anything is allocated for it. This module knows bytes; what a segment's
//! records mean is `store::segment` and `store::item`, and what the store
//! does with them `snapshot/mod.rs`.

use std::fmt;
use std::io::{self, Read, Write};

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"FERROSNP";
/// The last block's tag.
pub const END_MAGIC: [u8; 8] = *b"FERROEND";
/// The format this build writes. A file of a version before
/// [`OLDEST_READ`] or after this one is refused: its layout cannot be
/// assumed. Version 2: most items carry no CAS, segments carry a CAS base.
/// Version 3: a record has a deadline field only if its state says so.
/// Version 4: flags take 1 or 2 bytes where those hold them, a header bit
/// version 3 lacks; its items are all version 4 items, so it is read too.
pub const VERSION: u32 = 4;
/// The oldest format this build reads.
pub const OLDEST_READ: u32 = 3;

/// Segment kinds.
pub const SHARED: u8 = 0;
pub const SOLO: u8 = 1;

/// Why a snapshot was not loaded. Each reads as the end of a sentence
/// ("not loaded: ...").
#[derive(Debug)]
pub enum Invalid {
    /// The file has no bytes.
    Empty,
    /// The file ends inside a block.
    Truncated,
    /// The first bytes are not a snapshot's.
    NotASnapshot,
    /// Written by another format version.
    Version(u32),
    /// A header or body does not match its checksum.
    Checksum(&'static str),
    /// Made with other settings; the first that differs, then and now.
    Settings {
        name: &'static str,
        then: String,
        now: String,
    },
    /// The checksums hold but a field or a record is impossible (a file
    /// not written by ferrocache).
    Malformed(String),
    /// The clock is earlier than the save time.
    ClockWentBack,
    /// The items need more memory than `-m` gives.
    DoesNotFit,
    /// Bytes after the trailer.
    TrailingBytes,
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Empty => f.write_str("the file is empty"),
            Invalid::Truncated => f.write_str("the file is truncated"),
            Invalid::NotASnapshot => f.write_str("not a ferrocache snapshot"),
            Invalid::Version(v) => write!(
                f,
                "format version {v}; this build reads versions {OLDEST_READ} to {VERSION}"
            ),
            Invalid::Checksum(what) => {
                write!(f, "checksum mismatch in {what}: the file is corrupt")
            }
            Invalid::Settings { name, then, now } => write!(
                f,
                "saved with {name} {then}, started with {name} {now}: the layout differs"
            ),
            Invalid::Malformed(why) => write!(f, "malformed: {why}"),
            Invalid::ClockWentBack => {
                f.write_str("saved later than the clock says it is now: the clock went back")
            }
            Invalid::DoesNotFit => f.write_str("the items need more memory than -m gives"),
            Invalid::TrailingBytes => f.write_str("bytes follow the end of the snapshot"),
            Invalid::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for Invalid {}

impl From<io::Error> for Invalid {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Invalid::Truncated
        } else {
            Invalid::Io(e)
        }
    }
}

/// The settings that decide how items are laid out: a snapshot loads only
/// into a store that has the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// `-m`, in bytes.
    pub memory_limit: u64,
    /// `-I`.
    pub item_size_max: u64,
    /// `-C` turns CAS off: records then have no CAS field.
    pub cas_enabled: bool,
    /// Derived from `-t` and `-m`: which shard a key lives in.
    pub shards: u32,
    /// Derived from `-m` and the shard count.
    pub segment_size: u32,
    pub shared_max: u32,
}

impl Fingerprint {
    /// The first setting that differs, as a reason to refuse the file.
    pub fn mismatch(&self, now: &Fingerprint) -> Option<Invalid> {
        let mib = |b: u64| {
            if b.is_multiple_of(1024 * 1024) {
                (b / (1024 * 1024)).to_string()
            } else {
                format!("{b} bytes")
            }
        };
        let differ = |name, then: String, now: String| Some(Invalid::Settings { name, then, now });
        if self.memory_limit != now.memory_limit {
            return differ("-m", mib(self.memory_limit), mib(now.memory_limit));
        }
        if self.item_size_max != now.item_size_max {
            return differ(
                "-I",
                self.item_size_max.to_string(),
                now.item_size_max.to_string(),
            );
        }
        if self.cas_enabled != now.cas_enabled {
            let cas = |on| if on { "on" } else { "off (-C)" }.to_string();
            return differ("CAS", cas(self.cas_enabled), cas(now.cas_enabled));
        }
        if self.shards != now.shards {
            return differ(
                "a shard count (from -t and -m) of",
                self.shards.to_string(),
                now.shards.to_string(),
            );
        }
        if (self.segment_size, self.shared_max) != (now.segment_size, now.shared_max) {
            return differ(
                "a segment size of",
                self.segment_size.to_string(),
                now.segment_size.to_string(),
            );
        }
        None
    }
}

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub fingerprint: Fingerprint,
    /// The seed of the key hash: shards and index buckets follow it.
    pub hash_seed: u64,
    /// Unix time of relative time 0 in the process that saved.
    pub process_started: i64,
    /// Unix time of the save.
    pub saved_at: i64,
    /// flush_all's `oldest_live`, relative to `process_started` (0: none).
    pub oldest_live: u32,
}

/// Bytes of each header, CRC included.
pub const FILE_HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 8 + 8 + 4 + 4;
pub const SHARD_HEADER_LEN: usize = 4 + 8 + 4 + 4 + 4;
pub const SEGMENT_HEADER_LEN: usize = 1 + 3 + 4 + 8 + 4 + 4;
pub const TRAILER_LEN: usize = 8 + 8 + 8 + 4;

/// One shard's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub index: u32,
    /// The shard's next CAS sequence number.
    pub cas_next: u64,
    pub segments: u32,
    /// Live records at the save: a hint for the index's size, never trusted
    /// beyond what the memory limit allows.
    pub items: u32,
}

/// One segment's header; its body follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub kind: u8,
    pub used: u32,
    pub cas_base: u64,
    pub body_crc: u32,
}

/// The last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub segments: u64,
    pub items: u64,
}

/// Appends fields to a fixed-size header, then its CRC.
struct Put<const N: usize> {
    buf: [u8; N],
    at: usize,
}

impl<const N: usize> Put<N> {
    fn new() -> Self {
        Put { buf: [0; N], at: 0 }
    }

    fn bytes(mut self, b: &[u8]) -> Self {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
        self
    }

    fn u32(self, v: u32) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    fn i64(self, v: i64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Closes the header with the CRC of what precedes it.
    fn seal(self) -> [u8; N] {
        assert_eq!(self.at + 4, N, "header fields fill it");
        let crc = crc32fast::hash(&self.buf[..self.at]);
        self.u32(crc).buf
    }
}

/// Reads fields of a header whose CRC has been checked.
struct Take<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Take<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        b
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes(4).try_into().expect("4 bytes"))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }
}

/// Checks a header's CRC (its last four bytes) and hands out its fields.
fn checked<'a>(buf: &'a [u8], what: &'static str) -> Result<Take<'a>, Invalid> {
    let (fields, crc) = buf.split_at(buf.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(fields) != crc {
        return Err(Invalid::Checksum(what));
    }
    Ok(Take { buf: fields, at: 0 })
}

impl FileHeader {
    pub fn write(&self, w: &mut impl Write, shards: u32) -> io::Result<()> {
        let f = &self.fingerprint;
        let block: [u8; FILE_HEADER_LEN] = Put::new()
            .bytes(&MAGIC)
            .u32(VERSION)
            .u64(f.memory_limit)
            .u64(f.item_size_max)
            .u32(f.cas_enabled as u32)
            .u32(f.shards)
            .u32(f.segment_size)
            .u32(f.shared_max)
            .u64(self.hash_seed)
            .i64(self.process_started)
            .i64(self.saved_at)
            .u32(self.oldest_live)
            .seal();
        debug_assert_eq!(shards, f.shards);
        w.write_all(&block)
    }

    /// Reads and checks the header: magic, version, then the CRC, then
    /// the fields.
    pub fn read(r: &mut impl Read) -> Result<FileHeader, Invalid> {
        let mut buf = [0u8; FILE_HEADER_LEN];
        let got = read_up_to(r, &mut buf[..12])?;
        if got == 0 {
            return Err(Invalid::Empty);
        }
        if got < 8 || buf[..8] != MAGIC {
            return Err(if got < 8 && buf[..got] == MAGIC[..got] {
                Invalid::Truncated
            } else {
                Invalid::NotASnapshot
            });
        }
        if got < 12 {
            return Err(Invalid::Truncated);
        }
        let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
        if !(OLDEST_READ..=VERSION).contains(&version) {
            return Err(Invalid::Version(version));
        }
        r.read_exact(&mut buf[12..])?;
        let mut t = checked(&buf, "the file header")?;
        t.bytes(12);
        let fingerprint = Fingerprint {
            memory_limit: t.u64(),
            item_size_max: t.u64(),
            cas_enabled: match t.u32() {
                0 => false,
                1 => true,
                other => return Err(Invalid::Malformed(format!("CAS setting {other}"))),
            },
            shards: t.u32(),
            segment_size: t.u32(),
            shared_max: t.u32(),
        };
        Ok(FileHeader {
            fingerprint,
            hash_seed: t.u64(),
            process_started: t.i64(),
            saved_at: t.i64(),
            oldest_live: t.u32(),
        })
    }
}

impl ShardHeader {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let block: [u8; SHARD_HEADER_LEN] = Put::new()
            .u32(self.index)
            .u64(self.cas_next)
            .u32(self.segments)
            .u32(self.items)
            .seal();
        w.write_all(&block)
    }

    pub fn read(r: &mut impl Read) -> Result<ShardHeader, Invalid> {
        let mut buf = [0u8; SHARD_HEADER_LEN];
        r.read_exact(&mut buf)?;
        let mut t = checked(&buf, "a shard header")?;
        Ok(ShardHeader {
            index: t.u32(),
            cas_next: t.u64(),
            segments: t.u32(),
            items: t.u32(),
        })
    }
}

impl SegmentHeader {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let block: [u8; SEGMENT_HEADER_LEN] = Put::new()
            .bytes(&[self.kind, 0, 0, 0])
            .u32(self.used)
            .u64(self.cas_base)
            .u32(self.body_crc)
            .seal();
        w.write_all(&block)
    }

    pub fn read(r: &mut impl Read) -> Result<SegmentHeader, Invalid> {
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        r.read_exact(&mut buf)?;
        let mut t = checked(&buf, "a segment header")?;
        let kind = t.u8();
        if t.bytes(3) != [0, 0, 0] || (kind != SHARED && kind != SOLO) {
            return Err(Invalid::Malformed(format!("segment kind {kind}")));
        }
        Ok(SegmentHeader {
            kind,
            used: t.u32(),
            cas_base: t.u64(),
            body_crc: t.u32(),
        })
    }

    /// Checks a body read into memory against the header's CRC.
    pub fn check_body(&self, body: &[u8]) -> Result<(), Invalid> {
        if crc32fast::hash(body) != self.body_crc {
            return Err(Invalid::Checksum("a segment's records"));
        }
        Ok(())
    }
}

impl Trailer {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let block: [u8; TRAILER_LEN] = Put::new()
            .bytes(&END_MAGIC)
            .u64(self.segments)
            .u64(self.items)
            .seal();
        w.write_all(&block)
    }

    /// Reads the trailer and checks that nothing follows it.
    pub fn read(r: &mut impl Read) -> Result<Trailer, Invalid> {
        let mut buf = [0u8; TRAILER_LEN];
        r.read_exact(&mut buf)?;
        let mut t = checked(&buf, "the trailer")?;
        if t.bytes(8) != END_MAGIC {
            return Err(Invalid::Malformed("no end marker".into()));
        }
        let trailer = Trailer {
            segments: t.u64(),
            items: t.u64(),
        };
        let mut probe = [0u8; 1];
        if read_up_to(r, &mut probe)? != 0 {
            return Err(Invalid::TrailingBytes);
        }
        Ok(trailer)
    }
}

/// Reads until `buf` is full or the input ends; returns how much it read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A writer that keeps a count of the bytes through it.
pub struct Counted<W> {
    pub inner: W,
    pub bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FileHeader {
        FileHeader {
            fingerprint: Fingerprint {
                memory_limit: 64 << 20,
                item_size_max: 1 << 20,
                cas_enabled: true,
                shards: 16,
                segment_size: 65536,
                shared_max: 4096,
            },
            hash_seed: 0x1234,
            process_started: 1_700_000_000,
            saved_at: 1_700_000_100,
            oldest_live: 7,
        }
    }

    #[test]
    fn headers_round_trip() {
        let mut out = Vec::new();
        header().write(&mut out, 16).unwrap();
        assert_eq!(out.len(), FILE_HEADER_LEN);
        let s = ShardHeader {
            index: 3,
            cas_next: 99,
            segments: 2,
            items: 5,
        };
        s.write(&mut out).unwrap();
        let g = SegmentHeader {
            kind: SOLO,
            used: 10,
            cas_base: 1 << 40,
            body_crc: 77,
        };
        g.write(&mut out).unwrap();
        let t = Trailer {
            segments: 2,
            items: 5,
        };
        t.write(&mut out).unwrap();
        let mut r = &out[..];
        assert_eq!(FileHeader::read(&mut r).unwrap(), header());
        assert_eq!(ShardHeader::read(&mut r).unwrap(), s);
        assert_eq!(SegmentHeader::read(&mut r).unwrap(), g);
        assert_eq!(Trailer::read(&mut r).unwrap(), t);
    }

    #[test]
    fn every_flipped_bit_of_a_header_is_caught() {
        let mut out = Vec::new();
        header().write(&mut out, 16).unwrap();
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(FileHeader::read(&mut &bad[..]).is_err(), "bit {i}");
        }
    }

    #[test]
    fn empty_short_foreign_and_newer_files_say_why() {
        let mut out = Vec::new();
        header().write(&mut out, 16).unwrap();
        let read = |b: &[u8]| FileHeader::read(&mut &b[..]).unwrap_err().to_string();
        assert_eq!(read(b""), "the file is empty");
        for cut in 1..out.len() {
            assert_eq!(read(&out[..cut]), "the file is truncated", "cut at {cut}");
        }
        assert_eq!(read(b"VALUE x 0 1\r\n"), "not a ferrocache snapshot");
        for other in [1u32, 2, 5] {
            let mut file = out.clone();
            file[8..12].copy_from_slice(&other.to_le_bytes());
            assert_eq!(
                read(&file),
                format!("format version {other}; this build reads versions 3 to 4")
            );
        }
    }

    #[test]
    fn a_version_3_file_is_read() {
        let mut file = Vec::new();
        header().write(&mut file, 16).unwrap();
        file[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc_at = file.len() - 4;
        let crc = crc32fast::hash(&file[..crc_at]);
        file[crc_at..].copy_from_slice(&crc.to_le_bytes());
        let read = FileHeader::read(&mut &file[..]).expect("a version 3 header");
        assert_eq!(read.fingerprint, header().fingerprint);
    }

    #[test]
    fn fingerprint_names_the_first_difference() {
        let a = header().fingerprint;
        assert!(a.mismatch(&a).is_none());
        let b = Fingerprint {
            memory_limit: 128 << 20,
            ..a
        };
        assert_eq!(
            a.mismatch(&b).unwrap().to_string(),
            "saved with -m 64, started with -m 128: the layout differs"
        );
        let c = Fingerprint {
            cas_enabled: false,
            ..a
        };
        assert!(a.mismatch(&c).unwrap().to_string().contains("CAS"));
    }

    #[test]
    fn bytes_after_the_trailer_are_refused() {
        let mut out = Vec::new();
        Trailer {
            segments: 0,
            items: 0,
        }
        .write(&mut out)
        .unwrap();
        out.push(0);
        assert!(matches!(
            Trailer::read(&mut &out[..]),
            Err(Invalid::TrailingBytes)
        ));
    }
}
