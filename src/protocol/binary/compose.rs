//! Response packets: the bytes of each kind of binary reply. Which reply a
//! request gets, and whether its quiet opcode hides it, is decided in
//! `reply.rs` ([`crate::protocol::reply::Wire`]); this file only spells.
//!
//! A response header carries the request's opcode (the quiet form when it
//! was quiet) and its opaque unchanged, and the CAS of the item the reply
//! is about, 0 when there is none.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::{HEADER_LEN, RESPONSE_MAGIC, ReplyTo, Status, opcode};

/// A response header.
fn header(
    out: &mut BytesMut,
    to: ReplyTo,
    status: Status,
    extlen: u8,
    keylen: usize,
    bodylen: usize,
    cas: u64,
) {
    out.reserve(HEADER_LEN + bodylen);
    out.put_u8(RESPONSE_MAGIC);
    out.put_u8(to.opcode);
    out.put_u16(keylen as u16);
    out.put_u8(extlen);
    // Data type: raw bytes.
    out.put_u8(0);
    out.put_u16(status as u16);
    out.put_u32(bodylen as u32);
    out.put_u32(to.opaque);
    out.put_u64(cas);
}

/// A success with `body` (empty for most).
pub fn success(out: &mut BytesMut, to: ReplyTo, cas: u64, body: &[u8]) {
    header(out, to, Status::Success, 0, 0, body.len(), cas);
    out.put_slice(body);
}

/// An error: the status, and its text as the body.
pub fn error(out: &mut BytesMut, to: ReplyTo, status: Status) {
    error_text(out, to, status, status.message());
}

/// An error whose body is `text`.
pub fn error_text(out: &mut BytesMut, to: ReplyTo, status: Status, text: &str) {
    let text = text.as_bytes();
    header(out, to, status, 0, 0, text.len(), 0);
    out.put_slice(text);
}

/// The miss of a get that returns its key: not found, the key as body.
pub fn miss_with_key(out: &mut BytesMut, to: ReplyTo, key: &[u8]) {
    header(out, to, Status::KeyNotFound, 0, key.len(), key.len(), 0);
    out.put_slice(key);
}

/// A hit: the flags as extras, then the key if asked for, then the value
/// unless it is a Touch.
pub fn hit(
    out: &mut BytesMut,
    to: ReplyTo,
    flags: u32,
    key: Option<&[u8]>,
    value: &[u8],
    cas: u64,
) {
    let key = key.unwrap_or_default();
    let value: &[u8] = if to.opcode == opcode::TOUCH {
        &[]
    } else {
        value
    };
    header(
        out,
        to,
        Status::Success,
        4,
        key.len(),
        4 + key.len() + value.len(),
        cas,
    );
    out.put_u32(flags);
    out.put_slice(key);
    out.put_slice(value);
}

/// Increment/Decrement: the new value, 8 bytes.
pub fn counter(out: &mut BytesMut, to: ReplyTo, value: u64, cas: u64) {
    header(out, to, Status::Success, 0, 0, 8, cas);
    out.put_u64(value);
}

/// One statistic: its name as key, its value as text. memcached sends
/// every stat packet with the Stat opcode; the empty one ends the list.
pub fn stat(out: &mut BytesMut, opaque: u32, name: &[u8], value: &dyn fmt::Display) {
    use std::fmt::Write;
    let to = ReplyTo {
        opcode: opcode::STAT,
        opaque,
    };
    let start = out.len();
    header(out, to, Status::Success, 0, name.len(), 0, 0);
    out.put_slice(name);
    let value_start = out.len();
    // BytesMut's fmt::Write cannot fail.
    let _ = write!(out, "{value}");
    let bodylen = (out.len() - value_start + name.len()) as u32;
    out[start + 8..start + 12].copy_from_slice(&bodylen.to_be_bytes());
}

/// The empty stat packet that ends a stats listing.
pub fn stats_end(out: &mut BytesMut, opaque: u32) {
    let to = ReplyTo {
        opcode: opcode::STAT,
        opaque,
    };
    header(out, to, Status::Success, 0, 0, 0, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: ReplyTo = ReplyTo {
        opcode: opcode::GETK,
        opaque: 0xdead_beef,
    };

    #[test]
    fn headers_echo_opcode_and_opaque_and_carry_cas() {
        let mut out = BytesMut::new();
        hit(&mut out, TO, 7, Some(b"k"), b"v", 9);
        assert_eq!(
            &out[..],
            &[
                0x81, 0x0c, 0, 1, 4, 0, 0, 0, 0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0,
                0, 9, 0, 0, 0, 7, b'k', b'v'
            ][..]
        );
    }

    #[test]
    fn errors_carry_memcacheds_text() {
        let mut out = BytesMut::new();
        error(&mut out, TO, Status::KeyNotFound);
        assert_eq!(out[7], 1);
        assert_eq!(&out[8..12], &9u32.to_be_bytes());
        assert_eq!(&out[HEADER_LEN..], b"Not found");
    }

    #[test]
    fn a_touch_hit_returns_flags_only() {
        let to = ReplyTo {
            opcode: opcode::TOUCH,
            opaque: 1,
        };
        let mut out = BytesMut::new();
        hit(&mut out, to, 5, None, b"value", 3);
        assert_eq!(out.len(), HEADER_LEN + 4);
        assert_eq!(&out[8..12], &4u32.to_be_bytes());
    }

    #[test]
    fn stat_lengths_are_patched_after_the_value() {
        let mut out = BytesMut::new();
        stat(&mut out, 4, b"pid", &12345);
        assert_eq!(out[1], opcode::STAT);
        assert_eq!(&out[2..4], &3u16.to_be_bytes());
        assert_eq!(&out[8..12], &8u32.to_be_bytes());
        assert_eq!(&out[HEADER_LEN..], b"pid12345");
        stats_end(&mut out, 4);
        assert_eq!(out.len(), HEADER_LEN * 2 + 8);
    }
}
