//! Per-connection framing: finds complete requests in the read buffer,
//! enforces the line-length limits, and swallows rejected data blocks.
//!
//! The decoder never copies the buffer: a frame borrows it, and the caller
//! advances the buffer by `consumed` once the frame is handled. Between a
//! [`Decode::NeedMore`] and the next call the caller only appends to the
//! buffer, which lets the decoder remember how far it already looked for a
//! newline and how long a pending data block is.

use bytes::Bytes;

use super::classic::{self, Parsed, StoreHeader};
use super::{Frame, GET_LINE_MAX_LEN, LINE_MAX_LEN, Limits, ProtocolError, Rejected, StoreMode};

/// memcached reads into a 16 KiB buffer: a command line whose newline is not
/// in the first 16 KiB is closed even when it arrived in one write. Lines of
/// `get`/`gets` are the exception and may run to [`GET_LINE_MAX_LEN`].
const READ_WINDOW: usize = 16 * 1024;

/// First byte of a binary-protocol request; memcached switches protocol on it.
const BINARY_REQUEST_MAGIC: u8 = 0x80;

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
    /// Nothing read yet: the first byte decides the protocol.
    Fresh,
    /// Waiting for a command line; the first `scanned` bytes hold no `\n`.
    Line { scanned: usize },
    /// A storage line has been parsed and left at the front of the buffer;
    /// the request is complete once `need` bytes are buffered.
    Data { need: usize },
    /// Dropping the data block of a refused storage command.
    Swallow {
        remaining: usize,
        rejected: Rejected,
    },
    /// A [`Frame::Close`] was returned; nothing more is decoded.
    Closed,
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
            state: State::Fresh,
        }
    }

    /// Decodes the next request at the front of `buf`.
    ///
    /// A refused data block is swallowed as it arrives: each call drops what
    /// is buffered of it (`frame: None`), and the call that drops its last
    /// byte returns the [`Frame::Rejected`] with that final chunk.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decode<'a> {
        if buf.is_empty() {
            return Decode::NeedMore;
        }
        match &mut self.state {
            State::Fresh => {
                if buf[0] == BINARY_REQUEST_MAGIC {
                    return self.close(buf);
                }
                self.state = State::Line { scanned: 0 };
                self.decode_line(buf, 0)
            }
            State::Line { scanned } => {
                let scanned = *scanned;
                self.decode_line(buf, scanned)
            }
            State::Data { need } => {
                if buf.len() < *need {
                    return Decode::NeedMore;
                }
                // The whole request is buffered: parse its line again (it is
                // short) rather than keep offsets into an older buffer.
                self.state = State::Line { scanned: 0 };
                self.decode_line(buf, 0)
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
            State::Data { need } => Some(need),
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
    fn decode_line<'a>(&mut self, buf: &'a [u8], scanned: usize) -> Decode<'a> {
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
        let mut end = newline;
        // memcached strips one `\r`, and only from a line longer than itself.
        if end > 1 && buf[end - 1] == b'\r' {
            end -= 1;
        }
        // The line is a C string to memcached: it ends at the first NUL.
        let line = &buf[..end];
        let line = match line.iter().position(|&b| b == 0) {
            Some(nul) => &line[..nul],
            None => line,
        };
        match classic::parse_line(line) {
            Parsed::Frame(Frame::Close) => self.close(buf),
            Parsed::Frame(frame) => Decode::Frame {
                consumed,
                frame: Some(frame),
            },
            Parsed::Store(header) => self.decode_store(buf, consumed, header),
        }
    }

    /// A storage line of `line_len` bytes (newline included) has been parsed:
    /// refuse it if too large, else wait for its data block.
    fn decode_store<'a>(
        &mut self,
        buf: &'a [u8],
        line_len: usize,
        header: StoreHeader<'a>,
    ) -> Decode<'a> {
        // `header.bytes` is at most i32::MAX - 2, so these sums cannot overflow.
        let block_len = header.bytes + 2;
        if self
            .limits
            .too_large(header.key.len(), header.bytes, header.flags)
        {
            // memcached answers only once the whole block has been dropped,
            // and never buffers it. The attempt is not counted in cmd_set.
            let rejected = Rejected {
                error: ProtocolError::TooLarge,
                noreply: header.noreply,
                // A too-large `set` deletes the old value; the others keep it.
                unlink_key: (header.mode == StoreMode::Set)
                    .then(|| Bytes::copy_from_slice(header.key)),
                counts_as_set: false,
            };
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
            return Decode::Frame {
                consumed: line_len + take,
                frame: None,
            };
        }
        let need = line_len + block_len;
        if buf.len() < need {
            self.state = State::Data { need };
            return Decode::NeedMore;
        }
        let value = &buf[line_len..line_len + header.bytes];
        let frame = if &buf[line_len + header.bytes..need] == b"\r\n" {
            Frame::Command(header.with_value(value))
        } else {
            // The block is consumed all the same; parsing resumes after it.
            Frame::Error {
                error: ProtocolError::BadDataChunk,
                noreply: header.noreply,
                counts_as_set: true,
            }
        };
        Decode::Frame {
            consumed: need,
            frame: Some(frame),
        }
    }
}

/// memcached's exemption from the line limit: after at most 100 spaces, the
/// buffer starts with `get ` or `gets `.
fn starts_long_get(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > GET_LEADING_SPACES_MAX {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
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
