//! Invariants of the binary request decoder over arbitrary bytes.
//!
//! Input layout: byte 0 picks the limits and whether SASL is on, bytes 1..3
//! seed where the stream is cut, the rest is the stream a client sends.
//!
//! - decoding never panics;
//! - every frame consumes at least one byte and no more than is buffered;
//! - every slice a command holds (key, value, SASL data) lies inside the
//!   bytes that frame consumed, and a key is at most 250 bytes;
//! - the buffer it asks for (`wanted_len`) is bounded by the largest header,
//!   extras and key, or by the item limit for a value: a declared body of
//!   gigabytes is never waited for whole;
//! - the stream decoded whole, cut at one point, and cut in many pieces
//!   gives the same frames in the same order. A close (bad magic) ends the
//!   stream at the same frame in every decoding.

use ferrocache::item_rules::Limits;
use ferrocache::protocol::binary::decode::Decoder;
use ferrocache::protocol::binary::{BinaryOp, HEADER_LEN};
use ferrocache::protocol::codec::Decode;
use ferrocache::protocol::{Frame, KEY_MAX_LEN, Request};

use crate::Rng;
use crate::decoder::limits_for;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<String>,
    closed: bool,
}

pub fn check(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let limits = limits_for(data[0]);
    let sasl = data[0] & 0x80 != 0;
    let seed = u64::from(u16::from_le_bytes([data[1], data[2]]));
    let stream = &data[3..];

    let whole = decode_in_pieces(limits, sasl, stream, &[stream.len()]);
    let cut = if stream.is_empty() {
        0
    } else {
        (seed as usize) % (stream.len() + 1)
    };
    let once = decode_in_pieces(limits, sasl, stream, &[cut, stream.len() - cut]);
    assert_eq!(whole, once, "cut once at {cut}");

    let mut rng = Rng::new(seed ^ 0x0b1a_2727_9393_1111);
    let mut pieces = Vec::new();
    let mut left = stream.len();
    while left > 0 {
        let n = (1 + rng.below(33) as usize).min(left);
        pieces.push(n);
        left -= n;
    }
    let many = decode_in_pieces(limits, sasl, stream, &pieces);
    assert_eq!(whole, many, "cut in many pieces");
}

fn decode_in_pieces(limits: Limits, sasl: bool, stream: &[u8], pieces: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(limits, sasl);
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut out = Outcome {
        frames: Vec::new(),
        closed: false,
    };
    // The most a request may need buffered before it is decoded.
    let bound = HEADER_LEN + 255 + usize::from(u16::MAX) + limits.item_size_max;
    for &n in pieces {
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&buf) {
                Decode::NeedMore => {
                    if let Some(want) = decoder.wanted_len() {
                        assert!(want <= bound, "wants {want} bytes buffered");
                        assert!(want > buf.len(), "wants what it has");
                    }
                    break;
                }
                Decode::Frame { consumed, frame } => {
                    assert!(consumed > 0, "a frame consumed nothing");
                    assert!(consumed <= buf.len(), "consumed more than buffered");
                    if let Some(frame) = &frame {
                        borrows_within(frame, &buf[..consumed]);
                        out.frames.push(format!("{frame:?}"));
                    }
                    if frame == Some(Frame::Close) {
                        out.closed = true;
                        return out;
                    }
                    buf.drain(..consumed);
                }
            }
        }
    }
    assert_eq!(
        decoder.decode(&buf),
        Decode::NeedMore,
        "a second look at the same bytes found a frame"
    );
    out
}

fn borrows_within(frame: &Frame<'_>, consumed: &[u8]) {
    let Frame::Request(Request::Binary(cmd)) = frame else {
        return;
    };
    let range = consumed.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        s.is_empty() || (r.start >= range.start && r.end <= range.end)
    };
    assert!(cmd.key.len() <= KEY_MAX_LEN, "key length");
    assert!(inside(cmd.key), "the key lies outside the packet");
    match cmd.op {
        BinaryOp::Store { value, .. } | BinaryOp::SaslAuth { data: value, .. } => {
            assert!(inside(value), "the value lies outside the packet");
        }
        _ => {}
    }
}
