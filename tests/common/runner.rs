//! Runs one corpus session against one server and records what came back as
//! normalised lines (see normalise.rs), ready to compare with another run.
//!
//! Each connection has a reader thread that collects everything the server
//! sends, so a large pipelined write can never deadlock against replies we
//! have not read yet. Reads are made deterministic by the fence: `mn\r\n` is
//! sent and the reader waits for its `MN\r\n` (see corpus.rs). Every wait has
//! a deadline; running into it is recorded, not a panic.

use super::corpus::{Session, Step};
use super::normalise::{Normaliser, count_fences};
use crate::launch::{Launch, ServerSpec};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long to wait for a fence reply or for the server to close.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(3);
const FENCE: &[u8] = b"mn\r\n";

/// What one server sent in one session, normalised.
pub struct Transcript {
    pub server: String,
    pub lines: Vec<String>,
    /// Diagnostics that are shown with a difference but not compared.
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Received {
    buf: Vec<u8>,
    /// The server closed (EOF or reset), or we did.
    closed: bool,
    /// How the reading ended, for diagnostics.
    end: Option<String>,
}

/// One connection of a session, with a thread collecting what it receives
/// (the binary runner uses it too, with its own fence).
pub struct Conn {
    pub stream: TcpStream,
    received: Arc<(Mutex<Received>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    /// Everything written, to count the `mn` lines a sync must wait for.
    sent: Vec<u8>,
    /// How much of the received bytes is already in the transcript.
    shown: usize,
    /// A write failed, or we shut down our side: send nothing more.
    pub write_closed: bool,
    /// The connection is over: nothing more will be read or shown.
    pub done: bool,
    /// The first failed write, for diagnostics.
    write_error: Option<String>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let received = Arc::new((Mutex::new(Received::default()), Condvar::new()));
        let mut reading = stream.try_clone().expect("clone stream");
        reading.set_read_timeout(None).expect("set_read_timeout");
        let sink = Arc::clone(&received);
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let (n, end) = match reading.read(&mut buf) {
                    Ok(0) => (0, "EOF".to_string()),
                    Ok(n) => (n, String::new()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => (0, format!("read error: {e}")),
                };
                let (lock, cv) = &*sink;
                let mut r = lock.lock().unwrap();
                if n == 0 {
                    r.closed = true;
                    r.end = Some(end);
                    cv.notify_all();
                    return;
                }
                r.buf.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Conn {
            stream,
            received,
            reader: Some(reader),
            sent: Vec::new(),
            shown: 0,
            write_closed: false,
            done: false,
            write_error: None,
        }
    }

    pub fn write(&mut self, bytes: &[u8], bytewise: bool) {
        self.sent.extend_from_slice(bytes);
        if self.write_closed {
            return;
        }
        let result = if bytewise {
            bytes
                .iter()
                .try_for_each(|b| self.stream.write_all(std::slice::from_ref(b)))
        } else {
            self.stream.write_all(bytes)
        };
        if let Err(e) = result {
            // The server has gone away; what it sent before is still read.
            self.write_closed = true;
            self.write_error = Some(format!("write error after {} bytes: {e}", self.sent.len()));
        }
    }

    /// Waits until `done(received)` holds, the server closes, or the
    /// deadline passes. Returns the new bytes and how the wait ended.
    pub fn wait(&mut self, done: impl Fn(&[u8]) -> bool) -> (Vec<u8>, Ending) {
        let deadline = Instant::now() + WAIT_DEADLINE;
        let (lock, cv) = &*self.received;
        let mut r = lock.lock().unwrap();
        let ending = loop {
            if done(&r.buf) {
                break Ending::Fence;
            }
            if r.closed {
                break Ending::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::Timeout;
            }
            r = cv.wait_timeout(r, left).unwrap().0;
        };
        let new = r.buf[self.shown..].to_vec();
        self.shown = r.buf.len();
        (new, ending)
    }

    /// How the reading ended (EOF, an error), if it has.
    pub fn end(&self) -> Option<String> {
        let r = self.received.0.lock().unwrap();
        r.end
            .as_ref()
            .map(|e| format!("{e} after {} bytes", r.buf.len()))
    }

    /// Sends the fence and reads up to its reply.
    fn sync(&mut self, bytewise: bool) -> (Vec<u8>, Ending) {
        self.write(FENCE, bytewise);
        let want = count_mn_lines(&self.sent);
        self.wait(|buf| count_fences(buf) >= want)
    }

    /// Reads until the server closes the connection.
    pub fn read_to_close(&mut self) -> (Vec<u8>, Ending) {
        self.wait(|_| false)
    }

    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.done = true;
        self.write_closed = true;
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Fence,
    Closed,
    Timeout,
}

/// Lines sent that start with `mn` (after leading spaces): the server
/// answers each with `MN`.
fn count_mn_lines(sent: &[u8]) -> usize {
    let mut lines: Vec<&[u8]> = sent.split(|&b| b == b'\n').collect();
    lines.pop(); // not terminated yet
    lines
        .iter()
        .filter(|l| {
            let start = l.iter().position(|&b| b != b' ').unwrap_or(l.len());
            let l = &l[start..];
            l.starts_with(b"mn") && matches!(l.get(2), None | Some(b' ') | Some(b'\r'))
        })
        .count()
}

/// Runs `session` against a fresh server started from `spec`.
pub fn run(spec: &ServerSpec, session: &Session) -> Transcript {
    // memcached's default is 4 worker threads, ours one per core: `stats`
    // shows the number, so both get the same unless a session says otherwise.
    let threads: &[&str] = if session.flags.iter().any(|f| f == "-t") {
        &[]
    } else {
        &["-t", "4"]
    };
    let (mut server, first) = Launch::new(spec)
        .args(&session.flags)
        .args(threads)
        .start_with_conn();
    let mut norm = Normaliser::new(&session.stats_compare, &session.stats_ignore);
    let mut lines = Vec::new();
    let mut conns: Vec<Option<Conn>> = vec![Some(Conn::new(first))];
    let mut current = 0usize;
    let bytewise = session.bytewise;

    let mut record = |lines: &mut Vec<String>, conn: usize, bytes: Vec<u8>, ending: Ending| {
        lines.push(format!("[conn {}]", conn + 1));
        lines.extend(norm.render(&bytes));
        match ending {
            Ending::Fence => {}
            Ending::Closed => lines.push("<closed by server>".into()),
            Ending::Timeout => lines.push(format!(
                "<no reply or close within {}s>",
                WAIT_DEADLINE.as_secs()
            )),
        }
        norm.cas_values().to_vec()
    };
    let mut cas: Vec<u64> = Vec::new();

    fn sync_conn(c: &mut Conn, bytewise: bool) -> Option<(Vec<u8>, Ending)> {
        if c.done {
            return None;
        }
        let (bytes, ending) = if c.write_closed {
            c.read_to_close()
        } else {
            c.sync(bytewise)
        };
        if ending != Ending::Fence {
            c.done = true;
        }
        Some((bytes, ending))
    }

    for step in &session.steps {
        match step {
            Step::Write(payload) => {
                let bytes = payload.expand(&cas);
                if let Some(c) = conns[current].as_mut() {
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
                    conns[current] = Some(Conn::new(server.connect()));
                }
            }
            Step::Close | Step::HalfClose => {
                if let Some(c) = conns[current].as_mut().filter(|c| !c.done) {
                    if matches!(step, Step::HalfClose) {
                        let _ = c.stream.shutdown(Shutdown::Write);
                        c.write_closed = true;
                    }
                    let (bytes, ending) = c.read_to_close();
                    c.done = true;
                    cas = record(&mut lines, current, bytes, ending);
                }
            }
            Step::Disconnect => {
                if let Some(c) = conns[current].as_mut() {
                    c.close();
                }
            }
        }
    }
    if let Some((bytes, ending)) = conns[current].as_mut().and_then(|c| sync_conn(c, bytewise)) {
        record(&mut lines, current, bytes, ending);
    }
    let mut notes = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        if let Some(c) = c {
            let r = c.received.0.lock().unwrap();
            if let Some(end) = &r.end {
                notes.push(format!(
                    "conn {}: {} after {} bytes",
                    i + 1,
                    end,
                    r.buf.len()
                ));
            }
            drop(r);
            c.close();
        }
    }
    if let Some(status) = server.exit_status() {
        lines.push(format!("<server exited: {status}>"));
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
