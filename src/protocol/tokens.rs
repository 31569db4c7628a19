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
        let mut spans = [(0, 0); MAX_WORDS];
        let mut words = 0;
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if start != i {
                    spans[words] = (start as u32, i as u32);
                    words += 1;
                    if words == MAX_WORDS {
                        // Like memcached: stop here and leave the rest of the
                        // line unsplit. Only the retrieval commands read it.
                        return Tokens { line, spans, words };
                    }
                }
                start = i + 1;
            }
        }
        if start < line.len() {
            spans[words] = (start as u32, line.len() as u32);
            words += 1;
        }
        Tokens { line, spans, words }
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

#[cfg(test)]
mod tests {
    use super::*;

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
