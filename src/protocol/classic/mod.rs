//! The classic text commands (get, set, delete, incr, ...): owns their
//! grammar, one tokenized line in, one [`Parsed`] out.
//!
//! Must not know the meta commands (the parent sends every two-byte `m`
//! command to [`super::meta`] before this parser sees it), framing (the
//! codec has already cut the line: no `\n`, no final `\r`, nothing from the
//! first NUL on, and it reads the data block that follows a storage line),
//! or the store. Everything here follows memcached 1.6.18's
//! `process_command_ascii` closely, because clients and tests depend on the
//! exact error for each malformed request:
//!
//! - the line is split like `tokenize_command` ([`Tokens`]): at most 23
//!   words, separated by spaces only;
//! - token-count checks come first and answer a plain `ERROR` that `noreply`
//!   never hides; the remaining errors are hidden by a final `noreply`;
//! - numbers are read with the rules of C's `strtoul`/`strtol` as memcached's
//!   `safe_strto*` helpers use them, wrap-arounds included
//!   ([`super::number`]).

use super::number::{safe_strtol, safe_strtoul, safe_strtoull};
use super::tokens::Tokens;
use super::{Frame, KEY_MAX_LEN, Keys, Parsed, ProtocolError, Request, ShutdownMode};
use crate::item_rules::StoreMode;

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
    pub fn with_value(&self, value: &'a [u8]) -> Request<'a> {
        Request::Store {
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
// Commands
// ---------------------------------------------------------------------------

fn command(cmd: Request<'_>) -> Parsed<'_> {
    Parsed::Frame(Frame::Request(cmd))
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

/// Parses the line of any command but the meta ones (see the module
/// documentation for what the codec has already stripped).
pub fn parse_line<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let n = t.count();
    let cmd = t.get(0);
    // No command is shorter than two bytes; an empty line lands here too.
    if cmd.len() < 2 {
        return unknown();
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
                b"get" => get(t, false),
                b"gets" => get(t, true),
                b"gat" => gat(t, false),
                b"gats" => gat(t, true),
                _ => unknown(),
            }
        }
        b's' => match cmd {
            b"set" => storage(t, StoreMode::Set),
            b"stats" => command(Request::Stats {
                args: Keys::new(t.after(0)),
            }),
            b"shutdown" => shutdown(t),
            _ => unknown(),
        },
        b'a' => match cmd {
            b"add" => storage(t, StoreMode::Add),
            b"append" => storage(t, StoreMode::Append),
            _ => unknown(),
        },
        b'c' => match cmd {
            b"cas" => storage(t, StoreMode::Cas),
            b"cache_memlimit" => cache_memlimit(t),
            _ => unknown(),
        },
        b'i' => match cmd {
            b"incr" => arith(t, true),
            _ => unknown(),
        },
        b'd' => match cmd {
            b"delete" => delete(t),
            b"decr" => arith(t, false),
            _ => unknown(),
        },
        b't' => match cmd {
            b"touch" => touch(t),
            _ => unknown(),
        },
        _ => match cmd {
            b"replace" => storage(t, StoreMode::Replace),
            b"prepend" => storage(t, StoreMode::Prepend),
            b"bget" if n >= 3 => get(t, false),
            b"flush_all" => flush_all(t),
            b"version" => command(Request::Version),
            b"quit" => command(Request::Quit),
            b"verbosity" => verbosity(t),
            b"lru_crawler" if n >= 3 => command(Request::LruCrawler {
                args: Keys::new(t.after(0)),
            }),
            b"watch" => command(Request::Watch {
                args: Keys::new(t.after(0)),
            }),
            b"refresh_certs" => command(Request::RefreshCerts),
            // Known to memcached but not offered here: a plain `ERROR`,
            // never the HTTP close below.
            b"bget" | b"lru_crawler" | b"lru" => unknown(),
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
    command(Request::Get { keys, cas })
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
    command(Request::Gat {
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
    command(Request::Delete { key, noreply })
}

/// A line of `incr`, `decr` or `touch` (`<cmd> <key> <arg> [noreply]`)
/// that passed the checks they share.
struct KeyArgument<'a> {
    key: &'a [u8],
    argument: &'a [u8],
    noreply: bool,
}

/// The checks `incr`, `decr` and `touch` share, in memcached's order: the
/// token count (`ERROR`, never hidden), then the key length, whose error a
/// `noreply` hides. The error comes with whether it is hidden.
fn key_argument<'a>(t: &Tokens<'a>) -> Result<KeyArgument<'a>, (ProtocolError, bool)> {
    let n = t.count();
    if n != 4 && n != 5 {
        return Err((ProtocolError::UnknownCommand, false));
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return Err((ProtocolError::BadCommandLineFormat, noreply));
    }
    Ok(KeyArgument {
        key,
        argument: t.get(2),
        noreply,
    })
}

/// `incr|decr <key> <delta> [noreply]`.
fn arith<'a>(t: &Tokens<'a>, incr: bool) -> Parsed<'a> {
    let (key, argument, noreply) = match key_argument(t) {
        Ok(line) => (line.key, line.argument, line.noreply),
        Err((refused, noreply)) => return error(refused, noreply),
    };
    match safe_strtoull(argument) {
        Some(delta) => command(Request::Arith {
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
    let (key, argument, noreply) = match key_argument(t) {
        Ok(line) => (line.key, line.argument, line.noreply),
        Err((refused, noreply)) => return error(refused, noreply),
    };
    match safe_strtol(argument) {
        Some(exptime) => command(Request::Touch {
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
    command(Request::FlushAll {
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
        Some(level) => command(Request::Verbosity { level, noreply }),
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
        Some(mb) => command(Request::CacheMemlimit {
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
    command(Request::Shutdown { mode })
}

#[cfg(test)]
mod tests;
