//! The classic text commands (get, set, delete, incr, ...): owns their
//! grammar, one tokenized line in, one [`Parsed`] out.
//!
//! Must not know the meta commands (the parent sends every two-byte `m`
//! command to [`super::meta`] before this parser sees it), framing (the
//! codec has already cut the line: no `\n`, no final `\r`, and it reads the
//! data block that follows a storage line),
//! or the store. Everything here follows memcached 1.6.45's text parser
//! (`process_request` and the `process_*_command` functions) closely,
//! because clients and tests depend on the exact error for each malformed
//! request:
//!
//! - the command is the bytes before the line's first space, so a line that
//!   starts with a space names none of the parser's commands (the admin
//!   commands are still found by their first word);
//! - too few words for a known command is `CLIENT_ERROR bad command line
//!   format`; more words than needed are ignored;
//! - a final `noreply` hides the error replies, except those of a line with
//!   too few words (and a bad data length), which are found before it is;
//! - lengths, deltas and the `gat`/`touch`/`flush_all` times are plain
//!   digits ([`token_u64`] and friends); flags and the storage exptime keep
//!   the `strtoul`/`strtol` rules ([`super::number`]);
//! - a storage line refused after its data length is known swallows the
//!   data block.

use super::number::{safe_strtol, safe_strtoul, token_i32, token_u32, token_u64};
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
    /// An error found after the data length: swallow the block, then
    /// answer it.
    pub refused: Option<ProtocolError>,
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

/// `ERROR`, which `noreply` hides: the command is unknown.
fn unknown<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    error(ProtocolError::UnknownCommand, t.noreply())
}

/// `CLIENT_ERROR bad command line format` for a line with too few words,
/// found before `noreply` is looked at.
fn too_few<'a>() -> Parsed<'a> {
    error(ProtocolError::BadCommandLineFormat, false)
}

/// Parses the line of any command but the meta ones (see the module
/// documentation for what the codec has already stripped).
pub fn parse_line<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let words = t.words();
    let named: &[u8] = if t.leading_space() { b"" } else { t.get(0) };
    match named {
        b"get" | b"gets" if words < 2 => too_few(),
        b"get" => get(t, false),
        b"gets" => get(t, true),
        b"gat" | b"gats" if words < 3 => too_few(),
        b"gat" => gat(t, false),
        b"gats" => gat(t, true),
        b"set" => storage(t, StoreMode::Set),
        b"add" => storage(t, StoreMode::Add),
        b"replace" => storage(t, StoreMode::Replace),
        b"append" => storage(t, StoreMode::Append),
        b"prepend" => storage(t, StoreMode::Prepend),
        b"cas" => storage(t, StoreMode::Cas),
        b"incr" | b"decr" | b"touch" if words < 3 => too_few(),
        b"incr" => arith(t, true),
        b"decr" => arith(t, false),
        b"touch" => touch(t),
        b"delete" if words < 2 => too_few(),
        b"delete" => delete(t),
        b"stats" => command(Request::Stats {
            args: Keys::new(t.after(0)),
        }),
        b"version" => command(Request::Version),
        b"quit" => command(Request::Quit),
        _ => admin(t),
    }
}

/// The admin commands, found by their first word even after leading
/// spaces; anything else is unknown, and an HTTP request line is closed.
fn admin<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    match t.get(0) {
        b"flush_all" => flush_all(t),
        b"verbosity" => verbosity(t),
        b"cache_memlimit" => cache_memlimit(t),
        b"shutdown" => shutdown(t),
        b"lru_crawler" => command(Request::LruCrawler {
            args: Keys::new(t.after(0)),
            noreply: t.noreply(),
        }),
        b"slabs" => command(Request::Slabs {
            args: Keys::new(t.after(0)),
            noreply: t.noreply(),
        }),
        b"lru" => command(Request::Lru {
            args: Keys::new(t.after(0)),
            noreply: t.noreply(),
        }),
        b"watch" => command(Request::Watch {
            args: Keys::new(t.after(0)),
        }),
        b"refresh_certs" => command(Request::RefreshCerts),
        // An HTTP request sent to the cache port: memcached closes.
        _ if t.words() > 1 && t.last().starts_with(b"HTTP/") => Parsed::Frame(Frame::Close),
        _ => unknown(t),
    }
}

/// `get`/`gets <key>+`: the keys stay one raw slice; a single key longer
/// than 250 bytes fails the whole command.
fn get<'a>(t: &Tokens<'a>, cas: bool) -> Parsed<'a> {
    let keys = Keys::new(t.after(0));
    if keys.iter().any(|k| k.len() > KEY_MAX_LEN) {
        return error(ProtocolError::RetrievalKeyTooLong, t.noreply());
    }
    command(Request::Get { keys, cas })
}

/// `gat`/`gats <exptime> <key>+`.
fn gat<'a>(t: &Tokens<'a>, cas: bool) -> Parsed<'a> {
    let Some(exptime) = token_i32(t.get(1)) else {
        return error(ProtocolError::InvalidExptime, t.noreply());
    };
    let keys = Keys::new(t.after(1));
    if keys.iter().any(|k| k.len() > KEY_MAX_LEN) {
        return error(ProtocolError::RetrievalKeyTooLong, t.noreply());
    }
    command(Request::Gat {
        exptime: i64::from(exptime),
        keys,
        cas,
    })
}

/// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]`
/// and `cas <key> <flags> <exptime> <bytes> <cas-unique> [noreply]`. A bad
/// data length is found with the word count (the block is then read as a
/// command line); every later error swallows the block.
fn storage<'a>(t: &Tokens<'a>, mode: StoreMode) -> Parsed<'a> {
    if t.words() < 5 {
        return too_few();
    }
    let Some(bytes) = token_i32(t.get(4)).filter(|b| (0..=i32::MAX - 2).contains(b)) else {
        return too_few();
    };
    let noreply = t.noreply();
    let key = t.get(1);
    let flags = safe_strtoul(t.get(2));
    let exptime = safe_strtol(t.get(3));
    let cas_unique = if mode == StoreMode::Cas {
        if t.words() > 5 {
            token_u64(t.get(5))
        } else {
            None
        }
    } else {
        Some(0)
    };
    let refused =
        (key.len() > KEY_MAX_LEN || flags.is_none() || exptime.is_none() || cas_unique.is_none())
            .then_some(ProtocolError::BadCommandLineFormat);
    Parsed::Store(StoreHeader {
        mode,
        key,
        flags: flags.unwrap_or(0),
        exptime: i64::from(exptime.unwrap_or(0)),
        bytes: bytes as usize,
        cas_unique: cas_unique.unwrap_or(0),
        noreply,
        refused,
    })
}

/// `delete <key> [noreply]`: further words are ignored (1.6.45 dropped the
/// legacy hold time and its usage error).
fn delete<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    command(Request::Delete { key, noreply })
}

/// `incr|decr <key> <delta> [noreply]`.
fn arith<'a>(t: &Tokens<'a>, incr: bool) -> Parsed<'a> {
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    match token_u64(t.get(2)) {
        Some(delta) => command(Request::Arith {
            key,
            delta,
            incr,
            noreply,
        }),
        None => error(ProtocolError::InvalidDelta, noreply),
    }
}

/// `touch <key> <exptime> [noreply]`.
fn touch<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat, noreply);
    }
    match token_i32(t.get(2)) {
        Some(exptime) => command(Request::Touch {
            key,
            exptime: i64::from(exptime),
            noreply,
        }),
        None => error(ProtocolError::InvalidExptime, noreply),
    }
}

/// `flush_all [delay] [noreply]`: memcached reads a delay whenever the line
/// has more than the optional `noreply`, so `flush_all 10 foo` flushes in
/// 10 s and `flush_all noreply foo` is an invalid delay.
fn flush_all<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let noreply = t.noreply();
    let mut delay = 0;
    if t.words() != if noreply { 2 } else { 1 } {
        match token_i32(t.get(1)) {
            Some(d) => delay = d,
            None => return error(ProtocolError::InvalidExptime, noreply),
        }
    }
    command(Request::FlushAll {
        delay: i64::from(delay),
        noreply,
    })
}

/// `verbosity <level> [noreply]`.
fn verbosity<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let noreply = t.noreply();
    match (t.words() > 1).then(|| token_u32(t.get(1))).flatten() {
        Some(level) => command(Request::Verbosity { level, noreply }),
        None => error(ProtocolError::BadCommandLineFormat, noreply),
    }
}

/// `cache_memlimit <megabytes> [noreply]`: a bad number is a plain `ERROR`,
/// though `noreply` hides it; range checks are the executor's.
fn cache_memlimit<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let noreply = t.noreply();
    match (t.words() > 1).then(|| token_u32(t.get(1))).flatten() {
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
    let mode = match t.words() {
        1 => ShutdownMode::Immediate,
        2 if t.get(1) == b"graceful" => ShutdownMode::Graceful,
        _ => ShutdownMode::Invalid,
    };
    command(Request::Shutdown { mode })
}

#[cfg(test)]
mod tests;
