//! Per-connection framing of binary requests, following memcached's
//! `try_read_command_binary` and `dispatch_bin_command`:
//!
//! - a request is looked at once its header, extras and key are buffered
//!   (at most 24 + 255 + 65535 bytes); a bad magic byte closes the
//!   connection without a reply;
//! - the lengths are checked in memcached's order, and each failure gets
//!   memcached's answer: an error status, then the connection closed or
//!   the declared body swallowed;
//! - a value is read only after the item limit (`-I`) accepted its length,
//!   so a declared body of gigabytes is swallowed as it arrives and never
//!   buffered.
//!
//! Commands memcached runs without reading the value (Get, Stat, Touch...)
//! consume only header, extras and key, as memcached does: body bytes
//! beyond those are read as the next request.

use bytes::Bytes;

use super::{
    BinaryCommand, BinaryOp, HEADER_LEN, Header, REQUEST_MAGIC, Refusal, ReplyTo, Status, opcode,
};
use crate::item_rules::{Limits, StoreMode};
use crate::protocol::codec::{Decode, step_charge};
use crate::protocol::{Frame, KEY_MAX_LEN, Request};

/// The largest body memcached looks at (its `ITEM_SIZE_MAX_UPPER_LIMIT`,
/// 1 GiB): a larger one is refused and the connection closed.
const BODY_MAX: usize = 1 << 30;

#[derive(Debug)]
enum State {
    /// Waiting for a request; the buffer must hold `need` bytes (a whole
    /// header, or a header that said how much more follows).
    Ready { need: usize, value: bool },
    /// Dropping a declared body; `refusal` is answered once it is gone (or
    /// at once, when memcached answers before swallowing).
    Swallow {
        remaining: usize,
        refusal: Option<Refusal>,
    },
    /// A close was returned; nothing more is decoded.
    Closed,
}

/// The body of memcached's answer when a value it reads in chunks runs out
/// of memory part-way.
const OUT_OF_MEMORY_DURING_READ: &str = "Out of memory during read";

/// memcached's `MAX_SASL_MECH_LEN`: a longer mechanism name in a SASL auth
/// or step is answered "invalid arguments" and its data swallowed.
const MECH_MAX: usize = 32;

/// Framing state of one binary connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// SASL (`-S`) is on: the SASL opcodes become requests. Off, memcached
    /// answers them as unknown commands.
    sasl: bool,
    /// With SASL, whether the connection's last SASL exchange succeeded;
    /// the session keeps it up to date.
    authenticated: bool,
    state: State,
    /// While a value memcached reads in chunks arrives: whom a refusal
    /// answers, and how much of it has been charged so far.
    growing: Option<(ReplyTo, usize)>,
}

const READY: State = State::Ready {
    need: HEADER_LEN,
    value: false,
};

impl Decoder {
    pub fn new(limits: Limits, sasl: bool) -> Self {
        Decoder {
            limits,
            sasl,
            authenticated: false,
            state: READY,
            growing: None,
        }
    }

    /// Tells the decoder whether the connection is authenticated (`-S`).
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// True while a value is being read or swallowed.
    pub fn in_data_block(&self) -> bool {
        matches!(
            self.state,
            State::Ready { value: true, .. } | State::Swallow { .. }
        )
    }

    /// How many bytes the buffer must hold before the pending request can
    /// be decoded, once a header has said so; bounded by `-I` for a value.
    pub fn wanted_len(&self) -> Option<usize> {
        match self.state {
            State::Ready { need, .. } if need > HEADER_LEN => Some(need),
            _ => None,
        }
    }

    /// Decodes the next request at the front of `buf`. As with the text
    /// decoder, the caller advances `buf` by `consumed` once the frame has
    /// run, and otherwise only appends to it between calls.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decode<'a> {
        self.decode_admitting(buf, &mut |_| true)
    }

    /// [`Decoder::decode`], asking `admit` for room before waiting for a
    /// value that is not all buffered yet, as the text decoder's
    /// `decode_admitting` does: `admit(n)` gets the bytes the whole request
    /// will take. Refused, the value is answered "out of memory" and
    /// swallowed as it arrives.
    pub fn decode_admitting<'a>(
        &mut self,
        buf: &'a [u8],
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        if buf.is_empty() {
            return Decode::NeedMore;
        }
        match &mut self.state {
            State::Swallow { remaining, refusal } => {
                let take = (*remaining).min(buf.len());
                *remaining -= take;
                let frame = if *remaining == 0 {
                    let refusal = refusal.take();
                    self.state = READY;
                    refusal.map(Frame::BinaryRefusal)
                } else {
                    None
                };
                return Decode::Frame {
                    consumed: take,
                    frame,
                };
            }
            State::Closed => return close(buf),
            State::Ready { need, .. } => {
                let need = *need;
                if buf.len() < need {
                    return self.grow(buf.len(), need, admit);
                }
                self.growing = None;
            }
        }
        if buf[0] != REQUEST_MAGIC {
            self.state = State::Closed;
            return close(buf);
        }
        let h = Header::parse(buf);
        let fixed = h.fixed_len();
        if buf.len() < fixed {
            self.state = State::Ready {
                need: fixed,
                value: false,
            };
            return Decode::NeedMore;
        }
        self.state = READY;
        self.dispatch(&h, buf, admit)
    }

    /// memcached's checks and answers, in its order, for a request whose
    /// header, extras and key are buffered.
    fn dispatch<'a>(
        &mut self,
        h: &Header,
        buf: &'a [u8],
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        let keylen = usize::from(h.keylen);
        let extlen = usize::from(h.extlen);
        let bodylen = h.bodylen as usize;
        let fixed = h.fixed_len();
        let reply_to = ReplyTo {
            opcode: h.opcode,
            opaque: h.opaque,
        };
        let refuse = |status, close| Refusal {
            reply_to,
            status,
            close,
            unlink_key: None,
            text: None,
        };
        if keylen + extlen > bodylen {
            return refused(fixed, refuse(Status::UnknownCommand, true));
        }
        // memcached 1.6.42 and later, for every opcode: a body this large
        // cannot be an item (1.6.18 answered a set "too large" and read on).
        if bodylen > BODY_MAX {
            return refused(fixed, refuse(Status::InvalidArguments, true));
        }
        // -S: before a successful SASL auth only SASL and Version are run;
        // anything else gets "auth error" and the connection closed,
        // whatever its lengths.
        if self.sasl
            && !self.authenticated
            && !matches!(
                h.opcode,
                opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP | opcode::VERSION
            )
        {
            return refused(fixed, refuse(Status::AuthError, true));
        }
        // 16-bit key lengths, 250-byte keys.
        if keylen > KEY_MAX_LEN {
            return refused(fixed, refuse(Status::InvalidArguments, true));
        }
        let extras = &buf[HEADER_LEN..HEADER_LEN + extlen];
        let key = &buf[HEADER_LEN + extlen..fixed];
        let (base, quiet) = unquiet(h.opcode);
        let no_body = extlen == 0 && keylen == 0 && bodylen == 0;
        let op = match base {
            opcode::VERSION if no_body => BinaryOp::Version,
            opcode::FLUSH if keylen == 0 && bodylen == extlen && (extlen == 0 || extlen == 4) => {
                BinaryOp::Flush {
                    delay: if extlen == 4 { be32(extras) } else { 0 },
                }
            }
            opcode::NOOP if no_body => BinaryOp::Noop,
            opcode::SET | opcode::ADD | opcode::REPLACE
                if extlen == 8 && keylen != 0 && bodylen >= keylen + 8 =>
            {
                let mode = match base {
                    opcode::SET => StoreMode::Set,
                    opcode::ADD => StoreMode::Add,
                    _ => StoreMode::Replace,
                };
                let flags = be32(&extras[..4]);
                let exptime = be32(&extras[4..]);
                return self.store(h, buf, key, quiet, mode, flags, exptime, admit);
            }
            opcode::GET | opcode::GETK if extlen == 0 && bodylen == keylen && keylen > 0 => {
                BinaryOp::Get
            }
            opcode::DELETE if keylen > 0 && extlen == 0 && bodylen == keylen => BinaryOp::Delete,
            opcode::INCREMENT | opcode::DECREMENT
                if keylen > 0 && extlen == 20 && bodylen == keylen + extlen =>
            {
                BinaryOp::Arith {
                    incr: base == opcode::INCREMENT,
                    delta: be64(&extras[..8]),
                    initial: be64(&extras[8..16]),
                    exptime: be32(&extras[16..]),
                }
            }
            opcode::APPEND | opcode::PREPEND if keylen > 0 && extlen == 0 => {
                let mode = if base == opcode::APPEND {
                    StoreMode::Append
                } else {
                    StoreMode::Prepend
                };
                return self.store(h, buf, key, quiet, mode, 0, 0, admit);
            }
            opcode::STAT if extlen == 0 => BinaryOp::Stat,
            opcode::QUIT if no_body => BinaryOp::Quit,
            opcode::SASL_LIST_MECHS if no_body => {
                if !self.sasl {
                    return refused(fixed, refuse(Status::UnknownCommand, false));
                }
                BinaryOp::SaslListMechs
            }
            opcode::SASL_AUTH | opcode::SASL_STEP if extlen == 0 && keylen != 0 => {
                let step = base == opcode::SASL_STEP;
                let unknown = refuse(Status::UnknownCommand, false);
                return self.sasl_auth(h, buf, key, step, unknown, admit);
            }
            opcode::TOUCH if extlen == 4 && keylen != 0 => BinaryOp::Touch {
                exptime: be32(extras),
            },
            opcode::GAT | opcode::GATK if extlen == 4 && keylen != 0 => BinaryOp::Gat {
                exptime: be32(extras),
            },
            opcode::VERSION
            | opcode::FLUSH
            | opcode::NOOP
            | opcode::SET
            | opcode::ADD
            | opcode::REPLACE
            | opcode::GET
            | opcode::GETK
            | opcode::DELETE
            | opcode::INCREMENT
            | opcode::DECREMENT
            | opcode::APPEND
            | opcode::PREPEND
            | opcode::STAT
            | opcode::QUIT
            | opcode::SASL_LIST_MECHS
            | opcode::SASL_AUTH
            | opcode::SASL_STEP
            | opcode::TOUCH
            | opcode::GAT
            | opcode::GATK => {
                // A known opcode with lengths it does not take.
                return refused(fixed, refuse(Status::InvalidArguments, true));
            }
            _ => {
                // memcached swallows the whole declared body after the
                // extras and key it has already read: `bodylen` more bytes.
                return self.swallow_then(fixed, bodylen, refuse(Status::UnknownCommand, false));
            }
        };
        let cmd = BinaryCommand {
            op,
            reply_to,
            quiet,
            key,
            cas: h.cas,
        };
        Decode::Frame {
            consumed: fixed,
            frame: Some(Frame::Request(Request::Binary(cmd))),
        }
    }

    /// A write: refused by its length before the value is read, or decoded
    /// once the whole value is buffered.
    #[allow(clippy::too_many_arguments)]
    fn store<'a>(
        &mut self,
        h: &Header,
        buf: &'a [u8],
        key: &'a [u8],
        quiet: bool,
        mode: StoreMode,
        flags: u32,
        exptime: u32,
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        let fixed = h.fixed_len();
        let reply_to = ReplyTo {
            opcode: h.opcode,
            opaque: h.opaque,
        };
        // (At most BODY_MAX: larger bodies were refused before.)
        let vlen = h.bodylen as usize - (fixed - HEADER_LEN);
        if self.limits.too_large(key.len(), vlen, flags) {
            let refusal = Refusal {
                reply_to,
                status: Status::TooLarge,
                close: false,
                text: None,
                // A too-large Set unlinks the value it would replace.
                unlink_key: (mode == StoreMode::Set).then(|| Bytes::copy_from_slice(key)),
            };
            return self.swallow_then(fixed, vlen, refusal);
        }
        let total = fixed + vlen;
        if buf.len() < total {
            // memcached allocates the item from -m here, before the value;
            // one it reads in chunks, as the value arrives.
            let chunked = self.limits.chunked(key.len(), vlen, flags);
            let charge = if chunked {
                step_charge(buf.len(), total)
            } else {
                total
            };
            if !admit(charge) {
                // As the text protocol: an item memcached allocates in
                // chunks fails during the read and keeps the old value; one
                // it allocates whole fails at once, and a (non-quiet: it
                // compares the opcode itself) Set unlinks the old value.
                let refusal = Refusal {
                    reply_to,
                    status: Status::OutOfMemory,
                    close: false,
                    unlink_key: (!chunked && h.opcode == opcode::SET)
                        .then(|| Bytes::copy_from_slice(key)),
                    text: Some(if chunked {
                        OUT_OF_MEMORY_DURING_READ
                    } else {
                        "Out of memory allocating item"
                    }),
                };
                return self.swallow_then(fixed, vlen, refusal);
            }
            self.growing = chunked.then_some((reply_to, charge));
            self.state = State::Ready {
                need: total,
                value: true,
            };
            return Decode::NeedMore;
        }
        let cmd = BinaryCommand {
            op: BinaryOp::Store {
                mode,
                flags,
                exptime,
                value: &buf[fixed..total],
            },
            reply_to,
            quiet,
            key,
            cas: h.cas,
        };
        Decode::Frame {
            consumed: total,
            frame: Some(Frame::Request(Request::Binary(cmd))),
        }
    }

    /// SASL auth or step. Without SASL, memcached answers unknown command
    /// and swallows the data; with it, the data is read whole, bounded by
    /// the item limit as memcached bounds it by an item allocation.
    fn sasl_auth<'a>(
        &mut self,
        h: &Header,
        buf: &'a [u8],
        key: &'a [u8],
        step: bool,
        unknown: Refusal,
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        let fixed = h.fixed_len();
        let vlen = h.bodylen as usize - key.len();
        if !self.sasl {
            return self.swallow_then(fixed, vlen, unknown);
        }
        // memcached's MAX_SASL_MECH_LEN.
        if key.len() > MECH_MAX {
            let refusal = Refusal {
                status: Status::InvalidArguments,
                ..unknown
            };
            return self.swallow_then(fixed, vlen, refusal);
        }
        if self.limits.too_large(key.len(), vlen, 0) {
            let refusal = Refusal {
                status: Status::OutOfMemory,
                ..unknown
            };
            return self.swallow_then(fixed, vlen, refusal);
        }
        let total = fixed + vlen;
        if buf.len() < total {
            if !admit(total) {
                let refusal = Refusal {
                    status: Status::OutOfMemory,
                    ..unknown
                };
                return self.swallow_then(fixed, vlen, refusal);
            }
            self.state = State::Ready {
                need: total,
                value: true,
            };
            return Decode::NeedMore;
        }
        let cmd = BinaryCommand {
            op: BinaryOp::SaslAuth {
                step,
                data: &buf[fixed..total],
            },
            reply_to: unknown.reply_to,
            quiet: false,
            key,
            cas: h.cas,
        };
        Decode::Frame {
            consumed: total,
            frame: Some(Frame::Request(Request::Binary(cmd))),
        }
    }

    /// More of a value memcached reads in chunks has arrived (`have` of
    /// `need` bytes): charge it, or, with no room left, refuse it part-way
    /// as memcached does (answered once the rest is swallowed).
    fn grow<'a>(
        &mut self,
        have: usize,
        need: usize,
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        let Some((reply_to, charged)) = self.growing.as_mut() else {
            return Decode::NeedMore;
        };
        let charge = step_charge(have, need);
        if charge <= *charged {
            return Decode::NeedMore;
        }
        if admit(charge) {
            *charged = charge;
            return Decode::NeedMore;
        }
        let refusal = Refusal {
            reply_to: *reply_to,
            status: Status::OutOfMemory,
            close: false,
            unlink_key: None,
            text: Some(OUT_OF_MEMORY_DURING_READ),
        };
        self.growing = None;
        self.state = State::Swallow {
            remaining: need - have,
            refusal: Some(refusal),
        };
        Decode::Frame {
            consumed: have,
            frame: None,
        }
    }

    /// Consumes the `fixed` bytes already looked at, then drops `swallow`
    /// more as they arrive; `refusal` is answered once they are gone, as
    /// memcached sends nothing while it swallows.
    fn swallow_then<'a>(&mut self, fixed: usize, swallow: usize, refusal: Refusal) -> Decode<'a> {
        if swallow == 0 {
            return refused(fixed, refusal);
        }
        self.state = State::Swallow {
            remaining: swallow,
            refusal: Some(refusal),
        };
        Decode::Frame {
            consumed: fixed,
            frame: None,
        }
    }
}

fn refused<'a>(consumed: usize, refusal: Refusal) -> Decode<'a> {
    Decode::Frame {
        consumed,
        frame: Some(Frame::BinaryRefusal(refusal)),
    }
}

fn close(buf: &[u8]) -> Decode<'_> {
    Decode::Frame {
        consumed: buf.len(),
        frame: Some(Frame::Close),
    }
}

/// The opcode a quiet opcode is the quiet form of, and whether it was quiet.
fn unquiet(op: u8) -> (u8, bool) {
    use opcode::*;
    let base = match op {
        SETQ => SET,
        ADDQ => ADD,
        REPLACEQ => REPLACE,
        DELETEQ => DELETE,
        INCREMENTQ => INCREMENT,
        DECREMENTQ => DECREMENT,
        QUITQ => QUIT,
        FLUSHQ => FLUSH,
        APPENDQ => APPEND,
        PREPENDQ => PREPEND,
        GETQ => GET,
        GETKQ => GETK,
        GATQ => GAT,
        GATKQ => GATK,
        other => return (other, false),
    };
    (base, true)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("four bytes"))
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::super::NO_AUTO_CREATE;
    use super::*;

    /// A request packet; `bodylen` overrides the true body length.
    fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8], bodylen: Option<u32>) -> Vec<u8> {
        let body = (key.len() + extras.len() + value.len()) as u32;
        let mut p = vec![REQUEST_MAGIC, op];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.push(extras.len() as u8);
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&bodylen.unwrap_or(body).to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend_from_slice(&7u64.to_be_bytes());
        p.extend_from_slice(extras);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
        [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
    }

    fn decoder() -> Decoder {
        Decoder::new(Limits::default(), false)
    }

    /// Decodes `input` whole, as a connection would; the frames and what
    /// each consumed.
    fn decode_all(d: &mut Decoder, input: &[u8]) -> Vec<(usize, Option<Frame<'static>>)> {
        let input: &'static [u8] = Box::leak(input.to_vec().into_boxed_slice());
        let mut at = 0;
        let mut out = Vec::new();
        while at < input.len() {
            match d.decode(&input[at..]) {
                Decode::NeedMore => break,
                Decode::Frame { consumed, frame } => {
                    assert!(consumed > 0 && consumed <= input.len() - at);
                    at += consumed;
                    let close = frame == Some(Frame::Close);
                    out.push((consumed, frame));
                    if close {
                        break;
                    }
                }
            }
        }
        out
    }

    fn command(frame: &Option<Frame<'static>>) -> BinaryCommand<'static> {
        match frame {
            Some(Frame::Request(Request::Binary(cmd))) => *cmd,
            other => panic!("not a binary command: {other:?}"),
        }
    }

    fn refusal(frame: &Option<Frame<'static>>) -> (Status, bool) {
        match frame {
            Some(Frame::BinaryRefusal(r)) => (r.status, r.close),
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn each_opcode_decodes_to_its_request() {
        use opcode::*;
        let incr = [5u64.to_be_bytes(), 9u64.to_be_bytes()].concat();
        let incr = [&incr[..], &NO_AUTO_CREATE.to_be_bytes()].concat();
        let cases: Vec<(Vec<u8>, BinaryOp<'static>, bool)> = vec![
            (packet(GET, b"k", b"", b"", None), BinaryOp::Get, false),
            (packet(GETKQ, b"k", b"", b"", None), BinaryOp::Get, true),
            (
                packet(SETQ, b"k", &set_extras(3, 60), b"val", None),
                BinaryOp::Store {
                    mode: StoreMode::Set,
                    flags: 3,
                    exptime: 60,
                    value: b"val",
                },
                true,
            ),
            (
                packet(PREPEND, b"k", b"", b"v", None),
                BinaryOp::Store {
                    mode: StoreMode::Prepend,
                    flags: 0,
                    exptime: 0,
                    value: b"v",
                },
                false,
            ),
            (
                packet(DELETEQ, b"k", b"", b"", None),
                BinaryOp::Delete,
                true,
            ),
            (
                packet(DECREMENT, b"k", &incr, b"", None),
                BinaryOp::Arith {
                    incr: false,
                    delta: 5,
                    initial: 9,
                    exptime: NO_AUTO_CREATE,
                },
                false,
            ),
            (packet(QUITQ, b"", b"", b"", None), BinaryOp::Quit, true),
            (
                packet(FLUSH, b"", &10u32.to_be_bytes(), b"", None),
                BinaryOp::Flush { delay: 10 },
                false,
            ),
            (packet(NOOP, b"", b"", b"", None), BinaryOp::Noop, false),
            (
                packet(VERSION, b"", b"", b"", None),
                BinaryOp::Version,
                false,
            ),
            (
                packet(STAT, b"items", b"", b"", None),
                BinaryOp::Stat,
                false,
            ),
            (
                packet(TOUCH, b"k", &30u32.to_be_bytes(), b"", None),
                BinaryOp::Touch { exptime: 30 },
                false,
            ),
            (
                packet(GATKQ, b"k", &30u32.to_be_bytes(), b"", None),
                BinaryOp::Gat { exptime: 30 },
                true,
            ),
        ];
        for (input, op, quiet) in cases {
            let frames = decode_all(&mut decoder(), &input);
            assert_eq!(frames.len(), 1, "{input:x?}");
            assert_eq!(frames[0].0, input.len());
            let cmd = command(&frames[0].1);
            assert_eq!((cmd.op, cmd.quiet), (op, quiet), "{input:x?}");
            assert_eq!(cmd.reply_to.opcode, input[1]);
            assert_eq!(cmd.reply_to.opaque, 0x0102_0304);
            assert_eq!(cmd.cas, 7);
        }
    }

    #[test]
    fn every_strict_prefix_needs_more_and_two_packets_give_two() {
        let set = packet(opcode::SET, b"key", &set_extras(0, 0), b"value", None);
        let get = packet(opcode::GETK, b"key", b"", b"", None);
        for p in [&set, &get] {
            for cut in 0..p.len() {
                assert_eq!(decoder().decode(&p[..cut]), Decode::NeedMore, "cut {cut}");
            }
        }
        let both = [set.clone(), get.clone()].concat();
        let frames = decode_all(&mut decoder(), &both);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0, set.len());
        assert_eq!(command(&frames[1].1).op, BinaryOp::Get);
    }

    #[test]
    fn lengths_memcached_refuses_close_the_connection() {
        use opcode::*;
        let long_key = vec![b'k'; 251];
        let cases: Vec<(Vec<u8>, Status)> = vec![
            // Key and extras longer than the body.
            (
                packet(GET, b"ab", b"", b"", Some(1)),
                Status::UnknownCommand,
            ),
            (
                packet(SET, b"k", &set_extras(0, 0), b"", Some(8)),
                Status::UnknownCommand,
            ),
            (
                packet(GET, &long_key, b"", b"", None),
                Status::InvalidArguments,
            ),
            (packet(GET, b"k", b"x", b"", None), Status::InvalidArguments),
            (packet(GET, b"", b"", b"", None), Status::InvalidArguments),
            (packet(GET, b"k", b"", b"v", None), Status::InvalidArguments),
            (
                packet(SET, b"k", b"1234", b"v", None),
                Status::InvalidArguments,
            ),
            (
                packet(DELETE, b"k", b"", b"v", None),
                Status::InvalidArguments,
            ),
            (
                packet(INCREMENT, b"k", &[0; 8], b"", None),
                Status::InvalidArguments,
            ),
            (packet(NOOP, b"k", b"", b"", None), Status::InvalidArguments),
            (
                packet(VERSION, b"", b"", b"v", None),
                Status::InvalidArguments,
            ),
            (
                packet(FLUSH, b"", b"12", b"", None),
                Status::InvalidArguments,
            ),
            (
                packet(APPEND, b"", b"", b"v", None),
                Status::InvalidArguments,
            ),
            (packet(STAT, b"", b"x", b"", None), Status::InvalidArguments),
            (
                packet(TOUCH, b"k", b"", b"", None),
                Status::InvalidArguments,
            ),
            (
                packet(SASL_LIST_MECHS, b"k", b"", b"", None),
                Status::InvalidArguments,
            ),
        ];
        for (input, status) in cases {
            let frames = decode_all(&mut decoder(), &input);
            assert_eq!(frames.len(), 1, "{input:x?}");
            assert_eq!(refusal(&frames[0].1), (status, true), "{input:x?}");
        }
    }

    #[test]
    fn a_bad_magic_closes_once_a_whole_header_is_in() {
        let mut noop = packet(opcode::NOOP, b"", b"", b"", None);
        noop[0] = 0x81;
        let mut d = decoder();
        assert_eq!(d.decode(&noop[..23]), Decode::NeedMore);
        assert_eq!(
            d.decode(&noop),
            Decode::Frame {
                consumed: 24,
                frame: Some(Frame::Close)
            }
        );
    }

    #[test]
    fn an_unknown_opcode_swallows_bodylen_after_its_key() {
        // memcached's count: the body length again, past extras and key,
        // so two bytes of the next packet go too.
        let unknown = packet(0x50, b"ab", b"", b"zz", None);
        let noop = packet(opcode::NOOP, b"", b"", b"", None);
        let input = [unknown, noop.clone(), noop].concat();
        let frames = decode_all(&mut decoder(), &input);
        assert_eq!(frames[0], (26, None));
        assert_eq!(frames[1].0, 4);
        assert_eq!(refusal(&frames[1].1), (Status::UnknownCommand, false));
        // The rest is misaligned: its first byte is not a magic.
        assert_eq!(frames[2].1, Some(Frame::Close));
    }

    #[test]
    fn a_value_without_room_is_out_of_memory_as_memcached_words_it() {
        // (opcode, value length) -> (body text, unlinks the old value)
        let cases: [(u8, u32, &str, bool); 3] = [
            (opcode::SET, 300_000, "Out of memory allocating item", true),
            // memcached unlinks on the Set opcode only, not SetQ.
            (
                opcode::SETQ,
                300_000,
                "Out of memory allocating item",
                false,
            ),
            // Read in chunks (over 512 KiB): it fails during the read.
            (opcode::SET, 600_000, "Out of memory during read", false),
        ];
        for (op, vlen, text, unlinks) in cases {
            let mut d = decoder();
            let header = packet(op, b"k", &set_extras(0, 0), b"", Some(9 + vlen));
            let mut asked = Vec::new();
            let mut admit = |n: usize| {
                asked.push(n);
                false
            };
            assert_eq!(
                d.decode_admitting(&header, &mut admit),
                Decode::Frame {
                    consumed: header.len(),
                    frame: None
                }
            );
            // An item read in chunks is charged as it arrives.
            let first = if vlen > 512 * 1024 {
                step_charge(header.len(), header.len() + vlen as usize)
            } else {
                header.len() + vlen as usize
            };
            assert_eq!(asked, vec![first]);
            assert_eq!(d.wanted_len(), None);
            let value = vec![0u8; vlen as usize];
            let Decode::Frame {
                consumed,
                frame: Some(Frame::BinaryRefusal(r)),
            } = d.decode(&value)
            else {
                panic!("no refusal for {op:#x} {vlen}");
            };
            assert_eq!(consumed, value.len());
            assert_eq!(
                (r.status, r.text, r.close),
                (Status::OutOfMemory, Some(text), false)
            );
            assert_eq!(r.unlink_key.is_some(), unlinks, "{op:#x} {vlen}");
        }
    }

    #[test]
    fn a_too_large_value_is_swallowed_as_it_arrives_never_buffered() {
        let limits = Limits {
            item_size_max: 1024,
            cas_enabled: true,
        };
        let mut d = Decoder::new(limits, false);
        let header = packet(
            opcode::SET,
            b"k",
            &set_extras(0, 0),
            b"",
            Some(9 + 1_000_000_000),
        );
        assert_eq!(
            d.decode(&header),
            Decode::Frame {
                consumed: header.len(),
                frame: None
            }
        );
        assert_eq!(d.wanted_len(), None);
        assert!(d.in_data_block());
        let chunk = vec![0u8; 64 * 1024];
        let mut left = 1_000_000_000usize;
        while left > chunk.len() {
            assert_eq!(
                d.decode(&chunk),
                Decode::Frame {
                    consumed: chunk.len(),
                    frame: None
                }
            );
            left -= chunk.len();
        }
        match d.decode(&chunk) {
            Decode::Frame {
                consumed,
                frame: Some(Frame::BinaryRefusal(r)),
            } => {
                assert_eq!(consumed, left);
                assert_eq!(r.status, Status::TooLarge);
                assert_eq!(r.unlink_key.as_deref(), Some(&b"k"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(!d.in_data_block());
    }

    #[test]
    fn a_value_that_fits_is_waited_for_with_its_size_known() {
        let set = packet(opcode::APPEND, b"k", b"", &[b'v'; 500], None);
        let mut d = decoder();
        assert_eq!(d.decode(&set[..100]), Decode::NeedMore);
        assert_eq!(d.wanted_len(), Some(set.len()));
        assert!(d.in_data_block());
        assert!(matches!(d.decode(&set), Decode::Frame { consumed, .. } if consumed == set.len()));
    }

    #[test]
    fn a_body_over_1_gib_is_refused_and_closes_whatever_the_command() {
        for (op, extras) in [
            (opcode::SET, &set_extras(0, 0)[..]),
            (opcode::GET, &[][..]),
            (opcode::NOOP, &[][..]),
        ] {
            let key: &[u8] = if op == opcode::NOOP { b"" } else { b"k" };
            let req = packet(op, key, extras, b"", Some((1 << 30) + 1));
            let frames = decode_all(&mut decoder(), &req);
            assert_eq!(frames[0].0, req.len());
            assert_eq!(refusal(&frames[0].1), (Status::InvalidArguments, true));
        }
        // 1 GiB itself is looked at: a set that large is too large, its
        // declared value swallowed as it arrives before the answer.
        let set = packet(opcode::SET, b"k", &set_extras(0, 0), b"", Some(1 << 30));
        let mut d = decoder();
        assert_eq!(decode_all(&mut d, &set)[0], (set.len(), None));
        assert!(d.in_data_block());
    }

    #[test]
    fn commands_without_a_value_leave_extra_body_bytes_in_the_stream() {
        let mut stat = packet(opcode::STAT, b"items", b"", b"", Some(5 + 24));
        stat.extend_from_slice(&packet(opcode::NOOP, b"", b"", b"", None));
        let frames = decode_all(&mut decoder(), &stat);
        assert_eq!(frames.len(), 2);
        assert_eq!(command(&frames[1].1).op, BinaryOp::Noop);
    }

    #[test]
    fn sasl_opcodes_are_unknown_without_sasl_and_requests_with_it() {
        let auth = packet(opcode::SASL_AUTH, b"PLAIN", b"", b"\0u\0p", None);
        let frames = decode_all(&mut decoder(), &auth);
        assert_eq!(frames[0], (29, None));
        assert_eq!(refusal(&frames[1].1), (Status::UnknownCommand, false));
        let list = packet(opcode::SASL_LIST_MECHS, b"", b"", b"", None);
        let frames = decode_all(&mut decoder(), &list);
        assert_eq!(refusal(&frames[0].1), (Status::UnknownCommand, false));

        let mut sasl = Decoder::new(Limits::default(), true);
        let frames = decode_all(&mut sasl, &[auth, list].concat());
        let cmd = command(&frames[0].1);
        assert_eq!(cmd.key, b"PLAIN");
        assert_eq!(
            cmd.op,
            BinaryOp::SaslAuth {
                step: false,
                data: b"\0u\0p"
            }
        );
        assert_eq!(command(&frames[1].1).op, BinaryOp::SaslListMechs);
    }
}
