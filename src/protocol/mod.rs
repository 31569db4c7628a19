//! The memcached protocols, text and binary: bytes in, [`Request`]s out,
//! and the wire spelling of every error.
//!
//! This module knows nothing of the store or of sockets. [`codec::Decoder`]
//! frames a read buffer into [`Frame`]s; each complete frame borrows the
//! buffer, so a command is executed before the buffer is advanced and no key
//! or value is copied until the store needs to keep it.
//!
//! Layout, in the order a request flows:
//!
//! - `codec.rs`: per-connection framing. Cuts lines, enforces the line
//!   limits, reads or swallows data blocks; hands each line to
//!   [`parse_line`] (here), which sends it to `classic` or `meta`.
//! - `tokens.rs`: memcached's tokenizer, shared by both parsers.
//! - `number.rs`: memcached's `safe_strto*` number readers, shared too.
//! - `classic/`: the classic commands (`mod.rs`) and their table tests
//!   (`tests.rs`).
//! - `meta.rs`: the meta commands (`mg`, `ms`, ...), with `base64.rs` for
//!   their binary keys.
//! - `request.rs`: [`Request`], the typed request every parser produces
//!   and the executor runs, whatever wire format carried it.
//! - `reply.rs`: typed replies, and the composers that spell them in the
//!   request's wire format (`noreply`, meta `q` and echoed flags).
//! - `peek.rs`: the keys of requests still undecoded, for prefetching
//!   what the store will read for them.
//! - `binary/`: the binary protocol: its framing into [`Request::Binary`]
//!   and its response packets.
//! - `test_support.rs` (tests only): decoding as a connection does it.
//!
//! The types the parts share live here, so that imports between the parts
//! run one way: [`Request`], [`Frame`], [`Parsed`], [`ProtocolError`] and
//! the limits.
//!
//! Parsing uses nom where a grammar reads better declared than scanned:
//! the numbers (space, sign, digits, end check) and the long-get exemption.
//! Two scanners stay hand-written because they run on every request:
//!
//! - the newline search in `codec.rs` tests eight bytes per step. On the
//!   usual request line, under about 64 bytes, it is as fast as nom's
//!   `take_until` (memchr) or faster: about 3 ns against 10 ns for a
//!   15-byte `get`, where memchr has no vector to fill. memchr wins on long
//!   multi-get lines (8 ns against 43 ns for a 100-key get);
//! - the tokenizer records up to 23 word spans in a fixed array and stops
//!   splitting exactly where memcached stops. nom's list combinators
//!   collect into a `Vec` (an allocation per request) and split to the end.

pub mod base64;
pub mod binary;
pub mod classic;
pub mod codec;
pub mod meta;
pub mod number;
pub mod peek;
pub mod reply;
pub mod request;
pub mod tokens;

#[cfg(test)]
mod test_support;

use std::fmt;

pub use request::{Keys, Request, ShutdownMode};
use tokens::Tokens;

/// Longest key memcached accepts, in bytes.
pub const KEY_MAX_LEN: usize = 250;

/// memcached closes a connection that has sent this many bytes without a
/// newline, unless the line is a `get`/`gets` (`try_read_command_ascii`).
pub const LINE_MAX_LEN: usize = 2048;

/// Our bound for a `get`/`gets` line, which memcached leaves unbounded: room
/// for thousands of 250-byte keys, yet a line that never ends is still cut off.
pub const GET_LINE_MAX_LEN: usize = 4 * 1024 * 1024;

/// memcached splits a command line into at most this many tokens (the command
/// included); only the retrieval commands re-split the rest of the line.
pub const MAX_TOKENS: usize = 24;

/// A request the server must answer with an error line. The connection stays
/// open; connection-fatal input is [`Frame::Close`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `ERROR`: unknown command, wrong number of tokens, empty line.
    UnknownCommand,
    BadCommandLineFormat,
    /// A key over 250 bytes in get/gets/gat/gats. Same words as
    /// `BadCommandLineFormat`, but memcached also throws away the replies
    /// still owed for earlier commands of the same read.
    RetrievalKeyTooLong,
    BadDataChunk,
    InvalidExptime,
    InvalidDelta,
    NonNumeric,
    DeleteUsage,
    StatsDetailUsage,
    InvalidShutdownMode,
    ShutdownNotEnabled,
    FlushDisabled,
    TooLarge,
    OutOfMemory,
    /// No memory for a data block whose item memcached allocates in chunks
    /// as it arrives ([`crate::item_rules::Limits::chunked`]).
    OutOfMemoryDuringRead,
    MemlimitTooSmall,
    MemlimitAdjustFailed,
    TooManyConnections,
    // The meta commands' own errors.
    InvalidFlag,
    DuplicateFlag,
    /// `md`/`ma` report every flag error this way.
    InvalidOrDuplicateFlag,
    BadToken,
    KeyDecode,
    OpaqueTooLong,
    /// Too many flags (every meta command but `ma` says so since 1.6.45).
    GetFlagsTooLong,
    InvalidSetMode,
    InvalidArithMode,
    InvalidInitial,
    InvalidDeltaValue,
    /// `ma` could not get memory (worded apart from the storage commands').
    ArithOutOfMemory,
}

impl ProtocolError {
    /// The reply line, without its CRLF, exactly as memcached 1.6 words it.
    /// This is the one place where errors meet their wire spelling.
    pub fn wire(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            UnknownCommand => "ERROR",
            BadCommandLineFormat => "CLIENT_ERROR bad command line format",
            // memcached 1.6.45 copies the error line with its CRLF and then
            // ends it once more: an empty line follows.
            RetrievalKeyTooLong => "CLIENT_ERROR bad command line format\r\n",
            BadDataChunk => "CLIENT_ERROR bad data chunk",
            InvalidExptime => "CLIENT_ERROR invalid exptime argument",
            InvalidDelta => "CLIENT_ERROR invalid numeric delta argument",
            NonNumeric => "CLIENT_ERROR cannot increment or decrement non-numeric value",
            DeleteUsage => "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
            StatsDetailUsage => "CLIENT_ERROR usage: stats detail on|off|dump",
            InvalidShutdownMode => "CLIENT_ERROR invalid shutdown mode",
            ShutdownNotEnabled => "SERVER_ERROR: shutdown not enabled",
            FlushDisabled => "CLIENT_ERROR flush_all not allowed",
            TooLarge => "SERVER_ERROR object too large for cache",
            OutOfMemory => "SERVER_ERROR out of memory storing object",
            OutOfMemoryDuringRead => "SERVER_ERROR Out of memory during read",
            MemlimitTooSmall => "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m",
            MemlimitAdjustFailed => "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes",
            TooManyConnections => "ERROR Too many open connections",
            InvalidFlag => "CLIENT_ERROR invalid flag",
            DuplicateFlag => "CLIENT_ERROR duplicate flag",
            InvalidOrDuplicateFlag => "CLIENT_ERROR invalid or duplicate flag",
            BadToken => "CLIENT_ERROR bad token in command line format",
            KeyDecode => "CLIENT_ERROR error decoding key",
            OpaqueTooLong => "CLIENT_ERROR opaque token too long",
            GetFlagsTooLong => "CLIENT_ERROR options flags are too long",
            InvalidSetMode => "CLIENT_ERROR invalid mode for ms M token",
            InvalidArithMode => "CLIENT_ERROR invalid mode for ma M token",
            InvalidInitial => "CLIENT_ERROR invalid numeric initial value",
            InvalidDeltaValue => "CLIENT_ERROR invalid numeric delta value",
            ArithOutOfMemory => "SERVER_ERROR out of memory",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire())
    }
}

impl std::error::Error for ProtocolError {}

/// A storage command refused before its data block was read (too large):
/// the block is swallowed, then this is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: ProtocolError,
    pub noreply: bool,
    /// For `set` only: memcached unlinks the old item when the new one is
    /// too large, so a reader never sees a value the client meant to replace.
    pub unlink_key: Option<bytes::Bytes>,
    /// Whether the attempt counts in `cmd_set`. memcached 1.6.18 does not
    /// count a too-large store there (only in `store_too_large`).
    pub counts_as_set: bool,
}

/// One item out of the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Request(Request<'a>),
    /// An error reply; `noreply` hides it as memcached's classic commands do.
    Error {
        error: ProtocolError,
        noreply: bool,
        /// Storage commands count in `cmd_set` even when they fail
        /// (a bad data chunk).
        counts_as_set: bool,
    },
    /// The end of a swallowed data block: answer the stored rejection.
    Rejected(Rejected),
    /// A binary packet memcached refuses without running it: an error
    /// status, after which the connection may close.
    BinaryRefusal(binary::Refusal),
    /// Input memcached answers by closing the connection without a reply:
    /// an over-long line, an HTTP request line, a bad binary magic byte.
    Close,
}

/// What one command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The line is complete on its own: a command, an error, or a close.
    Frame(Frame<'a>),
    /// A storage command whose data block follows the line.
    Store(classic::StoreHeader<'a>),
    /// An `ms` whose data block follows the line.
    MetaSet(meta::MetaSetHeader<'a>),
}

/// Parses one command line as the codec cut it: no `\n`, no final `\r`.
pub fn parse_line(line: &[u8]) -> Parsed<'_> {
    let t = Tokens::new(line);
    let cmd = t.get(0);
    // memcached's dispatch: any two-byte command starting with `m` is a
    // meta command, known or not, unless the line starts with a space.
    if cmd.len() == 2 && cmd[0] == b'm' && !t.leading_space() {
        meta::parse_line(&t)
    } else {
        classic::parse_line(&t)
    }
}
