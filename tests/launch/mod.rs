//! The one way the integration tests start a server: ferrocache or memcached
//! as a child process on a free loopback port, waited for with a deadline
//! (polled, never slept for), killed when dropped.
//!
//! ```ignore
//! let server = Server::start(&["-m", "16"]);            // ferrocache, ready
//! let (server, conn) = Launch::new(&spec).args(&flags).start_with_conn();
//! let server = Launch::ferrocache().args(["-Z", ...]).ready_on_accept().start();
//! let server = Launch::ferrocache().metrics().start();  // and a /metrics port
//! let output = Launch::ferrocache().args(["-Z"]).run_to_exit(); // refused start
//! ```
//!
//! Every server gets the same command line: `-p PORT -l 127.0.0.1 -U 0
//! -u USER`, for ferrocache `--metrics-listen off` (many servers run at
//! once and would race for the default port) unless [`Launch::metrics`]
//! asks for a port, then the test's arguments. Its stderr is kept (the last
//! few KB) for failure messages; stdout is discarded.
//!
//! A test file uses this with `mod launch;`; `common` (the differential
//! harness and the blocking client) expects it at `crate::launch`.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a server may take to accept its first connection, or to exit
/// when it is expected to refuse to start.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How many times a start is retried on fresh ports (another process may
/// take a port between our probe and the server's bind).
const START_ATTEMPTS: usize = 5;
/// How often a starting or exiting process is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// How much of a server's stderr is kept.
const STDERR_TAIL: usize = 8192;
/// Upper bound for any single blocking read or write in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which program a [`ServerSpec`] runs; they differ only in the user flag
/// and the metrics flag.
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

/// When a starting server counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// It answers `mn` on its first connection. Now and then a connection
    /// made the moment memcached starts listening is reset before any
    /// reply; a round trip proves this one is served.
    Served,
    /// It accepts a connection; nothing is sent on it.
    Accepting,
    /// It answers a binary-protocol Noop on its first connection, which
    /// then speaks binary (for `-B binary`, and binary sessions).
    ServedBinary,
}

/// How to start a server: the program, the test's arguments, and when it
/// counts as ready. Built up, then [`Launch::start`]ed.
#[derive(Debug, Clone)]
pub struct Launch {
    spec: ServerSpec,
    args: Vec<String>,
    /// Set in the server's environment (SASL's password file, for one).
    env: Vec<(String, String)>,
    ready: Ready,
    metrics: bool,
    /// The open files limit the server starts under, unable to raise it.
    fd_limit: Option<u64>,
}

impl Launch {
    /// `spec` with no arguments of the test's own.
    pub fn new(spec: &ServerSpec) -> Launch {
        Launch {
            spec: spec.clone(),
            args: Vec::new(),
            env: Vec::new(),
            ready: Ready::Served,
            metrics: false,
            fd_limit: None,
        }
    }

    /// The ferrocache built for this test run.
    pub fn ferrocache() -> Launch {
        Launch::new(&ServerSpec::ferrocache())
    }

    /// Adds arguments after the shared command line.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Sets `name` to `value` in the server's environment.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Ready once the port accepts a connection, which is then closed
    /// without a byte sent: for a TLS port (`-Z`), where a plain-text probe
    /// would fail. The server counts that probe as one failed handshake.
    pub fn ready_on_accept(mut self) -> Launch {
        self.ready = Ready::Accepting;
        self
    }

    /// Ready once a binary Noop is answered on the first connection, which
    /// is left speaking the binary protocol.
    pub fn ready_binary(mut self) -> Launch {
        self.ready = Ready::ServedBinary;
        self
    }

    /// Starts the server with at most `n` open files, as a user who cannot
    /// raise that (nobody, when the tests run as root).
    pub fn fd_limit(mut self, n: u64) -> Launch {
        self.fd_limit = Some(n);
        self
    }

    /// Serves `/metrics` on a free port too ([`Server::metrics_addr`]),
    /// which readiness then also waits for. ferrocache only.
    pub fn metrics(mut self) -> Launch {
        assert_eq!(
            self.spec.kind,
            Kind::Ferrocache,
            "only ferrocache has metrics"
        );
        self.metrics = true;
        self
    }

    /// Starts the server and waits until it is ready.
    ///
    /// # Panics
    /// If it is not ready within the deadline in any of a few tries, each
    /// on fresh ports.
    pub fn start(self) -> Server {
        self.start_with_conn().0
    }

    /// Like [`Launch::start`], and also returns the connection that proved
    /// the server ready. Using it for the test avoids a stray probe
    /// connection that the server may not have noticed closing yet (it would
    /// show in `stats conns` and `curr_connections`).
    pub fn start_with_conn(self) -> (Server, TcpStream) {
        let mut failures = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.try_start() {
                Ok(started) => return started,
                Err(e) => failures.push_str(&format!("\n  {e}")),
            }
        }
        panic!(
            "could not start {} {}:{failures}",
            self.spec.bin.display(),
            self.args.join(" ")
        );
    }

    /// Runs a server that is expected to refuse to start (bad flags or
    /// files) and returns how it exited, with its stderr. Its stdout is
    /// not kept.
    ///
    /// # Panics
    /// If it is still running at the deadline.
    pub fn run_to_exit(self) -> Output {
        let mut server = self.spawn(free_port(), None).expect("spawn the server");
        let status = server
            .wait_exit(START_DEADLINE)
            .unwrap_or_else(|| panic!("{:?} started instead of exiting", self.args));
        Output {
            status,
            stdout: Vec::new(),
            stderr: server.stderr_tail().into_bytes(),
        }
    }

    fn try_start(&self) -> Result<(Server, TcpStream), String> {
        let port = free_port();
        let metrics_port = self.metrics.then(free_port);
        let mut server = self.spawn(port, metrics_port)?;
        let deadline = Instant::now() + START_DEADLINE;
        let conn = server.accepted(server.addr, deadline)?;
        if let Some(metrics) = server.metrics {
            server.accepted(metrics, deadline)?;
        }
        configure(&conn);
        let probe = match self.ready {
            // `mn` moves no counter, nor does a Noop.
            Ready::Served => round_trip(&conn),
            Ready::ServedBinary => binary_round_trip(&conn),
            Ready::Accepting => Ok(()),
        };
        probe.map_err(|e| format!("first connection on port {port} failed: {e}"))?;
        Ok((server, conn))
    }

    /// The child on `port`, its stderr drained into a tail.
    fn spawn(&self, port: u16, metrics_port: Option<u16>) -> Result<Server, String> {
        let user = match self.spec.kind {
            Kind::Memcached => "nobody",
            // Tests run as root, which ferrocache only accepts with a user.
            Kind::Ferrocache => "root",
        };
        let mut cmd = Command::new(&self.spec.bin);
        cmd.args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
            .args(["-u", user]);
        if self.spec.kind == Kind::Ferrocache {
            let metrics = match metrics_port {
                Some(p) => format!("127.0.0.1:{p}"),
                None => "off".to_string(),
            };
            cmd.args(["--metrics-listen", &metrics]);
        }
        if let Some(n) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    let nobody = 65534;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0
                        || (libc::geteuid() == 0
                            && (libc::setgroups(0, std::ptr::null()) != 0
                                || libc::setgid(nobody) != 0
                                || libc::setuid(nobody) != 0))
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.spec.bin.display()))?;
        // Drain stderr so a chatty server (`verbosity 2`) never blocks on a
        // full pipe; keep the tail for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let drain = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut tail = sink.lock().unwrap();
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    let cut = tail.len() - STDERR_TAIL;
                    tail.drain(..cut);
                }
            }
        });
        Ok(Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics: metrics_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            spec: self.spec.clone(),
            stderr,
            drain: Some(drain),
        })
    }
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    metrics: Option<SocketAddr>,
    pub spec: ServerSpec,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread reading stderr; joined once the process has exited, so
    /// that the tail is complete.
    drain: Option<JoinHandle<()>>,
}

impl Server {
    /// ferrocache with `args`, ready to serve.
    pub fn start(args: &[&str]) -> Server {
        Launch::ferrocache().args(args).start()
    }

    /// A connection to `addr` once the server accepts there, or why not.
    fn accepted(&mut self, addr: SocketAddr, deadline: Instant) -> Result<TcpStream, String> {
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!(
                    "exited with {status} on port {}: {}",
                    self.addr.port(),
                    self.stderr_tail().trim()
                ));
            }
            if let Ok(conn) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                // If our child failed to bind, the port belongs to another
                // process; the child then exits at once.
                return match self.exit_status() {
                    Some(status) => Err(format!("exited with {status} on port {}", addr.port())),
                    None => Ok(conn),
                };
            }
            if Instant::now() > deadline {
                return Err(format!("no connection accepted on port {}", addr.port()));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Opens a new client connection: no Nagle, reads and writes bounded
    /// by [`IO_TIMEOUT`].
    pub fn connect(&self) -> TcpStream {
        let conn = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        configure(&conn);
        conn
    }

    /// The `/metrics` address asked for with [`Launch::metrics`].
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("started without Launch::metrics")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends signal `sig` to the process.
    pub fn signal(&self, sig: i32) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// The exit status if the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait")?;
        // Exited: its stderr ends, so the tail is soon complete.
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        Some(status)
    }

    /// Waits for the process to exit on its own, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The last few KB the server wrote to stderr (all of it once
    /// [`Server::exit_status`] has seen the process exit).
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

fn binary_round_trip(mut conn: &TcpStream) -> io::Result<()> {
    let mut noop = [0u8; 24];
    noop[0] = 0x80;
    noop[1] = 0x0a;
    conn.write_all(&noop)?;
    conn.read_exact(&mut noop)
}

/// No Nagle (small writes go out at once) and bounded blocking.
fn configure(conn: &TcpStream) {
    conn.set_nodelay(true).expect("set_nodelay");
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    conn.set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
}

/// Sends `req` on `stream` and reads until the reply ends with `until`.
pub fn ask(stream: &mut (impl Read + Write + ?Sized), req: &str, until: &str) -> String {
    stream.write_all(req.as_bytes()).expect("write");
    stream.flush().expect("flush");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(until.as_bytes()) {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("a text reply")
}

/// A file the server is given (an auth file, a configuration), in the
/// temporary directory under a name no other test process uses; removed
/// when dropped.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("ferrocache-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write the temporary file");
        TempFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
