//! Base64 as memcached 1.6's meta commands use it for binary keys (the `b`
//! flag): the decoder of memcached's `base64.c`, quirks included, and a
//! plain padded encoder for the keys echoed back by `k` and `me`.
//!
//! The decoder is not a strict RFC 4648 one, because memcached's is not:
//! bytes outside the alphabet are skipped, the input must hold a multiple of
//! four alphabet bytes (`=` counts as one), and decoding stops after the
//! first four-byte group that held any `=`. So `Zm9v!!!!YmFy` is `foobar`,
//! `Zm9vYQ==Zm9v` is `fooa`, and `Zg` or `====` fail. Clients see the
//! difference: the key they get back under `k` is the canonical encoding of
//! what was decoded.
//!
//! Must not know the meta commands' flags: it converts bytes, and `meta`
//! decides when a key is base64.

use bytes::{BufMut, BytesMut};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte outside the alphabet in [`DECODE`].
const SKIP: u8 = 0x80;

/// Byte -> 6-bit value; `=` decodes as 0, as in memcached's table.
const DECODE: [u8; 256] = {
    let mut table = [SKIP; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = 0;
    table
};

/// Decodes `src` into `out` the way memcached's `base64_decode` does and
/// returns the decoded length; 0 means the key is refused ("error decoding
/// key"), which is also what an empty result gives.
pub fn decode(src: &[u8], out: &mut [u8]) -> usize {
    let count = src.iter().filter(|&&b| DECODE[b as usize] != SKIP).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return 0;
    }
    let mut pos = 0;
    let mut block = [0u8; 4];
    let mut filled = 0;
    let mut pad = 0;
    for &b in src {
        let v = DECODE[b as usize];
        if v == SKIP {
            continue;
        }
        if b == b'=' {
            pad += 1;
        }
        block[filled] = v;
        filled += 1;
        if filled == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            filled = 0;
            if pad > 0 {
                match pad {
                    1 => pos -= 1,
                    2 => pos -= 2,
                    // More padding than a group can hold.
                    _ => return 0,
                }
                break;
            }
        }
    }
    pos
}

/// Appends the padded encoding of `src`.
pub fn encode(src: &[u8], out: &mut BytesMut) {
    out.reserve(src.len().div_ceil(3) * 4);
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.put_u8(ALPHABET[(n >> shift) as usize & 63]);
        }
    }
    match *chunks.remainder() {
        [a] => {
            out.put_u8(ALPHABET[usize::from(a >> 2)]);
            out.put_u8(ALPHABET[usize::from(a & 3) << 4]);
            out.put_slice(b"==");
        }
        [a, b] => {
            out.put_u8(ALPHABET[usize::from(a >> 2)]);
            out.put_u8(ALPHABET[usize::from(a & 3) << 4 | usize::from(b >> 4)]);
            out.put_u8(ALPHABET[usize::from(b & 15) << 2]);
            out.put_u8(b'=');
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(src: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; 256];
        match decode(src, &mut out) {
            0 => None,
            n => Some(out[..n].to_vec()),
        }
    }

    fn enc(src: &[u8]) -> String {
        let mut out = BytesMut::new();
        encode(src, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// Each case was checked against memcached 1.6.18 (`mg <key> b k`).
    #[test]
    fn decoding_follows_memcached() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"Zm9vYmFy", Some(b"foobar")),
            (b"Zm9vYQ==", Some(b"fooa")),
            (b"Zm9vYmE=", Some(b"fooba")),
            (b"AA==", Some(b"\0")),
            // Bytes outside the alphabet are skipped.
            (b"Zm9v!!!!YmFy", Some(b"foobar")),
            (b"Zm\t9v", Some(b"foo")),
            // Decoding stops after the first group with padding.
            (b"Zm9vYmFyYQ==Zm9v", Some(b"foobara")),
            // `=` inside a group decodes as zero bits and still trims.
            (b"Zm=v", Some(b"f`")),
            // A count of alphabet bytes that is not a multiple of four.
            (b"Zm9vYmFy==", None),
            (b"Zg", None),
            (b"!", None),
            (b"", None),
            // Three or four `=` in one group.
            (b"====", None),
            (b"A===", None),
        ];
        for &(src, want) in cases {
            assert_eq!(
                dec(src).as_deref(),
                want,
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
    }

    #[test]
    fn encoding_is_padded() {
        assert_eq!(enc(b""), "");
        assert_eq!(enc(b"f"), "Zg==");
        assert_eq!(enc(b"fo"), "Zm8=");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"foobar"), "Zm9vYmFy");
        assert_eq!(enc(b"f`"), "ZmA=");
        // What `k` echoes for a key sent in a non-canonical form.
        assert_eq!(enc(&dec(b"nokeyx==").unwrap()), "nokeyw==");
        assert_eq!(enc(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn round_trip() {
        let mut state = 0x1234_5678_9abc_def1u64;
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let text = enc(&bytes);
            if len == 0 {
                assert_eq!(dec(text.as_bytes()), None);
            } else {
                assert_eq!(dec(text.as_bytes()).as_deref(), Some(&bytes[..]));
            }
        }
    }
}
