//! Shared support for the TCP tests that speak the protocol byte for byte:
//! a plain blocking client and byte escaping for readable failure messages.
//! Servers are started by `launch`, which a test file using this module
//! declares too (`mod launch;`).
//!
//! The differential harness (corpus format, runner, normalisation, recorded
//! reference transcripts, the list of known gaps; the binary protocol's
//! corpus format and runner) lives in the submodules; the integration tests
//! only use this file.

pub mod binary_corpus;
pub mod binary_runner;
pub mod corpus;
pub mod gaps;
pub mod normalise;
pub mod recorded;
pub mod runner;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A blocking client for exchanges with exactly known replies.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn new(stream: TcpStream) -> Client {
        Client { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// Reads exactly `n` bytes (or fewer if the server closes first).
    pub fn read_exact_len(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.stream.read(&mut out[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "read after {got} of {n} bytes: {e}; got {}",
                    escape(&out[..got])
                ),
            }
        }
        out.truncate(got);
        out
    }

    /// Sends `request`, then reads exactly as many bytes as `expected` has
    /// and asserts they are equal.
    pub fn exchange(&mut self, request: &[u8], expected: &[u8]) {
        self.send(request);
        let got = self.read_exact_len(expected.len());
        assert_eq!(
            escape(&got),
            escape(expected),
            "reply to {}",
            escape_short(request)
        );
    }

    /// Reads until the server closes the connection; `true` if it did
    /// within `timeout` (a reset counts as closed).
    pub fn closed_within(&mut self, timeout: Duration) -> (bool, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (false, got);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return (true, got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (false, got);
                }
                Err(_) => return (true, got),
            }
        }
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Escapes bytes so that every byte is visible: `\r`, `\n`, `\t`, `\0`,
/// `\\`, `\xNN` for other non-printables; runs of more than 16 equal bytes
/// are written `\*N{b}`, the corpus syntax for a repeat.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run > 16 {
            out.push_str(&format!("\\*{run}{{"));
            escape_byte(&mut out, b);
            out.push('}');
            i += run;
        } else {
            escape_byte(&mut out, b);
            i += 1;
        }
    }
    out
}

/// [`escape`], cut to a readable length.
pub fn escape_short(bytes: &[u8]) -> String {
    let s = escape(bytes);
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], bytes.len())
    } else {
        s
    }
}

fn escape_byte(out: &mut String, b: u8) {
    match b {
        b'\r' => out.push_str("\\r"),
        b'\n' => out.push_str("\\n"),
        b'\t' => out.push_str("\\t"),
        0 => out.push_str("\\0"),
        b'\\' => out.push_str("\\\\"),
        b'{' => out.push_str("\\{"),
        b'}' => out.push_str("\\}"),
        0x20..=0x7e => out.push(b as char),
        _ => out.push_str(&format!("\\x{b:02x}")),
    }
}

/// The directory holding the differential corpus.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}
