//! Replies to bytes. Everything appends to the connection's one write buffer,
//! which is sent once per batch of requests.
//!
//! Must not know the parsers or the store: callers pass the values to write,
//! and errors bring their own wire spelling ([`ProtocolError::wire`]).

use bytes::{BufMut, BytesMut};

use super::ProtocolError;

/// The one-word replies of the classic protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    End,
    Reset,
    MetaNoop,
}

impl Reply {
    /// The reply with its CRLF.
    pub fn wire(self) -> &'static [u8] {
        match self {
            Reply::Stored => b"STORED\r\n",
            Reply::NotStored => b"NOT_STORED\r\n",
            Reply::Exists => b"EXISTS\r\n",
            Reply::NotFound => b"NOT_FOUND\r\n",
            Reply::Deleted => b"DELETED\r\n",
            Reply::Touched => b"TOUCHED\r\n",
            Reply::Ok => b"OK\r\n",
            Reply::End => b"END\r\n",
            Reply::Reset => b"RESET\r\n",
            Reply::MetaNoop => b"MN\r\n",
        }
    }
}

pub fn reply(out: &mut BytesMut, r: Reply) {
    out.extend_from_slice(r.wire());
}

pub fn error(out: &mut BytesMut, e: ProtocolError) {
    out.extend_from_slice(e.wire().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn num(out: &mut BytesMut, n: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// A number on a line of its own (`incr`/`decr`).
pub fn number(out: &mut BytesMut, n: u64) {
    num(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
pub fn value(out: &mut BytesMut, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + data.len() + 48);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    num(out, flags as u64);
    out.put_u8(b' ');
    num(out, data.len() as u64);
    if let Some(cas) = cas {
        out.put_u8(b' ');
        num(out, cas);
    }
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// `VERSION <v>`.
pub fn version(out: &mut BytesMut, v: &str) {
    out.put_slice(b"VERSION ");
    out.put_slice(v.as_bytes());
    out.put_slice(b"\r\n");
}

/// `STAT <name> <value>`.
pub fn stat(out: &mut BytesMut, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    out.put_slice(b"STAT ");
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    // BytesMut's fmt::Write cannot fail.
    let _ = write!(out, "{value}");
    out.put_slice(b"\r\n");
}

/// A raw line; the caller provides the text without CRLF.
pub fn line(out: &mut BytesMut, text: &[u8]) {
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        let mut b = BytesMut::new();
        value(&mut b, b"k", 5, b"hello", None);
        value(&mut b, b"k", 0, b"", Some(7));
        assert_eq!(&b[..], b"VALUE k 5 5\r\nhello\r\nVALUE k 0 0 7\r\n\r\n");
    }

    #[test]
    fn errors_and_replies() {
        let mut b = BytesMut::new();
        error(&mut b, ProtocolError::TooLarge);
        reply(&mut b, Reply::Stored);
        number(&mut b, 18446744073709551615);
        stat(&mut b, "pid", 42);
        assert_eq!(
            &b[..],
            &b"SERVER_ERROR object too large for cache\r\nSTORED\r\n18446744073709551615\r\nSTAT pid 42\r\n"[..]
        );
    }
}
