//! `-d`: the daemon forks into the background as memcached's does; the
//! command returns at once with 0, the child serves, writes the pid file
//! and removes it when stopped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod launch;
use launch::{ask, free_port};

/// Polls `ready` until it holds or 20 s pass.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn minus_d_returns_at_once_and_the_child_serves_until_sigterm() {
    let port = free_port();
    let pidfile: PathBuf =
        std::env::temp_dir().join(format!("ferrocache-daemon-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    let status = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args(["-d", "-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
        .args(["-u", "root", "--metrics-listen", "off", "-P"])
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ferrocache -d");
    assert!(status.success(), "the foreground process exits 0: {status}");

    wait_for("the pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut conn = None;
    wait_for("the daemon to listen", || {
        conn = TcpStream::connect(("127.0.0.1", port)).ok();
        conn.is_some()
    });
    let mut conn = conn.unwrap();
    assert!(ask(&mut conn, "version\r\n", "\r\n").starts_with("VERSION "));
    // Its own session: no terminal's hang-up reaches it.
    // SAFETY: plain libc calls on a pid we read back.
    let (sid, alive) = unsafe { (libc::getsid(pid), libc::kill(pid, 0) == 0) };
    assert!(alive);
    assert_eq!(sid, pid, "the daemon leads a session of its own");

    // SAFETY: signalling the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // Whoever reaps it (the daemon's parent is now init), it removes its
    // pid file and stops listening when it exits.
    wait_for("the pid file to go", || !pidfile.exists());
    wait_for("the port to close", || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}
