//! The classic text commands: one command line in, one [`Parsed`] out.
//!
//! The line given to [`parse_line`] has already been cut by the codec: no
//! `\n`, no final `\r`, and nothing from the first NUL on (memcached treats
//! the line as a C string). Everything here follows memcached 1.6.18's
//! `process_command_ascii` closely, because clients and tests depend on the
//! exact error for each malformed request:
//!
//! - the line is split like `tokenize_command`: at most [`MAX_TOKENS`] - 1
//!   words, separated by spaces only;
//! - token-count checks come first and answer a plain `ERROR` that `noreply`
//!   never hides; the remaining errors are hidden by a final `noreply`;
//! - numbers are read with the rules of C's `strtoul`/`strtol` as memcached's
//!   `safe_strto*` helpers use them, wrap-arounds included.
//!
//! Meta commands (two-byte commands starting with `m`) are parsed in
//! [`super::meta`].

use nom::{
    IResult, Parser,
    bytes::complete::take_while,
    character::complete::{digit1, one_of},
    combinator::opt,
};

use super::meta::{self, MetaSetHeader};
use super::{Command, Frame, KEY_MAX_LEN, Keys, MAX_TOKENS, ProtocolError, ShutdownMode};
use crate::item_rules::StoreMode;

/// What one command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The line is complete on its own: a command, an error, or a close.
    Frame(Frame<'a>),
    /// A storage command whose data block follows the line.
    Store(StoreHeader<'a>),
    /// An `ms` whose data block follows the line.
    MetaSet(MetaSetHeader<'a>),
}

/// The parsed line of a storage command; `bytes` data bytes and a CRLF follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHeader<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i64,
    /// The length of the data block, without its CRLF; at most `i32::MAX - 2`.
    pub bytes: usize,
    pub cas_unique: u64,
    pub noreply: bool,
}

impl<'a> StoreHeader<'a> {
    /// The command once its data block is known.
    pub fn with_value(&self, value: &'a [u8]) -> Command<'a> {
        Command::Store {
            mode: self.mode,
            key: self.key,
            flags: self.flags,
            exptime: self.exptime,
            value,
            cas_unique: self.cas_unique,
            noreply: self.noreply,
        }
    }
}

// ---------------------------------------------------------------------------
// Tokenizing
// ---------------------------------------------------------------------------

/// Most words memcached splits off a line; the rest stays unsplit.
const MAX_WORDS: usize = MAX_TOKENS - 1;

/// A command line split the way memcached's `tokenize_command` splits it:
/// up to 23 words separated by runs of spaces. memcached counts one more
/// token (an empty terminator), and its token-count checks are written
/// against that count, which [`Tokens::count`] reproduces.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    line: &'a [u8],
    /// `(start, end)` of each word in `line`.
    spans: [(usize, usize); MAX_WORDS],
    words: usize,
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        let mut spans = [(0, 0); MAX_WORDS];
        let mut words = 0;
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if start != i {
                    spans[words] = (start, i);
                    words += 1;
                    if words == MAX_WORDS {
                        // Like memcached: stop here and leave the rest of the
                        // line unsplit. Only the retrieval commands read it.
                        return Tokens { line, spans, words };
                    }
                }
                start = i + 1;
            }
        }
        if start < line.len() {
            spans[words] = (start, line.len());
            words += 1;
        }
        Tokens { line, spans, words }
    }

    /// memcached's `ntokens`: the words plus the terminating token.
    pub fn count(&self) -> usize {
        self.words + 1
    }

    /// Word `i`; empty past the last word (like memcached's terminator).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.words {
            let (s, e) = self.spans[i];
            &self.line[s..e]
        } else {
            &[]
        }
    }

    /// The last word memcached looked at (`tokens[ntokens - 2]`).
    pub fn last(&self) -> &'a [u8] {
        self.get(self.words.wrapping_sub(1))
    }

    /// The raw line after word `i`, for commands that read many arguments.
    pub fn after(&self, i: usize) -> &'a [u8] {
        let end = if i < self.words {
            self.spans[i].1
        } else {
            self.line.len()
        };
        &self.line[end..]
    }

    /// memcached's `set_noreply_maybe`: the last word is exactly `noreply`.
    fn noreply(&self) -> bool {
        self.last() == b"noreply"
    }
}

// ---------------------------------------------------------------------------
// Numbers, as memcached's safe_strtoul / safe_strtol / safe_strtoull read them
// ---------------------------------------------------------------------------

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The part of a token `strtol` and friends consume: leading white space
/// (TAB and the like can be inside a token), an optional sign, decimal digits.
fn c_number(input: &[u8]) -> IResult<&[u8], (bool, &[u8])> {
    let (rest, (_, sign, digits)) =
        (take_while(is_c_space), opt(one_of("+-")), digit1).parse(input)?;
    Ok((rest, (sign == Some('-'), digits)))
}

/// `strtoull`/`strtoll` followed by memcached's end check: the number must be
/// followed by the end of the token or a white-space byte (anything after
/// that is ignored, so `5\tx` reads as 5). Returns the sign and magnitude;
/// `None` for no number, trailing junk, or a magnitude above `u64::MAX`.
fn c_magnitude(token: &[u8]) -> Option<(bool, u64)> {
    let (rest, (negative, digits)) = c_number(token).ok()?;
    if rest.first().is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((negative, value))
}

/// memcached's `safe_strtoull`: `strtoull` negates a `-` number modulo 2^64,
/// and only results that look negative as `i64` are then refused. So `-1` is
/// rejected but `-0` is 0 and `-18446744073709551615` is 1.
pub fn safe_strtoull(token: &[u8]) -> Option<u64> {
    let (negative, magnitude) = c_magnitude(token)?;
    if !negative {
        return Some(magnitude);
    }
    let value = magnitude.wrapping_neg();
    if (value as i64) < 0 {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` on a 64-bit system: read as `unsigned long`
/// (64 bits, as [`safe_strtoull`]) and stored in a `uint32_t`, so values of
/// 2^32 and above wrap (4294967301 gives 5).
pub fn safe_strtoul(token: &[u8]) -> Option<u32> {
    safe_strtoull(token).map(|v| v as u32)
}

/// memcached's `safe_strtol`: read as a 64-bit `long` (out of range is an
/// error), then stored in an `int32_t`, so 99999999999 wraps and 4294967297
/// gives 1.
pub fn safe_strtol(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = c_magnitude(token)?;
    let value: i64 = if negative {
        if magnitude > 1 << 63 {
            return None;
        }
        0i64.wrapping_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

fn command(cmd: Command<'_>) -> Parsed<'_> {
    Parsed::Frame(Frame::Command(cmd))
}

fn error<'a>(error: ProtocolError, noreply: bool) -> Parsed<'a> {
    Parsed::Frame(Frame::Error {
        error,
        noreply,
        counts_as_set: false,
    })
}

/// `ERROR`, which `noreply` never hides: the token count was wrong or the
/// command is unknown.
fn unknown<'a>() -> Parsed<'a> {
    error(ProtocolError::UnknownCommand, false)
}

/// Parses one command line (see the module documentation for what the
/// codec has already stripped).
pub fn parse_line(line: &[u8]) -> Parsed<'_> {
    let t = Tokens::new(line);
    let n = t.count();
    let cmd = t.get(0);
    // No command is shorter than two bytes; an empty line lands here too.
    if cmd.len() < 2 {
        return unknown();
    }
    if cmd[0] == b'm' && cmd.len() == 2 {
        return meta::parse_line(&t);
    }
    // The dispatch mirrors memcached's, first byte first: an unknown command
    // that shares a first byte with a known one is a plain `ERROR`; only the
    // others are checked for an HTTP request line.
    match cmd[0] {
        b'g' => {
            if n < 3 {
                return unknown();
            }
            match cmd {
                b"get" => get(&t, false),
                b"gets" => get(&t, true),
                b"gat" => gat(&t, false),
                b"gats" => gat(&t, true),
                _ => unknown(),
            }
        }
        b's' => match cmd {
            b"set" => storage(&t, StoreMode::Set),
            b"stats" => command(Command::Stats {
                args: Keys::new(t.after(0)),
            }),
            b"shutdown" => shutdown(&t),
            _ => unknown(),
        },
        b'a' => match cmd {
            b"add" => storage(&t, StoreMode::Add),
            b"append" => storage(&t, StoreMode::Append),
            _ => unknown(),
        },
        b'c' => match cmd {
            b"cas" => storage(&t, StoreMode::Cas),
            b"cache_memlimit" => cache_memlimit(&t),
            _ => unknown(),
        },
        b'i' => match cmd {
            b"incr" => arith(&t, true),
            _ => unknown(),
        },
        b'd' => match cmd {
            b"delete" => delete(&t),
            b"decr" => arith(&t, false),
            _ => unknown(),
        },
        b't' => match cmd {
            b"touch" => touch(&t),
            _ => unknown(),
        },
        _ => match cmd {
            b"replace" => storage(&t, StoreMode::Replace),
            b"prepend" => storage(&t, StoreMode::Prepend),
            b"bget" if n >= 3 => get(&t, false),
            b"flush_all" => flush_all(&t),
            b"version" => command(Command::Version),
            b"quit" => command(Command::Quit),
            b"verbosity" => verbosity(&t),
            b"lru_crawler" if n >= 3 => command(Command::LruCrawler {
                args: Keys::new(t.after(0)),
            }),
            // Known to memcached but not offered here: a plain `ERROR`,
            // never the HTTP close below.
            b"bget" | b"lru_crawler" | b"watch" | b"lru" => unknown(),
            // An HTTP request sent to the cache port: memcached closes.
            _ if t.last().starts_with(b"HTTP/") => Parsed::Frame(Frame::Close),
            _ => unknown(),
        },
    }
}

/// `get`/`gets`/`bget <key>+`: the keys stay one raw slice; a single key
/// longer than 250 bytes fails the whole command.
fn get<'a>(t: &Tokens<'a>, cas: bool) -> Parsed<'a> {
    let keys = Keys::new(t.after(0));
    if keys.iter().any(|k| k.len() > KEY_MAX_LEN) {
        return error(ProtocolError::RetrievalKeyTooLong, false);
    }
    command(Command::Get { keys, cas })
}

/// `gat`/`gats <exptime> <key>*`: no key at all is fine (the reply is `END`).
fn gat<'a>(t: &Tokens<'a>, cas: bool) -> Parsed<'a> {
    let Some(exptime) = safe_strtol(t.get(1)) else {
        return error(ProtocolError::InvalidExptime, false);
    };
    let keys = Keys::new(t.after(1));
    if keys.iter().any(|k| k.len() > KEY_MAX_LEN) {
        return error(ProtocolError::RetrievalKeyTooLong, false);
    }
    command(Command::Gat {
        exptime: i64::from(exptime),
        keys,
        cas,
    })
}

/// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]`
/// and `cas <key> <flags> <exptime> <bytes> <cas-unique> [noreply]`.
fn storage<'a>(t: &Tokens<'a>, mode: StoreMode) -> Parsed<'a> {
    let n = t.count();
    let cas = mode == StoreMode::Cas;
    let ok_count = if cas {
        n == 7 || n == 8
    } else {
        n == 6 || n == 7
    };
    if !ok_count {
        return unknown();
    }
    let noreply = t.noreply();
    let bad = || error(ProtocolError::BadCommandLineFormat, noreply);
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return bad();
    }
    let (Some(flags), Some(exptime), Some(bytes)) = (
        safe_strtoul(t.get(2)),
        safe_strtol(t.get(3)),
        safe_strtol(t.get(4)),
    ) else {
        return bad();
    };
    let cas_unique = if cas {
        match safe_strtoull(t.get(5)) {
            Some(v) => v,
            None => return bad(),
        }
    } else {
        0
    };
    if !(0..=i32::MAX - 2).contains(&bytes) {
        return bad();
    }
    Parsed::Store(StoreHeader {
        mode,
        key,
        flags,
        exptime: i64::from(exptime),
        bytes: bytes as usize,
        cas_unique,
        noreply,
    })
}

/// `delete <key> [0] [noreply]`: a legacy hold time is accepted only if it
/// is `0`.
fn delete<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    if !(3..=5).contains(&n) {
        return unknown();
    }
    let mut noreply = false;
    if n > 3 {
        let hold_is_zero = t.get(2) == b"0";
        noreply = t.noreply();
        let valid = (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
        if !valid {
            return error(ProtocolError::DeleteUsage, noreply);
        }
    }
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    command(Command::Delete { key, noreply })
}

/// `incr|decr <key> <delta> [noreply]`.
fn arith<'a>(t: &Tokens<'a>, incr: bool) -> Parsed<'a> {
    let n = t.count();
    if n != 4 && n != 5 {
        return unknown();
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    match safe_strtoull(t.get(2)) {
        Some(delta) => command(Command::Arith {
            key,
            delta,
            incr,
            noreply,
        }),
        None => error(ProtocolError::InvalidDelta, noreply),
    }
}

/// `touch <key> <exptime> [noreply]`. `touch k noreply` passes the count
/// check, reads `noreply` as the exptime, and hides its own error.
fn touch<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    if n != 4 && n != 5 {
        return unknown();
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    match safe_strtol(t.get(2)) {
        Some(exptime) => command(Command::Touch {
            key,
            exptime: i64::from(exptime),
            noreply,
        }),
        None => error(ProtocolError::InvalidExptime, noreply),
    }
}

/// `flush_all [delay] [noreply]`.
fn flush_all<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    if !(2..=4).contains(&n) {
        return unknown();
    }
    let noreply = t.noreply();
    // memcached reads a delay whenever the line has more than the optional
    // `noreply`, so `flush_all 10 foo` flushes in 10 s and
    // `flush_all noreply foo` is an invalid delay.
    let mut delay = 0;
    if n != if noreply { 3 } else { 2 } {
        match safe_strtol(t.get(1)) {
            Some(d) => delay = d,
            None => return error(ProtocolError::InvalidExptime, noreply),
        }
    }
    command(Command::FlushAll {
        delay: i64::from(delay),
        noreply,
    })
}

/// `verbosity <level> [noreply]`; the level is checked, then ignored.
fn verbosity<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    if n != 3 && n != 4 {
        return unknown();
    }
    let noreply = t.noreply();
    match safe_strtoul(t.get(1)) {
        Some(_) => command(Command::Verbosity { noreply }),
        None => error(ProtocolError::BadCommandLineFormat, noreply),
    }
}

/// `cache_memlimit <megabytes> [noreply]`: a bad number is a plain `ERROR`,
/// though `noreply` hides it. The value is a `uint32_t` in memcached, so it
/// wraps (4294967304 is 8); range checks are the executor's.
fn cache_memlimit<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    if n != 3 && n != 4 {
        return unknown();
    }
    let noreply = t.noreply();
    match safe_strtoul(t.get(1)) {
        Some(mb) => command(Command::CacheMemlimit {
            megabytes: u64::from(mb),
            noreply,
        }),
        None => error(ProtocolError::UnknownCommand, noreply),
    }
}

/// `shutdown [graceful]`: whether shutdown is enabled is checked by the
/// executor before the mode, so a bad mode is still a `Shutdown`.
fn shutdown<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let mode = match t.count() {
        2 => ShutdownMode::Immediate,
        3 if t.get(1) == b"graceful" => ShutdownMode::Graceful,
        _ => ShutdownMode::Invalid,
    };
    command(Command::Shutdown { mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_c_strtoul() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"+5", Some(5)),
            (b"0100", Some(100)),
            (b"-0", Some(0)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"-1", None),
            (b"-18446744073709551615", Some(1)),
            (b"-9223372036854775808", None),
            (b"-9223372036854775809", Some(9223372036854775807)),
            (b"0x10", None),
            (b"12abc", None),
            (b"1.5", None),
            (b"", None),
            (b"+", None),
            (b"-", None),
            (b"abc", None),
            // C white space before the number and after it is accepted,
            // and anything after that white space is ignored.
            (b"\t5", Some(5)),
            (b"\x0b\x0c\r5", Some(5)),
            (b"5\t", Some(5)),
            (b"5\rjunk", Some(5)),
            (b"\t", None),
            (b"+-5", None),
        ];
        for &(token, want) in cases {
            assert_eq!(
                safe_strtoull(token),
                want,
                "{:?}",
                String::from_utf8_lossy(token)
            );
        }
    }

    #[test]
    fn u32_fields_wrap() {
        assert_eq!(safe_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
        assert_eq!(safe_strtoul(b"4294967301"), Some(5));
        assert_eq!(safe_strtoul(b"18446744073709551615"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"-1"), None);
        assert_eq!(safe_strtoul(b"-4294967296"), None);
    }

    #[test]
    fn i32_fields_are_read_as_i64_then_cut() {
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"+7"), Some(7));
        assert_eq!(safe_strtol(b"2147483647"), Some(i32::MAX));
        assert_eq!(safe_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(safe_strtol(b"4294967297"), Some(1));
        assert_eq!(safe_strtol(b"99999999999"), Some(99999999999i64 as i32));
        assert_eq!(safe_strtol(b"9223372036854775807"), Some(-1));
        assert_eq!(safe_strtol(b"9223372036854775808"), None);
        assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(safe_strtol(b"-9223372036854775809"), None);
        assert_eq!(safe_strtol(b"1e3"), None);
    }

    #[test]
    fn tokenizer_caps_at_23_words() {
        let t = Tokens::new(b"  a  b c ");
        assert_eq!(t.count(), 4);
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            (&b"a"[..], &b"b"[..], &b"c"[..], &b""[..])
        );
        assert_eq!(t.after(0), b"  b c ");
        assert_eq!(t.last(), b"c");

        let line: Vec<u8> = (0..30)
            .map(|i| format!("w{i} "))
            .collect::<String>()
            .into_bytes();
        let t = Tokens::new(&line);
        assert_eq!(t.count(), MAX_TOKENS);
        assert_eq!(t.last(), b"w22");
        assert_eq!(t.after(22), b" w23 w24 w25 w26 w27 w28 w29 ");

        let t = Tokens::new(b"");
        assert_eq!(t.count(), 1);
        assert_eq!(t.last(), b"");
        assert_eq!(t.after(0), b"");
        // TAB is not a separator.
        assert_eq!(Tokens::new(b"set\tk 1").count(), 3);
    }
}
