//! What the protocol's unit tests share: frames as the decoder returns
//! them, and decoding driven the way a connection drives it. The command
//! tables in `classic` and the framing tests in `codec` both go through the
//! decoder, so each case also checks how much of the input it consumed.

use super::codec::{Decode, Decoder};
use super::{Frame, Keys, ProtocolError, Request};
use crate::item_rules::{Limits, StoreMode};

/// An error reply that `noreply` does not hide.
pub fn err(error: ProtocolError) -> Frame<'static> {
    Frame::Error {
        error,
        noreply: false,
        counts_as_set: false,
    }
}

/// An error reply hidden by a final `noreply`.
pub fn err_quiet(error: ProtocolError) -> Frame<'static> {
    Frame::Error {
        error,
        noreply: true,
        counts_as_set: false,
    }
}

/// `ERROR`.
pub fn unknown() -> Frame<'static> {
    err(ProtocolError::UnknownCommand)
}

/// `CLIENT_ERROR bad command line format`.
pub fn bad_format() -> Frame<'static> {
    err(ProtocolError::BadCommandLineFormat)
}

/// A storage line refused once its data block is swallowed, with
/// `CLIENT_ERROR bad command line format`.
pub fn refused(noreply: bool) -> Frame<'static> {
    Frame::Rejected(super::Rejected {
        error: ProtocolError::BadCommandLineFormat,
        noreply,
        unlink_key: None,
        counts_as_set: false,
    })
}

/// A retrieval key over 250 bytes.
pub fn get_key_too_long() -> Frame<'static> {
    err(ProtocolError::RetrievalKeyTooLong)
}

/// A data block not followed by CRLF; it counts in `cmd_set`.
pub fn bad_chunk(noreply: bool) -> Frame<'static> {
    Frame::Error {
        error: ProtocolError::BadDataChunk,
        noreply,
        counts_as_set: true,
    }
}

/// A complete storage command.
pub fn store<'a>(
    mode: StoreMode,
    key: &'a [u8],
    flags: u32,
    exptime: i64,
    value: &'a [u8],
    cas_unique: u64,
    noreply: bool,
) -> Frame<'a> {
    Frame::Request(Request::Store {
        mode,
        key,
        flags,
        exptime,
        value,
        cas_unique,
        noreply,
    })
}

/// A plain `set <key> 0 0 <len>` with its value.
pub fn set<'a>(key: &'a [u8], value: &'a [u8]) -> Frame<'a> {
    store(StoreMode::Set, key, 0, 0, value, 0, false)
}

/// A command frame.
pub fn cmd(c: Request<'_>) -> Frame<'_> {
    Frame::Request(c)
}

/// The raw key bytes of a command's key list, for comparisons.
pub fn key_list(keys: &Keys<'_>) -> Vec<Vec<u8>> {
    keys.iter().map(<[u8]>::to_vec).collect()
}

/// Decodes `input` with a fresh decoder as a connection would: every
/// frame (and swallowed chunk) with its `consumed`, and what is left.
pub fn decode_all(mut input: &[u8]) -> (Vec<(usize, Option<Frame<'_>>)>, &[u8]) {
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    loop {
        match decoder.decode(input) {
            Decode::NeedMore => return (out, input),
            Decode::Frame { consumed, frame } => {
                assert!(consumed > 0 && consumed <= input.len());
                input = &input[consumed..];
                let close = frame == Some(Frame::Close);
                out.push((consumed, frame));
                if close {
                    return (out, input);
                }
            }
        }
    }
}

/// The first frame of `input` and the bytes it consumed.
pub fn first(input: &[u8]) -> (usize, Frame<'_>) {
    match Decoder::new(Limits::default()).decode(input) {
        Decode::Frame {
            consumed,
            frame: Some(frame),
        } => (consumed, frame),
        other => panic!(
            "{:?}: expected a frame, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// Line-only requests: each gives its frame and consumes its whole input,
/// the line and nothing more.
pub fn assert_whole_lines(cases: &[(String, Frame<'_>)]) {
    let mut wrong = Vec::new();
    for (input, want) in cases {
        let bytes = input.as_bytes();
        let Decode::Frame {
            consumed,
            frame: Some(frame),
        } = Decoder::new(Limits::default()).decode(bytes)
        else {
            wrong.push(format!("input {input:?}: no frame, want {want:?}"));
            continue;
        };
        if &frame != want || consumed != bytes.len() {
            wrong.push(format!(
                "input {input:?}: got {frame:?} after {consumed} bytes, want {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
