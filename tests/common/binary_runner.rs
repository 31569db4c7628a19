//! Runs one binary corpus session against one server and records the
//! response packets as readable lines, masking only what must differ
//! between two correct servers:
//!
//! - CAS values become `$1`, `$2`, ... in order of first appearance (0
//!   stays 0), so equal and unequal values are still told apart;
//! - the body of a Version response (and its length);
//! - stat values, as the text differential masks them (`normalise.rs`):
//!   only deterministic stats are compared, and a masked value's length
//!   is masked with it; ferrocache's own settings are left out.
//!
//! Every other header field is shown, so the comparison is byte for byte.
//!
//! The binary corpus runs live against Debian's memcached 1.6.18, while
//! ferrocache follows 1.6.45: the stat names the two releases print
//! differently ([`RELEASE_STATS`]) are left out here. The text corpus checks
//! those lines against 1.6.45's recorded replies.

use super::binary_corpus::{FENCE_OPAQUE, Session, Step, opcode_name};
use super::escape;
use super::normalise::Normaliser;
use super::runner::{Conn, Ending, Transcript, WAIT_DEADLINE};
use crate::launch::{Launch, ServerSpec};

/// Stats that 1.6.18 and 1.6.45 name differently: 1.6.45 replaced
/// `slab_reassign_evictions_nomem` with the two `busy` lines and added
/// `client_flags_size` to the settings.
const RELEASE_STATS: &[&[u8]] = &[
    b"slab_reassign_evictions_nomem",
    b"slab_reassign_busy_nomem",
    b"slab_reassign_last_busy_status",
    b"client_flags_size",
];

const NOOP: u8 = 0x0a;
const STAT: u8 = 0x10;
const VERSION: u8 = 0x0b;

fn fence() -> Vec<u8> {
    let mut p = vec![0x80, NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&FENCE_OPAQUE.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

/// The complete response packets at the front of `buf`, and the bytes they
/// take.
fn packets(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 24 {
        let bodylen = u32::from_be_bytes(buf[at + 8..at + 12].try_into().unwrap()) as usize;
        if buf.len() - at < 24 + bodylen {
            break;
        }
        out.push(&buf[at..at + 24 + bodylen]);
        at += 24 + bodylen;
    }
    (out, at)
}

/// Fence replies received.
fn fences(buf: &[u8]) -> usize {
    packets(buf)
        .0
        .iter()
        .filter(|p| p[1] == NOOP && p[12..16] == FENCE_OPAQUE.to_be_bytes())
        .count()
}

struct Render {
    cas: Vec<u64>,
    stats: Normaliser,
}

impl Render {
    fn cas(&mut self, v: u64) -> String {
        if v == 0 {
            return "0".into();
        }
        let n = match self.cas.iter().position(|&c| c == v) {
            Some(i) => i + 1,
            None => {
                self.cas.push(v);
                self.cas.len()
            }
        };
        format!("${n}")
    }

    fn lines(&mut self, bytes: &[u8]) -> Vec<String> {
        let (ps, used) = packets(bytes);
        let mut out = Vec::new();
        for p in ps {
            if let Some(line) = self.packet(p) {
                out.push(line);
            }
        }
        if used < bytes.len() {
            out.push(format!("<incomplete> {}", escape(&bytes[used..])));
        }
        out
    }

    /// One packet as a line; `None` for a stat only ferrocache has.
    fn packet(&mut self, p: &[u8]) -> Option<String> {
        let opcode = p[1];
        let keylen = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let extlen = usize::from(p[4]);
        let status = u16::from_be_bytes([p[6], p[7]]);
        let bodylen = u32::from_be_bytes(p[8..12].try_into().unwrap()) as usize;
        let opaque = u32::from_be_bytes(p[12..16].try_into().unwrap());
        let cas = u64::from_be_bytes(p[16..24].try_into().unwrap());
        let body = &p[24..];
        let (extras, rest) = body.split_at(extlen.min(body.len()));
        let (key, value) = rest.split_at(keylen.min(rest.len()));
        let mut shown_len = bodylen.to_string();
        let mut shown_value = escape(value);
        if opcode == VERSION && status == 0 {
            shown_len = "<len>".into();
            shown_value = "<version>".into();
        } else if opcode == STAT && RELEASE_STATS.contains(&key) {
            return None;
        } else if opcode == STAT && !key.is_empty() {
            let mut text = b"STAT ".to_vec();
            text.extend_from_slice(key);
            text.push(b' ');
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
            let rendered = self.stats.render(&text);
            let line = rendered.first()?;
            if line.ends_with("<masked>\\r\\n") {
                shown_len = "<len>".into();
                shown_value = "<masked>".into();
            }
        }
        let magic = if p[0] == 0x81 {
            String::new()
        } else {
            format!(" magic=0x{:02x}", p[0])
        };
        let datatype = if p[5] == 0 {
            String::new()
        } else {
            format!(" datatype={}", p[5])
        };
        Some(format!(
            "{}{magic}{datatype} status=0x{status:02x} opaque={opaque} cas={} bodylen={shown_len} extras={} key={} value={shown_value}",
            opcode_name(opcode),
            self.cas(cas),
            escape(extras),
            escape(key),
        ))
    }
}

/// Runs `session` against a fresh server started from `spec`.
pub fn run(spec: &ServerSpec, session: &Session) -> Transcript {
    let threads: &[&str] = if session.flags.iter().any(|f| f == "-t") {
        &[]
    } else {
        &["-t", "4"]
    };
    // The readiness probe is a binary Noop on the first connection.
    let (server, first) = Launch::new(spec)
        .args(&session.flags)
        .args(threads)
        .ready_binary()
        .start_with_conn();
    let mut render = Render {
        cas: Vec::new(),
        stats: Normaliser::new(&[], &[]),
    };
    let mut lines = Vec::new();
    let mut conns: Vec<Option<(Conn, usize)>> = vec![Some((Conn::new(first), 0))];
    let mut current = 0usize;
    let bytewise = session.bytewise;

    let mut record = |lines: &mut Vec<String>, conn: usize, bytes: Vec<u8>, ending: Ending| {
        lines.push(format!("[conn {}]", conn + 1));
        lines.extend(render.lines(&bytes));
        match ending {
            Ending::Fence => {}
            Ending::Closed => lines.push("<closed by server>".into()),
            Ending::Timeout => lines.push(format!(
                "<no reply or close within {}s>",
                WAIT_DEADLINE.as_secs()
            )),
        }
        render.cas.clone()
    };
    let mut cas: Vec<u64> = Vec::new();

    fn sync_conn(c: &mut (Conn, usize), bytewise: bool) -> Option<(Vec<u8>, Ending)> {
        let (conn, sent) = c;
        if conn.done {
            return None;
        }
        let (bytes, ending) = if conn.write_closed {
            conn.read_to_close()
        } else {
            conn.write(&fence(), bytewise);
            *sent += 1;
            let want = *sent;
            conn.wait(|buf| fences(buf) >= want)
        };
        if ending != Ending::Fence {
            conn.done = true;
        }
        Some((bytes, ending))
    }

    for step in &session.steps {
        match step {
            Step::Write(packets) => {
                let bytes: Vec<u8> = packets.iter().flat_map(|p| p.expand(&cas)).collect();
                if let Some((c, _)) = conns[current].as_mut() {
                    c.write(&bytes, bytewise);
                }
            }
            Step::Sync => {
                if let Some((bytes, ending)) =
                    conns[current].as_mut().and_then(|c| sync_conn(c, bytewise))
                {
                    cas = record(&mut lines, current, bytes, ending);
                }
            }
            Step::Conn(n) => {
                if let Some((bytes, ending)) =
                    conns[current].as_mut().and_then(|c| sync_conn(c, bytewise))
                {
                    cas = record(&mut lines, current, bytes, ending);
                }
                current = n - 1;
                if conns.len() <= current {
                    conns.resize_with(current + 1, || None);
                }
                if conns[current].is_none() {
                    conns[current] = Some((Conn::new(server.connect()), 0));
                }
            }
            Step::Close => {
                if let Some((c, _)) = conns[current].as_mut().filter(|(c, _)| !c.done) {
                    let (bytes, ending) = c.read_to_close();
                    c.done = true;
                    cas = record(&mut lines, current, bytes, ending);
                }
            }
        }
    }
    if let Some((bytes, ending)) = conns[current].as_mut().and_then(|c| sync_conn(c, bytewise)) {
        record(&mut lines, current, bytes, ending);
    }
    let mut notes = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        if let Some((c, _)) = c {
            if let Some(end) = c.end() {
                notes.push(format!("conn {}: {end}", i + 1));
            }
            c.close();
        }
    }
    notes.push(format!("port {}", server.addr.port()));
    let stderr = server.stderr_tail();
    if !stderr.trim().is_empty() {
        notes.push(format!("stderr: {}", stderr.trim()));
    }
    Transcript {
        server: spec.name(),
        lines,
        notes,
    }
}
