//! systemd's readiness protocol (`Type=notify`), written by hand: one
//! datagram of `KEY=VALUE` lines to the unix socket named in
//! `NOTIFY_SOCKET`. `READY=1` once the listeners accept, `STOPPING=1` when
//! the drain starts. Without `NOTIFY_SOCKET` (not started by systemd)
//! nothing is sent.
//!
//! It is the whole of `sd_notify(3)` that a daemon needs, so it takes no
//! C library and no crate: a path or, after `@`, an abstract socket name.

use std::io;
use std::os::unix::net::UnixDatagram;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to the socket
/// `NOTIFY_SOCKET` names. `Ok(false)` when it names none.
///
/// # Errors
/// The socket cannot be reached or the datagram not sent.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(path) if !path.is_empty() => {
            send_to(&path, state)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Sends one datagram to `socket`: a filesystem path, or `@name` for an
/// abstract socket.
pub fn send_to(socket: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?
    } else {
        sock.send_to(state.as_bytes(), socket)?
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short notification datagram",
        ));
    }
    Ok(())
}

/// [`notify`], with a failure logged rather than returned: readiness is
/// systemd's business, and the cache serves either way.
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, state, "could not notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_socket_at_a_path() {
        let path = std::env::temp_dir().join(format!("ferrocache-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&server), "READY=1");
        send_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(receive(&server), "STOPPING=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ferrocache-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(std::ffi::OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(receive(&server), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let path = std::env::temp_dir().join("ferrocache-notify-nobody-listens");
        let _ = std::fs::remove_file(&path);
        assert!(send_to(path.as_os_str(), "READY=1").is_err());
    }
}
