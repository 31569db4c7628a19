//! The keys of the requests at the start of a buffer, found without
//! decoding them, for a driver to prefetch what the store will read before the requests run
//! (see the store's `prefetch.rs`). A guess: it reads only complete lines
//! and whole binary packets, stops at anything it does not follow, and
//! nothing depends on what it finds being keys.

use super::binary::{HEADER_LEN, REQUEST_MAGIC};
use super::number::token_u64;
use super::tokens::Tokens;

/// The longest text line looked into: a `get` of a dozen or more keys.
const LINE_MAX: usize = 512;

/// Calls `f` with the keys of the requests that start `input`, at most
/// `max` of them: each key of a text `get`, `gets`, `gat` or `gats` line,
/// the word after the command of any other text line (past a storage
/// command's data block), and a binary request's key.
pub fn keys(mut input: &[u8], max: usize, mut f: impl FnMut(&[u8])) {
    let mut left = max;
    while left > 0 {
        let Some(&first) = input.first() else {
            return;
        };
        let next = if first == REQUEST_MAGIC {
            binary_key(input, &mut f, &mut left)
        } else {
            text_keys(input, &mut f, &mut left)
        };
        match next {
            Some(rest) => input = rest,
            None => return,
        }
    }
}

/// A binary packet's key; the input after the packet.
fn binary_key<'a>(
    input: &'a [u8],
    f: &mut impl FnMut(&[u8]),
    left: &mut usize,
) -> Option<&'a [u8]> {
    let header = input.get(..HEADER_LEN)?;
    let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let extras = usize::from(header[4]);
    let body = u32::from_be_bytes(header[8..12].try_into().ok()?) as usize;
    let packet = input.get(..HEADER_LEN.checked_add(body)?)?;
    if key_len > 0 {
        f(packet.get(HEADER_LEN + extras..HEADER_LEN + extras + key_len)?);
        *left -= 1;
    }
    Some(&input[packet.len()..])
}

/// A text line's keys; the input after the line and any data block.
fn text_keys<'a>(input: &'a [u8], f: &mut impl FnMut(&[u8]), left: &mut usize) -> Option<&'a [u8]> {
    // A line longer than this is not looked for: the search would cost
    // more than the prefetch saves (a receive holding a large value's
    // bytes has no line at all).
    let end = input.iter().take(LINE_MAX).position(|&b| b == b'\n')?;
    let line = &input[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut rest = &input[end + 1..];
    let words = Tokens::new(line);
    let command = words.get(0);
    // The word that holds a storage command's data length.
    let mut data_len = None;
    let first_key = match command {
        b"get" | b"gets" => 1,
        b"gat" | b"gats" => 2,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            data_len = Some(4);
            1
        }
        b"ms" => {
            data_len = Some(2);
            1
        }
        _ => 1,
    };
    let all = matches!(command, b"get" | b"gets" | b"gat" | b"gats");
    let last = if all { words.words() } else { first_key + 1 };
    for i in first_key..last.min(words.words()) {
        if *left == 0 {
            break;
        }
        f(words.get(i));
        *left -= 1;
    }
    if let Some(i) = data_len {
        let len = usize::try_from(token_u64(words.get(i))?).ok()?;
        rest = rest.get(len.checked_add(2)?..)?;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        keys(input, max, |k| out.push(k.to_vec()));
        out
    }

    #[test]
    fn text_requests_give_their_keys() {
        let input = b"get a bb\r\nmg c v\r\nset d 0 0 3\r\nxyz\r\nms e 2 T0\r\nhi\r\ngat 10 f g\r\ndelete h\r\n";
        assert_eq!(
            found(input, 100),
            [&b"a"[..], b"bb", b"c", b"d", b"e", b"f", b"g", b"h"]
        );
        assert_eq!(found(input, 3), [&b"a"[..], b"bb", b"c"]);
    }

    #[test]
    fn it_stops_at_what_it_cannot_follow() {
        // A partial line, a data block not all here, a length not a number.
        assert_eq!(found(b"get a\r\nget b", 10), [b"a"]);
        assert_eq!(found(b"set a 0 0 10\r\nabc", 10), [b"a"]);
        assert_eq!(found(b"set a 0 0 x\r\nget b\r\n", 10), [b"a"]);
        assert!(found(b"", 10).is_empty());
        // A line too long to look for its end in.
        let long = [b"get a".as_slice(), &[b' '; LINE_MAX], b"\r\n"].concat();
        assert!(found(&long, 10).is_empty());
    }

    #[test]
    fn binary_requests_give_their_keys() {
        let mut get = vec![REQUEST_MAGIC, 0x00, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3];
        get.resize(HEADER_LEN, 0);
        get.extend_from_slice(b"abc");
        let mut set = vec![REQUEST_MAGIC, 0x01, 0, 2, 8, 0, 0, 0, 0, 0, 0, 12];
        set.resize(HEADER_LEN, 0);
        set.extend_from_slice(&[0; 8]);
        set.extend_from_slice(b"kvv");
        set.push(b'v');
        let input = [get.clone(), set, get[..HEADER_LEN + 1].to_vec()].concat();
        assert_eq!(found(&input, 10), [&b"abc"[..], b"kv"]);
    }
}
