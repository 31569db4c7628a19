//! The binary corpus format: sessions of binary-protocol packets, written
//! as readable packet descriptions (`tests/corpus/binary/*.txt`).
//!
//! ```text
//! # A comment.
//! === set_then_get_returns_the_value     (a session; the name states the behaviour)
//! @flags -I 2k                           (optional, before any step: extra server flags)
//! > set key=k flags=5 value=hello        (one write: one packet)
//! + getk key=k opaque=7                  (another packet, appended to that write)
//! @sync                                  (send the fence, read until its reply)
//! > delete key=k cas=$1                  ($1: this server's first cas value seen)
//! > raw \x80\x0a\0\0                     (bytes as they are, text-corpus escapes)
//! @close                                 (the server is expected to close: read to EOF)
//! ```
//!
//! A packet line starts with an opcode (`get`, `getq`, `getk`, `getkq`,
//! `set`, `setq`, ... `gatkq`, `sasl_list`, `sasl_auth`, `sasl_step`,
//! `verbosity`, or `0xNN`), then `field=value` words:
//! - `key=`, `value=`, `extras=`: bytes, with the text corpus's escapes
//!   (`\s` for a space, `\xNN`, `\*N{...}` repeats);
//! - the extras memcached reads, built from numbers: `flags=` and
//!   `exptime=` for set/add/replace (8 bytes); `delta=`, `initial=`,
//!   `exptime=` for incr/decr (20 bytes); `exptime=` for touch and the gats
//!   (4 bytes) and, when given, for flush; `level=` for verbosity. An
//!   `extras=` overrides them;
//! - header fields: `opaque=`, `cas=` (a number or `$N`), and to forge bad
//!   packets `magic=`, `keylen=`, `extlen=`, `bodylen=`, `datatype=`.
//!
//! Directives: `@flags`, `@sync`, `@conn N`, `@close`, `@bytewise` and
//! `@reference-varies` as in the text corpus (`corpus.rs`). The fence is a
//! Noop with an opaque no session uses; at the end of a session it is sent
//! on the current connection unless that was closed.

use std::path::{Path, PathBuf};

use super::corpus::{ParseError, Payload, parse_payload};

/// The fence's opaque.
pub const FENCE_OPAQUE: u32 = 0xfe4c_e000;

#[derive(Debug)]
pub struct Corpus {
    pub path: PathBuf,
    pub sessions: Vec<Session>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub line: usize,
    pub flags: Vec<String>,
    pub bytewise: bool,
    pub reference_varies: bool,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Step {
    /// One write of these packets.
    Write(Vec<Packet>),
    Sync,
    Conn(usize),
    Close,
}

/// A CAS field: a number, or the N-th distinct cas value seen.
#[derive(Debug, Clone, Copy)]
pub enum Cas {
    Value(u64),
    Seen(usize),
}

/// One packet to send, before cas values are filled in.
#[derive(Debug, Clone)]
pub enum Packet {
    Raw(Payload),
    Request {
        magic: u8,
        opcode: u8,
        datatype: u8,
        key: Payload,
        extras: Payload,
        value: Payload,
        opaque: u32,
        cas: Cas,
        keylen: Option<u16>,
        extlen: Option<u8>,
        bodylen: Option<u32>,
    },
}

/// The opcode names, memcached's `protocol_binary.h` order.
pub const OPCODES: &[(&str, u8)] = &[
    ("get", 0x00),
    ("set", 0x01),
    ("add", 0x02),
    ("replace", 0x03),
    ("delete", 0x04),
    ("incr", 0x05),
    ("decr", 0x06),
    ("quit", 0x07),
    ("flush", 0x08),
    ("getq", 0x09),
    ("noop", 0x0a),
    ("version", 0x0b),
    ("getk", 0x0c),
    ("getkq", 0x0d),
    ("append", 0x0e),
    ("prepend", 0x0f),
    ("stat", 0x10),
    ("setq", 0x11),
    ("addq", 0x12),
    ("replaceq", 0x13),
    ("deleteq", 0x14),
    ("incrq", 0x15),
    ("decrq", 0x16),
    ("quitq", 0x17),
    ("flushq", 0x18),
    ("appendq", 0x19),
    ("prependq", 0x1a),
    ("verbosity", 0x1b),
    ("touch", 0x1c),
    ("gat", 0x1d),
    ("gatq", 0x1e),
    ("sasl_list", 0x20),
    ("sasl_auth", 0x21),
    ("sasl_step", 0x22),
    ("gatk", 0x23),
    ("gatkq", 0x24),
];

/// The name of `opcode`, or its hex.
pub fn opcode_name(opcode: u8) -> String {
    OPCODES
        .iter()
        .find(|(_, o)| *o == opcode)
        .map_or_else(|| format!("0x{opcode:02x}"), |(n, _)| n.to_string())
}

impl Packet {
    /// The bytes, with `$N` cas values taken from `cas` (unknown: 0).
    pub fn expand(&self, cas_seen: &[u64]) -> Vec<u8> {
        let Packet::Request {
            magic,
            opcode,
            datatype,
            key,
            extras,
            value,
            opaque,
            cas,
            keylen,
            extlen,
            bodylen,
        } = self
        else {
            let Packet::Raw(p) = self else { unreachable!() };
            return p.expand(cas_seen);
        };
        let (key, extras, value) = (
            key.expand(cas_seen),
            extras.expand(cas_seen),
            value.expand(cas_seen),
        );
        let cas = match *cas {
            Cas::Value(v) => v,
            Cas::Seen(n) => cas_seen.get(n - 1).copied().unwrap_or(0),
        };
        let body = (key.len() + extras.len() + value.len()) as u32;
        let mut p = vec![*magic, *opcode];
        p.extend_from_slice(&keylen.unwrap_or(key.len() as u16).to_be_bytes());
        p.push(extlen.unwrap_or(extras.len() as u8));
        p.push(*datatype);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&bodylen.unwrap_or(body).to_be_bytes());
        p.extend_from_slice(&opaque.to_be_bytes());
        p.extend_from_slice(&cas.to_be_bytes());
        p.extend_from_slice(&extras);
        p.extend_from_slice(&key);
        p.extend_from_slice(&value);
        p
    }
}

pub fn load(path: &Path) -> Result<Corpus, ParseError> {
    let text = std::fs::read(path).map_err(|e| ParseError {
        path: path.to_owned(),
        line: 0,
        msg: e.to_string(),
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &[u8]) -> Result<Corpus, ParseError> {
    let err = |line: usize, msg: String| ParseError {
        path: path.to_owned(),
        line,
        msg,
    };
    let mut sessions: Vec<Session> = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.ends_with(' ') || line.ends_with('\t') {
            return Err(err(lineno, "trailing blank".into()));
        }
        if let Some(name) = line.strip_prefix("=== ") {
            let name = name.trim().to_string();
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
                steps: Vec::new(),
            });
            continue;
        }
        let Some(session) = sessions.last_mut() else {
            return Err(err(lineno, "a step before the first ===".into()));
        };
        let (head, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match head {
            "@flags" if session.steps.is_empty() => {
                session.flags = rest.split_whitespace().map(String::from).collect();
            }
            "@sync" => session.steps.push(Step::Sync),
            "@close" => session.steps.push(Step::Close),
            "@bytewise" => session.bytewise = true,
            "@reference-varies" => session.reference_varies = true,
            "@conn" => {
                let n: usize = rest
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| err(lineno, "@conn N, N from 1".into()))?;
                session.steps.push(Step::Conn(n));
            }
            ">" => {
                let p = packet(rest).map_err(|m| err(lineno, m))?;
                session.steps.push(Step::Write(vec![p]));
            }
            "+" => {
                let p = packet(rest).map_err(|m| err(lineno, m))?;
                match session.steps.last_mut() {
                    Some(Step::Write(ps)) => ps.push(p),
                    _ => return Err(err(lineno, "+ without a write before it".into())),
                }
            }
            other => return Err(err(lineno, format!("unknown line start {other:?}"))),
        }
    }
    Ok(Corpus {
        path: path.to_owned(),
        sessions,
    })
}

/// Parses one packet description.
fn packet(text: &str) -> Result<Packet, String> {
    let (op, rest) = text.split_once(' ').unwrap_or((text, ""));
    if op == "raw" {
        return Ok(Packet::Raw(parse_payload(rest.as_bytes())?));
    }
    let opcode = match op.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16).map_err(|e| format!("opcode {op}: {e}"))?,
        None => OPCODES
            .iter()
            .find(|(n, _)| *n == op)
            .map(|(_, o)| *o)
            .ok_or_else(|| format!("unknown opcode {op}"))?,
    };
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("{word}: a field is name=value"))?;
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(format!("{name} given twice"));
        }
        fields.push((name, value));
    }
    let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    fn num<T: std::str::FromStr>(name: &str, v: Option<&str>) -> Result<Option<T>, String> {
        v.map(|v| {
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|n| n.to_string().parse().ok()),
                None => v.parse().ok(),
            };
            parsed.ok_or_else(|| format!("{name}={v}: not a number that fits"))
        })
        .transpose()
    }
    for (name, _) in &fields {
        const KNOWN: &[&str] = &[
            "key", "value", "extras", "flags", "exptime", "delta", "initial", "level", "opaque",
            "cas", "magic", "keylen", "extlen", "bodylen", "datatype",
        ];
        if !KNOWN.contains(name) {
            return Err(format!("unknown field {name}"));
        }
    }
    let bytes = |name: &str| -> Result<Payload, String> {
        parse_payload(get(name).unwrap_or("").as_bytes())
    };
    let exptime: Option<u32> = num("exptime", get("exptime"))?;
    let extras = if get("extras").is_some() {
        bytes("extras")?
    } else {
        let mut e = Vec::new();
        match opcode {
            0x01..=0x03 | 0x11..=0x13 => {
                e.extend_from_slice(
                    &num::<u32>("flags", get("flags"))?
                        .unwrap_or(0)
                        .to_be_bytes(),
                );
                e.extend_from_slice(&exptime.unwrap_or(0).to_be_bytes());
            }
            0x05 | 0x06 | 0x15 | 0x16 => {
                e.extend_from_slice(
                    &num::<u64>("delta", get("delta"))?
                        .unwrap_or(1)
                        .to_be_bytes(),
                );
                e.extend_from_slice(
                    &num::<u64>("initial", get("initial"))?
                        .unwrap_or(0)
                        .to_be_bytes(),
                );
                e.extend_from_slice(&exptime.unwrap_or(0).to_be_bytes());
            }
            0x1c..=0x1e | 0x23 | 0x24 => e.extend_from_slice(&exptime.unwrap_or(0).to_be_bytes()),
            0x08 | 0x18 => {
                if let Some(t) = exptime {
                    e.extend_from_slice(&t.to_be_bytes());
                }
            }
            0x1b => {
                if let Some(l) = num::<u32>("level", get("level"))? {
                    e.extend_from_slice(&l.to_be_bytes());
                }
            }
            _ => {}
        }
        Payload(vec![super::corpus::Piece::Lit(e)])
    };
    let cas = match get("cas") {
        None => Cas::Value(0),
        Some(v) => match v.strip_prefix('$') {
            Some(n) => Cas::Seen(
                n.parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("cas={v}"))?,
            ),
            None => Cas::Value(num("cas", Some(v))?.expect("given")),
        },
    };
    Ok(Packet::Request {
        magic: num("magic", get("magic"))?.unwrap_or(0x80),
        opcode,
        datatype: num("datatype", get("datatype"))?.unwrap_or(0),
        key: bytes("key")?,
        extras,
        value: bytes("value")?,
        opaque: num("opaque", get("opaque"))?.unwrap_or(0),
        cas,
        keylen: num("keylen", get("keylen"))?,
        extlen: num("extlen", get("extlen"))?,
        bodylen: num("bodylen", get("bodylen"))?,
    })
}
