//! The command-line tokenizer shared by the classic and the meta parsers:
//! memcached's `tokenize_command`, which decides how many arguments a
//! command has and therefore which error a malformed line gets.
//!
//! It knows nothing of commands: it splits words and counts them the way
//! memcached's token-count checks expect, and leaves the meaning to the
//! parsers.

use super::MAX_TOKENS;

/// Most words memcached splits off a line; the rest stays unsplit.
const MAX_WORDS: usize = MAX_TOKENS - 1;

/// A command line split the way memcached's `tokenize_command` splits it:
/// up to 23 words separated by runs of spaces. memcached counts one more
/// token (an empty terminator), and its token-count checks are written
/// against that count, which [`Tokens::count`] reproduces.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    line: &'a [u8],
    /// `(start, end)` of each word in `line`; 32 bits keep the array (which
    /// every line fills in and copies) small, and no line is that long.
    spans: [(u32, u32); MAX_WORDS],
    words: usize,
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        // The codec cuts lines at a few MiB; this only keeps the spans exact.
        let line = &line[..line.len().min(u32::MAX as usize)];
        // Built where it is returned: the spans are most of its 200 bytes.
        let mut t = Tokens {
            line,
            spans: [(0, 0); MAX_WORDS],
            words: 0,
        };
        let mut start = 0;
        // Eight bytes at a time: a mask of the spaces in each word, then one
        // step per space rather than per byte (a command line is mostly
        // words, and this runs on every request).
        let mut offset = 0;
        while offset < line.len() {
            let rest = &line[offset..];
            let word = if let Some(chunk) = rest.first_chunk::<8>() {
                u64::from_le_bytes(*chunk)
            } else if let Some(last) = line.last_chunk::<8>() {
                // The last eight bytes, shifted past those already seen;
                // the NULs shifted in are not separators.
                u64::from_le_bytes(*last) >> (8 * (8 - rest.len()))
            } else {
                rest.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b))
            };
            let mut mask = space_mask(word);
            while mask != 0 {
                let i = offset + (mask.trailing_zeros() / 8) as usize;
                mask &= mask - 1;
                if start != i {
                    t.spans[t.words] = (start as u32, i as u32);
                    t.words += 1;
                    if t.words == MAX_WORDS {
                        // Like memcached: stop here and leave the rest of the
                        // line unsplit. Only the retrieval commands read it.
                        return t;
                    }
                }
                start = i + 1;
            }
            offset += 8;
        }
        if start < line.len() {
            t.spans[t.words] = (start as u32, line.len() as u32);
            t.words += 1;
        }
        t
    }

    /// memcached's `ntokens`: the words plus the terminating token.
    pub fn count(&self) -> usize {
        self.words + 1
    }

    /// Word `i`; empty past the last word (like memcached's terminator).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.words {
            let (s, e) = self.spans[i];
            &self.line[s as usize..e as usize]
        } else {
            &[]
        }
    }

    /// The last word memcached looked at (`tokens[ntokens - 2]`).
    pub fn last(&self) -> &'a [u8] {
        self.get(self.words.wrapping_sub(1))
    }

    /// The raw line after word `i`, for commands that read many arguments.
    pub fn after(&self, i: usize) -> &'a [u8] {
        let end = if i < self.words {
            self.spans[i].1 as usize
        } else {
            self.line.len()
        };
        &self.line[end..]
    }

    /// Whether the line starts with a space: memcached 1.6.45 names the
    /// command by the bytes before the line's first space, so such a line
    /// names none of the commands its parser knows.
    pub fn leading_space(&self) -> bool {
        self.line.first() == Some(&b' ')
    }

    /// The number of words (memcached 1.6.45's `ntokens`).
    pub fn words(&self) -> usize {
        self.words
    }

    /// memcached's `set_noreply_maybe`: the last word is exactly `noreply`.
    pub fn noreply(&self) -> bool {
        self.last() == b"noreply"
    }
}

/// The high bit of each byte of `word` that is a space, and no other bit.
fn space_mask(word: u64) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    let x = word ^ SPACES;
    // Exact, unlike the shorter zero-byte test: no carry crosses a byte, so
    // a byte next to a space is never taken for one.
    !(((x & LOW7) + LOW7) | x | LOW7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// The byte-at-a-time split the word-at-a-time one must match.
    fn plain_split(line: &[u8]) -> Vec<&[u8]> {
        let mut words = Vec::new();
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if start != i {
                    words.push(&line[start..i]);
                    if words.len() == MAX_WORDS {
                        return words;
                    }
                }
                start = i + 1;
            }
        }
        if start < line.len() {
            words.push(&line[start..]);
        }
        words
    }

    #[test]
    fn split_matches_a_plain_scan() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let len = rng.below(90) as usize;
            // Bytes one bit away from a space (0xa0, 0x21, 0x00) and runs of
            // spaces across word boundaries catch a wrong mask.
            let line: Vec<u8> = (0..len)
                .map(|_| match rng.below(6) {
                    0 | 1 => b' ',
                    2 => 0xa0,
                    3 => 0x21,
                    4 => 0,
                    _ => rng.next_u64() as u8,
                })
                .collect();
            let t = Tokens::new(&line);
            let words: Vec<&[u8]> = (0..t.words()).map(|i| t.get(i)).collect();
            assert_eq!(words, plain_split(&line), "{line:?}");
            let end = words.last().map_or(line.len(), |w| {
                w.as_ptr() as usize - line.as_ptr() as usize + w.len()
            });
            if !words.is_empty() {
                assert_eq!(t.after(t.words() - 1), &line[end..], "{line:?}");
            }
        }
    }

    #[test]
    fn tokenizer_caps_at_23_words() {
        let t = Tokens::new(b"  a  b c ");
        assert_eq!(t.count(), 4);
        assert_eq!(
            (t.get(0), t.get(1), t.get(2), t.get(3)),
            (&b"a"[..], &b"b"[..], &b"c"[..], &b""[..])
        );
        assert_eq!(t.after(0), b"  b c ");
        assert_eq!(t.last(), b"c");

        let line: Vec<u8> = (0..30)
            .map(|i| format!("w{i} "))
            .collect::<String>()
            .into_bytes();
        let t = Tokens::new(&line);
        assert_eq!(t.count(), MAX_TOKENS);
        assert_eq!(t.last(), b"w22");
        assert_eq!(t.after(22), b" w23 w24 w25 w26 w27 w28 w29 ");

        let t = Tokens::new(b"");
        assert_eq!(t.count(), 1);
        assert_eq!(t.last(), b"");
        assert_eq!(t.after(0), b"");
        // TAB is not a separator.
        assert_eq!(Tokens::new(b"set\tk 1").count(), 3);
    }
}
