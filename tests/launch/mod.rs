//! The built binary on a free loopback port, for the test files that need
//! the real process (signals, exit status, resident memory, TLS, auth).
//! Readiness is polled with a deadline, never slept for.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running ferrocache, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

/// The command line every test server shares: loopback only, `-u root`
/// because tests run as root, and no metrics port, since many servers run
/// at once and would race for the default one.
pub fn command(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocache"));
    cmd.args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
        .args(["-u", "root", "--metrics-listen", "off"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

impl Server {
    /// Starts the binary with `args` on a free port and waits until it accepts.
    pub fn start(args: &[&str]) -> Server {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut child = command(port, args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ferrocache");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // The port was taken meanwhile: try another.
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Server { child, port };
                }
                assert!(Instant::now() < deadline, "ferrocache did not start");
                thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("could not start ferrocache on a free port");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
