//! memcached's ascii authentication (`-Y <authfile>`).
//!
//! The file holds `user:password` lines. Until a connection authenticates,
//! the only request it may make is a `set` whose key, flags and exptime are
//! ignored and whose data is `<user> <password>`; everything else is answered
//! `CLIENT_ERROR unauthenticated`. The parsing follows memcached's
//! `try_read_command_asciiauth` so clients see the same replies.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::stats::LocalStats;

/// A request line longer than this without a newline closes the connection,
/// as in memcached.
const LINE_MAX: usize = 2048;

/// The largest credentials `set` accepted. memcached has no bound of its own
/// but reads into a fixed buffer; a larger size is refused by closing, so an
/// unauthenticated peer cannot make the server buffer without limit.
pub const DATA_MAX: usize = 4096;

/// The credentials read from the `-Y` file at start-up.
#[derive(Clone)]
pub struct AuthFile {
    path: PathBuf,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for AuthFile {
    // Never print the passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFile")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl AuthFile {
    /// Reads the file, with memcached's messages for the ways it can fail.
    ///
    /// # Errors
    /// The file cannot be read, or a line has no `:`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let data = std::fs::read(path).map_err(|e| {
            format!(
                "Could not open authfile [{}] for reading, error {e}",
                path.display()
            )
        })?;
        Self::parse(path, &data)
    }

    fn parse(path: &Path, data: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::new();
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        if !body.is_empty() {
            for line in body.split(|&b| b == b'\n') {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return Err(format!(
                        "Authfile [{}] has a malformed entry. Should be 'user:password'",
                        path.display()
                    ));
                };
                let pass = &line[colon + 1..];
                let pass_end = pass
                    .iter()
                    .position(|&b| b == b'\r' || b == 0)
                    .unwrap_or(pass.len());
                entries.push((line[..colon].to_vec(), pass[..pass_end].to_vec()));
            }
        }
        Ok(AuthFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file's path, which memcached's `stats settings` shows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pair is in the file. Every entry is compared, each in time
    /// that does not depend on where the bytes first differ.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        let mut found = false;
        for (u, p) in &self.entries {
            // Both compared, always: `&` not `&&`.
            found |= ct_eq(u, user) & ct_eq(p, pass);
        }
        found
    }
}

/// Equality whose time depends on the lengths only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What one step of the unauthenticated reader did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing complete in the buffer yet.
    NeedMore,
    /// `consumed` bytes were used; send `reply` if any.
    Done {
        consumed: usize,
        reply: Option<&'static [u8]>,
        authenticated: bool,
    },
    /// Junk: close the connection without a reply.
    Close,
}

pub const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
pub const FAILURE: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
pub const BAD_TERMINATION: &[u8] = b"CLIENT_ERROR bad command line termination\r\n";
pub const STORED: &[u8] = b"STORED\r\n";

/// A connection's progress through authentication.
#[derive(Debug, Default)]
pub struct Pending {
    /// After the `set` line: the data length still to come, with its `\r\n`.
    data_len: Option<usize>,
}

/// memcached's tokenizer: fields separated by spaces, empty ones skipped.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// The `<bytes>` field as memcached's `safe_strtoul` reads it: digits, then
/// the end or white space (the `\r` of the line is still there).
fn parse_len(field: &[u8]) -> Option<usize> {
    let field = field.strip_prefix(b"+").unwrap_or(field);
    let end = field
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(field.len());
    if end == 0 || !field[end..].first().is_none_or(|b| b.is_ascii_whitespace()) {
        return None;
    }
    std::str::from_utf8(&field[..end]).ok()?.parse().ok()
}

impl Pending {
    /// Reads the next request from `buf`.
    pub fn step(&mut self, buf: &[u8], file: &AuthFile, stats: &mut LocalStats) -> Step {
        let mut consumed = 0;
        let need = match self.data_len {
            Some(n) => n,
            None => {
                if buf.len() < 2 {
                    return Step::NeedMore;
                }
                let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                    return if buf.len() > LINE_MAX {
                        Step::Close
                    } else {
                        Step::NeedMore
                    };
                };
                consumed = nl + 1;
                let fields: Vec<&[u8]> = tokens(&buf[..nl]).take(5).collect();
                let len = match fields.as_slice() {
                    [b"set", _, _, _, len] => parse_len(len),
                    _ => None,
                };
                match len {
                    None => {
                        return Step::Done {
                            consumed,
                            reply: Some(UNAUTHENTICATED),
                            authenticated: false,
                        };
                    }
                    Some(n) if n > DATA_MAX => return Step::Close,
                    Some(n) => {
                        self.data_len = Some(n + 2);
                        n + 2
                    }
                }
            }
        };
        let Some(data) = buf[consumed..].get(..need) else {
            return if consumed > 0 {
                Step::Done {
                    consumed,
                    reply: None,
                    authenticated: false,
                }
            } else {
                Step::NeedMore
            };
        };
        self.data_len = None;
        consumed += need;
        let done = |reply, authenticated| Step::Done {
            consumed,
            reply: Some(reply),
            authenticated,
        };
        let Some(creds) = data.strip_suffix(b"\r\n") else {
            return done(BAD_TERMINATION, false);
        };
        let mut it = tokens(creds);
        let (Some(user), Some(pass)) = (it.next(), it.next()) else {
            return done(BAD_FORMAT, false);
        };
        stats.auth_cmds += 1;
        if file.check(user, pass) {
            done(STORED, true)
        } else {
            stats.auth_errors += 1;
            done(FAILURE, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> AuthFile {
        AuthFile::parse(Path::new("f"), b"alice:secret\nbob:pw2\r\n").unwrap()
    }

    /// Runs `input` through the reader; the replies, and whether it authenticated.
    fn run(input: &[u8]) -> (Vec<&'static [u8]>, bool, LocalStats) {
        let f = file();
        let mut p = Pending::default();
        let mut stats = LocalStats::default();
        let mut buf = input;
        let mut replies = Vec::new();
        loop {
            match p.step(buf, &f, &mut stats) {
                Step::NeedMore => return (replies, false, stats),
                Step::Close => {
                    replies.push(&b"<close>"[..]);
                    return (replies, false, stats);
                }
                Step::Done {
                    consumed,
                    reply,
                    authenticated,
                } => {
                    replies.extend(reply);
                    buf = &buf[consumed..];
                    if authenticated {
                        return (replies, true, stats);
                    }
                }
            }
        }
    }

    #[test]
    fn the_file_is_user_colon_password_lines() {
        let f = file();
        assert!(f.check(b"alice", b"secret"));
        assert!(f.check(b"bob", b"pw2"));
        assert!(!f.check(b"bob", b"pw2\r"));
        assert!(!f.check(b"alice", b"secre"));
        assert!(AuthFile::parse(Path::new("f"), b"nocolon\n").is_err());
        assert!(AuthFile::parse(Path::new("f"), b"").unwrap().is_empty());
        assert!(format!("{f:?}").contains("entries: 2"));
    }

    #[test]
    fn replies_match_memcached() {
        let (r, ok, s) = run(b"set k 0 0 12\r\nalice secret\r\n");
        assert_eq!((r, ok), (vec![STORED], true));
        assert_eq!((s.auth_cmds, s.auth_errors), (1, 0));
        let (r, ok, s) = run(b"set k 0 0 11\r\nalice wrong\r\n");
        assert_eq!((r, ok), (vec![FAILURE], false));
        assert_eq!((s.auth_cmds, s.auth_errors), (1, 1));
        assert_eq!(run(b"get a\r\n").0, vec![UNAUTHENTICATED]);
        assert_eq!(run(b"set k 0 0\r\n").0, vec![UNAUTHENTICATED]);
        assert_eq!(run(b"SET k 0 0 3\r\n").0, vec![UNAUTHENTICATED]);
        assert_eq!(run(b"set k 0 0 x\r\n").0, vec![UNAUTHENTICATED]);
        assert_eq!(run(b"set k 0 0 5\r\nalice\r\n").0, vec![BAD_FORMAT]);
        assert_eq!(
            run(b"set k 0 0 12\r\nalice secretX\r\n").0,
            vec![BAD_TERMINATION]
        );
        // Extra spaces and fields are ignored, as memcached's tokenizer does.
        assert!(run(b"set  k 0 0 11\r\nbob  pw2   \r\n").1);
        assert!(run(b"set k 0 0 10 noreply\r\nbob pw2 xy\r\n").1);
        assert!(run(b"set k 0 0 7\nbob pw2\r\n").1);
    }

    #[test]
    fn partial_input_waits_and_junk_closes() {
        assert_eq!(run(b"set k 0 0 7\r\nbob").0, Vec::<&[u8]>::new());
        assert_eq!(run(b"get").0, Vec::<&[u8]>::new());
        assert_eq!(run(&[b'x'; LINE_MAX + 1]).0, vec![&b"<close>"[..]]);
        assert_eq!(run(b"set k 0 0 99999\r\n").0, vec![&b"<close>"[..]]);
        assert_eq!(parse_len(b"12\r"), Some(12));
        assert_eq!(parse_len(b"+3"), Some(3));
        assert_eq!(parse_len(b"-1"), None);
        assert_eq!(parse_len(b"1x"), None);
    }
}
