//! TLS (`-Z`) over real TCP: the built binary on a free loopback port, a
//! certificate made with the `openssl` command for each test, and a rustls
//! client that trusts only that certificate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A directory with a self-signed certificate for localhost / 127.0.0.1.
struct Certs(PathBuf);

/// A self-signed certificate for localhost / 127.0.0.1 in `dir`, its files
/// `{prefix}cert.pem` and `{prefix}key.pem`.
fn make_cert(dir: &Path, prefix: &str) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate, not a CA one, which rustls refuses to use.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join(format!("{prefix}key.pem")))
        .arg("-out")
        .arg(dir.join(format!("{prefix}cert.pem")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command (Debian package openssl) makes the test certificate");
    assert!(status.success(), "openssl req failed");
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir =
            std::env::temp_dir().join(format!("ferrocache-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        make_cert(&dir, "");
        Certs(dir)
    }

    /// Also a self-signed client certificate, `client-cert.pem` / `client-key.pem`.
    fn with_client(self) -> Certs {
        make_cert(&self.0, "client-");
        self
    }

    fn client_cert(&self) -> PathBuf {
        self.0.join("client-cert.pem")
    }

    fn cert(&self) -> String {
        self.0.join("cert.pem").to_str().unwrap().to_string()
    }

    fn key(&self) -> String {
        self.0.join("key.pem").to_str().unwrap().to_string()
    }

    fn opts(&self) -> String {
        format!("ssl_chain_cert={},ssl_key={}", self.cert(), self.key())
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(dead_code)]
mod launch;
use launch::{Launch, Server};

/// ferrocache with `args` (TLS among them), ready once it accepts: a
/// plain-text readiness request would fail the handshake.
fn start(args: &[&str]) -> Server {
    Launch::ferrocache().args(args).ready_on_accept().start()
}

impl Server {
    /// A TLS connection that trusts only `ca`.
    fn tls(&self, ca: &Path) -> Conn {
        self.tls_as(ca, None)
    }

    /// A TLS connection that trusts only `ca`, presenting the client
    /// certificate and key files `client` if given.
    fn tls_as(&self, ca: &Path, client: Option<(&Path, &Path)>) -> Conn {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = match client {
            None => config.with_no_client_auth(),
            Some((cert, key)) => config
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
        };
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        Conn(Box::new(StreamOwned::new(conn, self.connect())))
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Conn(Box<dyn Stream>);

impl Conn {
    /// Sends `req` and reads until the reply ends with `until`.
    fn ask(&mut self, req: &str, until: &str) -> String {
        launch::ask(&mut *self.0, req, until)
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

#[test]
fn commands_run_over_tls() {
    let certs = Certs::new("basic");
    let server = start(&["-Z", "-o", &certs.opts()]);
    let mut c = server.tls(Path::new(&certs.cert()));
    assert_eq!(c.ask("set a 0 0 5\r\nhello\r\n", "\r\n"), "STORED\r\n");
    let big = "x".repeat(200_000);
    assert_eq!(
        c.ask(&format!("set big 0 0 {}\r\n{big}\r\n", big.len()), "\r\n"),
        "STORED\r\n"
    );
    assert_eq!(
        c.ask("get a\r\n", "END\r\n"),
        "VALUE a 0 5\r\nhello\r\nEND\r\n"
    );
    let reply = c.ask("get big\r\n", "END\r\n");
    assert_eq!(
        reply.len(),
        big.len() + "VALUE big 0 200000\r\n\r\nEND\r\n".len()
    );
    assert_eq!(c.stat(" settings", "ssl_enabled"), "yes");
    assert_eq!(c.stat(" settings", "ssl_chain_cert"), certs.cert());
    assert_eq!(c.stat(" settings", "ssl_key"), certs.key());
    assert_eq!(c.stat(" settings", "ssl_verify_mode"), "0");
    // The readiness probe connected and closed without a handshake, which
    // memcached counts as a handshake error too.
    assert_eq!(c.stat("", "ssl_handshake_errors"), "1");
}

#[test]
fn a_plain_text_client_fails_the_handshake_and_is_counted() {
    let certs = Certs::new("plain");
    let server = start(&["-Z", "-o", &certs.opts()]);
    let mut c = server.tls(Path::new(&certs.cert()));
    let before: u64 = c.stat("", "ssl_handshake_errors").parse().unwrap();
    let mut plain = server.connect();
    plain.write_all(b"version\r\n").unwrap();
    let mut got = Vec::new();
    // The server closes it (perhaps after a TLS alert); never a text reply.
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"VERSION"), "{got:?}");
    // The socket closes as the handshake fails, a moment before the failure
    // is counted: look until it is, within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after: u64 = c.stat("", "ssl_handshake_errors").parse().unwrap();
        if after == before + 1 {
            break;
        }
        assert!(after == before, "counted {after} from {before}");
        assert!(std::time::Instant::now() < deadline, "never counted");
        std::thread::yield_now();
    }
}

#[test]
fn tls_and_authentication_combine() {
    let certs = Certs::new("auth");
    let users = certs.0.join("users");
    std::fs::write(&users, "alice:secret\n").unwrap();
    let server = start(&["-Z", "-o", &certs.opts(), "-Y", users.to_str().unwrap()]);
    let mut c = server.tls(Path::new(&certs.cert()));
    assert_eq!(
        c.ask("get a\r\n", "\r\n"),
        "CLIENT_ERROR unauthenticated\r\n"
    );
    assert_eq!(
        c.ask("set k 0 0 12\r\nalice secret\r\n", "\r\n"),
        "STORED\r\n"
    );
    assert_eq!(c.ask("get a\r\n", "END\r\n"), "END\r\n");
}

#[test]
fn without_a_usable_certificate_start_up_stops() {
    let run = |args: &[&str]| {
        let out = Launch::ferrocache().args(args).run_to_exit();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["-Z"]).contains("ssl_chain_cert"));
    assert!(run(&["-Z", "-o", "ssl_chain_cert=/nonexistent/cert.pem"]).contains("certificate"));
    let certs = Certs::new("refuse");
    // The key file alone holds no certificate.
    assert!(run(&["-Z", "-o", &format!("ssl_chain_cert={}", certs.key())]).contains("certificate"));
    assert!(
        run(&["-Z", "-o", &format!("{},ssl_verify_mode=2", certs.opts())]).contains("ssl_ca_cert")
    );
}

#[test]
fn verify_mode_2_requires_a_client_certificate_from_the_ca() {
    let certs = Certs::new("verify").with_client();
    let ca = certs.client_cert();
    let opts = format!(
        "{},ssl_verify_mode=2,ssl_ca_cert={}",
        certs.opts(),
        ca.display()
    );
    let server = start(&["-Z", "-o", &opts]);
    let server_ca = PathBuf::from(certs.cert());
    let client_key = certs.0.join("client-key.pem");

    let mut with = server.tls_as(&server_ca, Some((&ca, &client_key)));
    assert!(with.ask("version\r\n", "\r\n").starts_with("VERSION "));
    assert_eq!(with.stat(" settings", "ssl_verify_mode"), "2");
    assert_eq!(with.stat(" settings", "ssl_ca_cert"), ca.to_str().unwrap());

    // Without one the server ends the handshake; with TLS 1.3 the client
    // learns it on its first read.
    let mut without = server.tls(&server_ca);
    let _ = without.0.write_all(b"version\r\n");
    let _ = without.0.flush();
    let mut buf = [0u8; 64];
    assert!(
        !matches!(without.0.read(&mut buf), Ok(n) if n > 0),
        "served a client without a certificate"
    );
}

#[test]
fn verify_mode_1_asks_but_does_not_require() {
    let certs = Certs::new("request").with_client();
    let opts = format!(
        "{},ssl_verify_mode=1,ssl_ca_cert={}",
        certs.opts(),
        certs.client_cert().display()
    );
    let server = start(&["-Z", "-o", &opts]);
    let mut c = server.tls(Path::new(&certs.cert()));
    assert!(c.ask("version\r\n", "\r\n").starts_with("VERSION "));
}

impl Certs {
    /// Makes a fresh certificate and key and puts them where the server
    /// reads its own; returns the new certificate's path (a copy).
    fn replace(&self, name: &str) -> PathBuf {
        make_cert(&self.0, &format!("{name}-"));
        let cert = self.0.join(format!("{name}-cert.pem"));
        std::fs::copy(&cert, self.cert()).unwrap();
        std::fs::copy(self.0.join(format!("{name}-key.pem")), self.key()).unwrap();
        cert
    }
}

/// Whether a TLS client trusting only `ca` gets a reply from `server`.
fn trusted(server: &Server, ca: &Path) -> bool {
    let mut c = server.tls(ca);
    if c.0.write_all(b"version\r\n").is_err() || c.0.flush().is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(c.0.read(&mut buf), Ok(n) if buf[..n].starts_with(b"VERSION "))
}

#[test]
fn refresh_certs_serves_new_connections_with_the_files_as_they_are_now() {
    let certs = Certs::new("refresh");
    let first = certs.0.join("first-cert.pem");
    std::fs::copy(certs.cert(), &first).unwrap();
    let server = start(&["-Z", "-o", &certs.opts()]);
    let mut c = server.tls(&first);
    assert!(c.ask("version\r\n", "\r\n").starts_with("VERSION "));

    let second = certs.replace("second");
    // Until asked, the server keeps what it read at start.
    assert!(trusted(&server, &first) && !trusted(&server, &second));
    assert_eq!(c.ask("refresh_certs\r\n", "\r\n"), "OK\r\n");
    assert!(
        trusted(&server, &second),
        "new connections get the new certificate"
    );
    assert!(!trusted(&server, &first));
    // The connection open across the reload carries on.
    assert_eq!(c.ask("set k 0 0 1\r\nx\r\n", "\r\n"), "STORED\r\n");

    // A reload that fails keeps the certificate in use and says why, in
    // memcached's words.
    std::fs::write(certs.cert(), "not a certificate\n").unwrap();
    let reply = c.ask("refresh_certs\r\n", "\r\n");
    let want = format!("Error loading the certificate chain: {} : ", certs.cert());
    assert!(reply.starts_with(&want), "{reply:?}");
    assert!(
        trusted(&server, &second),
        "a failed reload kept the old files"
    );
}

#[test]
fn sighup_reloads_the_certificates() {
    let certs = Certs::new("sighup");
    let server = start(&["-Z", "-o", &certs.opts()]);
    let second = certs.replace("second");
    assert!(!trusted(&server, &second));
    server.signal(libc::SIGHUP);
    // The signal is handled asynchronously: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !trusted(&server, &second) {
        assert!(std::time::Instant::now() < deadline, "not reloaded");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // And the process is still the same server.
    let mut c = server.tls(&second);
    assert!(c.ask("version\r\n", "\r\n").starts_with("VERSION "));
}
