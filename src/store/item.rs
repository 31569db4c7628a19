//! One stored item's immutable bytes: a small header, the key and the
//! value. A shard keeps it inside a record (see `segment.rs`), and a hit
//! hands out a slice of it.
//!
//! Layout: `[key_len u8][has u8][key][flags LE][cas u64 LE if has&CAS][value]`.
//! Flags take the fewest of 0, 1, 2 or 4 bytes that hold them, as two
//! `has` bits say (see [`flags_len`]). Clients set few flag bits:
//! pymemcache's serializer (behind Django's `PyMemcacheCache`) bits 0 to
//! 4, PHP's extension type codes under 256 unless the caller adds its own,
//! spymemcached up to 2,048. So 4 bytes would mostly hold zeros, 3% of a
//! 100-byte item. memcached also drops zero flags.
//! Most items carry no CAS: theirs follows from where their record is (see
//! `Shard::cas`). An item carries one only when that would be wrong: a
//! record moved by eviction keeps the CAS it had, and a client may choose
//! one (meta `E`). Everything here is fixed for the life of a record: a new
//! CAS means a new record. What changes in place (deadline, access time,
//! the fetched and active bits) lives in the record's prefix, which this
//! module does not know, nor where the item is kept.

/// Longest key an item can hold (its length is one byte).
pub const KEY_MAX: usize = u8::MAX as usize;

/// Flags of 4 bytes; with [`FLAGS_NARROW`], of 2.
const HAS_FLAGS: u8 = 1;
const HAS_CAS: u8 = 2;
/// The key was sent in base64 (the meta `b` flag): replies show it encoded.
const KEY_BINARY: u8 = 4;
/// Flags of 1 byte; with [`HAS_FLAGS`], of 2.
const FLAGS_NARROW: u8 = 8;
const FLAGS_BITS: u8 = HAS_FLAGS | FLAGS_NARROW;

/// The bytes flags take in an item: none for 0, else the fewest of 1, 2
/// or 4 that hold them.
pub fn flags_len(flags: u32) -> usize {
    match flags {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        _ => 4,
    }
}

/// The `has` bits that say flags take `len` bytes.
fn flags_bits(len: usize) -> u8 {
    match len {
        0 => 0,
        1 => FLAGS_NARROW,
        2 => HAS_FLAGS | FLAGS_NARROW,
        _ => HAS_FLAGS,
    }
}

/// The bytes of flags that an item's `has` byte says it holds.
fn flags_len_of(has: u8) -> usize {
    match has & FLAGS_BITS {
        0 => 0,
        FLAGS_NARROW => 1,
        FLAGS_BITS => 2,
        _ => 4,
    }
}

/// Bytes an item takes: a key and value, flags, and a CAS if it carries one.
pub fn encoded_len(key_len: usize, value_len: usize, flags: u32, cas: Option<u64>) -> usize {
    2 + key_len + flags_len(flags) + if cas.is_some() { CAS_LEN } else { 0 } + value_len
}

/// What carrying its own CAS adds to an item.
pub const CAS_LEN: usize = 8;

/// The immutable fields of an encoded item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    /// The CAS the item carries, if it carries one.
    pub cas: Option<u64>,
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
    let mut cas = None;
    let n = flags_len_of(has);
    let mut le = [0u8; 4];
    le[..n].copy_from_slice(&item[at..at + n]);
    let flags = u32::from_le_bytes(le);
    at += n;
    if has & HAS_CAS != 0 {
        cas = Some(u64::from_le_bytes(
            item[at..at + 8].try_into().expect("8 bytes"),
        ));
        at += 8;
    }
    Header {
        flags,
        cas,
        value_start: at,
    }
}

/// Whether `item` is a well-formed encoding: its header bits known and its
/// key, flags and CAS within its length. For bytes read from outside (a
/// snapshot), before any other function here touches them.
pub fn is_well_formed(item: &[u8]) -> bool {
    if item.len() < 2 || item[1] & !(FLAGS_BITS | HAS_CAS | KEY_BINARY) != 0 {
        return false;
    }
    let has = item[1];
    let fields = 2 + item[0] as usize + flags_len_of(has) + if has & HAS_CAS != 0 { 8 } else { 0 };
    fields <= item.len()
}

/// True if the item's key was stored from a base64 key (meta `b` flag).
pub fn key_binary(item: &[u8]) -> bool {
    item[1] & KEY_BINARY != 0
}

/// True if the item carries its own CAS; reads only its first two bytes.
pub fn carries_cas(item: &[u8]) -> bool {
    item[1] & HAS_CAS != 0
}

/// Writes an item of `dst.len()` bytes (its [`encoded_len`]) whose value
/// `fill` writes; it carries `cas` if that is given.
///
/// Panics if the key is longer than [`KEY_MAX`]; the store checks first.
pub fn write(
    dst: &mut [u8],
    key: &[u8],
    key_binary: bool,
    flags: u32,
    cas: Option<u64>,
    fill: impl FnOnce(&mut [u8]),
) {
    assert!(key.len() <= KEY_MAX, "key longer than {KEY_MAX} bytes");
    dst[0] = key.len() as u8;
    dst[1] = if key_binary { KEY_BINARY } else { 0 };
    let mut at = 2 + key.len();
    dst[2..at].copy_from_slice(key);
    let n = flags_len(flags);
    dst[1] |= flags_bits(n);
    dst[at..at + n].copy_from_slice(&flags.to_le_bytes()[..n]);
    at += n;
    if let Some(cas) = cas {
        dst[1] |= HAS_CAS;
        dst[at..at + 8].copy_from_slice(&cas.to_le_bytes());
        at += 8;
    }
    fill(&mut dst[at..]);
}

/// Writes `src`, an item that carries no CAS, into `dst` (8 bytes longer)
/// as the same item carrying `cas`.
pub fn write_carrying(dst: &mut [u8], src: &[u8], cas: u64) {
    debug_assert!(src[1] & HAS_CAS == 0 && dst.len() == src.len() + CAS_LEN);
    let at = 2 + src[0] as usize + flags_len_of(src[1]);
    dst[..at].copy_from_slice(&src[..at]);
    dst[1] |= HAS_CAS;
    dst[at..at + CAS_LEN].copy_from_slice(&cas.to_le_bytes());
    dst[at + CAS_LEN..].copy_from_slice(&src[at..]);
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

    fn make(key: &[u8], flags: u32, cas: Option<u64>, value: &[u8]) -> Vec<u8> {
        let mut b = vec![0; encoded_len(key.len(), value.len(), flags, cas)];
        write(&mut b, key, false, flags, cas, |d| d.copy_from_slice(value));
        b
    }

    #[test]
    fn round_trip_every_header_shape() {
        for (flags, cas) in [
            (0, None),
            (7, None),
            (0, Some(9)),
            (0, Some(0)),
            (u32::MAX, Some(u64::MAX)),
            (0xff, Some(3)),
            (0x100, None),
            (0xffff, Some(4)),
            (0x1_0000, None),
            (0x8000_0000, None),
        ] {
            let b = make(b"key", flags, cas, b"value");
            assert_eq!(b.len(), encoded_len(3, 5, flags, cas));
            assert_eq!(key(&b), b"key");
            let h = header(&b);
            assert_eq!((h.flags, h.cas), (flags, cas));
            assert_eq!(&b[h.value_start..], b"value");
        }
    }

    #[test]
    fn flags_take_the_fewest_bytes_that_hold_them() {
        for (flags, len) in [
            (0, 0),
            (1, 1),
            (16, 1),
            (255, 1),
            (256, 2),
            (512, 2),
            (65_535, 2),
            (65_536, 4),
            (u32::MAX, 4),
        ] {
            let b = make(b"k", flags, None, b"v");
            assert_eq!(b.len(), 2 + 1 + len + 1, "flags {flags}");
            assert_eq!(flags_len(flags), len);
            assert!(is_well_formed(&b));
            assert_eq!(header(&b).flags, flags);
        }
    }

    #[test]
    fn items_written_with_four_byte_flags_still_read() {
        // As builds before narrow flags wrote them, and snapshots keep them.
        let mut old = vec![3, HAS_FLAGS, b'k', b'e', b'y'];
        old.extend_from_slice(&7u32.to_le_bytes());
        old.extend_from_slice(b"value");
        assert!(is_well_formed(&old));
        let h = header(&old);
        assert_eq!(
            (h.flags, h.cas, &old[h.value_start..]),
            (7, None, &b"value"[..])
        );
    }

    #[test]
    fn an_item_made_to_carry_a_cas_keeps_everything_else() {
        for flags in [0, 7, 300, 70_000] {
            let src = make(b"key", flags, None, b"value");
            let mut dst = vec![0; src.len() + CAS_LEN];
            write_carrying(&mut dst, &src, 42);
            assert_eq!(dst, make(b"key", flags, Some(42), b"value"));
        }
    }

    #[test]
    fn values_of_any_length() {
        for vlen in [0, 1, 13, 100, 4096, 300_000] {
            let value: Vec<u8> = (0..vlen).map(|i| i as u8).collect();
            let b = make(b"k", 0, None, &value);
            assert_eq!(&b[header(&b).value_start..], &value[..]);
            assert!(!key_binary(&b));
        }
    }

    #[test]
    fn well_formed_items_are_told_from_impossible_ones() {
        let good = make(b"key", 7, Some(9), b"value");
        assert!(is_well_formed(&good));
        for cut in 0..good.len() - 5 {
            assert!(!is_well_formed(&good[..cut]), "cut at {cut}");
        }
        let mut unknown_bit = good.clone();
        unknown_bit[1] |= 0x80;
        assert!(!is_well_formed(&unknown_bit));
        assert!(!is_well_formed(&[3, 0, b'k']), "a key past the end");
    }

    #[test]
    fn longest_key() {
        let k = vec![b'k'; KEY_MAX];
        let b = make(&k, 1, Some(2), b"v");
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
