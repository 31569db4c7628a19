//! The text-protocol side of the load: keys and self-describing values,
//! request encoding, and strict parsing of every reply.
//!
//! A value is a function of (key id, version): `"<id>:<version>:"` followed
//! by a filler pattern whose phase depends on both, padded to the value size.
//! The size is fixed, or (mixed sizes) a function of the key id alone, so a
//! key's value never changes size and a reply's length is checked too.
//! A reply is checked byte for byte against the value the client last set
//! for that key, so a wrong key, a stale or torn value, a wrong length or
//! wrong flags all show up as errors, not just as "a reply came back".

use std::fmt::Write as _;

/// Key ids are written as `key:<id>`.
const KEY_PREFIX: &[u8] = b"key:";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Values shorter than this cannot hold their own header.
pub const MIN_VALUE_SIZE: usize = 48;

/// Writes ASCII decimal digits of `v` into `buf`, returning the used tail.
fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

pub fn push_key(out: &mut Vec<u8>, id: u64) {
    out.extend_from_slice(KEY_PREFIX);
    out.extend_from_slice(decimal(id, &mut [0; 20]));
}

fn key_matches(got: &[u8], id: u64) -> bool {
    got.len() > KEY_PREFIX.len()
        && got.starts_with(KEY_PREFIX)
        && &got[KEY_PREFIX.len()..] == decimal(id, &mut [0; 20])
}

/// The flags stored with a key: derived from the id, so they are checked too.
pub fn flags_of(id: u64) -> u32 {
    (id.wrapping_mul(2_654_435_761) >> 16) as u32
}

/// splitmix64's finalizer: spreads consecutive ids over all 64 bits, so a
/// size drawn from it does not follow the key order (or the Zipf rank).
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds and checks values of one size, or of sizes in `min..=max` that
/// depend on the key id alone.
#[derive(Clone, Debug)]
pub struct Values {
    min: usize,
    max: usize,
    pattern: Vec<u8>,
}

impl Values {
    /// Values of `size` bytes each.
    pub fn new(size: usize) -> Values {
        Values::mixed(size, size)
    }

    /// Values of `min..=max` bytes, the size a fixed function of the key
    /// id ([`Values::size_of`]), spread about evenly over the range.
    pub fn mixed(min: usize, max: usize) -> Values {
        assert!(
            min >= MIN_VALUE_SIZE,
            "values must be at least {MIN_VALUE_SIZE} bytes"
        );
        assert!(min <= max, "value sizes: {min} is above {max}");
        let pattern = ALPHABET
            .iter()
            .copied()
            .cycle()
            .take(max + ALPHABET.len())
            .collect();
        Values { min, max, pattern }
    }

    /// The size of key `id`'s value: the same on every call, in
    /// `min..=max`.
    pub fn size_of(&self, id: u64) -> usize {
        if self.min == self.max {
            return self.min;
        }
        let span = (self.max - self.min + 1) as u64;
        self.min + (mix(id) % span) as usize
    }

    fn header(id: u64, version: u32, buf: &mut [u8; 48]) -> usize {
        let mut n = 0;
        for part in [
            decimal(id, &mut [0; 20]),
            b":",
            decimal(version.into(), &mut [0; 20]),
            b":",
        ] {
            buf[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        n
    }

    fn filler(&self, id: u64, version: u32, len: usize) -> &[u8] {
        let phase =
            (id.wrapping_mul(31) ^ u64::from(version).wrapping_mul(17)) % ALPHABET.len() as u64;
        &self.pattern[phase as usize..phase as usize + len]
    }

    pub fn push(&self, out: &mut Vec<u8>, id: u64, version: u32) {
        let mut h = [0; 48];
        let n = Self::header(id, version, &mut h);
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(self.filler(id, version, self.size_of(id) - n));
    }

    pub fn matches(&self, data: &[u8], id: u64, version: u32) -> bool {
        let mut h = [0; 48];
        let n = Self::header(id, version, &mut h);
        let size = self.size_of(id);
        data.len() == size
            && data[..n] == h[..n]
            && data[n..] == *self.filler(id, version, size - n)
    }
}

/// `set <key> <flags> 0 <bytes>\r\n<value>\r\n`
pub fn push_set(out: &mut Vec<u8>, values: &Values, id: u64, version: u32) {
    out.extend_from_slice(b"set ");
    push_key(out, id);
    out.push(b' ');
    out.extend_from_slice(decimal(flags_of(id).into(), &mut [0; 20]));
    out.extend_from_slice(b" 0 ");
    out.extend_from_slice(decimal(values.size_of(id) as u64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
    values.push(out, id, version);
    out.extend_from_slice(b"\r\n");
}

/// `get <key> [<key> ...]\r\n`
pub fn push_get(out: &mut Vec<u8>, ids: &[u64]) {
    out.extend_from_slice(b"get");
    for &id in ids {
        out.push(b' ');
        push_key(out, id);
    }
    out.extend_from_slice(b"\r\n");
}

/// A reply parsed from the front of the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// The reply took this many bytes.
    Done(usize, T),
}

/// What a `get` reply held.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct GetOutcome {
    pub hits: u32,
    pub misses: u32,
}

/// Printable, truncated excerpt of a reply, for error messages.
pub fn excerpt(buf: &[u8]) -> String {
    let mut s = String::new();
    for &b in buf.iter().take(120) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    if buf.len() > 120 {
        s.push_str("...");
    }
    s
}

fn line(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.windows(2).take(1024).position(|w| w == b"\r\n")?;
    Some(&buf[..end])
}

/// memcached's refusal of a set when it finds nothing to evict in time;
/// a legitimate reply under memory pressure, counted apart from errors.
const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object";

/// The reply to `set`: `STORED\r\n` (`true`), or memcached's out-of-memory
/// refusal (`false`); anything else is an error.
pub fn parse_stored(buf: &[u8]) -> Result<Parsed<bool>, String> {
    match line(buf) {
        Some(b"STORED") => Ok(Parsed::Done(8, true)),
        Some(OUT_OF_MEMORY) => Ok(Parsed::Done(OUT_OF_MEMORY.len() + 2, false)),
        Some(_) => Err(format!("set: expected STORED, got \"{}\"", excerpt(buf))),
        None if buf.len() >= 1024 => Err(format!("set: reply line too long: \"{}\"", excerpt(buf))),
        None => Ok(Parsed::Incomplete),
    }
}

/// The reply to `get` of `expected` (key id, version the client last set)
/// pairs: zero or more `VALUE` blocks, in request order, then `END`. A key
/// may be missing (a miss); any returned value must be exactly the expected
/// one, with the expected flags.
pub fn parse_get(
    buf: &[u8],
    expected: &[(u64, u32)],
    values: &Values,
) -> Result<Parsed<GetOutcome>, String> {
    let fail = |what: String| Err(format!("get: {what}; reply \"{}\"", excerpt(buf)));
    let mut pos = 0;
    let mut next = 0; // index in `expected` of the next key that may come back
    let mut out = GetOutcome::default();
    loop {
        let Some(l) = line(&buf[pos..]) else {
            if buf.len() - pos >= 1024 {
                return fail("reply line too long".into());
            }
            return Ok(Parsed::Incomplete);
        };
        if l == b"END" {
            out.misses += (expected.len() - next) as u32;
            return Ok(Parsed::Done(pos + 5, out));
        }
        let mut parts = l.split(|&b| b == b' ');
        let (Some(b"VALUE"), Some(key), Some(flags), Some(bytes), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return fail("expected VALUE or END".into());
        };
        let Some(found) = expected[next..]
            .iter()
            .position(|&(id, _)| key_matches(key, id))
        else {
            return fail(format!(
                "unexpected or out-of-order key \"{}\"",
                excerpt(key)
            ));
        };
        let (id, version) = expected[next + found];
        out.misses += found as u32;
        next += found + 1;
        let parse_num = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        if parse_num(flags) != Some(flags_of(id).into()) {
            return fail(format!("wrong flags for key {id} (want {})", flags_of(id)));
        }
        let Some(len) = parse_num(bytes) else {
            return fail("bad length".into());
        };
        let start = pos + l.len() + 2;
        let len = len as usize;
        if len != values.size_of(id) {
            return fail(format!(
                "key {id}: length {len}, want {}",
                values.size_of(id)
            ));
        }
        if buf.len() < start + len + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return fail(format!("key {id}: data block not followed by \\r\\n"));
        }
        if !values.matches(&buf[start..start + len], id, version) {
            return fail(format!(
                "key {id}: wrong value, want version {version}, got \"{}\"",
                excerpt(&buf[start..start + len])
            ));
        }
        out.hits += 1;
        pos = start + len + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_block(values: &Values, id: u64, version: u32) -> Vec<u8> {
        let mut v = Vec::new();
        values.push(&mut v, id, version);
        let mut out = Vec::new();
        out.extend_from_slice(b"VALUE ");
        push_key(&mut out, id);
        out.extend_from_slice(format!(" {} {}\r\n", flags_of(id), v.len()).as_bytes());
        out.extend_from_slice(&v);
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn set_request_is_well_formed() {
        let values = Values::new(100);
        let mut out = Vec::new();
        push_set(&mut out, &values, 42, 7);
        let text = String::from_utf8(out).unwrap();
        let (head, rest) = text.split_once("\r\n").unwrap();
        assert_eq!(head, format!("set key:42 {} 0 100", flags_of(42)));
        assert_eq!(rest.len(), 102);
        assert!(rest.starts_with("42:7:"));
        assert!(rest.ends_with("\r\n"));
    }

    #[test]
    fn get_request_lists_keys() {
        let mut out = Vec::new();
        push_get(&mut out, &[1, 20, 300]);
        assert_eq!(out, b"get key:1 key:20 key:300\r\n");
    }

    #[test]
    fn values_differ_by_key_and_version() {
        let values = Values::new(64);
        let mut a = Vec::new();
        values.push(&mut a, 5, 1);
        assert_eq!(a.len(), 64);
        assert!(values.matches(&a, 5, 1));
        assert!(!values.matches(&a, 5, 2));
        assert!(!values.matches(&a, 6, 1));
        assert!(!values.matches(&a[..63], 5, 1));
        let mut torn = a.clone();
        torn[40] ^= 1;
        assert!(!values.matches(&torn, 5, 1));
    }

    #[test]
    fn mixed_sizes_are_a_fixed_function_of_the_key_within_bounds() {
        let values = Values::mixed(100, 2000);
        let again = Values::mixed(100, 2000);
        let mut seen_low = false;
        let mut seen_high = false;
        let mut total = 0u64;
        let n = 100_000u64;
        for id in 0..n {
            let size = values.size_of(id);
            assert!((100..=2000).contains(&size), "key {id}: {size}");
            assert_eq!(size, values.size_of(id), "key {id} changed size");
            assert_eq!(
                size,
                again.size_of(id),
                "key {id}: another instance disagrees"
            );
            seen_low |= size < 150;
            seen_high |= size > 1950;
            total += size as u64;
        }
        assert!(seen_low && seen_high, "sizes do not cover the range");
        // Uniform over 100..=2000: mean 1050, sd 549, so the mean of 10^5
        // draws is within a few bytes of it.
        let mean = total as f64 / n as f64;
        assert!((mean - 1050.0).abs() < 15.0, "mean {mean}");
        // Neighbouring keys (and so the hottest Zipf ranks) differ in size.
        assert!(
            (0..10)
                .map(|id| values.size_of(id))
                .any(|s| s != values.size_of(0))
        );
    }

    #[test]
    fn fixed_sizes_ignore_the_key() {
        let values = Values::new(1000);
        assert!((0..1000).all(|id| values.size_of(id) == 1000));
    }

    #[test]
    fn mixed_values_round_trip_and_reject_other_lengths() {
        let values = Values::mixed(100, 2000);
        for id in [0u64, 1, 7, 12_345, u64::from(u32::MAX) + 3] {
            let mut v = Vec::new();
            values.push(&mut v, id, 2);
            assert_eq!(v.len(), values.size_of(id));
            assert!(values.matches(&v, id, 2));
            assert!(!values.matches(&v[..v.len() - 1], id, 2));
            let mut set = Vec::new();
            push_set(&mut set, &values, id, 2);
            let head = format!("set key:{id} {} 0 {}\r\n", flags_of(id), v.len());
            assert!(set.starts_with(head.as_bytes()));
            assert_eq!(set.len(), head.len() + v.len() + 2);
            let mut reply = value_block(&values, id, 2);
            reply.extend_from_slice(b"END\r\n");
            assert_eq!(
                parse_get(&reply, &[(id, 2)], &values),
                Ok(Parsed::Done(reply.len(), GetOutcome { hits: 1, misses: 0 }))
            );
        }
        // A value of another key's size is rejected by its length.
        let (a, b) = (0..100u64)
            .flat_map(|a| (0..100u64).map(move |b| (a, b)))
            .find(|&(a, b)| values.size_of(a) != values.size_of(b))
            .expect("two keys of different sizes");
        let mut v = Vec::new();
        values.push(&mut v, b, 0);
        let mut reply = format!("VALUE key:{a} {} {}\r\n", flags_of(a), v.len()).into_bytes();
        reply.extend_from_slice(&v);
        reply.extend_from_slice(b"\r\nEND\r\n");
        assert!(parse_get(&reply, &[(a, 0)], &values).is_err());
    }

    #[test]
    fn stored_parses_and_rejects() {
        assert_eq!(parse_stored(b"STORED\r\nVAL"), Ok(Parsed::Done(8, true)));
        assert_eq!(parse_stored(b"STOR"), Ok(Parsed::Incomplete));
        assert!(parse_stored(b"NOT_STORED\r\n").is_err());
        assert!(parse_stored(b"SERVER_ERROR object too large for cache\r\n").is_err());
        assert_eq!(
            parse_stored(b"SERVER_ERROR out of memory storing object\r\nSTORED\r\n"),
            Ok(Parsed::Done(43, false))
        );
    }

    #[test]
    fn get_hit_miss_and_multi() {
        let values = Values::new(100);
        assert_eq!(
            parse_get(b"END\r\n", &[(1, 0)], &values),
            Ok(Parsed::Done(5, GetOutcome { hits: 0, misses: 1 }))
        );
        let mut reply = value_block(&values, 1, 3);
        reply.extend(value_block(&values, 9, 0));
        reply.extend_from_slice(b"END\r\n");
        let want = [(1, 3), (4, 0), (9, 0), (12, 5)];
        assert_eq!(
            parse_get(&reply, &want, &values),
            Ok(Parsed::Done(reply.len(), GetOutcome { hits: 2, misses: 2 }))
        );
        for cut in 0..reply.len() {
            assert_eq!(
                parse_get(&reply[..cut], &want, &values),
                Ok(Parsed::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn get_rejects_wrong_replies() {
        let values = Values::new(100);
        let mut stale = value_block(&values, 1, 2);
        stale.extend_from_slice(b"END\r\n");
        assert!(
            parse_get(&stale, &[(1, 3)], &values).is_err(),
            "stale version"
        );
        assert!(parse_get(&stale, &[(2, 2)], &values).is_err(), "wrong key");
        let mut twice = value_block(&values, 1, 2);
        twice.extend(value_block(&values, 1, 2));
        twice.extend_from_slice(b"END\r\n");
        assert!(parse_get(&twice, &[(1, 2)], &values).is_err(), "duplicate");
        let mut order = value_block(&values, 2, 0);
        order.extend(value_block(&values, 1, 0));
        order.extend_from_slice(b"END\r\n");
        assert!(
            parse_get(&order, &[(1, 0), (2, 0)], &values).is_err(),
            "order"
        );
        let bad_flags = format!("VALUE key:1 {} 100\r\n", flags_of(1) + 1);
        assert!(parse_get(bad_flags.as_bytes(), &[(1, 0)], &values).is_err());
        assert!(parse_get(b"ERROR\r\n", &[(1, 0)], &values).is_err());
        assert!(parse_get(b"VALUE key:1 0 5\r\nhello\r\nEND\r\n", &[(1, 0)], &values).is_err());
    }
}
