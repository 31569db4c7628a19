//! Typed replies, and the composers that spell them on the wire.
//!
//! The executor reports what happened as [`Reply`] values, the same whatever
//! wire format the request came in; a [`Wire`], made from the request by the
//! parser's side, turns each into bytes. So `noreply` and the meta `q` flag
//! travel with the request and are honoured here, the meta flags a reply
//! echoes are written here in request order, and each wire format maps
//! errors to lines in exactly one place ([`ProtocolError::wire`]).
//!
//! memcached's rules that live here:
//! - classic `noreply` hides every reply of its command, errors included;
//! - meta `q` hides only the nominal reply, which differs per command: `mg`
//!   hides `EN`; `ms` and `md` hide `HD`; `ma` hides `HD` and `VA` for an
//!   item that existed. Errors are never hidden;
//! - a meta reply is a two-letter code, then the returned flags in request
//!   order, then `Z`, `X`, `W`.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::binary::{self as bin, ReplyTo, Status, compose};
use super::request::{MetaFlags, MetaOp};
use super::{ProtocolError, base64};

/// An item as a lookup returns it, in the terms replies need.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub key: &'a [u8],
    pub data: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Seconds left at the lookup's TTL read, wrapped as memcached's
    /// unsigned print does; `None` for no deadline (shown as `-1`).
    pub ttl: Option<u32>,
    /// Seconds since the last access before this request.
    pub idle: u32,
    /// Fetched before this request.
    pub fetched: bool,
    /// The key was stored from base64.
    pub key_binary: bool,
    /// A recache token had been handed out already (meta `Z`).
    pub token_sent: bool,
    /// The item is stale (meta `X`).
    pub stale: bool,
    /// This request won the recache token (meta `W`).
    pub won: bool,
}

/// A counter after `incr`/`decr`/`ma`.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub value: u64,
    pub cas: u64,
    /// As [`Item::ttl`].
    pub ttl: Option<u32>,
    /// The request created the item (`ma N`): its delta was not applied.
    pub created: bool,
}

/// What `me` shows of an item.
#[derive(Debug, Clone, Copy)]
pub struct Debug<'a> {
    pub key: &'a [u8],
    pub key_binary: bool,
    /// Seconds left before the item expires (`exptime - current_time`, as
    /// memcached 1.6.45 prints it); -1 for none.
    pub exp: i64,
    /// Seconds since the last access.
    pub last_access: u32,
    pub cas: u64,
    pub fetched: bool,
    pub class: u32,
    pub size: usize,
}

/// One outcome of a request. A request may report several (a multi-get
/// reports each hit, then [`Reply::End`]).
#[derive(Clone, Copy)]
pub enum Reply<'a> {
    /// A write took effect; `cas` is the item's new CAS value, `size` the
    /// length of its value.
    Stored {
        cas: u64,
        size: usize,
    },
    NotStored,
    /// A CAS compare failed.
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// A lookup found or created this item.
    Hit(Item<'a>),
    /// A lookup found nothing.
    Miss,
    /// The end of a lookup's hits.
    End,
    Counter(Counter),
    Ok,
    Reset,
    Version(&'a str),
    /// `mn`.
    MetaNoop,
    /// `me`.
    Debug(Debug<'a>),
    /// One `STAT <name> <value>` line.
    Stat(&'a str, &'a dyn fmt::Display),
    /// A line worded by the executor (`BADCLASS ...`, `PREFIX ...`), CRLF added.
    Line(&'a [u8]),
    /// Bytes sent as they are (a metadump's `\n`-ended lines).
    Raw(&'a [u8]),
    Error(ProtocolError),
}

/// How the replies to one request are spelled.
#[derive(Debug, Clone, Copy)]
pub enum Wire<'a> {
    /// The classic text protocol. `cas`: hits show their CAS (`gets`).
    Classic { noreply: bool, cas: bool },
    /// A binary request: each reply is a response packet; a quiet opcode
    /// hides its successes (a get's hit is not one of them).
    Binary {
        to: ReplyTo,
        quiet: bool,
        /// The request's key, which the K gets return even on a miss.
        key: &'a [u8],
    },
    /// A meta command: its flags are echoed, `q` hides nominal replies.
    Meta {
        op: MetaOp,
        /// The key as the store sees it (decoded from base64).
        key: &'a [u8],
        /// The key came in base64 (`b`): replies encode it again.
        binary: bool,
        flags: MetaFlags<'a>,
        /// `ms`: the length of the value sent (its `s` when not stored).
        sent: usize,
    },
}

impl Wire<'_> {
    /// Appends `reply` to `out`, unless this request hides it.
    #[inline]
    pub fn compose(&self, reply: &Reply<'_>, out: &mut BytesMut) {
        match self {
            Wire::Classic { noreply, cas } => {
                if !noreply {
                    classic(reply, *cas, out);
                }
            }
            Wire::Meta {
                op,
                key,
                binary,
                flags,
                sent,
            } => meta(*op, key, *binary, flags, *sent, reply, out),
            Wire::Binary { to, quiet, key } => binary(*to, *quiet, key, reply, out),
        }
    }
}

/// The binary spelling of a reply (memcached's `proto_bin.c`): successes
/// hidden for a quiet opcode, errors never; the status of a write that did
/// not happen depends on the opcode.
fn binary(to: ReplyTo, quiet: bool, key: &[u8], reply: &Reply<'_>, out: &mut BytesMut) {
    use bin::opcode;
    let base = to.opcode & !0x10;
    let status = match reply {
        Reply::Hit(item) => {
            let key = bin::returns_key(to.opcode).then_some(item.key);
            return compose::hit(out, to, item.flags, key, item.data, item.cas);
        }
        Reply::Miss if quiet => return,
        Reply::Miss if bin::returns_key(to.opcode) => return compose::miss_with_key(out, to, key),
        Reply::Stored { .. }
        | Reply::Deleted
        | Reply::Touched
        | Reply::Counter(_)
        | Reply::Ok
        | Reply::MetaNoop
            if quiet =>
        {
            return;
        }
        Reply::Stored { cas, .. } => return compose::success(out, to, *cas, b""),
        Reply::Counter(c) => return compose::counter(out, to, c.value, c.cas),
        Reply::Deleted | Reply::Touched | Reply::Ok | Reply::MetaNoop => {
            return compose::success(out, to, 0, b"");
        }
        Reply::Version(v) => return compose::success(out, to, 0, v.as_bytes()),
        Reply::Stat(name, value) => return compose::stat(out, to.opaque, name.as_bytes(), *value),
        Reply::End | Reply::Reset => {
            if to.opcode == opcode::STAT {
                compose::stats_end(out, to.opaque);
            }
            return;
        }
        // Text lines have no binary spelling; the executor sends none.
        Reply::Line(_) | Reply::Raw(_) | Reply::Debug(_) => return,
        Reply::Miss | Reply::NotFound => Status::KeyNotFound,
        Reply::Exists => Status::KeyExists,
        // An add finds the key there, a replace finds it missing.
        Reply::NotStored if base == opcode::ADD => Status::KeyExists,
        Reply::NotStored if base == opcode::REPLACE => Status::KeyNotFound,
        Reply::NotStored => Status::NotStored,
        Reply::Error(e) => binary_status(*e),
    };
    compose::error(out, to, status);
}

/// The one place errors meet their binary status.
fn binary_status(e: ProtocolError) -> Status {
    use ProtocolError::*;
    match e {
        TooLarge => Status::TooLarge,
        OutOfMemory | OutOfMemoryDuringRead | ArithOutOfMemory => Status::OutOfMemory,
        NonNumeric => Status::DeltaBadValue,
        // memcached answers a disabled flush as an auth failure.
        FlushDisabled => Status::AuthError,
        UnknownCommand => Status::UnknownCommand,
        _ => Status::InvalidArguments,
    }
}

/// The classic spelling of a reply.
#[inline]
fn classic(reply: &Reply<'_>, with_cas: bool, out: &mut BytesMut) {
    match reply {
        Reply::Stored { .. } => out.put_slice(b"STORED\r\n"),
        Reply::NotStored => out.put_slice(b"NOT_STORED\r\n"),
        Reply::Exists => out.put_slice(b"EXISTS\r\n"),
        Reply::NotFound => out.put_slice(b"NOT_FOUND\r\n"),
        Reply::Deleted => out.put_slice(b"DELETED\r\n"),
        Reply::Touched => out.put_slice(b"TOUCHED\r\n"),
        Reply::Hit(item) => value(out, item, with_cas),
        // A classic get says nothing of a key it did not find.
        Reply::Miss => {}
        Reply::End => out.put_slice(b"END\r\n"),
        Reply::Counter(c) => {
            put_num(out, c.value);
            out.put_slice(b"\r\n");
        }
        Reply::Ok => out.put_slice(b"OK\r\n"),
        Reply::Reset => out.put_slice(b"RESET\r\n"),
        Reply::Version(v) => {
            out.put_slice(b"VERSION ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        }
        Reply::MetaNoop => out.put_slice(b"MN\r\n"),
        Reply::Debug(d) => debug(out, d),
        Reply::Stat(name, value) => stat(out, name, value),
        Reply::Line(text) => {
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Reply::Raw(bytes) => out.put_slice(bytes),
        Reply::Error(e) => error(out, *e),
    }
}

/// `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
fn value(out: &mut BytesMut, item: &Item<'_>, with_cas: bool) {
    out.reserve(item.key.len() + item.data.len() + 48);
    out.put_slice(b"VALUE ");
    out.put_slice(item.key);
    out.put_u8(b' ');
    put_num(out, u64::from(item.flags));
    out.put_u8(b' ');
    put_num(out, item.data.len() as u64);
    if with_cas {
        out.put_u8(b' ');
        put_num(out, item.cas);
    }
    out.put_slice(b"\r\n");
    out.put_slice(item.data);
    out.put_slice(b"\r\n");
}

/// The meta spelling of a reply to `op`.
fn meta(
    op: MetaOp,
    key: &[u8],
    binary: bool,
    flags: &MetaFlags<'_>,
    sent: usize,
    reply: &Reply<'_>,
    out: &mut BytesMut,
) {
    let quiet = flags.quiet();
    let code: &[u8] = match reply {
        Reply::Hit(item) => return meta_hit(out, key, flags, item),
        Reply::Counter(c) => {
            // memcached 1.6.45 hides a created item's value too.
            if !quiet {
                meta_counter(out, key, binary, flags, c);
            }
            return;
        }
        Reply::Stored { cas, size } => {
            if !quiet {
                short_line(out, b"HD", flags, key, binary, Some(*cas), *size);
            }
            return;
        }
        Reply::Miss | Reply::Deleted if quiet => return,
        Reply::Miss => b"EN",
        Reply::Deleted => b"HD",
        Reply::NotStored => b"NS",
        Reply::Exists => b"EX",
        Reply::NotFound => b"NF",
        // `ma` words running out of memory apart from the storage commands.
        Reply::Error(ProtocolError::OutOfMemory) if matches!(op, MetaOp::Arith { .. }) => {
            return error(out, ProtocolError::ArithOutOfMemory);
        }
        // The rest are spelled as in the classic protocol.
        other => return classic(other, false, out),
    };
    // An `ms` that stored nothing still returns `c`, as 0, and `s`, the
    // length it sent.
    let cas = matches!(op, MetaOp::Set { .. }).then_some(0);
    short_line(out, code, flags, key, binary, cas, sent);
}

/// What a meta reply can return for its flags; a flag whose value is not
/// here is not echoed (a miss returns only `O` and `k`).
#[derive(Default)]
struct Returned {
    cas: Option<u64>,
    /// `t`: `Some(None)` prints `-1`.
    ttl: Option<Option<u32>>,
    size: Option<usize>,
    client_flags: Option<u32>,
    idle: Option<u32>,
    fetched: Option<bool>,
}

/// The flags the request asked for, in request order: `O` and `k` always,
/// the others when `returned` has their value.
fn put_flags(
    out: &mut BytesMut,
    flags: &MetaFlags<'_>,
    key: &[u8],
    binary: bool,
    returned: &Returned,
) {
    for token in flags.tokens() {
        match (token[0], returned) {
            (b'O', _) => {
                out.put_u8(b' ');
                out.put_slice(token);
            }
            (b'k', _) => put_key(out, key, binary),
            (b'c', Returned { cas: Some(cas), .. }) => put_flag(out, b'c', *cas),
            (b't', Returned { ttl: Some(ttl), .. }) => put_ttl(out, *ttl),
            (b's', Returned { size: Some(n), .. }) => put_flag(out, b's', *n as u64),
            (
                b'f',
                Returned {
                    client_flags: Some(f),
                    ..
                },
            ) => put_flag(out, b'f', u64::from(*f)),
            (b'l', Returned { idle: Some(l), .. }) => put_flag(out, b'l', u64::from(*l)),
            (
                b'h',
                Returned {
                    fetched: Some(h), ..
                },
            ) => put_flag(out, b'h', u64::from(*h)),
            _ => {}
        }
    }
}

/// `VA <len>` (the value follows) or `HD`: the code of a hit.
fn put_head(out: &mut BytesMut, with_value: bool, len: usize) {
    if with_value {
        out.put_slice(b"VA ");
        put_num(out, len as u64);
    } else {
        out.put_slice(b"HD");
    }
}

/// A hit: its code and flags, then `Z X W`, then the value.
fn meta_hit(out: &mut BytesMut, key: &[u8], flags: &MetaFlags<'_>, item: &Item<'_>) {
    let data = item.data;
    out.reserve(64 + data.len());
    // `C` with the item's CAS: the client has this value already.
    let with_value = flags.has(b'v') && flags.compare_cas != Some(item.cas);
    put_head(out, with_value, data.len());
    let returned = Returned {
        cas: Some(item.cas),
        ttl: Some(item.ttl),
        size: Some(data.len()),
        client_flags: Some(item.flags),
        idle: Some(item.idle),
        fetched: Some(item.fetched),
    };
    put_flags(out, flags, key, item.key_binary, &returned);
    if item.token_sent {
        out.put_slice(b" Z");
    }
    if item.stale {
        out.put_slice(b" X");
    }
    if item.won {
        out.put_slice(b" W");
    }
    out.put_slice(b"\r\n");
    if with_value {
        out.put_slice(data);
        out.put_slice(b"\r\n");
    }
}

/// `ma`'s hit: its code and flags, then the number.
fn meta_counter(out: &mut BytesMut, key: &[u8], binary: bool, flags: &MetaFlags<'_>, c: &Counter) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(c.value).as_bytes();
    let with_value = flags.has(b'v');
    put_head(out, with_value, digits.len());
    let returned = Returned {
        cas: Some(c.cas),
        ttl: Some(c.ttl),
        ..Returned::default()
    };
    put_flags(out, flags, key, binary, &returned);
    out.put_slice(b"\r\n");
    if with_value {
        out.put_slice(digits);
        out.put_slice(b"\r\n");
    }
}

/// A reply with no item: its code, `O` and `k`, and for `ms` a `c` and
/// an `s` (`size`).
fn short_line(
    out: &mut BytesMut,
    code: &[u8],
    flags: &MetaFlags<'_>,
    key: &[u8],
    binary: bool,
    cas: Option<u64>,
    size: usize,
) {
    let returned = Returned {
        cas,
        size: cas.map(|_| size),
        ..Returned::default()
    };
    out.put_slice(code);
    put_flags(out, flags, key, binary, &returned);
    out.put_slice(b"\r\n");
}

/// `me`: `ME <key> exp=.. la=.. cas=.. fetch=.. cls=.. size=..`.
fn debug(out: &mut BytesMut, d: &Debug<'_>) {
    use std::fmt::Write;
    out.put_slice(b"ME ");
    if d.key_binary {
        base64::encode(d.key, out);
    } else {
        out.put_slice(d.key);
    }
    // BytesMut's fmt::Write cannot fail.
    let _ = write!(
        out,
        " exp={} la={} cas={} fetch={} cls={} size={}\r\n",
        d.exp,
        d.last_access,
        d.cas,
        if d.fetched { "yes" } else { "no" },
        d.class,
        d.size,
    );
}

/// ` k<key>`, base64 again (with ` b`) for a binary key.
fn put_key(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        base64::encode(key, out);
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// ` <flag><n>`.
fn put_flag(out: &mut BytesMut, flag: u8, n: u64) {
    out.put_u8(b' ');
    out.put_u8(flag);
    put_num(out, n);
}

/// ` t<ttl>`: seconds left, `-1` for none.
fn put_ttl(out: &mut BytesMut, ttl: Option<u32>) {
    out.put_slice(b" t");
    match ttl {
        None => out.put_slice(b"-1"),
        Some(left) => put_num(out, u64::from(left)),
    }
}

fn put_num(out: &mut BytesMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `STAT <name> <value>`.
fn stat(out: &mut BytesMut, name: &str, value: &dyn fmt::Display) {
    use std::fmt::Write;
    out.put_slice(b"STAT ");
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    // BytesMut's fmt::Write cannot fail.
    let _ = write!(out, "{value}");
    out.put_slice(b"\r\n");
}

/// An error line: the one place errors meet their text-protocol spelling.
fn error(out: &mut BytesMut, e: ProtocolError) {
    out.put_slice(e.wire().as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &'static [u8], data: &'static [u8], flags: u32, cas: u64) -> Item<'static> {
        Item {
            key,
            data,
            flags,
            cas,
            ttl: None,
            idle: 0,
            fetched: false,
            key_binary: false,
            token_sent: false,
            stale: false,
            won: false,
        }
    }

    fn compose(wire: Wire<'_>, replies: &[Reply<'_>]) -> String {
        let mut b = BytesMut::new();
        for r in replies {
            wire.compose(r, &mut b);
        }
        String::from_utf8(b.to_vec()).unwrap()
    }

    const CLASSIC: Wire<'static> = Wire::Classic {
        noreply: false,
        cas: false,
    };

    #[test]
    fn value_lines_show_cas_only_for_gets() {
        let gets = Wire::Classic {
            noreply: false,
            cas: true,
        };
        assert_eq!(
            compose(
                CLASSIC,
                &[
                    Reply::Hit(item(b"k", b"hello", 5, 9)),
                    Reply::Miss,
                    Reply::End
                ]
            ),
            "VALUE k 5 5\r\nhello\r\nEND\r\n"
        );
        assert_eq!(
            compose(gets, &[Reply::Hit(item(b"k", b"", 0, 7))]),
            "VALUE k 0 0 7\r\n\r\n"
        );
    }

    #[test]
    fn classic_errors_and_replies() {
        let counter = Counter {
            value: u64::MAX,
            cas: 0,
            ttl: None,
            created: false,
        };
        assert_eq!(
            compose(
                CLASSIC,
                &[
                    Reply::Error(ProtocolError::TooLarge),
                    Reply::Stored { cas: 3, size: 1 },
                    Reply::Counter(counter),
                    Reply::Stat("pid", &42),
                ]
            ),
            "SERVER_ERROR object too large for cache\r\nSTORED\r\n18446744073709551615\r\nSTAT pid 42\r\n"
        );
    }

    #[test]
    fn noreply_hides_every_reply_errors_included() {
        let noreply = Wire::Classic {
            noreply: true,
            cas: false,
        };
        assert_eq!(
            compose(
                noreply,
                &[
                    Reply::Stored { cas: 1, size: 1 },
                    Reply::Error(ProtocolError::OutOfMemory)
                ]
            ),
            ""
        );
    }

    /// The flags of `mg k <flags>`, as the decoder parses them.
    fn parse_flags(flags: &[u8]) -> MetaFlags<'static> {
        use crate::protocol::codec::{Decode, Decoder};
        use crate::protocol::{Frame, Request};
        let line: &'static [u8] = Box::leak([b"mg k ", flags, b"\r\n"].concat().into());
        match Decoder::new(Default::default()).decode(line) {
            Decode::Frame {
                frame: Some(Frame::Request(Request::Meta(cmd))),
                ..
            } => cmd.flags,
            other => panic!("not a meta command: {other:?}"),
        }
    }

    /// The meta spelling of `replies` to an `op` with these flags.
    fn meta(op: MetaOp, flags: &[u8], replies: &[Reply<'_>]) -> String {
        let flags = parse_flags(flags);
        let wire = Wire::Meta {
            op,
            key: b"k",
            binary: false,
            flags,
            sent: 1,
        };
        compose(wire, replies)
    }

    #[test]
    fn quiet_hides_only_each_commands_nominal_reply() {
        let set = MetaOp::Set {
            mode: crate::item_rules::StoreMode::Set,
        };
        assert_eq!(meta(MetaOp::Get, b"q", &[Reply::Miss]), "");
        assert_eq!(meta(MetaOp::Get, b"", &[Reply::Miss]), "EN\r\n");
        assert_eq!(meta(set, b"q", &[Reply::Stored { cas: 1, size: 1 }]), "");
        assert_eq!(meta(set, b"q c", &[Reply::NotStored]), "NS c0\r\n");
        assert_eq!(meta(MetaOp::Delete, b"q", &[Reply::Deleted]), "");
        assert_eq!(
            meta(MetaOp::Delete, b"q k", &[Reply::NotFound]),
            "NF kk\r\n"
        );
        let existed = Counter {
            value: 5,
            cas: 2,
            ttl: None,
            created: false,
        };
        let created = Counter {
            created: true,
            ..existed
        };
        let incr = MetaOp::Arith { incr: true };
        assert_eq!(meta(incr, b"q v", &[Reply::Counter(existed)]), "");
        assert_eq!(meta(incr, b"q v", &[Reply::Counter(created)]), "");
        // Errors are never hidden, and `ma` words running out of memory its own way.
        assert_eq!(
            meta(incr, b"q", &[Reply::Error(ProtocolError::OutOfMemory)]),
            "SERVER_ERROR out of memory\r\n"
        );
        assert_eq!(
            meta(set, b"q", &[Reply::Error(ProtocolError::OutOfMemory)]),
            "SERVER_ERROR out of memory storing object\r\n"
        );
    }

    #[test]
    fn meta_hits_echo_flags_in_request_order() {
        let mut hit = item(b"k", b"hi", 5, 3);
        hit.ttl = Some(30);
        hit.won = true;
        assert_eq!(
            meta(MetaOp::Get, b"v O1 f c t k", &[Reply::Hit(hit)]),
            "VA 2 O1 f5 c3 t30 kk W\r\nhi\r\n"
        );
    }
}
