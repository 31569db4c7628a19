//! Invariants of the request decoder over arbitrary bytes.
//!
//! Input layout: byte 0 picks the limits, bytes 1..3 seed where the stream
//! is cut, the rest is the stream a client sends.
//!
//! - decoding never panics;
//! - every frame consumes at least one byte and no more than is buffered;
//! - every slice a frame holds (key, value, key list) lies inside the bytes
//!   that frame consumed;
//! - the stream decoded whole and the stream arriving in pieces (cut at one
//!   point, and cut at many) give the same frames in the same order. The one
//!   allowed difference is memcached's own: a line that has grown past
//!   `LINE_MAX_LEN` bytes without its newline closes the connection, so a
//!   stream cut inside a long line may close where the whole one does not.
//!   Up to that close the frames must still agree.

use ferrocache::protocol::codec::{Decode, Decoder};
use ferrocache::item_rules::Limits;
use ferrocache::protocol::{Request, Frame, LINE_MAX_LEN};

use crate::Rng;

/// What one decoding of a stream produced.
#[derive(Debug)]
struct Outcome {
    /// Each frame, owned, in order (swallowed chunks leave none).
    frames: Vec<String>,
    /// Whether it ended in a close, and how much was buffered at that close.
    closed_with: Option<usize>,
    /// Total bytes consumed.
    consumed: usize,
}

pub fn limits_for(selector: u8) -> Limits {
    match selector % 3 {
        0 => Limits::default(),
        // Small enough that the fuzzer reaches "too large" and swallowing.
        1 => Limits {
            item_size_max: 96,
            cas_enabled: false,
        },
        _ => Limits {
            item_size_max: 1024,
            cas_enabled: true,
        },
    }
}

pub fn check(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let limits = limits_for(data[0]);
    let seed = u64::from(u16::from_le_bytes([data[1], data[2]]));
    let stream = &data[3..];

    let whole = decode_in_pieces(limits, stream, &[stream.len()]);
    let cut = if stream.is_empty() {
        0
    } else {
        (seed as usize) % (stream.len() + 1)
    };
    let once = decode_in_pieces(limits, stream, &[cut, stream.len() - cut]);
    agree(stream, &whole, &once);

    let mut rng = Rng::new(seed ^ 0x5151_2727_9393_1111);
    let mut pieces = Vec::new();
    let mut left = stream.len();
    while left > 0 {
        let n = (1 + rng.below(17) as usize).min(left);
        pieces.push(n);
        left -= n;
    }
    let many = decode_in_pieces(limits, stream, &pieces);
    agree(stream, &whole, &many);
}

/// Feeds `stream` to one decoder through a growing buffer, `pieces` bytes at
/// a time, decoding all it can after each piece, as a connection does.
fn decode_in_pieces(limits: Limits, stream: &[u8], pieces: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut out = Outcome {
        frames: Vec::new(),
        closed_with: None,
        consumed: 0,
    };
    for &n in pieces {
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let (consumed, close) = match decoder.decode(&buf) {
                Decode::NeedMore => break,
                Decode::Frame { consumed, frame } => {
                    assert!(consumed > 0, "a frame consumed nothing");
                    assert!(
                        consumed <= buf.len(),
                        "consumed {consumed} of {} buffered",
                        buf.len()
                    );
                    let close = frame == Some(Frame::Close);
                    if let Some(frame) = &frame {
                        borrows_within(frame, &buf[..consumed]);
                        out.frames.push(format!("{frame:?}"));
                    }
                    (consumed, close)
                }
            };
            if close {
                out.closed_with = Some(buf.len());
                out.consumed += consumed;
                return out;
            }
            buf.drain(..consumed);
            out.consumed += consumed;
        }
    }
    // Whatever is left must be an incomplete request: decoding it again
    // without new bytes still needs more.
    assert_eq!(
        decoder.decode(&buf),
        Decode::NeedMore,
        "a second look at the same bytes found a frame"
    );
    out
}

/// Every slice the frame holds points into `consumed`.
fn borrows_within(frame: &Frame<'_>, consumed: &[u8]) {
    let range = consumed.as_ptr_range();
    let inside = |s: &[u8]| {
        let r = s.as_ptr_range();
        // An empty slice may sit anywhere; it borrows nothing.
        s.is_empty() || (r.start >= range.start && r.end <= range.end)
    };
    let slices: Vec<&[u8]> = match frame {
        Frame::Request(cmd) => match cmd {
            Request::Get { keys, .. } | Request::Gat { keys, .. } => {
                for k in keys.iter() {
                    assert!(!k.is_empty(), "an empty key in a key list");
                    assert!(!k.contains(&b' '), "a space inside a key");
                }
                vec![keys.raw()]
            }
            Request::Stats { args } => vec![args.raw()],
            Request::Store { key, value, .. } => {
                assert!(!key.is_empty() && key.len() <= 250, "key length");
                vec![key, value]
            }
            Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. } => {
                assert!(!key.is_empty() && key.len() <= 250, "key length");
                vec![key]
            }
            _ => vec![],
        },
        _ => vec![],
    };
    for s in slices {
        assert!(inside(s), "a frame borrows outside the bytes it consumed");
    }
}

fn agree(stream: &[u8], whole: &Outcome, split: &Outcome) {
    let show = || String::from_utf8_lossy(&stream[..stream.len().min(400)]).into_owned();
    if whole.closed_with.is_none() && split.closed_with.is_none() {
        assert_eq!(whole.frames, split.frames, "frames differ for {:?}", show());
        assert_eq!(whole.consumed, split.consumed, "consumed differs");
        return;
    }
    if whole.frames == split.frames {
        return;
    }
    // One closed where the other did not, or they closed at different
    // places: only an over-long partial line may do that, and the frames
    // before the close must agree.
    let before = |o: &Outcome| o.frames.len() - usize::from(o.closed_with.is_some());
    let (closer, other) = match (whole.closed_with, split.closed_with) {
        (Some(_), None) => (whole, split),
        (None, Some(_)) => (split, whole),
        _ if before(whole) <= before(split) => (whole, split),
        _ => (split, whole),
    };
    let n = before(closer).min(other.frames.len());
    assert_eq!(
        closer.frames[..n],
        other.frames[..n],
        "frames before a close differ for {:?}",
        show()
    );
    let at = closer.closed_with.expect("it closed");
    assert!(
        at > LINE_MAX_LEN,
        "closed with only {at} bytes buffered in one decoding but not the other: {:?}",
        show()
    );
}
