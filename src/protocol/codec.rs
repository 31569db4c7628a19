//! Per-connection framing: finds complete requests in the read buffer,
//! enforces the line-length limits, and swallows rejected data blocks.
//!
//! Must not know any command's grammar: it hands each cut line to
//! [`parse_line`] and learns only whether a data block of how many bytes
//! follows, and whether the item limits refuse it.
//!
//! The decoder never copies the buffer: a frame borrows it, and the caller
//! advances the buffer by `consumed` once the frame is handled. Between a
//! [`Decode::NeedMore`] and the next call the caller only appends to the
//! buffer, which lets the decoder remember how far it already looked for a
//! newline and how long a pending data block is.

use bytes::Bytes;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while_m_n};
use nom::{IResult, Parser};

use super::classic::StoreHeader;
use super::meta::MetaSetHeader;
use super::{
    Frame, GET_LINE_MAX_LEN, KEY_MAX_LEN, LINE_MAX_LEN, Parsed, ProtocolError, Rejected, Request,
    parse_line,
};
use crate::item_rules::{Limits, StoreMode};

/// memcached reads into a 16 KiB buffer: a command line whose newline is not
/// in the first 16 KiB is closed even when it arrived in one write. Lines of
/// `get`/`gets` are the exception and may run to [`GET_LINE_MAX_LEN`].
const READ_WINDOW: usize = 16 * 1024;

/// memcached lets a long get line start with this many spaces at most.
const GET_LEADING_SPACES_MAX: usize = 100;

/// The result of one call to [`Decoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decode<'a> {
    /// No complete request is buffered: read more.
    NeedMore,
    /// `consumed` bytes at the front of the buffer are done with. `frame` is
    /// `None` when they were only part of a data block being swallowed.
    Frame {
        consumed: usize,
        frame: Option<Frame<'a>>,
    },
}

#[derive(Debug)]
enum State {
    /// Waiting for a command line; the first `scanned` bytes hold no `\n`.
    Line { scanned: usize },
    /// A storage line has been parsed and left at the front of the buffer;
    /// the request is complete once `need` bytes are buffered. `growing`:
    /// the block is charged as it arrives (an item memcached reads in
    /// chunks), so far `charged` bytes, and refused mid-way as memcached
    /// refuses it (with `noreply`).
    Data {
        need: usize,
        growing: Option<Growing>,
    },
    /// Dropping the data block of a refused storage command.
    Swallow {
        remaining: usize,
        rejected: Rejected,
    },
    /// A [`Frame::Close`] was returned; nothing more is decoded.
    Closed,
}

/// How far a block charged as it arrives has been charged.
#[derive(Debug, Clone, Copy)]
struct Growing {
    charged: usize,
    noreply: bool,
}

/// A block memcached reads in chunks is charged as it arrives, as memcached
/// allocates its chunks as the data comes: a little ahead of what is
/// buffered, at least this much, in pages of this size.
pub const CHARGE_STEP: usize = 4096;

/// What a block of `need` bytes, `have` of them buffered, is charged while
/// it arrives: a quarter more than `have` (so a value of 1 MB is charged in
/// about 25 steps, each bounding one read), and always more than `have`.
/// A command line alone, the value not yet begun, costs a step, as
/// memcached allocates only the item's header then.
pub(crate) fn step_charge(have: usize, need: usize) -> usize {
    (have + (have / 4).max(CHARGE_STEP))
        .next_multiple_of(CHARGE_STEP)
        .min(need)
}

/// Framing state of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    /// Decodes the next request at the front of `buf`.
    ///
    /// A refused data block is swallowed as it arrives: each call drops what
    /// is buffered of it (`frame: None`), and the call that drops its last
    /// byte returns the [`Frame::Rejected`] with that final chunk.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decode<'a> {
        self.decode_admitting(buf, &mut |_| true)
    }

    /// [`Decoder::decode`], asking `admit` for room before waiting for a
    /// data block that is not all buffered yet. `admit(n)` asks that the
    /// block be charged `n` bytes in all (line and block): as memcached
    /// allocates items, the whole request at once, or for an item memcached
    /// reads in chunks, what has arrived, in steps of [`CHARGE_STEP`], asked
    /// again as it grows. When it says no, the block is refused with
    /// memcached's out of memory answer and swallowed as it arrives, never
    /// buffered. The charge is done with when the decoder returns a `Frame`
    /// after a block was charged (the block completed, or was refused).
    pub fn decode_admitting<'a>(
        &mut self,
        buf: &'a [u8],
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        if buf.is_empty() {
            return Decode::NeedMore;
        }
        match &mut self.state {
            State::Line { scanned } => {
                let scanned = *scanned;
                self.decode_line(buf, scanned, admit)
            }
            State::Data { need, growing } => {
                let need = *need;
                if buf.len() < need {
                    let Some(g) = growing else {
                        return Decode::NeedMore;
                    };
                    let charge = step_charge(buf.len(), need);
                    if charge <= g.charged {
                        return Decode::NeedMore;
                    }
                    if admit(charge) {
                        g.charged = charge;
                        return Decode::NeedMore;
                    }
                    // Out of memory part-way: memcached answers once the
                    // rest is swallowed, and keeps the old value.
                    let rejected = Rejected {
                        error: ProtocolError::OutOfMemoryDuringRead,
                        noreply: g.noreply,
                        unlink_key: None,
                        counts_as_set: false,
                    };
                    self.state = State::Swallow {
                        remaining: need - buf.len(),
                        rejected,
                    };
                    return Decode::Frame {
                        consumed: buf.len(),
                        frame: None,
                    };
                }
                // The whole request is buffered: parse its line again (it is
                // short) rather than keep offsets into an older buffer.
                self.state = State::Line { scanned: 0 };
                self.decode_line(buf, 0, &mut |_| true)
            }
            State::Swallow { remaining, .. } => {
                let take = (*remaining).min(buf.len());
                *remaining -= take;
                if *remaining > 0 {
                    return Decode::Frame {
                        consumed: take,
                        frame: None,
                    };
                }
                let frame = match std::mem::replace(&mut self.state, State::Line { scanned: 0 }) {
                    State::Swallow { rejected, .. } => Some(Frame::Rejected(rejected)),
                    _ => None,
                };
                Decode::Frame {
                    consumed: take,
                    frame,
                }
            }
            State::Closed => self.close(buf),
        }
    }

    /// True while a data block is being read or swallowed (idle timeout must not fire).
    pub fn in_data_block(&self) -> bool {
        matches!(self.state, State::Data { .. } | State::Swallow { .. })
    }

    /// How many bytes the buffer must hold before the pending request can be
    /// decoded, when that is known (a data block is being read). The caller
    /// can reserve this much at once; it never exceeds the item size limit
    /// plus the command line.
    pub fn wanted_len(&self) -> Option<usize> {
        match self.state {
            State::Data { need, .. } => Some(need),
            _ => None,
        }
    }

    fn close<'a>(&mut self, buf: &'a [u8]) -> Decode<'a> {
        self.state = State::Closed;
        Decode::Frame {
            consumed: buf.len(),
            frame: Some(Frame::Close),
        }
    }

    /// Looks for a command line at the front of `buf` (non-empty), the first
    /// `scanned` bytes of which are known to hold no `\n`.
    fn decode_line<'a>(
        &mut self,
        buf: &'a [u8],
        scanned: usize,
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        let long_get = buf.len() > LINE_MAX_LEN && starts_long_get(buf);
        let window = buf.len().min(if long_get {
            GET_LINE_MAX_LEN
        } else {
            READ_WINDOW
        });
        let from = scanned.min(window);
        let Some(newline) = find_newline(&buf[from..window]).map(|i| from + i) else {
            self.state = State::Line { scanned: window };
            // memcached closes a connection that has sent more than 2048
            // bytes without a newline, unless it is a long multi-get.
            if buf.len() > LINE_MAX_LEN && !(long_get && buf.len() <= GET_LINE_MAX_LEN) {
                return self.close(buf);
            }
            return Decode::NeedMore;
        };
        self.state = State::Line { scanned: 0 };
        let consumed = newline + 1;
        // memcached 1.6.45 refuses a line shorter than a two-byte command
        // and `\r\n` (newline included) before reading it.
        if consumed < 4 {
            return Decode::Frame {
                consumed,
                frame: Some(Frame::Error {
                    error: ProtocolError::BadCommandLineFormat,
                    noreply: false,
                    counts_as_set: false,
                }),
            };
        }
        let mut end = newline;
        // memcached strips one `\r`, and only from a line longer than itself.
        if end > 1 && buf[end - 1] == b'\r' {
            end -= 1;
        }
        // memcached 1.6.45 reads the line by its length: a NUL is a byte
        // like any other (1.6.18 cut the line there).
        let line = &buf[..end];
        match parse_line(line) {
            Parsed::Frame(Frame::Close) => self.close(buf),
            Parsed::Frame(frame) => Decode::Frame {
                consumed,
                frame: Some(frame),
            },
            Parsed::Store(header) => {
                self.decode_store(buf, consumed, DataHeader::Classic(header), admit)
            }
            Parsed::MetaSet(header) => {
                self.decode_store(buf, consumed, DataHeader::Meta(header), admit)
            }
        }
    }

    /// A storage line of `line_len` bytes (newline included) has been parsed:
    /// refuse it (too large, or an `ms` error found after its data length),
    /// else wait for its data block.
    fn decode_store<'a>(
        &mut self,
        buf: &'a [u8],
        line_len: usize,
        header: DataHeader<'a>,
        admit: &mut dyn FnMut(usize) -> bool,
    ) -> Decode<'a> {
        // `bytes` is at most i32::MAX - 2, so these sums cannot overflow.
        let bytes = header.bytes();
        let block_len = bytes + 2;
        if let Some(rejected) = header.refusal(&self.limits) {
            return self.swallow(buf, line_len, block_len, rejected);
        }
        let need = line_len + block_len;
        if buf.len() < need {
            // memcached allocates the item from -m here, before the data;
            // one it reads in chunks, as the data arrives.
            let growing = header.chunked(&self.limits).then_some(Growing {
                charged: step_charge(buf.len(), need),
                noreply: header.noreply_errors(),
            });
            let charge = growing.map_or(need, |g| g.charged);
            if !admit(charge) {
                let rejected = header.out_of_memory(&self.limits);
                return self.swallow(buf, line_len, block_len, rejected);
            }
            self.state = State::Data { need, growing };
            return Decode::NeedMore;
        }
        let value = &buf[line_len..line_len + bytes];
        let frame = if &buf[line_len + bytes..need] == b"\r\n" {
            Frame::Request(header.with_value(value))
        } else {
            // The block is consumed all the same; parsing resumes after it.
            Frame::Error {
                error: ProtocolError::BadDataChunk,
                noreply: header.noreply(),
                counts_as_set: true,
            }
        };
        Decode::Frame {
            consumed: need,
            frame: Some(frame),
        }
    }
}

impl Decoder {
    /// Refuses a storage command whose line of `line_len` bytes is
    /// buffered: its data block is dropped as it arrives and `rejected` is
    /// answered once it is gone, as memcached answers only then and never
    /// buffers the block.
    fn swallow<'a>(
        &mut self,
        buf: &[u8],
        line_len: usize,
        block_len: usize,
        rejected: Rejected,
    ) -> Decode<'a> {
        let take = block_len.min(buf.len() - line_len);
        let remaining = block_len - take;
        if remaining == 0 {
            return Decode::Frame {
                consumed: line_len + take,
                frame: Some(Frame::Rejected(rejected)),
            };
        }
        self.state = State::Swallow {
            remaining,
            rejected,
        };
        Decode::Frame {
            consumed: line_len + take,
            frame: None,
        }
    }
}

/// A command line whose data block follows: a classic storage command or `ms`.
enum DataHeader<'a> {
    Classic(StoreHeader<'a>),
    Meta(MetaSetHeader<'a>),
}

impl<'a> DataHeader<'a> {
    /// The length of the data block, without its CRLF.
    fn bytes(&self) -> usize {
        match self {
            DataHeader::Classic(h) => h.bytes,
            DataHeader::Meta(h) => h.bytes,
        }
    }

    /// Whether a bad data chunk is answered silently (`ms` always answers).
    fn noreply(&self) -> bool {
        match self {
            DataHeader::Classic(h) => h.noreply,
            DataHeader::Meta(_) => false,
        }
    }

    fn with_value(&self, value: &'a [u8]) -> Request<'a> {
        match self {
            DataHeader::Classic(h) => h.with_value(value),
            DataHeader::Meta(h) => h.with_value(value),
        }
    }

    /// Whether memcached reads this block's item in chunks.
    fn chunked(&self, limits: &Limits) -> bool {
        let mut key_buf = [0; KEY_MAX_LEN];
        match self {
            DataHeader::Classic(h) => limits.chunked(h.key.len(), h.bytes, h.flags),
            DataHeader::Meta(h) => {
                let key = h.command.key.bytes(&mut key_buf);
                limits.chunked(key.len(), h.bytes, h.command.flags.client_flags)
            }
        }
    }

    /// Whether its error replies are silent (classic `noreply`).
    fn noreply_errors(&self) -> bool {
        match self {
            DataHeader::Classic(h) => h.noreply,
            DataHeader::Meta(_) => false,
        }
    }

    /// The refusal when no memory can be found for the block, as memcached
    /// words it. An item it would allocate whole gets "out of memory storing
    /// object", which, like "too large", unlinks the old value of a `set`
    /// (of any `ms`). One it allocates in chunks as the data arrives fails
    /// during the read instead: "Out of memory during read", old value kept.
    fn out_of_memory(&self, limits: &Limits) -> Rejected {
        let mut key_buf = [0; KEY_MAX_LEN];
        let (key, flags, noreply, unlinks) = match self {
            DataHeader::Classic(h) => (h.key, h.flags, h.noreply, h.mode == StoreMode::Set),
            DataHeader::Meta(h) => {
                let key = h.command.key.bytes(&mut key_buf);
                (key, h.command.flags.client_flags, false, true)
            }
        };
        if limits.chunked(key.len(), self.bytes(), flags) {
            return Rejected {
                error: ProtocolError::OutOfMemoryDuringRead,
                noreply,
                unlink_key: None,
                counts_as_set: false,
            };
        }
        Rejected {
            error: ProtocolError::OutOfMemory,
            noreply,
            unlink_key: unlinks.then(|| Bytes::copy_from_slice(key)),
            counts_as_set: false,
        }
    }

    /// The refusal to answer once the data block has been swallowed, if the
    /// line alone decides it. Refusals are not counted in cmd_set.
    fn refusal(&self, limits: &Limits) -> Option<Rejected> {
        match self {
            DataHeader::Classic(StoreHeader {
                refused: Some(error),
                noreply,
                ..
            }) => Some(Rejected {
                error: *error,
                noreply: *noreply,
                unlink_key: None,
                counts_as_set: false,
            }),
            DataHeader::Classic(h) => limits.too_large(h.key.len(), h.bytes, h.flags).then(|| {
                Rejected {
                    error: ProtocolError::TooLarge,
                    noreply: h.noreply,
                    // A too-large `set` deletes the old value; the others keep it.
                    unlink_key: (h.mode == StoreMode::Set).then(|| Bytes::copy_from_slice(h.key)),
                    counts_as_set: false,
                }
            }),
            DataHeader::Meta(h) => {
                if let Some(error) = h.refused {
                    return Some(Rejected {
                        error,
                        noreply: false,
                        unlink_key: None,
                        counts_as_set: false,
                    });
                }
                let mut key_buf = [0; KEY_MAX_LEN];
                let key = h.command.key.bytes(&mut key_buf);
                let flags = h.command.flags.client_flags;
                // A too-large `ms` deletes the old value whatever its mode.
                limits
                    .too_large(key.len(), h.bytes, flags)
                    .then(|| Rejected {
                        error: ProtocolError::TooLarge,
                        noreply: false,
                        unlink_key: Some(Bytes::copy_from_slice(key)),
                        counts_as_set: false,
                    })
            }
        }
    }
}

/// memcached's exemption from the line limit: after at most 100 spaces, the
/// buffer starts with `get ` or `gets `.
fn starts_long_get(buf: &[u8]) -> bool {
    let spaces = take_while_m_n(0, GET_LEADING_SPACES_MAX, |b| b == b' ');
    let get = alt((tag("get "), tag("gets ")));
    let found: IResult<&[u8], _, ()> = (spaces, get).parse(buf);
    found.is_ok()
}

/// The index of the first `\n`, eight bytes at a time.
fn find_newline(haystack: &[u8]) -> Option<usize> {
    const LO: u64 = u64::from_ne_bytes([0x01; 8]);
    const HI: u64 = u64::from_ne_bytes([0x80; 8]);
    const NL: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ NL;
        // Some byte of `x` is zero exactly when this is non-zero.
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return chunk.iter().position(|&b| b == b'\n').map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Request;
    use crate::protocol::test_support::*;
    use crate::test_rng::Rng;

    /// The codec's part of a line: it ends at `\n` and loses one `\r`; a
    /// line shorter than a two-byte command and its end is refused; a NUL
    /// is part of the line.
    #[test]
    fn line_ends_and_nuls_before_parsing() {
        let cases: Vec<(String, Frame<'static>)> = vec![
            ("\r\n".into(), bad_format()),
            ("\n".into(), bad_format()),
            ("ab\n".into(), bad_format()),
            ("ab\r\n".into(), unknown()),
            ("version\n".into(), cmd(Request::Version)),
            ("version\r\r\n".into(), unknown()),
            ("version\0junk\r\n".into(), unknown()),
            (
                "get a\0b\r\n".into(),
                cmd(Request::Get {
                    keys: crate::protocol::Keys::new(b" a\0b"),
                    cas: false,
                }),
            ),
        ];
        assert_whole_lines(&cases);
    }

    #[test]
    fn format_errors_leave_the_data_block_as_a_command_line() {
        let input = b"set k 0 0\r\nab\r\nset k abc 0 1\r\nx\r\nset k 0 0 1 noreply x\r\nv\r\n";
        let (frames, rest) = decode_all(input);
        assert!(rest.is_empty());
        let frames: Vec<_> = frames.into_iter().map(|(_, f)| f.unwrap()).collect();
        assert_eq!(frames[0], bad_format());
        assert_eq!(frames[1], unknown()); // "ab"
        assert_eq!(frames[2], refused(false)); // "x" is swallowed
        assert!(matches!(
            frames[3],
            Frame::Request(Request::Store { noreply: false, .. })
        ));
        assert_eq!(frames.len(), 4);
    }

    #[test]
    fn bad_data_chunk_resumes_after_the_block() {
        // memcached: "CLIENT_ERROR bad data chunk", then a format error for
        // the stray CRLF, too short for a command.
        let (frames, rest) = decode_all(b"set k 0 0 3\r\nabcde\r\nmn\r\n");
        assert!(rest.is_empty());
        let frames: Vec<_> = frames.into_iter().map(|(c, f)| (c, f.unwrap())).collect();
        assert_eq!(
            frames,
            vec![
                (18, bad_chunk(false)),
                (2, bad_format()),
                (4, cmd(Request::MetaNoop))
            ]
        );
    }

    fn valid_requests() -> Vec<Vec<u8>> {
        let mut many = b"get".to_vec();
        for i in 0..60 {
            many.extend_from_slice(format!(" k{i}").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        vec![
            b"set k 0 0 5\r\nhello\r\n".to_vec(),
            b"set k 1 2 0 noreply\r\n\r\n".to_vec(),
            b"cas key 0 0 2 77\r\nhi\r\n".to_vec(),
            b"append k 0 0 4\r\n\r\n\r\n\r\n".to_vec(),
            b"set k 0 0 1\na\r\n".to_vec(),
            b"get a b c\r\n".to_vec(),
            b"gets a\n".to_vec(),
            b"gat 100 a\r\n".to_vec(),
            b"gats 100 k\r\n".to_vec(),
            b"delete k 0 noreply\r\n".to_vec(),
            b"incr k 1\r\n".to_vec(),
            b"decr k 1 noreply\r\n".to_vec(),
            b"touch k 10\r\n".to_vec(),
            b"flush_all 0\r\n".to_vec(),
            b"version\r\n".to_vec(),
            b"verbosity 1\r\n".to_vec(),
            b"stats items\r\n".to_vec(),
            b"cache_memlimit 100\r\n".to_vec(),
            b"shutdown graceful\r\n".to_vec(),
            b"mn\r\n".to_vec(),
            b"quit\r\n".to_vec(),
            many,
            b"mg k v t c O1 q\r\n".to_vec(),
            b"mg Zm9v b k\n".to_vec(),
            b"ms k 2 T10 c\r\nhi\r\n".to_vec(),
            b"ms Zm9v 0 b MA q\r\n\r\n".to_vec(),
            b"ms k 4 F1\n\r\n\r\n\r\n".to_vec(),
            b"md k q I T30\r\n".to_vec(),
            b"ma k N0 J5 D2 MD v\r\n".to_vec(),
            b"me k\r\n".to_vec(),
            b"mn a b\r\n".to_vec(),
        ]
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        for request in valid_requests() {
            // A fresh decoder for every prefix...
            for end in 0..request.len() {
                assert_eq!(
                    Decoder::new(Limits::default()).decode(&request[..end]),
                    Decode::NeedMore,
                    "{:?} cut at {end}",
                    String::from_utf8_lossy(&request)
                );
            }
            // ... and one decoder fed a growing buffer, as a connection does.
            let mut decoder = Decoder::new(Limits::default());
            for end in 0..request.len() {
                assert_eq!(decoder.decode(&request[..end]), Decode::NeedMore);
            }
            match decoder.decode(&request) {
                Decode::Frame {
                    consumed,
                    frame: Some(Frame::Request(_)),
                } => assert_eq!(consumed, request.len()),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&request)),
            }
            assert!(!decoder.in_data_block());
        }
    }

    #[test]
    fn requests_back_to_back() {
        let requests = valid_requests();
        for a in &requests {
            for b in &requests {
                let mut input = a.clone();
                input.extend_from_slice(b);
                let (frames, rest) = decode_all(&input);
                assert!(rest.is_empty());
                let consumed: Vec<usize> = frames.iter().map(|(c, _)| *c).collect();
                assert_eq!(consumed, vec![a.len(), b.len()]);
                assert!(
                    frames
                        .iter()
                        .all(|(_, f)| matches!(f, Some(Frame::Request(_))))
                );
            }
        }
    }

    #[test]
    fn pipelined_mixture() {
        let input: &[u8] = b"set a 0 0 1\r\n1\r\nget a b\r\nbogus\r\nincr a 1 noreply\r\n\
set k 0 0 3\r\nabcde\r\nmn\r\ndelete a 10\r\n\nversion\nset big 0 0 2000000 noreply\r\n";
        let mut input = input.to_vec();
        input.extend(std::iter::repeat_n(b'x', 2_000_000));
        input.extend_from_slice(b"\r\nget a\r\nset x 0 0 2\r\nh");
        let (frames, rest) = decode_all(&input);
        assert_eq!(rest, b"set x 0 0 2\r\nh");
        let frames: Vec<Frame<'_>> = frames.into_iter().filter_map(|(_, f)| f).collect();
        assert_eq!(frames[0], set(b"a", b"1"));
        assert!(
            matches!(&frames[1], Frame::Request(Request::Get { keys, cas: false }) if key_list(keys) == vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(frames[2], unknown());
        assert_eq!(
            frames[3],
            cmd(Request::Arith {
                key: b"a",
                delta: 1,
                incr: true,
                noreply: true
            })
        );
        assert_eq!(frames[4], bad_chunk(false));
        assert_eq!(frames[5], bad_format()); // the stray CRLF
        assert_eq!(frames[6], cmd(Request::MetaNoop));
        assert_eq!(
            frames[7],
            cmd(Request::Delete {
                key: b"a",
                noreply: false
            })
        );
        assert_eq!(frames[8], bad_format()); // a bare `\n`
        assert_eq!(frames[9], cmd(Request::Version));
        assert_eq!(
            frames[10],
            Frame::Rejected(Rejected {
                error: ProtocolError::TooLarge,
                noreply: true,
                unlink_key: Some(Bytes::from_static(b"big")),
                counts_as_set: false,
            })
        );
        assert!(matches!(frames[11], Frame::Request(Request::Get { .. })));
        assert_eq!(frames.len(), 12);
    }

    #[test]
    fn data_block_waits_for_all_bytes() {
        let input = b"set k 0 0 5\r\nhello\r\n";
        let mut decoder = Decoder::new(Limits::default());
        assert_eq!(decoder.decode(&input[..15]), Decode::NeedMore);
        assert!(decoder.in_data_block());
        assert_eq!(decoder.wanted_len(), Some(input.len()));
        assert_eq!(decoder.decode(&input[..input.len() - 1]), Decode::NeedMore);
        assert_eq!(
            decoder.decode(input),
            Decode::Frame {
                consumed: input.len(),
                frame: Some(set(b"k", b"hello"))
            }
        );
        assert!(!decoder.in_data_block());
        assert_eq!(decoder.wanted_len(), None);
    }

    fn too_large(unlink: Option<&'static [u8]>, noreply: bool) -> Frame<'static> {
        Frame::Rejected(rejected(unlink, noreply))
    }

    /// An owned summary of a frame, for streams whose buffer is reused.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Get { keys: usize },
        Store { value_len: usize },
        Meta { value_len: usize },
        Noop,
        Rejected(Rejected),
        Error(ProtocolError),
    }

    /// Feeds `stream` to one decoder `chunk` bytes at a time through a
    /// buffer that is advanced by `consumed`, as a connection does; returns
    /// what was decoded and the largest the buffer ever grew.
    fn feed_in_chunks(limits: Limits, stream: &[u8], chunk: usize) -> (Vec<Seen>, usize) {
        let mut decoder = Decoder::new(limits);
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = Vec::new();
        let mut max_buf = 0;
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            max_buf = max_buf.max(buf.len());
            loop {
                match decoder.decode(&buf) {
                    Decode::NeedMore => break,
                    Decode::Frame { consumed, frame } => {
                        assert!(consumed > 0 && consumed <= buf.len());
                        if let Some(frame) = frame {
                            seen.push(match frame {
                                Frame::Request(Request::Get { keys, .. }) => Seen::Get {
                                    keys: keys.iter().count(),
                                },
                                Frame::Request(Request::Store { value, .. }) => Seen::Store {
                                    value_len: value.len(),
                                },
                                Frame::Request(Request::MetaNoop) => Seen::Noop,
                                Frame::Request(Request::Meta(m)) => Seen::Meta {
                                    value_len: m.value.len(),
                                },
                                Frame::Rejected(r) => Seen::Rejected(r),
                                Frame::Error { error, .. } => Seen::Error(error),
                                other => panic!("unexpected {other:?}"),
                            });
                        }
                        buf.drain(..consumed);
                    }
                }
            }
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf)
        );
        (seen, max_buf)
    }

    fn rejected(unlink: Option<&'static [u8]>, noreply: bool) -> Rejected {
        Rejected {
            error: ProtocolError::TooLarge,
            noreply,
            unlink_key: unlink.map(Bytes::from_static),
            counts_as_set: false,
        }
    }

    #[test]
    fn too_large_set_is_swallowed_in_chunks() {
        let bytes = 2_000_000;
        let mut stream = format!("set k 0 0 {bytes}\r\n").into_bytes();
        // The block may hold anything, command lines included.
        let mut block = b"get k\r\nmn\r\n".repeat(bytes / 11);
        block.resize(bytes + 2, b'z');
        stream.extend_from_slice(&block);
        stream.extend_from_slice(b"set k 0 0 1\r\na\r\nmn\r\n");
        for chunk in [7, 4096, 65536, stream.len()] {
            let (seen, max_buf) = feed_in_chunks(Limits::default(), &stream, chunk);
            assert_eq!(
                seen,
                vec![
                    Seen::Rejected(rejected(Some(b"k"), false)),
                    Seen::Store { value_len: 1 },
                    Seen::Noop
                ],
                "chunk {chunk}"
            );
            if chunk < stream.len() {
                // Nothing of the block is kept between reads.
                assert!(
                    max_buf <= 2 * chunk + 32,
                    "chunk {chunk}: buffered {max_buf}"
                );
            }
        }
        // One byte at a time, with a small item size limit.
        let limits = Limits {
            item_size_max: 100,
            cas_enabled: true,
        };
        let mut stream = b"add kk 0 0 60 noreply\r\n".to_vec();
        stream.extend_from_slice(&[b'\n'; 62]);
        stream.extend_from_slice(b"mn\r\n");
        let (seen, max_buf) = feed_in_chunks(limits, &stream, 1);
        assert_eq!(seen, vec![Seen::Rejected(rejected(None, true)), Seen::Noop]);
        assert!(max_buf <= 24);
    }

    /// A frame as [`feed_admitting`] reports it: a rejection's error, the
    /// key it unlinks and whether it is silent (a store: `BadDataChunk`).
    type Outcome = (ProtocolError, Option<Bytes>, bool);

    /// Feeds `stream` in `chunk`-byte reads, refusing room to blocks that
    /// ask for more than `room`; returns the frames (rejections with their
    /// error), and the sizes asked for.
    fn feed_admitting(
        stream: &[u8],
        chunk: usize,
        room: usize,
    ) -> (Vec<Outcome>, Vec<usize>, usize) {
        let mut d = Decoder::new(Limits::default());
        let (mut buf, mut out, mut asked, mut max_buf) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for part in stream.chunks(chunk) {
            buf.extend_from_slice(part);
            max_buf = max_buf.max(buf.len());
            loop {
                let mut admit = |n: usize| {
                    asked.push(n);
                    n <= room
                };
                match d.decode_admitting(&buf, &mut admit) {
                    Decode::NeedMore => break,
                    Decode::Frame { consumed, frame } => {
                        match frame {
                            Some(Frame::Rejected(r)) => {
                                out.push((r.error, r.unlink_key, r.noreply))
                            }
                            Some(Frame::Request(Request::Store { .. })) => {
                                out.push((ProtocolError::BadDataChunk, None, false));
                            }
                            _ => {}
                        }
                        buf.drain(..consumed);
                    }
                }
            }
        }
        (out, asked, max_buf)
    }

    #[test]
    fn a_block_without_room_is_refused_as_memcached_words_it_and_swallowed() {
        // Whole in the buffer, a block asks for nothing: the store charges it.
        let (out, asked, _) = feed_admitting(b"set k 0 0 3\r\nabc\r\n", 64, 0);
        assert_eq!(out.len(), 1);
        assert!(asked.is_empty());
        // Arriving, it asks once, for its line and block.
        let (out, asked, _) = feed_admitting(b"set k 0 0 3\r\nabc\r\n", 14, 100);
        assert_eq!((out.len(), asked), (1, vec![18]));
        // An item memcached allocates whole: "out of memory storing object";
        // a set unlinks the old value, noreply silences it, an add unlinks
        // nothing, an ms always unlinks.
        let oom = ProtocolError::OutOfMemory;
        let k = Some(Bytes::from_static(b"k"));
        let mut stream = b"set k 0 0 300000 noreply\r\n".to_vec();
        stream.extend_from_slice(&[b'x'; 300_002]);
        let (out, _, max_buf) = feed_admitting(&stream, 4096, 1000);
        assert_eq!(out, vec![(oom, k.clone(), true)]);
        assert!(max_buf <= 2 * 4096, "buffered {max_buf}");
        let mut stream = b"add k 0 0 300000\r\n".to_vec();
        stream.extend_from_slice(&[b'x'; 300_002]);
        stream.extend_from_slice(b"ms k 300000\r\n");
        stream.extend_from_slice(&[b'x'; 300_002]);
        let (out, _, _) = feed_admitting(&stream, 4096, 1000);
        assert_eq!(out, vec![(oom, None, false), (oom, k, false)]);
        // One memcached reads in chunks (over 512 KiB): it fails during the
        // read, and the old value stays.
        let mut stream = b"set k 0 0 600000\r\n".to_vec();
        stream.extend_from_slice(&[b'x'; 600_002]);
        stream.extend_from_slice(b"set k 0 0 1\r\nx\r\n");
        let (out, _, _) = feed_admitting(&stream, 4096, 1000);
        let during_read = ProtocolError::OutOfMemoryDuringRead;
        assert_eq!(
            out,
            vec![
                (during_read, None, false),
                (ProtocolError::BadDataChunk, None, false)
            ]
        );
        assert_eq!(during_read.wire(), "SERVER_ERROR Out of memory during read");
        // Charged as it arrives, in steps, until there is no more room:
        // refused part-way, and nothing of it kept.
        let (out, asked, max_buf) = feed_admitting(&stream, 4096, 300_000);
        assert_eq!(
            out,
            vec![
                (during_read, None, false),
                (ProtocolError::BadDataChunk, None, false)
            ]
        );
        assert_eq!(asked[0], step_charge(18, 600_020));
        assert!(asked.windows(2).all(|w| w[0] < w[1]), "{asked:?}");
        let (refused_at, admitted) = asked.split_last().unwrap();
        assert!(*refused_at > 300_000 && admitted.iter().all(|&n| n <= 300_000));
        assert!(max_buf < 300_000, "buffered {max_buf}");
        // With room, the same block is charged step by step up to its size.
        // (Its block ends in "xx", a bad data chunk: only the set after it
        // is a store.)
        let (out, asked, _) = feed_admitting(&stream, 4096, usize::MAX);
        assert_eq!(out.len(), 1);
        // (Reads of 4 KiB: each asks; larger reads ask about 25 times.)
        assert!(asked.len() < 150, "{} steps", asked.len());
        assert_eq!(asked.last(), Some(&600_020));
    }

    #[test]
    fn swallow_counts_exactly_bytes_plus_two() {
        let mut decoder = Decoder::new(Limits::default());
        let line = b"set k 0 0 2000000\r\n";
        assert_eq!(
            decoder.decode(line),
            Decode::Frame {
                consumed: line.len(),
                frame: None
            }
        );
        assert!(decoder.in_data_block());
        assert_eq!(decoder.wanted_len(), None);
        let chunk = vec![b'x'; 1_000_000];
        assert_eq!(
            decoder.decode(&chunk),
            Decode::Frame {
                consumed: 1_000_000,
                frame: None
            }
        );
        assert_eq!(
            decoder.decode(&chunk[..999_999]),
            Decode::Frame {
                consumed: 999_999,
                frame: None
            }
        );
        assert_eq!(decoder.decode(b""), Decode::NeedMore);
        // Three bytes left to drop; the rest of the buffer is not touched.
        assert_eq!(
            decoder.decode(b"x\r\nversion\r\n"),
            Decode::Frame {
                consumed: 3,
                frame: Some(too_large(Some(b"k"), false))
            }
        );
        assert!(!decoder.in_data_block());
        assert_eq!(
            decoder.decode(b"version\r\n"),
            Decode::Frame {
                consumed: 9,
                frame: Some(cmd(Request::Version))
            }
        );
    }

    #[test]
    fn too_large_boundary_follows_the_item_size() {
        // Default -I 1m with CAS: value + key + 59 (+4 with flags) <= 1 MiB.
        let fits = |line: &str| {
            let mut d = Decoder::new(Limits::default());
            match d.decode(line.as_bytes()) {
                Decode::NeedMore => {
                    assert!(d.in_data_block());
                    true
                }
                Decode::Frame { frame: None, .. } => false,
                other => panic!("{line}: {other:?}"),
            }
        };
        assert!(fits("set k 0 0 1048516\r\n"));
        assert!(!fits("set k 0 0 1048517\r\n"));
        assert!(!fits("set k 0 0 1048576\r\n"));
        assert!(fits("set k 1 0 1048512\r\n"));
        assert!(!fits("set k 1 0 1048513\r\n"));
        let k250 = "k".repeat(250);
        assert!(fits(&format!("set {k250} 0 0 1048267\r\n")));
        assert!(!fits(&format!("set {k250} 0 0 1048268\r\n")));
        // The largest accepted `bytes` only starts a swallow, no reservation.
        let mut d = Decoder::new(Limits::default());
        let line = b"set k 0 0 2147483645\r\n";
        assert_eq!(
            d.decode(line),
            Decode::Frame {
                consumed: line.len(),
                frame: None
            }
        );
        assert!(d.in_data_block());
        assert_eq!(d.wanted_len(), None);
        // A whole too-large request in one buffer gives the rejection at once.
        let mut input = b"replace k 0 0 1048576\r\n".to_vec();
        input.resize(input.len() + 1048578, b'.');
        assert_eq!(first(&input), (input.len(), too_large(None, false)));
    }

    #[test]
    fn long_lines_close_the_connection() {
        let close = |input: &[u8]| {
            Decoder::new(Limits::default()).decode(input)
                == Decode::Frame {
                    consumed: input.len(),
                    frame: Some(Frame::Close),
                }
        };
        let need_more =
            |input: &[u8]| Decoder::new(Limits::default()).decode(input) == Decode::NeedMore;
        assert!(need_more(&[b'a'; LINE_MAX_LEN]));
        assert!(close(&[b'a'; LINE_MAX_LEN + 1]));
        let mut line = vec![b'a'; LINE_MAX_LEN];
        line.extend_from_slice(b"\r\n");
        assert_eq!(first(&line), (line.len(), unknown()));
        // A long line that arrives whole with its newline is read, as long
        // as the newline is within memcached's 16 KiB read buffer.
        let mut line = vec![b'a'; 16_000];
        line.extend_from_slice(b"\r\n");
        assert_eq!(first(&line), (line.len(), unknown()));
        let mut line = vec![b'a'; 20_000];
        line.extend_from_slice(b"\r\n");
        assert!(close(&line));
        // get/gets lines may grow, after at most 100 leading spaces.
        let long_key = "a".repeat(3000);
        assert!(need_more(format!("get {long_key}").as_bytes()));
        assert!(need_more(format!("gets {long_key}").as_bytes()));
        assert!(need_more(
            format!("{}get {long_key}", " ".repeat(100)).as_bytes()
        ));
        assert!(close(
            format!("{}get {long_key}", " ".repeat(101)).as_bytes()
        ));
        assert!(close(format!("get\t{long_key}").as_bytes()));
        assert!(close(format!("gat 10 {long_key}").as_bytes()));
        assert!(close(format!("bget {long_key}").as_bytes()));
        // (whose leading space then names no command, in memcached 1.6.45)
        let line = format!("{}get {long_key}\r\n", " ".repeat(100));
        assert_eq!(first(line.as_bytes()), (line.len(), unknown()));
        let line = format!("get {long_key}\r\n");
        assert_eq!(first(line.as_bytes()), (line.len(), get_key_too_long()));
        // ... up to our own bound.
        let mut huge = b"get ".to_vec();
        huge.resize(GET_LINE_MAX_LEN, b'k');
        assert!(need_more(&huge));
        huge.push(b'k');
        assert!(close(&huge));
    }

    #[test]
    fn long_get_line_arriving_slowly() {
        let mut line = b"get".to_vec();
        for i in 0..20_000 {
            line.extend_from_slice(format!(" key{i}").as_bytes());
        }
        line.extend_from_slice(b"\r\nmn\r\n");
        let (seen, max_buf) = feed_in_chunks(Limits::default(), &line, 1000);
        assert_eq!(seen, vec![Seen::Get { keys: 20_000 }, Seen::Noop]);
        assert!(max_buf >= line.len() - 1000);
        // After a long line the scan restarts for the next one.
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = line[..line.len() - 10].to_vec();
        assert_eq!(decoder.decode(&buf), Decode::NeedMore);
        buf.extend_from_slice(&line[line.len() - 10..]);
        let Decode::Frame { consumed, .. } = decoder.decode(&buf) else {
            panic!()
        };
        assert_eq!(
            decoder.decode(&buf[consumed..]),
            Decode::Frame {
                consumed: 4,
                frame: Some(cmd(Request::MetaNoop))
            }
        );
    }

    #[test]
    fn a_binary_magic_byte_is_text_to_the_text_decoder() {
        // The session picks the protocol; once text, a 0x80 is a bad
        // command like any other (memcached -B ascii: `ERROR`).
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.decode(b""), Decode::NeedMore);
        assert_eq!(
            d.decode(b"\x80\x0b\0\0\r\n"),
            Decode::Frame {
                consumed: 6,
                frame: Some(unknown())
            }
        );
        let (frames, _) = decode_all(b"mn\r\n\x80\r\n");
        assert_eq!(
            frames,
            vec![(4, Some(cmd(Request::MetaNoop))), (3, Some(bad_format()))]
        );
    }

    #[test]
    fn newline_search_matches_a_plain_scan() {
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let len = rng.below(40) as usize;
            // Bytes one bit away from `\n` (0x8a, 0x0b) catch a wrong mask.
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(4) {
                    0 => b'\n',
                    1 => 0x8a,
                    2 => 0x0b,
                    _ => rng.next_u64() as u8,
                })
                .collect();
            assert_eq!(
                find_newline(&bytes),
                bytes.iter().position(|&b| b == b'\n'),
                "{bytes:?}"
            );
        }
    }

    /// Random input never panics, and every frame consumes something that
    /// was there.
    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&[u8]] = &[
            b"set",
            b"add",
            b"cas",
            b"get",
            b"gets",
            b"gat",
            b"gats",
            b"delete",
            b"incr",
            b"decr",
            b"touch",
            b"flush_all",
            b"verbosity",
            b"stats",
            b"shutdown",
            b"cache_memlimit",
            b"mn",
            b"mg",
            b"ms",
            b"md",
            b"ma",
            b"me",
            b"b",
            b"q",
            b"v",
            b"T5",
            b"O1",
            b"MA",
            b"Zm9v",
            b"version",
            b"quit",
            b"noreply",
            b"HTTP/1.1",
            b"0",
            b"1",
            b"5",
            b"-1",
            b"+2",
            b"4294967297",
            b"99999999999",
            b"2147483645",
            b"18446744073709551616",
            b"k",
            b"key",
            b" ",
            b" ",
            b" ",
            b"\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"\0",
            b"\t",
            b"\x80",
            b"abc",
        ];
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let tiny = Limits {
            item_size_max: 80,
            cas_enabled: false,
        };
        for round in 0..4000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(24) {
                // Mostly protocol words, sometimes a few raw bytes.
                if rng.below(5) == 0 {
                    let n = rng.below(8);
                    input.extend((0..n).map(|_| rng.next_u64() as u8));
                } else {
                    input.extend_from_slice(rng.pick::<&[u8]>(PIECES));
                }
            }
            let limits = if round % 2 == 0 {
                Limits::default()
            } else {
                tiny
            };
            // Whole buffer at once.
            let mut decoder = Decoder::new(limits);
            let mut buf = &input[..];
            loop {
                match decoder.decode(buf) {
                    Decode::NeedMore => break,
                    Decode::Frame { consumed, frame } => {
                        assert!(consumed > 0 && consumed <= buf.len(), "{input:?}");
                        buf = &buf[consumed..];
                        if frame == Some(Frame::Close) {
                            break;
                        }
                    }
                }
            }
            // And in random pieces through a growing buffer.
            let mut decoder = Decoder::new(limits);
            let mut pending: Vec<u8> = Vec::new();
            let mut rest = &input[..];
            'feed: while !rest.is_empty() {
                let n = 1 + rng.below(9) as usize;
                let n = n.min(rest.len());
                pending.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match decoder.decode(&pending) {
                        Decode::NeedMore => break,
                        Decode::Frame { consumed, frame } => {
                            assert!(consumed > 0 && consumed <= pending.len(), "{input:?}");
                            let close = frame == Some(Frame::Close);
                            pending.drain(..consumed);
                            if close {
                                break 'feed;
                            }
                        }
                    }
                }
            }
        }
    }

    fn meta_err(error: ProtocolError) -> Option<Frame<'static>> {
        Some(err(error))
    }

    fn meta_rejected(
        error: ProtocolError,
        unlink: Option<&'static [u8]>,
    ) -> Option<Frame<'static>> {
        Some(Frame::Rejected(Rejected {
            error,
            noreply: false,
            unlink_key: unlink.map(Bytes::from_static),
            counts_as_set: false,
        }))
    }

    /// The frames of `input` without their sizes; everything must be consumed.
    fn frames_of(input: &[u8]) -> Vec<Option<Frame<'_>>> {
        let (frames, rest) = decode_all(input);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(rest));
        frames.into_iter().map(|(_, f)| f).collect()
    }

    /// The meta command of a frame, if it is one.
    fn meta_of<'a>(frame: &Option<Frame<'a>>) -> crate::protocol::request::MetaCommand<'a> {
        match frame {
            Some(Frame::Request(Request::Meta(m))) => *m,
            other => panic!("expected a meta command, got {other:?}"),
        }
    }

    #[test]
    fn ms_reads_its_data_block() {
        let frames = frames_of(b"ms k 5 T10 c\r\nhello\r\nms k 0\r\n\r\n");
        assert_eq!(frames.len(), 2);
        let m = meta_of(&frames[0]);
        assert_eq!(
            (m.key.token(), m.value, m.flags.ttl),
            (&b"k"[..], &b"hello"[..], Some(10))
        );
        assert_eq!(meta_of(&frames[1]).value, b"");
        // The block may hold anything, CRLFs included.
        let m = meta_of(&frames_of(b"ms k 4\r\n\r\n\r\n\r\n")[0]);
        assert_eq!(m.value, b"\r\n\r\n");
    }

    /// memcached 1.6.18: `ms k 2 Y\r\nhi\r\nmn\r\n` -> `CLIENT_ERROR invalid
    /// flag`, `MN`; errors before the data length leave the block as a line.
    #[test]
    fn ms_errors_swallow_the_block_once_its_length_is_known() {
        use ProtocolError::*;
        let k251 = "k".repeat(251);
        let cases: Vec<(String, Vec<Option<Frame<'static>>>)> = vec![
            (
                "ms k 2 Y\r\nhi\r\nmn\r\n".into(),
                vec![meta_rejected(InvalidFlag, None)],
            ),
            (
                "ms k 2 T1 T2\r\nhi\r\nmn\r\n".into(),
                vec![meta_rejected(DuplicateFlag, None)],
            ),
            (
                "ms k 2 M\r\nhi\r\nmn\r\n".into(),
                vec![meta_rejected(InvalidSetMode, None)],
            ),
            (
                "ms k 2 Mx\r\nhi\r\nmn\r\n".into(),
                vec![meta_rejected(InvalidSetMode, None)],
            ),
            (
                "ms !!!! 2 b\r\nhi\r\nmn\r\n".into(),
                vec![meta_rejected(KeyDecode, None)],
            ),
            // the swallowed block may look like commands
            (
                "ms k 6 Y q\r\nmn\r\nmn\r\nmn\r\n".into(),
                vec![meta_rejected(InvalidFlag, None)],
            ),
            (
                "ms k\r\nmn\r\n".into(),
                vec![meta_err(BadCommandLineFormat)],
            ),
            (
                "ms k abc\r\nxx\r\nmn\r\n".into(),
                vec![meta_err(BadCommandLineFormat), Some(unknown())],
            ),
            (
                // a long key too (memcached 1.6.45)
                format!("ms {k251} 2 Y\r\nhi\r\nmn\r\n"),
                vec![meta_rejected(BadCommandLineFormat, None)],
            ),
            (
                // 21 words: found by the flag scan, after the length
                "ms k 1 s t c f h l k v O1 u P L I F1 C1 MS J1 D1\r\nx\r\nmn\r\n".into(),
                vec![meta_rejected(GetFlagsTooLong, None)],
            ),
            // A bad chunk is reported even with q, and parsing resumes after it.
            (
                "ms k 2 q\r\nhiX\r\nmn\r\n".into(),
                vec![Some(bad_chunk(false)), Some(bad_format())],
            ),
        ];
        for (input, mut want) in cases {
            want.push(Some(cmd(Request::MetaNoop)));
            assert_eq!(frames_of(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn too_large_ms_unlinks_the_decoded_key_in_any_mode() {
        for (line, unlink) in [
            ("ms k 2000000 MA\r\n", &b"k"[..]),
            ("ms Zm9vYmFy 2000000 b ME q\r\n", b"foobar"),
        ] {
            let mut input = line.as_bytes().to_vec();
            input.resize(input.len() + 2_000_002, b'x');
            input.extend_from_slice(b"mn\r\n");
            let (seen, _) = feed_in_chunks(Limits::default(), &input, 4096);
            assert_eq!(
                seen,
                vec![
                    Seen::Rejected(Rejected {
                        error: ProtocolError::TooLarge,
                        noreply: false,
                        unlink_key: Some(Bytes::copy_from_slice(unlink)),
                        counts_as_set: false,
                    }),
                    Seen::Noop
                ],
                "{line}"
            );
        }
        // The limit counts the decoded key: "Zm9v" is a 3-byte key.
        let fits = |line: &str| {
            let mut d = Decoder::new(Limits::default());
            matches!(d.decode(line.as_bytes()), Decode::NeedMore) && d.in_data_block()
        };
        assert!(fits("ms Zm9v 1048514 b\r\n"));
        assert!(!fits("ms Zm9v 1048515 b\r\n"));
        assert!(fits("ms Zm9v 1048510 b F1\r\n"));
        assert!(!fits("ms Zm9v 1048511 b F1\r\n"));
    }

    #[test]
    fn ms_refusal_swallowed_in_chunks() {
        let mut stream = b"ms k 100000 Y\r\n".to_vec();
        stream.extend(b"mg k v\r\n".repeat(12_500));
        stream.extend_from_slice(b"\r\nms k 1 q\r\nx\r\nmn\r\n");
        for chunk in [1, 7, 4096] {
            let (seen, _) = feed_in_chunks(Limits::default(), &stream, chunk);
            assert_eq!(
                seen,
                vec![
                    Seen::Rejected(Rejected {
                        error: ProtocolError::InvalidFlag,
                        noreply: false,
                        unlink_key: None,
                        counts_as_set: false,
                    }),
                    Seen::Meta { value_len: 1 },
                    Seen::Noop
                ],
                "chunk {chunk}"
            );
        }
    }

    /// memcached 1.6.18's pipelining pattern: quiet commands, then `mn`.
    #[test]
    fn quiet_meta_pipeline_with_classic_commands() {
        let input = b"mg k1 v O1 q\r\nmg k2 v O2 q\r\nms k3 1 q T0\r\nx\r\nget k1\r\n\
md k3 q\r\nma n q N0\r\nbogus\r\nmg k1 s O3 q\r\nmn\r\n";
        let frames = frames_of(input);
        let summary: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Some(Frame::Request(Request::Meta(m))) => format!(
                    "{:?} {} q={}",
                    m.op,
                    String::from_utf8_lossy(m.key.token()),
                    m.flags.quiet()
                ),
                Some(Frame::Request(Request::Get { .. })) => "get".into(),
                Some(Frame::Request(Request::MetaNoop)) => "mn".into(),
                Some(Frame::Error { error, .. }) => error.wire().into(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "Get k1 q=true",
                "Get k2 q=true",
                "Set { mode: Set } k3 q=true",
                "get",
                "Delete k3 q=true",
                "Arith { incr: true } n q=true",
                "ERROR",
                "Get k1 q=true",
                "mn"
            ]
        );
    }
}
