//! Ascii authentication (`-Y`) over real TCP: the built binary on a free
//! loopback port, with replies as memcached 1.6.18 gives them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;

#[allow(dead_code)]
mod launch;
use launch::{Launch, Server, TempFile};

impl Server {
    fn client(&self) -> Conn {
        Conn(self.connect())
    }
}

struct Conn(TcpStream);

impl Conn {
    /// Sends `req` and reads until the reply ends with `until`.
    fn ask(&mut self, req: &str, until: &str) -> String {
        launch::ask(&mut self.0, req, until)
    }

    fn line(&mut self, req: &str) -> String {
        self.ask(req, "\r\n")
    }

    fn stat(&mut self, which: &str, name: &str) -> String {
        let reply = self.ask(&format!("stats{which}\r\n"), "END\r\n");
        let prefix = format!("STAT {name} ");
        reply
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {reply}"))
            .to_string()
    }
}

const USERS: &str = "alice:secret\nbob:pw2\n";

#[test]
fn commands_are_refused_until_the_client_authenticates() {
    let file = TempFile::new("refused", USERS);
    let server = Server::start(&["-Y", file.path()]);
    let mut c = server.client();
    for req in [
        "get a\r\n",
        "version\r\n",
        "stats\r\n",
        "mg a v\r\n",
        "quit\r\n",
    ] {
        assert_eq!(c.line(req), "CLIENT_ERROR unauthenticated\r\n", "{req}");
    }
    assert_eq!(
        c.line("add k 0 0 7\r\nbob pw2\r\n"),
        "CLIENT_ERROR unauthenticated\r\n"
    );
    // The data line of that add was read as a command of its own.
    assert_eq!(
        c.line("set k 0 0 5\r\nalice\r\n"),
        "CLIENT_ERROR bad authentication token format\r\n"
    );
    assert_eq!(
        c.line("set k 0 0 11\r\nalice wrong\r\n"),
        "CLIENT_ERROR authentication failure\r\n"
    );
    assert_eq!(
        c.line("set k 0 0 12\r\nalice secretX\r\n"),
        "CLIENT_ERROR bad command line termination\r\n"
    );
}

#[test]
fn a_set_of_user_and_password_authenticates_the_connection_only() {
    let file = TempFile::new("ok", USERS);
    let server = Server::start(&["-Y", file.path()]);
    let mut c = server.client();
    // Key, flags and exptime are ignored, and noreply too.
    assert_eq!(
        c.line("set anything 1 2 7 noreply\r\nbob pw2\r\n"),
        "STORED\r\n"
    );
    assert_eq!(c.line("set a 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.ask("get a\r\n", "END\r\n"), "VALUE a 0 1\r\nx\r\nEND\r\n");
    // Nothing was stored under the credentials' key.
    assert_eq!(c.ask("get anything\r\n", "END\r\n"), "END\r\n");
    assert_eq!(c.stat(" settings", "auth_enabled_ascii"), file.path());

    let mut other = server.client();
    assert_eq!(other.line("get a\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(
        other.line("set k 0 0 12\r\nbob  pw2    \r\n"),
        "STORED\r\n",
        "extra spaces are skipped as memcached's tokenizer does"
    );
    assert_eq!(
        other.ask("get a\r\n", "END\r\n"),
        "VALUE a 0 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn attempts_and_failures_are_counted() {
    let file = TempFile::new("count", USERS);
    let server = Server::start(&["-Y", file.path()]);
    let mut c = server.client();
    c.line("set k 0 0 7\r\nbob bad\r\n");
    c.line("set k 0 0 8\r\nnobody x\r\n");
    // A malformed token is not an attempt.
    c.line("set k 0 0 3\r\nbob\r\n");
    c.line("set k 0 0 12\r\nalice secret\r\n");
    assert_eq!(c.stat("", "auth_cmds"), "3");
    assert_eq!(c.stat("", "auth_errors"), "2");
}

#[test]
fn of_one_read_only_the_last_reply_is_sent_before_authenticating() {
    // memcached reuses one reply object until the client authenticates.
    let file = TempFile::new("batch", USERS);
    let server = Server::start(&["-Y", file.path()]);
    let mut c = server.client();
    assert_eq!(
        c.ask(
            "get a\r\nset k 0 0 11\r\nalice wrong\r\nset k 0 0 12\r\nalice secret\r\nget a\r\n",
            "END\r\n"
        ),
        "STORED\r\nEND\r\n"
    );
}

#[test]
fn an_unreadable_or_malformed_file_stops_start_up() {
    let run = |args: &[&str]| -> Output { Launch::ferrocache().args(args).run_to_exit() };
    let missing = run(&["-Y", "/nonexistent/ferrocache-authfile"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("Could not open authfile"),
        "{missing:?}"
    );
    let bad = TempFile::new("bad", "nocolon\n");
    let malformed = run(&["-Y", bad.path()]);
    assert!(!malformed.status.success());
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("malformed entry"),
        "{malformed:?}"
    );
}

#[test]
fn binary_connections_are_refused_under_ascii_authentication() {
    // memcached serves only ascii with -Y: a binary packet is read by the
    // ascii authentication step like any other unauthenticated request.
    let file = TempFile::new("binary", USERS);
    let server = Server::start(&["-Y", file.path()]);
    let mut noop = vec![0x80u8, 0x0a];
    noop.resize(24, 0);
    let mut c = server.client();
    c.0.write_all(&[&noop[..], b"\r\n"].concat())
        .expect("write");
    let mut reply = [0u8; 30];
    c.0.read_exact(&mut reply).expect("read");
    assert_eq!(&reply, b"CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(c.line("set k 0 0 12\r\nalice secret\r\n"), "STORED\r\n");
    assert_eq!(c.stat(" settings", "binding_protocol"), "ascii");
}

#[test]
fn asking_for_binary_with_ascii_authentication_stops_start_up() {
    let file = TempFile::new("binary-flag", USERS);
    for protocol in ["binary", "auto"] {
        let out = Launch::ferrocache()
            .args(["-Y", file.path(), "-B", protocol])
            .run_to_exit();
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(
                "You cannot allow the BINARY protocol while using ascii authentication tokens."
            ),
            "{out:?}"
        );
    }
    // Ascii is what -Y serves, so asking for it is fine.
    let server = Server::start(&["-Y", file.path(), "-B", "ascii"]);
    assert_eq!(
        server.client().line("get a\r\n"),
        "CLIENT_ERROR unauthenticated\r\n"
    );
}
