//! A whole connection over arbitrary bytes: the server's own sans-IO
//! session (decoder, executor, a real store), driven as the tokio driver
//! drives it, with the replies and the store checked after every request.
//!
//! Input layout: byte 0 picks the configuration (memory limit, item size,
//! CAS, `-A`, `-M`, `-F`, a tight store, SASL), bytes 1..3 seed how the
//! stream is cut into reads and how the clock moves between them, the rest
//! is what the client sends.
//!
//! With SASL (`-S`, bit 7) only SASL requests and Version are served before
//! an auth succeeds. The password database names [`SASL_USER`] with
//! [`SASL_PASS`], and the seeds of that mode begin with [`sasl_auth`]'s
//! packet, so the requests after it run as on any binary connection (and
//! mutants that break the packet test the refusals).
//!
//! After every frame:
//! - what it appended to the write buffer is a run of well-formed replies of
//!   the kind that request gives (a get: `VALUE` blocks whose data has the
//!   announced length, for keys it asked for, in order, then `END`; a
//!   `noreply` request: nothing at all);
//!   a binary request: well-formed response packets echoing its opcode and
//!   opaque, one at most (a stats listing excepted), none for a quiet
//!   success;
//! - the store's bytes in use stay within its limit, and it never holds more
//!   items than were ever stored.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use bytes::BytesMut;
use clap::Parser;
use ferrocache::config::{BindingProtocol, Cli};
use ferrocache::protocol::binary::{BinaryOp, opcode};
use ferrocache::protocol::{Frame, ProtocolError, Request};
use ferrocache::sasl::Pwdb;
use ferrocache::server::Shared;
use ferrocache::server::session::{Next, Observer, Session};
use ferrocache::store::{Clock, Store, StoreConfig};

use crate::Rng;

const UNIX: i64 = 1_700_000_000;

/// The user the SASL configuration knows, and its password.
pub const SASL_USER: &[u8] = b"user";
pub const SASL_PASS: &[u8] = b"pass";

/// The SASL configuration's password database, as `MEMCACHED_SASL_PWDB`
/// would name it (a second user, so that a lookup has more than one line).
static PWDB: LazyLock<Arc<Pwdb>> = LazyLock::new(|| {
    let mut lines = [SASL_USER, b":", SASL_PASS, b"\n"].concat();
    lines.extend_from_slice(b"other:secret\n");
    Arc::new(Pwdb::parse(Path::new("fuzz-pwdb"), &lines))
});

/// A binary SASL auth request with the PLAIN mechanism and the known
/// credentials: what a client sends first on a `-S` server.
pub fn sasl_auth() -> Vec<u8> {
    let data = [b"\0", SASL_USER, b"\0", SASL_PASS].concat();
    packet(opcode::SASL_AUTH, b"PLAIN", &[], &data)
}

/// A binary request packet, opaque and CAS 0.
pub fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    // Extras length, raw data type, no vbucket.
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&body.to_be_bytes());
    // Opaque and CAS.
    p.extend_from_slice(&[0; 12]);
    for part in [extras, key, value] {
        p.extend_from_slice(part);
    }
    p
}

/// A server configuration as the command line would give it, and a store
/// on a manual clock.
pub fn server(selector: u8) -> Arc<Shared> {
    let mut args = vec!["ferrocache", "-u", "root", "-t", "1"];
    // A small -I so that "too large" and swallowing are easy to reach.
    let (memory, item) = match selector % 4 {
        0 => ("64", "1m"),
        1 => ("8", "1k"),
        2 => ("8", "4k"),
        _ => ("16", "2k"),
    };
    args.extend(["-m", memory, "-I", item]);
    if selector & 4 != 0 {
        args.push("-C");
    }
    if selector & 8 != 0 {
        args.push("-A");
    }
    if selector & 16 != 0 {
        args.push("-M");
    }
    if selector & 32 != 0 {
        args.push("-F");
    }
    let mut config = Cli::try_parse_from(&args)
        .expect("valid flags")
        .validate()
        .expect("valid configuration");
    if selector & 128 != 0 {
        // What -S does, with the database read once rather than from the
        // file MEMCACHED_SASL_PWDB names on every input.
        config.sasl = Some(PWDB.clone());
        config.binding_protocol = BindingProtocol::Binary;
    }
    // A tight byte budget so that evictions (or out-of-memory refusals)
    // happen within one fuzz input.
    let memory_limit = if selector & 64 != 0 {
        48 * 1024
    } else {
        config.store.memory_limit
    };
    let store = Store::new(
        StoreConfig {
            memory_limit,
            shards: 4,
            ..config.store.clone()
        },
        Clock::manual(UNIX),
    );
    Arc::new(Shared::new(config, store, 1))
}

pub fn check(data: &[u8]) {
    served(data);
}

/// Runs one input as [`check`] does; returns how many binary requests
/// other than SASL ones were executed (none when the input is too short).
pub fn served(data: &[u8]) -> usize {
    if data.len() < 3 {
        return 0;
    }
    let shared = server(data[0]);
    let mut rng = Rng::new(u64::from(u16::from_le_bytes([data[1], data[2]])) | 1 << 40);
    run(&shared, &data[3..], &mut rng)
}

/// Feeds `stream` through one connection's session, cut into reads;
/// returns how many binary requests other than SASL ones were executed.
pub fn run(shared: &Arc<Shared>, stream: &[u8], rng: &mut Rng) -> usize {
    let mut session = Session::new(shared.clone(), 1);
    let mut checks = Checks::default();
    drive(&mut session, shared, stream, rng, &mut checks);
    checks.served
}

fn drive(
    session: &mut Session,
    shared: &Arc<Shared>,
    stream: &[u8],
    rng: &mut Rng,
    checks: &mut Checks,
) {
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = (1 + rng.below(64) as usize).min(rest.len());
        let before = rbuf.len();
        rbuf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if rng.below(8) == 0 {
            shared.store.clock().advance(rng.below(3) as u32);
        }
        loop {
            let left = rbuf.len();
            let next = session.process_observed(&mut rbuf, &mut wbuf, checks);
            assert!(rbuf.len() <= left, "the session grew the read buffer");
            match next {
                Next::Read => break,
                // The driver sends what is buffered, or yields, and calls again.
                Next::Write => wbuf.clear(),
                Next::Yield => {}
                Next::End(_) => return,
            }
        }
        assert!(
            rbuf.len() <= before + n,
            "the session left more than it was given"
        );
        // The connection sends what it has after every read.
        wbuf.clear();
    }
}

/// Checks each reply against its request, and the store after each.
#[derive(Default)]
struct Checks {
    expect: Option<Expect>,
    total_before: u64,
    stored_ever: u64,
    /// Binary requests other than SASL ones that were executed.
    served: usize,
}

impl Observer for Checks {
    fn request(&mut self, frame: &Frame<'_>, shared: &Shared) {
        if let Frame::Request(Request::Binary(cmd)) = frame
            && !matches!(cmd.op, BinaryOp::SaslAuth { .. } | BinaryOp::SaslListMechs)
        {
            self.served += 1;
        }
        self.expect = Some(Expect::of(frame, shared));
        self.total_before = shared.store.stats().total_items;
    }

    fn reply(&mut self, reply: &[u8], shared: &Shared) {
        self.expect
            .take()
            .expect("a reply follows a request")
            .check(reply);
        let st = shared.store.stats();
        assert!(
            st.bytes <= st.limit_maxbytes,
            "{} bytes in use over a limit of {}",
            st.bytes,
            st.limit_maxbytes
        );
        self.stored_ever += st.total_items.saturating_sub(self.total_before);
        assert!(
            st.curr_items <= self.stored_ever,
            "{} items but only {} ever stored",
            st.curr_items,
            self.stored_ever
        );
    }
}

/// What the replies to one frame must look like.
enum Expect {
    Nothing,
    /// One line of one of these kinds.
    Line(Vec<&'static str>),
    /// `VALUE` blocks for keys taken in order from these, then `END`; or a
    /// single error line when a key is refused.
    Values {
        keys: Vec<Vec<u8>>,
        cas: bool,
    },
    /// `STAT` lines and `END`, or a single line.
    Stats,
    /// `VERSION <text>`.
    Version,
    /// Anything well-formed (the error lines and such).
    AnyLines,
    /// Exactly these bytes: the long-key retrieval error, which memcached
    /// 1.6.45 follows with an empty line (and which drops the replies the
    /// read still owed).
    Exact(&'static [u8]),
    /// Binary response packets for a request with this opcode and opaque.
    Binary {
        opcode: u8,
        opaque: u32,
        quiet: bool,
        kind: BinaryKind,
    },
    /// Replies whose shape is not checked here: meta replies carry data
    /// blocks in their own framing, and metadump lines end in a bare `\n`.
    /// The store invariants are still checked after them.
    Unchecked,
}

/// What a binary request's replies look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BinaryKind {
    /// A get or GAT: a hit (flags as extras) or a miss.
    Get,
    /// A listing of stat packets.
    Stat,
    /// One packet of this status (a refused packet).
    Refused(u16),
    /// Any one packet.
    Other,
}

const STORE_REPLIES: &[&str] = &[
    "STORED",
    "NOT_STORED",
    "EXISTS",
    "NOT_FOUND",
    "SERVER_ERROR out of memory storing object",
];

impl Expect {
    fn of(frame: &Frame<'_>, shared: &Shared) -> Expect {
        match frame {
            Frame::Error { noreply: true, .. } => Expect::Nothing,
            Frame::Error {
                error: ProtocolError::RetrievalKeyTooLong,
                ..
            } => Expect::Exact(b"CLIENT_ERROR bad command line format\r\n\r\n"),
            Frame::Error { error, .. } => Expect::Line(vec![error.wire()]),
            Frame::Rejected(r) if r.noreply => Expect::Nothing,
            Frame::Rejected(r) => Expect::Line(vec![r.error.wire()]),
            Frame::Close => Expect::Nothing,
            Frame::BinaryRefusal(r) => Expect::Binary {
                opcode: r.reply_to.opcode,
                opaque: r.reply_to.opaque,
                quiet: false,
                kind: BinaryKind::Refused(r.status as u16),
            },
            Frame::Request(Request::Binary(cmd)) => Expect::Binary {
                opcode: cmd.reply_to.opcode,
                opaque: cmd.reply_to.opaque,
                quiet: cmd.quiet,
                kind: match cmd.op {
                    BinaryOp::Get | BinaryOp::Gat { .. } | BinaryOp::Touch { .. } => {
                        BinaryKind::Get
                    }
                    BinaryOp::Stat => BinaryKind::Stat,
                    _ => BinaryKind::Other,
                },
            },
            Frame::Request(cmd) => match cmd {
                Request::Get { keys, cas } | Request::Gat { keys, cas, .. } => Expect::Values {
                    keys: keys.iter().map(<[u8]>::to_vec).collect(),
                    cas: *cas,
                },
                Request::Store { noreply: true, .. }
                | Request::Delete { noreply: true, .. }
                | Request::Arith { noreply: true, .. }
                | Request::Touch { noreply: true, .. }
                | Request::Verbosity { noreply: true, .. }
                | Request::CacheMemlimit { noreply: true, .. } => Expect::Nothing,
                Request::FlushAll { noreply: true, .. } => Expect::Nothing,
                Request::Store { .. } => Expect::Line(STORE_REPLIES.to_vec()),
                Request::Delete { .. } => Expect::Line(vec!["DELETED", "NOT_FOUND"]),
                Request::Arith { .. } => Expect::AnyLines,
                Request::Touch { .. } => Expect::Line(vec!["TOUCHED", "NOT_FOUND"]),
                Request::FlushAll { .. } => {
                    if shared.config.flush_enabled {
                        Expect::Line(vec!["OK"])
                    } else {
                        Expect::Line(vec!["CLIENT_ERROR flush_all not allowed"])
                    }
                }
                Request::Version => Expect::Version,
                Request::Verbosity { .. } => Expect::Line(vec!["OK"]),
                Request::Quit => Expect::Nothing,
                Request::Shutdown { .. } if !shared.config.shutdown_enabled => {
                    Expect::Line(vec!["SERVER_ERROR: shutdown not enabled"])
                }
                Request::Shutdown { .. } => Expect::AnyLines,
                Request::Stats { .. } => Expect::Stats,
                Request::CacheMemlimit { .. } => Expect::AnyLines,
                Request::MetaNoop => Expect::Line(vec!["MN"]),
                Request::Watch { .. } => Expect::Line(vec![
                    "OK",
                    "ERROR",
                    "ERROR cannot pipeline other commands before watch",
                    "CLIENT_ERROR watch commands not allowed",
                    "WATCHER_TOO_MANY log watcher limit reached",
                ]),
                Request::RefreshCerts if shared.config.tls.is_none() => {
                    Expect::Line(vec!["Error TLS not enabled"])
                }
                Request::RefreshCerts => Expect::AnyLines,
                Request::Meta(_)
                | Request::LruCrawler { .. }
                | Request::Slabs { .. }
                | Request::Lru { .. } => Expect::Unchecked,
                Request::Binary(_) => unreachable!("matched above"),
            },
        }
    }

    fn check(&self, out: &[u8]) {
        let show = || String::from_utf8_lossy(&out[..out.len().min(300)]).into_owned();
        match self {
            Expect::Unchecked => return,
            Expect::Exact(want) => {
                assert_eq!(out, *want, "exact reply: {:?}", show());
                return;
            }
            _ => {}
        }
        if let Expect::Binary {
            opcode,
            opaque,
            quiet,
            kind,
        } = *self
        {
            return check_binary(out, opcode, opaque, quiet, kind);
        }
        let lines = parse_replies(out);
        match self {
            Expect::Nothing => assert!(out.is_empty(), "a reply to a silent request: {:?}", show()),
            Expect::Line(allowed) => {
                assert_eq!(lines.len(), 1, "one reply line expected: {:?}", show());
                let Reply::Line(l) = &lines[0] else {
                    panic!("a value where a line was expected: {:?}", show());
                };
                assert!(
                    allowed.iter().any(|a| a.as_bytes() == &l[..]),
                    "unexpected reply {:?}, allowed {allowed:?}",
                    show()
                );
            }
            Expect::Values { keys, cas } => {
                let (last, values) = lines.split_last().expect("a get gets a reply");
                match last {
                    Reply::Line(l) if l == b"END" => {}
                    Reply::Line(l) if values.is_empty() && l.starts_with(b"CLIENT_ERROR ") => {}
                    _ => panic!("a get reply ends in END: {:?}", show()),
                }
                let mut wanted = keys.iter();
                for v in values {
                    let Reply::Value { key, has_cas, .. } = v else {
                        panic!("a line among a get's values: {:?}", show());
                    };
                    assert_eq!(has_cas, cas, "gets/get CAS field: {:?}", show());
                    assert!(
                        wanted.any(|k| k == key),
                        "a value for a key not asked for (or out of order): {:?}",
                        show()
                    );
                }
            }
            Expect::Stats => {
                let (last, stats) = lines.split_last().expect("stats gets a reply");
                for s in stats {
                    assert!(
                        matches!(s, Reply::Line(l) if l.starts_with(b"STAT ")),
                        "stats: {:?}",
                        show()
                    );
                }
                assert!(matches!(last, Reply::Line(_)), "stats: {:?}", show());
            }
            Expect::Version => {
                assert!(
                    matches!(&lines[..], [Reply::Line(l)] if l.starts_with(b"VERSION ")),
                    "version: {:?}",
                    show()
                );
            }
            Expect::AnyLines => {
                for l in &lines {
                    assert!(matches!(l, Reply::Line(_)), "lines: {:?}", show());
                }
            }
            Expect::Unchecked | Expect::Exact(_) | Expect::Binary { .. } => {}
        }
    }
}

/// One binary response: (opcode, status, extras length, key length, opaque).
type Packet = (u8, u16, usize, usize, u32);

/// Splits a write buffer into response packets; panics on anything malformed.
fn parse_packets(mut out: &[u8]) -> Vec<Packet> {
    let mut packets = Vec::new();
    while !out.is_empty() {
        assert!(out.len() >= 24, "half a response header: {out:x?}");
        assert_eq!(out[0], 0x81, "response magic");
        let keylen = usize::from(u16::from_be_bytes([out[2], out[3]]));
        let extlen = usize::from(out[4]);
        let bodylen = u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
        assert!(keylen + extlen <= bodylen, "key and extras beyond the body");
        assert!(out.len() >= 24 + bodylen, "body shorter than announced");
        let status = u16::from_be_bytes([out[6], out[7]]);
        let opaque = u32::from_be_bytes(out[12..16].try_into().unwrap());
        packets.push((out[1], status, extlen, keylen, opaque));
        out = &out[24 + bodylen..];
    }
    packets
}

fn check_binary(out: &[u8], op: u8, opaque: u32, quiet: bool, kind: BinaryKind) {
    let packets = parse_packets(out);
    for p in &packets {
        assert_eq!(p.4, opaque, "the opaque is echoed");
    }
    if kind == BinaryKind::Stat {
        for p in &packets {
            assert_eq!(p.0, opcode::STAT, "stat packets");
        }
        assert!(!packets.is_empty(), "a stat request gets a reply");
        return;
    }
    assert!(packets.len() <= 1, "one response at most: {packets:?}");
    let Some(&(reply_op, status, extlen, _, _)) = packets.first() else {
        // Only a quiet success, or a quiet get's miss, is silent.
        assert!(
            quiet || op == opcode::QUITQ,
            "no reply to a non-quiet request"
        );
        return;
    };
    assert_eq!(reply_op, op, "the opcode is echoed");
    match kind {
        BinaryKind::Refused(want) => assert_eq!(status, want, "the refusal's status"),
        BinaryKind::Get if status == 0 => assert_eq!(extlen, 4, "a hit carries its flags"),
        BinaryKind::Get => assert!(!quiet, "a quiet get's miss is silent"),
        _ => assert!(!quiet || status != 0, "a quiet success is silent"),
    }
}

enum Reply {
    Line(Vec<u8>),
    Value { key: Vec<u8>, has_cas: bool },
}

/// Splits a write buffer into replies; panics on anything malformed.
fn parse_replies(mut out: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while !out.is_empty() {
        let end = out
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("a reply without CRLF: {:?}", String::from_utf8_lossy(out)));
        let line = &out[..end];
        out = &out[end + 2..];
        if let Some(rest) = line.strip_prefix(b"VALUE ") {
            // The key may hold any byte but a space or newline; the numbers
            // follow the last spaces.
            let fields: Vec<&[u8]> = rest.rsplitn(4, |&b| b == b' ').collect();
            let (key, flags, len, cas) = match fields.len() {
                4 if is_number(fields[2]) && is_number(fields[1]) && is_number(fields[0]) => {
                    // key flags bytes cas, or a key with a space (impossible).
                    (fields[3], fields[2], fields[1], Some(fields[0]))
                }
                _ => {
                    let f: Vec<&[u8]> = rest.rsplitn(3, |&b| b == b' ').collect();
                    assert_eq!(f.len(), 3, "VALUE line {:?}", String::from_utf8_lossy(line));
                    (f[2], f[1], f[0], None)
                }
            };
            assert!(!key.is_empty() && key.len() <= 250, "VALUE key");
            let _flags: u32 = num(flags);
            let len: usize = num(len);
            if let Some(c) = cas {
                let _: u64 = num(c);
            }
            assert!(out.len() >= len + 2, "VALUE data shorter than announced");
            assert_eq!(
                &out[len..len + 2],
                b"\r\n",
                "VALUE data not followed by CRLF"
            );
            out = &out[len + 2..];
            replies.push(Reply::Value {
                key: key.to_vec(),
                has_cas: cas.is_some(),
            });
        } else {
            assert!(!line.is_empty(), "an empty reply line");
            assert!(!line.contains(&b'\n'), "a bare newline inside a reply");
            replies.push(Reply::Line(line.to_vec()));
        }
    }
    replies
}

fn is_number(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

fn num<T: std::str::FromStr>(b: &[u8]) -> T {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {:?}", String::from_utf8_lossy(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(selector: u8, parts: &[&[u8]]) -> Vec<u8> {
        [&[selector, 7, 0][..], &parts.concat()].concat()
    }

    #[test]
    fn sasl_mode_serves_requests_only_after_a_valid_plain_auth() {
        let requests = [
            packet(opcode::SET, b"k", &[0; 8], b"hello"),
            packet(opcode::GET, b"k", &[], &[]),
            packet(opcode::NOOP, &[], &[], &[]),
        ]
        .concat();
        let auth = sasl_auth();
        assert_eq!(served(&input(0x80, &[&auth, &requests])), 3);
        // Unauthenticated: refused, and the connection closed.
        assert_eq!(served(&input(0x80, &[&requests])), 0);
        let mut wrong = auth.clone();
        *wrong.last_mut().expect("a password") ^= 1;
        assert_eq!(served(&input(0x80, &[&wrong, &requests])), 0);
        // Without SASL the same requests run as they are.
        assert_eq!(served(&input(0, &[&requests])), 3);
    }
}
