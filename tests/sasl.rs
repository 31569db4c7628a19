//! SASL (`-S`) over real TCP: the built binary on a free loopback port,
//! against a password file named by `MEMCACHED_SASL_PWDB`, with replies as
//! memcached 1.6.18 gives them.
//!
//! The exchanges are a table; [`memcached_gives_the_same_replies`] runs the
//! same table against memcached (Debian's, built with Cyrus SASL), given
//! the same user in a sasldb, so the expectations are memcached's own.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod launch;

use common::{Client, escape};
use launch::{IO_TIMEOUT, Launch, Server, ServerSpec, TempFile};

const PWDB: &str = "user:pass\nother:secret:extra\n";

const LIST: u8 = 0x20;
const AUTH: u8 = 0x21;
const STEP: u8 = 0x22;
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const STAT: u8 = 0x10;

const SUCCESS: u16 = 0x00;
const EINVAL: u16 = 0x04;
const AUTH_ERROR: u16 = 0x20;
const AUTH_CONTINUE: u16 = 0x21;

/// A request packet.
fn req(opcode: u8, key: &[u8], extras: &[u8], body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + body.len()) as u32).to_be_bytes());
    p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(body);
    p
}

/// A response packet without extras or key, CAS 0.
fn resp(opcode: u8, status: u16, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x81, opcode, 0, 0, 0, 0];
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&(body.len() as u32).to_be_bytes());
    p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(body);
    p
}

fn auth(mech: &[u8], data: &[u8]) -> Vec<u8> {
    req(AUTH, mech, b"", data)
}

fn step(data: &[u8]) -> Vec<u8> {
    req(STEP, b"PLAIN", b"", data)
}

fn authenticated(opcode: u8) -> Vec<u8> {
    resp(opcode, SUCCESS, b"Authenticated")
}

fn failure(opcode: u8) -> Vec<u8> {
    resp(opcode, AUTH_ERROR, b"Auth failure.")
}

const GOOD: &[u8] = b"\0user\0pass";

/// How an exchange leaves the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still served: list-mechanisms answers.
    Open,
    /// Closed by the server, nothing more sent.
    Closed,
}

struct Exchange {
    name: &'static str,
    steps: Vec<(Vec<u8>, Vec<u8>)>,
    end: End,
}

fn ex(name: &'static str, steps: Vec<(Vec<u8>, Vec<u8>)>, end: End) -> Exchange {
    Exchange { name, steps, end }
}

/// A get of `k` after a set of `v`, both answered.
fn set_then_get() -> Vec<(Vec<u8>, Vec<u8>)> {
    let set = req(SET, b"k", &[0; 8], b"v");
    // CAS values are masked (see `mask_cas`); both replies carry one.
    let mut stored = resp(SET, SUCCESS, b"");
    stored[23] = 1;
    let get = req(GET, b"k", b"", b"");
    let mut hit = vec![0x81, GET, 0, 0, 4, 0, 0, 0, 0, 0, 0, 5];
    hit.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    hit.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, b'v']);
    vec![(set, stored), (get, hit)]
}

fn table() -> Vec<Exchange> {
    use End::*;
    let get = || req(GET, b"k", b"", b"");
    let list = || (req(LIST, b"", b"", b""), resp(LIST, SUCCESS, b"PLAIN"));
    vec![
        ex("list_mechanisms_offers_plain", vec![list()], Open),
        ex(
            "good_credentials_let_commands_run",
            [
                vec![(auth(b"PLAIN", GOOD), authenticated(AUTH))],
                set_then_get(),
            ]
            .concat(),
            Open,
        ),
        ex(
            "an_authzid_must_be_the_user",
            vec![
                (auth(b"PLAIN", b"other\0user\0pass"), failure(AUTH)),
                (auth(b"PLAIN", b"user\0user\0pass"), authenticated(AUTH)),
            ],
            Open,
        ),
        ex(
            "the_mechanism_is_matched_regardless_of_case",
            vec![(auth(b"plain", GOOD), authenticated(AUTH))],
            Open,
        ),
        ex(
            "a_wrong_password_fails_and_the_client_may_try_again",
            vec![
                (auth(b"PLAIN", b"\0user\0wrong"), failure(AUTH)),
                (auth(b"PLAIN", b"\0nobody\0pass"), failure(AUTH)),
                (auth(b"PLAIN", b"\0user\0pass\0"), failure(AUTH)),
                (auth(b"PLAIN", b"\0user\0"), failure(AUTH)),
                (auth(b"PLAIN", b"userpass"), failure(AUTH)),
                (auth(b"PLAIN", GOOD), authenticated(AUTH)),
            ],
            Open,
        ),
        ex(
            "commands_after_a_failed_auth_close_the_connection",
            vec![
                (auth(b"PLAIN", b"\0user\0wrong"), failure(AUTH)),
                (get(), failure(GET)),
            ],
            Closed,
        ),
        ex(
            "an_unknown_mechanism_fails",
            vec![
                (auth(b"CRAM-MD5", GOOD), failure(AUTH)),
                (auth(b"PLAIN ", GOOD), failure(AUTH)),
                // 32 bytes is the longest name memcached looks at.
                (auth(&[b'P'; 32], GOOD), failure(AUTH)),
            ],
            Open,
        ),
        ex(
            "a_mechanism_name_over_32_bytes_is_invalid_and_its_data_skipped",
            vec![(
                auth(&[b'P'; 33], GOOD),
                resp(AUTH, EINVAL, b"Invalid arguments"),
            )],
            Open,
        ),
        ex(
            "an_auth_without_a_mechanism_is_invalid_and_closes",
            vec![(auth(b"", GOOD), resp(AUTH, EINVAL, b"Invalid arguments"))],
            Closed,
        ),
        ex(
            "a_get_before_auth_is_an_auth_error_and_closes",
            vec![(get(), failure(GET))],
            Closed,
        ),
        ex(
            "a_noop_before_auth_is_an_auth_error_and_closes",
            vec![(req(NOOP, b"", b"", b""), failure(NOOP))],
            Closed,
        ),
        ex(
            "a_quiet_get_before_auth_is_answered_too",
            vec![(req(GETQ, b"k", b"", b""), failure(GETQ))],
            Closed,
        ),
        ex(
            "stats_before_auth_are_refused",
            vec![(req(STAT, b"", b"", b""), failure(STAT))],
            Closed,
        ),
        ex(
            "an_unknown_opcode_before_auth_is_an_auth_error",
            vec![(req(0x40, b"", b"", b""), failure(0x40))],
            Closed,
        ),
        ex(
            "a_set_before_auth_is_refused_before_its_value_is_read",
            vec![{
                // Header, extras and key of a 2 MB set; the value never comes.
                let mut set = req(SET, b"k", &[0; 8], b"");
                set[8..12].copy_from_slice(&(9u32 + 2_000_000).to_be_bytes());
                (set, failure(SET))
            }],
            Closed,
        ),
        ex(
            "plain_without_credentials_continues_then_a_step_authenticates",
            [
                vec![
                    (auth(b"PLAIN", b""), resp(AUTH, AUTH_CONTINUE, b"")),
                    (step(b"\0user\0wrong"), failure(STEP)),
                    (step(GOOD), authenticated(STEP)),
                ],
                set_then_get(),
            ]
            .concat(),
            Open,
        ),
        ex(
            "a_step_needs_a_started_auth",
            vec![
                (step(GOOD), failure(STEP)),
                (auth(b"PLAIN", b"\0user\0wrong"), failure(AUTH)),
                (step(GOOD), failure(STEP)),
            ],
            Open,
        ),
        ex(
            "every_sasl_request_clears_the_authentication",
            vec![
                (auth(b"PLAIN", GOOD), authenticated(AUTH)),
                list(),
                (get(), failure(GET)),
            ],
            Closed,
        ),
        ex(
            "credentials_are_accepted_once_per_connection",
            vec![
                (auth(b"PLAIN", GOOD), authenticated(AUTH)),
                (auth(b"PLAIN", GOOD), failure(AUTH)),
                (step(GOOD), failure(STEP)),
                (get(), failure(GET)),
            ],
            Closed,
        ),
        ex(
            "pipelined_auth_and_commands",
            vec![(
                [auth(b"PLAIN", GOOD), req(NOOP, b"", b"", b"")].concat(),
                [authenticated(AUTH), resp(NOOP, SUCCESS, b"")].concat(),
            )],
            Open,
        ),
        ex(
            "pipelined_commands_after_a_failed_auth",
            vec![(
                [auth(b"PLAIN", b"\0user\0no"), req(NOOP, b"", b"", b"")].concat(),
                [failure(AUTH), failure(NOOP)].concat(),
            )],
            Closed,
        ),
    ]
}

/// Packets with every non-zero CAS set to 1: the servers number their
/// items differently, and only whether a reply carries one is compared.
fn mask_cas(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut at = 0;
    while bytes.len() >= at + 24 {
        let bodylen = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let cas = &mut bytes[at + 16..at + 24];
        if cas.iter().any(|&b| b != 0) {
            cas.copy_from_slice(&1u64.to_be_bytes());
        }
        at += 24 + bodylen;
    }
    bytes
}

fn run_exchange(server: &Server, e: &Exchange) {
    let mut c = Client::new(server.connect());
    for (request, expected) in &e.steps {
        c.send(request);
        let got = mask_cas(c.read_exact_len(expected.len()));
        assert_eq!(
            escape(&got),
            escape(expected),
            "{} on {}",
            e.name,
            server.spec.name()
        );
    }
    match e.end {
        End::Open => {
            c.send(&req(LIST, b"", b"", b""));
            let want = resp(LIST, SUCCESS, b"PLAIN");
            let got = c.read_exact_len(want.len());
            assert_eq!(escape(&got), escape(&want), "{}: still open", e.name);
        }
        End::Closed => {
            let (closed, extra) = c.closed_within(IO_TIMEOUT);
            assert!(
                closed && extra.is_empty(),
                "{} on {}: closed {closed}, then {}",
                e.name,
                server.spec.name(),
                escape(&extra)
            );
        }
    }
}

fn ferrocache(pwdb: &TempFile) -> Server {
    // Only binary is served, so readiness is a connection accepted.
    Launch::ferrocache()
        .args(["-S"])
        .env("MEMCACHED_SASL_PWDB", pwdb.path())
        .ready_on_accept()
        .start()
}

#[test]
fn exchanges_get_memcacheds_replies() {
    let pwdb = TempFile::new("sasl-pwdb", PWDB);
    for e in table() {
        // A fresh server for each, as items and CAS values carry over.
        run_exchange(&ferrocache(&pwdb), &e);
    }
}

#[test]
fn a_text_client_is_closed_without_a_reply() {
    let pwdb = TempFile::new("sasl-text", PWDB);
    text_client_is_closed(&ferrocache(&pwdb));
}

fn text_client_is_closed(server: &Server) {
    let mut c = Client::new(server.connect());
    // memcached reads a binary header (24 bytes) and finds no magic byte.
    c.send(b"version\r\n");
    let (closed, got) = c.closed_within(Duration::from_millis(200));
    assert!(!closed && got.is_empty(), "answered {}", escape(&got));
    c.send(b"get a b c d e f g\r\n");
    let (closed, got) = c.closed_within(IO_TIMEOUT);
    assert!(closed && got.is_empty(), "answered {}", escape(&got));
}

#[test]
fn version_is_answered_before_auth() {
    // The one request memcached runs unauthenticated besides SASL's own.
    let pwdb = TempFile::new("sasl-version", PWDB);
    let server = ferrocache(&pwdb);
    let mut c = Client::new(server.connect());
    let want = resp(VERSION, SUCCESS, ferrocache::VERSION.as_bytes());
    c.exchange(&req(VERSION, b"", b"", b""), &want);
    c.exchange(&req(GET, b"k", b"", b""), &failure(GET));
}

/// The value of `name` in a binary Stat reply (`group` empty: the general
/// stats).
fn stat(c: &mut Client, group: &[u8], name: &str) -> String {
    c.send(&req(STAT, group, b"", b""));
    loop {
        let header = c.read_exact_len(24);
        assert_eq!(header.len(), 24, "stats ended early");
        let keylen = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let bodylen = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
        let body = c.read_exact_len(bodylen);
        if keylen == 0 {
            panic!("no {name} in stats");
        }
        if &body[..keylen] == name.as_bytes() {
            let value = String::from_utf8_lossy(&body[keylen..]).into_owned();
            // Read the rest, up to the empty terminator.
            loop {
                let h = c.read_exact_len(24);
                let n = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
                let _ = c.read_exact_len(n);
                if n == 0 {
                    return value;
                }
            }
        }
    }
}

#[test]
fn auth_cmds_and_auth_errors_count_finished_exchanges() {
    let pwdb = TempFile::new("sasl-stats", PWDB);
    let server = ferrocache(&pwdb);
    let mut bad = Client::new(server.connect());
    bad.exchange(&auth(b"PLAIN", b"\0user\0no"), &failure(AUTH));
    bad.exchange(&auth(b"FOO", b""), &failure(AUTH));
    bad.exchange(&auth(b"PLAIN", b""), &resp(AUTH, AUTH_CONTINUE, b""));
    let mut c = Client::new(server.connect());
    c.exchange(&auth(b"PLAIN", GOOD), &authenticated(AUTH));
    // A continue is no finished exchange; the rest are.
    assert_eq!(stat(&mut c, b"", "auth_cmds"), "3");
    assert_eq!(stat(&mut c, b"", "auth_errors"), "2");
    assert_eq!(stat(&mut c, b"settings", "auth_enabled_sasl"), "yes");
    assert_eq!(stat(&mut c, b"settings", "binding_protocol"), "binary");
}

#[test]
fn the_password_file_is_read_as_memcached_reads_it() {
    // Tokens after a second colon are ignored; the first line of a user
    // decides; DOS line ends are fine.
    let pwdb = TempFile::new("sasl-format", "a:one:x\r\nb:two\r\na:three\n");
    let server = ferrocache(&pwdb);
    for (data, ok) in [
        (&b"\0a\0one"[..], true),
        (b"\0a\0one:x", true),
        (b"\0a\0three", false),
        (b"\0b\0two", true),
        (b"\0b\0tw", false),
    ] {
        let want = if ok {
            authenticated(AUTH)
        } else {
            failure(AUTH)
        };
        Client::new(server.connect()).exchange(&auth(b"PLAIN", data), &want);
    }
}

#[test]
fn the_password_is_never_logged() {
    let pwdb = TempFile::new("sasl-log", "user:s3cr3t-pw\n");
    let mut server = Launch::ferrocache()
        .args(["-S", "-vvv"])
        .env("MEMCACHED_SASL_PWDB", pwdb.path())
        .ready_on_accept()
        .start();
    let mut c = Client::new(server.connect());
    c.exchange(&auth(b"PLAIN", b"\0user\0s3cr3t-pw"), &authenticated(AUTH));
    c.exchange(&auth(b"PLAIN", b"\0user\0s3cr3t-pw"), &failure(AUTH));
    c.exchange(&req(GET, b"k", b"", b""), &failure(GET));
    // Stopped, so the log is complete: it shows the requests, not the
    // credentials.
    server.signal(15);
    assert!(server.wait_exit(IO_TIMEOUT).is_some(), "no exit on SIGTERM");
    let log = server.stderr_tail();
    assert!(log.contains("SASL"), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
}

#[test]
fn a_start_without_a_password_file_is_refused() {
    let out = Launch::ferrocache().args(["-S"]).run_to_exit();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MEMCACHED_SASL_PWDB"), "{err}");

    let out = Launch::ferrocache()
        .args(["-S"])
        .env("MEMCACHED_SASL_PWDB", "/nonexistent/pwdb")
        .run_to_exit();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/pwdb"), "{err}");
}

#[test]
fn sasl_refuses_the_ascii_protocol_as_memcached_does() {
    let pwdb = TempFile::new("sasl-ascii", PWDB);
    for proto in ["ascii", "auto"] {
        let out = Launch::ferrocache()
            .args(["-S", "-B", proto])
            .env("MEMCACHED_SASL_PWDB", pwdb.path())
            .run_to_exit();
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("You cannot allow the ASCII protocol while using SASL."),
            "{err}"
        );
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// memcached's SASL setup for the table's user: a sasldb made with
/// `saslpasswd2` and a `memcached.conf` offering PLAIN, readable by the
/// unprivileged user memcached runs as. `None` without `saslpasswd2`.
fn memcached_sasl_conf() -> Option<TempDir> {
    let saslpasswd2 = ["/usr/sbin/saslpasswd2", "/usr/bin/saslpasswd2"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let dir = TempDir(std::env::temp_dir().join(format!(
        "ferrocache-test-{}-memcached-sasl",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let db = dir.0.join("sasldb2");
    let mut child = Command::new(saslpasswd2)
        .args(["-p", "-c", "-a", "memcached", "-f"])
        .arg(&db)
        .arg("user")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run saslpasswd2");
    child.stdin.take().unwrap().write_all(b"pass").unwrap();
    assert!(child.wait().unwrap().success(), "saslpasswd2 failed");
    std::fs::write(
        dir.0.join("memcached.conf"),
        format!("mech_list: plain\nsasldb_path: {}\n", db.display()),
    )
    .unwrap();
    for (path, mode) in [
        (dir.0.clone(), 0o755),
        (db, 0o644),
        (dir.0.join("memcached.conf"), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    Some(dir)
}

#[test]
fn memcached_gives_the_same_replies() {
    let in_ci = std::env::var_os("CI").is_some();
    let Some(spec) = ServerSpec::memcached() else {
        assert!(!in_ci, "no memcached found in CI");
        eprintln!("SKIPPED: no memcached found");
        return;
    };
    let Some(conf) = memcached_sasl_conf() else {
        assert!(!in_ci, "no saslpasswd2 in CI (Debian: sasl2-bin)");
        eprintln!("SKIPPED: no saslpasswd2 (Debian: sasl2-bin)");
        return;
    };
    let conf_path = conf.0.to_str().unwrap().to_string();
    for e in table() {
        run_exchange(&memcached(&spec, &conf_path), &e);
    }
    text_client_is_closed(&memcached(&spec, &conf_path));
}

fn memcached(spec: &ServerSpec, sasl_conf_path: &str) -> Server {
    Launch::new(spec)
        .args(["-S"])
        .env("SASL_CONF_PATH", sasl_conf_path)
        .ready_on_accept()
        .start()
}
