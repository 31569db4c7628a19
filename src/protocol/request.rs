//! The typed request: what every parser produces and the executor runs,
//! whatever wire format carried it. It borrows the read buffer, so nothing
//! is copied until the store keeps a key or value. `noreply` (and the meta
//! `q` flag, in [`MetaCommand`]) travel with the request, for the composer.

use crate::item_rules::StoreMode;

use super::binary::BinaryCommand;
use super::{KEY_MAX_LEN, base64};

/// The keys of a retrieval command (or the arguments of `stats`), kept as the
/// raw rest of the line so that a get of hundreds of keys allocates nothing.
/// Tokens are separated by runs of spaces only (a TAB is part of a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    raw: &'a [u8],
}

impl<'a> Keys<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Keys { raw }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// One complete request, borrowing the read buffer it was parsed from.
/// The classic commands are variants of their own; the meta commands share
/// one, whose [`MetaCommand`] carries their key and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`bget` (`cas: false`) and `gets` (`cas: true`).
    Get {
        keys: Keys<'a>,
        cas: bool,
    },
    /// `gat` / `gats`: get and set a new exptime.
    Gat {
        exptime: i64,
        keys: Keys<'a>,
        cas: bool,
    },
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas` with its data block.
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        value: &'a [u8],
        /// The `cas-unique` argument; 0 for every mode but [`StoreMode::Cas`].
        cas_unique: u64,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    /// `incr` (`incr: true`) and `decr`.
    Arith {
        key: &'a [u8],
        delta: u64,
        incr: bool,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// `flush_all [delay]`; a delay of 0 or less flushes now.
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    /// `verbosity <level>`: memcached keeps the level (at most 2) for
    /// `stats settings`.
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    /// `shutdown [graceful]`. An unknown mode is still a `Shutdown`, because
    /// memcached refuses the command first when `-A` is off.
    Shutdown {
        mode: ShutdownMode,
    },
    /// `stats [args...]`; the arguments pick the sub-command.
    Stats {
        args: Keys<'a>,
    },
    /// `cache_memlimit <megabytes>`.
    CacheMemlimit {
        megabytes: u64,
        noreply: bool,
    },
    /// `lru_crawler <args>`: `crawl`, `metadump`, `mgdump`, `enable`,
    /// `disable`, `sleep`, `tocrawl`.
    LruCrawler {
        args: Keys<'a>,
        noreply: bool,
    },
    /// `slabs reassign|automove <args>`.
    Slabs {
        args: Keys<'a>,
        noreply: bool,
    },
    /// `lru tune|mode|temp_ttl <args>`.
    Lru {
        args: Keys<'a>,
        noreply: bool,
    },
    /// `watch [stream ...]`: the connection becomes a log stream.
    Watch {
        args: Keys<'a>,
    },
    /// `refresh_certs`: read the TLS certificate and key again.
    RefreshCerts,
    /// `mn`: the no-op that fences a pipeline.
    MetaNoop,
    /// `mg`, `ms`, `md`, `ma`, `me`.
    Meta(MetaCommand<'a>),
    /// A binary-protocol request.
    Binary(BinaryCommand<'a>),
}

/// The argument of `shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Immediate,
    Graceful,
    /// Any other argument: `CLIENT_ERROR invalid shutdown mode` when enabled.
    Invalid,
}

/// What a meta command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOp {
    /// `mg`.
    Get,
    /// `ms`, with the mode of its `M` flag (`Set` without one). A `C` flag
    /// turns `Set` and `Replace` into a CAS store at execution.
    Set { mode: StoreMode },
    /// `md`.
    Delete,
    /// `ma`, incrementing unless `M` says `D` or `-`.
    Arith { incr: bool },
    /// `me`: the debug line of one item.
    Debug,
}

/// The key of a meta command as sent, and whether it is base64 (`b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaKey<'a> {
    pub(super) token: &'a [u8],
    pub(super) binary: bool,
}

/// Room for a decoded key: base64 only ever shrinks the 250-byte token.
pub type KeyBuf = [u8; KEY_MAX_LEN];

impl<'a> MetaKey<'a> {
    /// The key token as the client sent it.
    pub fn token(&self) -> &'a [u8] {
        self.token
    }

    /// True when the token is base64 (`b`): the store sees the decoded bytes
    /// and replies show the key encoded again.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The key the store sees: the token, or its decoding into `buf`.
    pub fn bytes<'b>(&self, buf: &'b mut KeyBuf) -> &'b [u8]
    where
        'a: 'b,
    {
        if !self.binary {
            return self.token;
        }
        let len = base64::decode(self.token, buf);
        debug_assert!(len > 0, "the parser refuses keys that do not decode");
        &buf[..len]
    }
}

/// The flags of a meta command: which were given, their values, and the raw
/// tokens in request order (replies echo flags in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaFlags<'a> {
    /// The flag tokens, separated by spaces, as on the line.
    pub(super) raw: &'a [u8],
    /// Bit `f` is set for each flag byte `f` given (all are below 127).
    pub(super) seen: u128,
    /// `T`: the new TTL, as a client exptime.
    pub ttl: Option<i32>,
    /// `N`: create on a miss, with this exptime.
    pub vivify: Option<i32>,
    /// `R`: win the recache token when the TTL left is below this.
    pub recache: Option<i32>,
    /// `F`: client flags to store (0 without).
    pub client_flags: u32,
    /// `C`: the CAS value to compare with (`mg`: the value is left out
    /// when it matches).
    pub compare_cas: Option<u64>,
    /// `E`: the CAS value the item gets, instead of the next one.
    pub cas_in: Option<u64>,
    /// `J`: `ma`'s initial value when it creates the item (0 without).
    pub initial: u64,
    /// `D`: `ma`'s delta (1 without).
    pub delta: u64,
}

impl<'a> MetaFlags<'a> {
    pub(super) fn new(raw: &'a [u8]) -> Self {
        MetaFlags {
            raw,
            seen: 0,
            ttl: None,
            vivify: None,
            recache: None,
            client_flags: 0,
            compare_cas: None,
            cas_in: None,
            initial: 0,
            delta: 1,
        }
    }

    /// True if flag `flag` (`b'v'`, `b'q'`, ...) was given.
    pub fn has(&self, flag: u8) -> bool {
        flag < 128 && self.seen & (1 << flag) != 0
    }

    /// The flag tokens in request order, each starting with its flag byte.
    pub fn tokens(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// `q`: hide the nominal replies (which ones depends on the command).
    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }
}

/// One meta command, borrowing the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaCommand<'a> {
    pub op: MetaOp,
    pub key: MetaKey<'a>,
    pub flags: MetaFlags<'a>,
    /// `ms`'s data block, without its CRLF; empty for the other commands.
    pub value: &'a [u8],
}
