//! Shared support for the TCP tests: starting a server on a free port,
//! plain blocking clients, and byte escaping for readable failure messages.
//!
//! Both memcached and ferrocache are started as child processes with the
//! same command line (`-p PORT -l 127.0.0.1 -U 0 -u USER` plus the test's
//! flags). Every test starts its own servers, so tests can run in parallel.
//!
//! The differential harness (corpus format, runner, normalisation) lives in
//! the submodules; the integration tests only use this file.

pub mod corpus;
pub mod normalise;
pub mod runner;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to accept its first connection.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How many times a start is retried on a fresh port (another process may
/// take the port between our probe and the server's bind).
const START_ATTEMPTS: usize = 5;
/// Upper bound for any single blocking read or write in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Which program a [`ServerSpec`] runs; they differ only in the user flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memcached,
    Ferrocache,
}

/// A server program to start.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    pub kind: Kind,
}

impl ServerSpec {
    /// The ferrocache binary built by cargo for this test run.
    pub fn ferrocache() -> ServerSpec {
        ServerSpec::from_path(PathBuf::from(env!("CARGO_BIN_EXE_ferrocache")))
    }

    /// memcached: `$FERROCACHE_DIFF_REFERENCE`, else `memcached` on `$PATH`
    /// or in `/usr/bin`. `None` if there is none.
    pub fn memcached() -> Option<ServerSpec> {
        if let Some(p) = std::env::var_os("FERROCACHE_DIFF_REFERENCE") {
            return Some(ServerSpec::from_path(PathBuf::from(p)));
        }
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push(PathBuf::from("/usr/bin"));
        dirs.push(PathBuf::from("/usr/local/bin"));
        dirs.into_iter()
            .map(|d| d.join("memcached"))
            .find(|p| p.is_file())
            .map(ServerSpec::from_path)
    }

    /// A spec for a path; a file named like memcached is started as one.
    pub fn from_path(bin: PathBuf) -> ServerSpec {
        let is_memcached = bin
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("memcached"));
        let kind = if is_memcached {
            Kind::Memcached
        } else {
            Kind::Ferrocache
        };
        ServerSpec { bin, kind }
    }

    /// A short name for messages: the file name of the binary.
    pub fn name(&self) -> String {
        self.bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.bin.display().to_string())
    }
}

/// Ports handed out by [`free_port`] in this process, so that two tests
/// running in parallel never start servers on the same port.
fn ports_in_use() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Ports that any TCP socket on this machine uses (any state, either end),
/// read once per process. A port still in TIME_WAIT from an earlier test
/// run can make a new connection to it fail, so those are avoided too.
/// Reading the table is slow, hence once; later sockets are our own and
/// [`ports_in_use`] keeps us from reusing their ports.
fn ports_seen_at_start() -> &'static HashSet<u16> {
    static SEEN: OnceLock<HashSet<u16>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let mut seen = HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                for addr in fields.iter().skip(1).take(2) {
                    if let Some(port) = addr
                        .rsplit_once(':')
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    {
                        seen.insert(port);
                    }
                }
            }
        }
        seen
    })
}

/// A port that is free now, for a server to bind.
///
/// Chosen below the kernel's ephemeral range: ports from that range are
/// also given to the client side of every connection the tests open, so a
/// server could find its port taken by a test's own client socket.
pub fn free_port() -> u16 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ (u64::from(std::process::id()) << 32)
    });
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.clamp(12000, 49152);
    let low = high - 10000;
    loop {
        // A small mixing function over a counter: spreads the ports so that
        // test processes started at the same time rarely try the same ones.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut x = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        let port = low + (x % u64::from(high - low)) as u16;
        if ports_seen_at_start().contains(&port) || !ports_in_use().lock().unwrap().insert(port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub spec: ServerSpec,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts `spec` with `flags` and waits until it accepts connections.
    ///
    /// # Panics
    /// If the server cannot be started within [`START_ATTEMPTS`] tries.
    pub fn start(spec: &ServerSpec, flags: &[String]) -> Server {
        Self::start_with_conn(spec, flags).0
    }

    /// Like [`Server::start`], and also returns the connection that proved
    /// the server ready. Using it for the test avoids a stray probe
    /// connection that the server may not have noticed closing yet (it would
    /// show in `stats conns` and `curr_connections`).
    pub fn start_with_conn(spec: &ServerSpec, flags: &[String]) -> (Server, TcpStream) {
        let mut failures = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(spec, flags) {
                Ok(started) => return started,
                Err(e) => failures.push_str(&format!("\n  {e}")),
            }
        }
        panic!(
            "could not start {} {}:{failures}",
            spec.bin.display(),
            flags.join(" ")
        );
    }

    fn try_start(spec: &ServerSpec, flags: &[String]) -> Result<(Server, TcpStream), String> {
        let port = free_port();
        let user = match spec.kind {
            Kind::Memcached => "nobody",
            Kind::Ferrocache => "root",
        };
        let mut cmd = Command::new(&spec.bin);
        cmd.args([
            "-p",
            &port.to_string(),
            "-l",
            "127.0.0.1",
            "-U",
            "0",
            "-u",
            user,
        ])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", spec.bin.display()))?;
        // Drain stderr so a chatty server (`verbosity 2`) never blocks on a
        // full pipe; keep the tail for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = sink.lock().unwrap();
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 8192 {
                        let cut = tail.len() - 8192;
                        tail.drain(..cut);
                    }
                }
            });
        }
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            spec: spec.clone(),
            stderr,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = server.exit_status() {
                return Err(format!(
                    "exited with {status} on port {port}: {}",
                    server.stderr_tail().trim()
                ));
            }
            if let Ok(conn) = TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)) {
                // If our child failed to bind, the port belongs to another
                // process; the child then exits at once.
                if let Some(status) = server.exit_status() {
                    return Err(format!("exited with {status} on port {port}"));
                }
                configure(&conn);
                // Now and then a connection made the moment memcached starts
                // listening is reset before any reply; a round trip proves
                // this one is served. `mn` moves no counter.
                return match round_trip(&conn) {
                    Ok(()) => Ok((server, conn)),
                    Err(e) => Err(format!("first connection on port {port} failed: {e}")),
                };
            }
            if Instant::now() > deadline {
                return Err(format!("no connection accepted on port {port}"));
            }
            // Poll interval while the process starts up.
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Opens a new client connection.
    pub fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        configure(&conn);
        conn
    }

    /// The exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last few KB the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `mn` and reads up to the end of the reply line, whatever it is.
fn round_trip(mut conn: &TcpStream) -> io::Result<()> {
    conn.write_all(b"mn\r\n")?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        match conn.read(&mut byte)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            _ => got.push(byte[0]),
        }
    }
    Ok(())
}

/// No Nagle (small writes go out at once) and bounded blocking.
fn configure(conn: &TcpStream) {
    conn.set_nodelay(true).expect("set_nodelay");
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    conn.set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
}

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
