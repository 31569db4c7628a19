//! Per-connection framing: finds complete requests in the read buffer,
//! enforces the line-length limits, and swallows rejected data blocks.
//! (Skeleton: the parser helper fills this in.)

use super::{Frame, Limits};

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

/// Framing state of one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// Decodes the next request at the front of `buf`.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Decode<'a> {
        let _ = (buf, &self.limits);
        todo!()
    }

    /// True while a data block is being read or swallowed (idle timeout must not fire).
    pub fn in_data_block(&self) -> bool {
        false
    }
}
