//! The corpus format: readable text files of sessions, each a sequence of
//! writes and reads on one or more connections.
//!
//! ```text
//! # A comment.
//! === set_then_get_returns_the_value      (a session; the name states the behaviour)
//! @flags -I 2k                            (optional, before any step: extra server flags)
//! > set k 0 0 5\r\nhello\r\n              (one write)
//! + get k\r\n                             (appended to the previous write)
//! @sync                                   (send the fence `mn\r\n`, read until its `MN\r\n`)
//! > cas k 0 0 1 \$1\r\nx\r\n              (\$1: this server's first cas value seen)
//! ```
//!
//! At the end of a session the runner sends the fence on the current
//! connection and reads up to its reply, unless the connection was closed.
//!
//! Directives:
//! - `@flags F...`: server flags (both servers get the same).
//! - `@sync`: fence and read now, e.g. to learn a cas value.
//! - `@conn N`: later steps use connection N (1 is the first, opened with
//!   the server). The connection left is synced first, so the order of
//!   effects across connections is fixed.
//! - `@close`: the server is expected to close the connection: read to EOF.
//! - `@half-close`: shut down our sending side, then read to EOF.
//! - `@disconnect`: close our socket without reading anything.
//! - `@bytewise`: send every byte of the session in its own write.
//! - `@stats-compare NAME...` / `@stats-ignore NAME...`: compare the values
//!   of more `STAT` lines, or fewer, than the default set (see normalise.rs).
//! - `@reference-varies`: memcached itself answers this session in more than
//!   one way (a race between its threads; say which in a comment). On a
//!   difference both servers run it again a few times, and it passes if an
//!   answer of the subject is one of the reference's.
//!
//! Escapes in `>`/`+` lines: `\r \n \t \0 \\ \{ \}`, `\s` (a space, for
//! trailing ones), `\xNN`, `\*N{TEXT}` (TEXT repeated N times; TEXT may hold
//! escapes and nested repeats), `\#` (the index of the innermost repeat,
//! from 0), `\$N` (the N-th distinct cas value this server has sent in this
//! session). Literal tabs and trailing blanks are refused: write `\t`, `\s`.
//!
//! The fence is counted: a sync waits for one `MN` per line starting with
//! `mn` that was sent since the last sync. So a data block must not hold a
//! line that starts with `mn` (it would be counted but never answered).

use std::fmt;
use std::path::{Path, PathBuf};

/// One corpus file.
#[derive(Debug)]
pub struct Corpus {
    pub path: PathBuf,
    pub sessions: Vec<Session>,
}

/// One independent session: fresh servers, its own connections.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    /// Line of the `===` header, for messages.
    pub line: usize,
    pub flags: Vec<String>,
    pub bytewise: bool,
    pub reference_varies: bool,
    pub stats_compare: Vec<String>,
    pub stats_ignore: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Write(Payload),
    Sync,
    Conn(usize),
    Close,
    HalfClose,
    Disconnect,
}

/// Bytes to send, before cas values and repeats are filled in.
#[derive(Debug, Clone, Default)]
pub struct Payload(pub Vec<Piece>);

#[derive(Debug, Clone)]
pub enum Piece {
    Lit(Vec<u8>),
    Repeat(usize, Vec<Piece>),
    Index,
    Cas(usize),
}

impl Piece {
    /// Whether the bytes depend on a repeat index.
    fn varies(&self) -> bool {
        match self {
            Piece::Lit(_) | Piece::Cas(_) => false,
            Piece::Index => true,
            Piece::Repeat(_, inner) => inner.iter().any(Piece::varies),
        }
    }
}

impl Payload {
    /// The bytes, with `\$N` taken from `cas` (1-based). An unknown cas
    /// value is sent as `0`.
    pub fn expand(&self, cas: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        expand_into(&self.0, cas, &mut Vec::new(), &mut out);
        out
    }
}

fn expand_into(pieces: &[Piece], cas: &[u64], index: &mut Vec<usize>, out: &mut Vec<u8>) {
    for piece in pieces {
        match piece {
            Piece::Lit(b) => out.extend_from_slice(b),
            Piece::Repeat(n, inner) if !inner.iter().any(Piece::varies) => {
                // Megabyte payloads: expand the text once, then copy it.
                let mut once = Vec::new();
                expand_into(inner, cas, index, &mut once);
                out.extend_from_slice(&once.repeat(*n));
            }
            Piece::Repeat(n, inner) => {
                for i in 0..*n {
                    index.push(i);
                    expand_into(inner, cas, index, out);
                    index.pop();
                }
            }
            Piece::Index => {
                out.extend_from_slice(index.last().unwrap_or(&0).to_string().as_bytes())
            }
            Piece::Cas(n) => {
                let v = cas.get(n - 1).copied().unwrap_or(0);
                out.extend_from_slice(v.to_string().as_bytes());
            }
        }
    }
}

/// A syntax error with its place.
#[derive(Debug)]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.msg)
    }
}

/// Reads and parses one corpus file.
pub fn load(path: &Path) -> Result<Corpus, ParseError> {
    let text = std::fs::read(path).map_err(|e| ParseError {
        path: path.to_owned(),
        line: 0,
        msg: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses corpus text; `path` is only used in messages.
pub fn parse(path: &Path, text: &[u8]) -> Result<Corpus, ParseError> {
    let err = |line: usize, msg: String| ParseError {
        path: path.to_owned(),
        line,
        msg,
    };
    let mut sessions: Vec<Session> = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if line.ends_with(b" ") || line.ends_with(b"\t") {
            return Err(err(lineno, "trailing blank: write \\s or \\t".into()));
        }
        if let Some(name) = line.strip_prefix(b"=== ") {
            let name = String::from_utf8_lossy(name).trim().to_string();
            if name.is_empty() || name.contains(' ') {
                return Err(err(lineno, "a session name is one word".into()));
            }
            if sessions.iter().any(|s| s.name == name) {
                return Err(err(lineno, format!("duplicate session name {name}")));
            }
            sessions.push(Session {
                name,
                line: lineno,
                flags: Vec::new(),
                bytewise: false,
                reference_varies: false,
                stats_compare: Vec::new(),
                stats_ignore: Vec::new(),
                steps: Vec::new(),
            });
            continue;
        }
        let Some(session) = sessions.last_mut() else {
            return Err(err(lineno, "text before the first `=== name`".into()));
        };
        if let Some(rest) = line.strip_prefix(b"> ") {
            let payload = parse_payload(rest).map_err(|m| err(lineno, m))?;
            session.steps.push(Step::Write(payload));
        } else if let Some(rest) = line.strip_prefix(b"+ ") {
            let mut more = parse_payload(rest).map_err(|m| err(lineno, m))?;
            match session.steps.last_mut() {
                Some(Step::Write(p)) => p.0.append(&mut more.0),
                _ => return Err(err(lineno, "`+` must follow a `>` line".into())),
            }
        } else if let Some(rest) = line.strip_prefix(b"@") {
            let rest = String::from_utf8_lossy(rest).into_owned();
            let mut words = rest.split_whitespace();
            let directive = words.next().unwrap_or("");
            let args: Vec<String> = words.map(String::from).collect();
            let no_args = |step: Step| {
                if args.is_empty() {
                    Ok(step)
                } else {
                    Err(err(lineno, format!("@{directive} takes no arguments")))
                }
            };
            match directive {
                "flags" => {
                    if !session.steps.is_empty() {
                        return Err(err(lineno, "@flags must come before any step".into()));
                    }
                    session.flags.extend(args);
                }
                "bytewise" => session.bytewise = true,
                "reference-varies" => session.reference_varies = true,
                "stats-compare" => session.stats_compare.extend(args),
                "stats-ignore" => session.stats_ignore.extend(args),
                "sync" => session.steps.push(no_args(Step::Sync)?),
                "close" => session.steps.push(no_args(Step::Close)?),
                "half-close" => session.steps.push(no_args(Step::HalfClose)?),
                "disconnect" => session.steps.push(no_args(Step::Disconnect)?),
                "conn" => {
                    let n: usize = match args.as_slice() {
                        [n] => n.parse().ok().filter(|&n| n >= 1),
                        _ => None,
                    }
                    .ok_or_else(|| err(lineno, "@conn takes a number from 1".into()))?;
                    session.steps.push(Step::Conn(n));
                }
                other => return Err(err(lineno, format!("unknown directive @{other}"))),
            }
        } else {
            return Err(err(
                lineno,
                "a line is `=== name`, `> bytes`, `+ bytes`, `@directive` or `# comment`".into(),
            ));
        }
    }
    for s in &sessions {
        if !s.steps.iter().any(|st| matches!(st, Step::Write(_))) {
            return Err(err(s.line, format!("session {} sends nothing", s.name)));
        }
    }
    Ok(Corpus {
        path: path.to_owned(),
        sessions,
    })
}

/// Parses the escapes of one `>`/`+` line.
pub fn parse_payload(text: &[u8]) -> Result<Payload, String> {
    let mut pos = 0;
    let pieces = parse_pieces(text, &mut pos, false)?;
    Ok(Payload(pieces))
}

fn parse_pieces(text: &[u8], pos: &mut usize, in_repeat: bool) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = Vec::new();
    let flush = |lit: &mut Vec<u8>, pieces: &mut Vec<Piece>| {
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(lit)));
        }
    };
    while *pos < text.len() {
        let b = text[*pos];
        *pos += 1;
        match b {
            b'\t' => return Err("literal tab: write \\t".into()),
            b'}' if in_repeat => {
                flush(&mut lit, &mut pieces);
                return Ok(pieces);
            }
            b'{' | b'}' => return Err("unescaped brace: write \\{ or \\}".into()),
            b'\\' => {
                let Some(&e) = text.get(*pos) else {
                    return Err("line ends in a lone backslash".into());
                };
                *pos += 1;
                match e {
                    b'r' => lit.push(b'\r'),
                    b'n' => lit.push(b'\n'),
                    b't' => lit.push(b'\t'),
                    b'0' => lit.push(0),
                    b's' => lit.push(b' '),
                    b'\\' | b'{' | b'}' => lit.push(e),
                    b'x' => {
                        let hex = text
                            .get(*pos..*pos + 2)
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or("\\x needs two hex digits")?;
                        *pos += 2;
                        lit.push(hex);
                    }
                    b'#' => {
                        flush(&mut lit, &mut pieces);
                        pieces.push(Piece::Index);
                    }
                    b'$' => {
                        let n = take_number(text, pos).ok_or("\\$ needs a number")?;
                        if n == 0 {
                            return Err("cas values are numbered from 1".into());
                        }
                        flush(&mut lit, &mut pieces);
                        pieces.push(Piece::Cas(n));
                    }
                    b'*' => {
                        let n = take_number(text, pos).ok_or("\\* needs a count")?;
                        if text.get(*pos) != Some(&b'{') {
                            return Err("\\*N must be followed by {".into());
                        }
                        *pos += 1;
                        let inner = parse_pieces(text, pos, true)?;
                        flush(&mut lit, &mut pieces);
                        pieces.push(Piece::Repeat(n, inner));
                    }
                    other => return Err(format!("unknown escape \\{}", other as char)),
                }
            }
            _ => lit.push(b),
        }
    }
    if in_repeat {
        return Err("unclosed \\*N{".into());
    }
    flush(&mut lit, &mut pieces);
    Ok(pieces)
}

fn take_number(text: &[u8], pos: &mut usize) -> Option<usize> {
    let start = *pos;
    while text.get(*pos).is_some_and(u8::is_ascii_digit) {
        *pos += 1;
    }
    std::str::from_utf8(&text[start..*pos]).ok()?.parse().ok()
}
