//! One stored item: a single immutable allocation holding a small header, the
//! key and the value, shared as [`Bytes`] so that a hit hands out the value
//! by bumping a reference count.
//!
//! Layout: `[key_len u8][has u8][key][flags u32 LE if has&FLAGS][cas u64 LE if has&CAS][value]`.
//! Flags and CAS are left out when they are 0 (memcached also drops zero
//! flags). Everything here is fixed for the life of an allocation: a new CAS
//! means a new item. What changes in place (deadline, access time, LRU
//! position, fetched bit) lives in the shard's slot.
//!
//! Items up to [`INLINE_MAX`] bytes are built with `Bytes::from_owner` over a
//! fixed-size array, so the reference count and the data share one
//! allocation that is reference counted from birth: no header is allocated
//! on the first clone (under a shard lock), and there is no second
//! allocation at all. The array sizes are multiples of 16, which with the
//! 8-byte count and malloc's 8-byte chunk header fill a malloc chunk exactly.
//! Larger items use a `Vec`, whose shared header is forced into being here,
//! at build time, for the same reason.

use bytes::Bytes;

/// Longest key an item can hold (its length is one byte).
pub const KEY_MAX: usize = u8::MAX as usize;

/// Largest encoded item kept in a single allocation with its count.
pub const INLINE_MAX: usize = 512;

/// Inline array sizes step by this much.
pub const INLINE_STEP: usize = 16;

const HAS_FLAGS: u8 = 1;
const HAS_CAS: u8 = 2;
/// The key was sent in base64 (the meta `b` flag): replies show it encoded.
const KEY_BINARY: u8 = 4;

/// Bytes the encoding adds to a key and value.
pub fn encoded_len(key_len: usize, value_len: usize, flags: u32, cas: u64) -> usize {
    2 + key_len + if flags != 0 { 4 } else { 0 } + if cas != 0 { 8 } else { 0 } + value_len
}

/// The immutable fields of an encoded item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub cas: u64,
    /// Where the value starts in the item.
    pub value_start: usize,
}

/// The key of an encoded item.
pub fn key(item: &[u8]) -> &[u8] {
    &item[2..2 + item[0] as usize]
}

pub fn header(item: &[u8]) -> Header {
    let has = item[1];
    let mut at = 2 + item[0] as usize;
    let mut flags = 0;
    let mut cas = 0;
    if has & HAS_FLAGS != 0 {
        flags = u32::from_le_bytes(item[at..at + 4].try_into().expect("4 bytes"));
        at += 4;
    }
    if has & HAS_CAS != 0 {
        cas = u64::from_le_bytes(item[at..at + 8].try_into().expect("8 bytes"));
        at += 8;
    }
    Header {
        flags,
        cas,
        value_start: at,
    }
}

/// True if the item's key was stored from a base64 key (meta `b` flag).
pub fn key_binary(item: &[u8]) -> bool {
    item[1] & KEY_BINARY != 0
}

/// Encodes an item whose value is `value_len` bytes written by `fill`.
/// Call it before taking a lock: it allocates and copies the value.
///
/// Panics if the key is longer than [`KEY_MAX`]; the store checks first.
pub fn build(
    key: &[u8],
    flags: u32,
    cas: u64,
    value_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Bytes {
    build_keyed(key, false, flags, cas, value_len, fill)
}

/// [`build`] for a key that may have come in base64 (`key_binary`).
pub fn build_keyed(
    key: &[u8],
    key_binary: bool,
    flags: u32,
    cas: u64,
    value_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Bytes {
    assert!(key.len() <= KEY_MAX, "key longer than {KEY_MAX} bytes");
    let len = encoded_len(key.len(), value_len, flags, cas);
    let write = move |dst: &mut [u8]| {
        debug_assert_eq!(dst.len(), len);
        dst[0] = key.len() as u8;
        dst[1] = if key_binary { KEY_BINARY } else { 0 };
        let mut at = 2 + key.len();
        dst[2..at].copy_from_slice(key);
        if flags != 0 {
            dst[1] |= HAS_FLAGS;
            dst[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            at += 4;
        }
        if cas != 0 {
            dst[1] |= HAS_CAS;
            dst[at..at + 8].copy_from_slice(&cas.to_le_bytes());
            at += 8;
        }
        fill(&mut dst[at..]);
    };
    if len <= INLINE_MAX {
        build_inline(len, write)
    } else {
        // `vec!` of zeros is calloc: large buffers come as fresh zeroed pages.
        let mut v = vec![0u8; len];
        write(&mut v);
        let b = Bytes::from(v);
        // The first clone of a Vec-made `Bytes` allocates its shared header:
        // do it now rather than on the first hit, under a lock.
        drop(b.clone());
        b
    }
}

/// An item's bytes with the reference count in the same allocation.
struct Inline<const N: usize>([u8; N]);

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn inline<const N: usize>(len: usize, write: impl FnOnce(&mut [u8])) -> Bytes {
    let mut buf = [0u8; N];
    write(&mut buf[..len]);
    let mut b = Bytes::from_owner(Inline(buf));
    // For an owner-backed `Bytes` this only shortens the view.
    b.truncate(len);
    b
}

macro_rules! inline_classes {
    ($len:expr, $write:expr, [$($k:literal),*]) => {
        match $len.div_ceil(INLINE_STEP) {
            $($k => inline::<{ $k * INLINE_STEP }>($len, $write),)*
            _ => unreachable!("inline item of {} bytes", $len),
        }
    };
}

fn build_inline(len: usize, write: impl FnOnce(&mut [u8])) -> Bytes {
    inline_classes!(
        len,
        write,
        [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 26, 27, 28, 29, 30, 31, 32
        ]
    )
}

/// The size of the allocation that holds an inline item of `len` bytes,
/// before malloc's own header: the 8-byte count plus the rounded array.
pub fn inline_size(len: usize) -> usize {
    8 + len.div_ceil(INLINE_STEP) * INLINE_STEP
}

/// Reads a stored value as incr/decr must: memcached's `safe_strtoull`, i.e.
/// C's `strtoull` (leading whitespace, an optional sign, decimal digits)
/// whose parse must consume a digit and stop at whitespace, a NUL or the end
/// of the value. Out of range is refused, and so is a number written with a
/// `-` whose value, as `strtoull` negates it, is negative as an `i64` (so
/// `-5` is refused while memcached's `-0` quirk reads as 0).
pub fn parse_counter(value: &[u8]) -> Option<u64> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let mut i = 0;
    while i < value.len() && is_space(value[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < value.len() && (value[i] == b'+' || value[i] == b'-') {
        negative = value[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut n: u64 = 0;
    while i < value.len() && value[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((value[i] - b'0') as u64)?;
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < value.len() && !is_space(value[i]) && value[i] != 0 {
        return None;
    }
    if negative {
        n = n.wrapping_neg();
        if (n as i64) < 0 {
            return None;
        }
    }
    Some(n)
}

/// Writes `n` in decimal at the start of `buf`; returns the digit count.
pub fn format_counter(n: u64, buf: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    buf[..len].copy_from_slice(&tmp[i..]);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(key: &[u8], flags: u32, cas: u64, value: &[u8]) -> Bytes {
        build(key, flags, cas, value.len(), |d| d.copy_from_slice(value))
    }

    #[test]
    fn round_trip_every_header_shape() {
        for (flags, cas) in [(0, 0), (7, 0), (0, 9), (u32::MAX, u64::MAX)] {
            let b = make(b"key", flags, cas, b"value");
            assert_eq!(b.len(), encoded_len(3, 5, flags, cas));
            assert_eq!(key(&b), b"key");
            let h = header(&b);
            assert_eq!((h.flags, h.cas), (flags, cas));
            assert_eq!(&b[h.value_start..], b"value");
        }
    }

    #[test]
    fn every_size_class_and_the_vec_path() {
        for vlen in [
            0, 1, 13, 14, 100, 494, 495, 496, 497, 510, 511, 4096, 300_000,
        ] {
            let value: Vec<u8> = (0..vlen).map(|i| i as u8).collect();
            let b = make(b"k", 0, 0, &value);
            assert_eq!(&b[header(&b).value_start..], &value[..]);
            // A hit's view shares the allocation.
            let s = b.slice(header(&b).value_start..);
            assert_eq!(&s[..], &value[..]);
        }
    }

    #[test]
    fn longest_key() {
        let k = vec![b'k'; KEY_MAX];
        let b = make(&k, 1, 2, b"v");
        assert_eq!(key(&b), &k[..]);
    }

    #[test]
    fn counter_parsing_like_strtoull() {
        let ok: &[(&[u8], u64)] = &[
            (b"0", 0),
            (b"12", 12),
            (b" 12", 12),
            (b"12 ", 12),
            (b"\t12\r\n", 12),
            (b"0007", 7),
            (b"+5", 5),
            (b"-0", 0),
            (b"0000000000000000000000042", 42),
            (b"18446744073709551615", u64::MAX),
            (b"12\0junk", 12),
        ];
        for (v, n) in ok {
            assert_eq!(
                parse_counter(v),
                Some(*n),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        let bad: &[&[u8]] = &[
            b"",
            b" ",
            b"12abc",
            b"abc",
            b"-5",
            b"-",
            b"+",
            b"18446744073709551616",
            b"99999999999999999999999",
            b"1.5",
        ];
        for v in bad {
            assert_eq!(parse_counter(v), None, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn counter_formatting() {
        let mut buf = [0u8; 20];
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            let len = format_counter(n, &mut buf);
            assert_eq!(&buf[..len], n.to_string().as_bytes());
        }
    }
}
