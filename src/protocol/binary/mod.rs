//! The memcached binary protocol: 24-byte headers, opcodes and status
//! codes, as memcached 1.6 serves it (deprecated there, still served).
//!
//! - `decode.rs`: per-connection framing of request packets into
//!   [`BinaryCommand`]s, with memcached's checks of the header's lengths and
//!   its answers to packets it refuses ([`Refusal`]);
//! - `compose.rs`: the typed replies spelled as response packets: status,
//!   CAS, the echoed opaque, and the quiet opcodes' silence.
//!
//! Like the text parsers it knows nothing of the store or of sockets: the
//! commands borrow the read buffer and the executor runs them.

pub mod compose;
pub mod decode;

use bytes::Bytes;

use crate::item_rules::StoreMode;

/// Every packet starts with a header of this many bytes.
pub const HEADER_LEN: usize = 24;

/// The first byte of a request; memcached's `auto` protocol picks binary
/// for a connection whose first byte is this.
pub const REQUEST_MAGIC: u8 = 0x80;

/// The first byte of a response.
pub const RESPONSE_MAGIC: u8 = 0x81;

/// The opcodes memcached knows (`protocol_binary.h`).
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    /// Known to clients, not served by memcached: answered as unknown.
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// A response's status, with the text memcached sends in an error's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Success = 0x00,
    KeyNotFound = 0x01,
    KeyExists = 0x02,
    TooLarge = 0x03,
    InvalidArguments = 0x04,
    NotStored = 0x05,
    DeltaBadValue = 0x06,
    AuthError = 0x20,
    AuthContinue = 0x21,
    UnknownCommand = 0x81,
    OutOfMemory = 0x82,
}

impl Status {
    /// The body of an error response (`write_bin_error`'s wording).
    pub fn message(self) -> &'static str {
        match self {
            Status::Success | Status::AuthContinue => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::TooLarge => "Too large.",
            Status::InvalidArguments => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::DeltaBadValue => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
        }
    }
}

/// A request header, in host byte order. The opaque is kept as its four
/// bytes read big-endian and written back the same way, so it is echoed
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub keylen: u16,
    pub extlen: u8,
    pub bodylen: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Reads the first [`HEADER_LEN`] bytes of `b`.
    ///
    /// # Panics
    /// If `b` is shorter than [`HEADER_LEN`].
    pub fn parse(b: &[u8]) -> Header {
        let b: &[u8; HEADER_LEN] = b[..HEADER_LEN].try_into().expect("a whole header");
        Header {
            magic: b[0],
            opcode: b[1],
            keylen: u16::from_be_bytes([b[2], b[3]]),
            extlen: b[4],
            bodylen: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes(b[16..24].try_into().expect("eight bytes")),
        }
    }

    /// Header, extras and key: what memcached waits for before it looks at
    /// a request (the value, if any, is read afterwards).
    pub fn fixed_len(&self) -> usize {
        HEADER_LEN + usize::from(self.extlen) + usize::from(self.keylen)
    }
}

/// Who a response answers: the request's opcode (quiet forms included)
/// and its opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub opcode: u8,
    pub opaque: u32,
}

/// What a binary request does. Quiet opcodes map to the same operation,
/// with [`BinaryCommand::quiet`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp<'a> {
    /// Get, GetQ, GetK, GetKQ.
    Get,
    /// Touch: a new exptime, the flags returned without the value.
    Touch {
        exptime: u32,
    },
    /// GAT, GATQ, GATK, GATKQ: get and set a new exptime.
    Gat {
        exptime: u32,
    },
    /// Set, Add, Replace, Append, Prepend (and quiet forms). A non-zero CAS
    /// in the header turns Set/Add/Replace into a CAS store, and makes
    /// Append/Prepend compare it.
    Store {
        mode: StoreMode,
        flags: u32,
        exptime: u32,
        value: &'a [u8],
    },
    Delete,
    /// Increment/Decrement. An `exptime` of [`NO_AUTO_CREATE`] leaves a
    /// missing counter missing; any other creates it with `initial`.
    Arith {
        incr: bool,
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    Quit,
    /// Flush with its delay (0: now).
    Flush {
        delay: u32,
    },
    Noop,
    Version,
    /// Stat; the key names the group (empty: the general stats).
    Stat,
    /// SASL list mechanisms. Produced only when SASL is on.
    SaslListMechs,
    /// SASL auth (`step: false`) or step: the key names the mechanism,
    /// `data` is the rest of the body. Produced only when SASL is on.
    SaslAuth {
        step: bool,
        data: &'a [u8],
    },
}

/// The Increment/Decrement expiration that means "do not create".
pub const NO_AUTO_CREATE: u32 = 0xffff_ffff;

/// One binary request, borrowing the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryCommand<'a> {
    pub op: BinaryOp<'a>,
    pub reply_to: ReplyTo,
    /// A quiet opcode: only errors are answered (and hits of the quiet gets).
    pub quiet: bool,
    pub key: &'a [u8],
    /// The header's CAS (0: none).
    pub cas: u64,
}

/// A packet memcached answers with an error status without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply_to: ReplyTo,
    pub status: Status,
    /// Close the connection once the error is sent.
    pub close: bool,
    /// The error's body when it is not the status's usual text.
    pub text: Option<&'static str>,
    /// A too-large Set: memcached unlinks the value it would have replaced.
    /// Owned, because the answer waits until the value has been swallowed.
    pub unlink_key: Option<Bytes>,
}

/// Whether `opcode` includes the key in its hit and miss responses.
pub fn returns_key(opcode: u8) -> bool {
    matches!(
        opcode,
        opcode::GETK | opcode::GETKQ | opcode::GATK | opcode::GATKQ
    )
}
