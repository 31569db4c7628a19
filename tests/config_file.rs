//! `--config-file` (Debian's memcached.conf format) and the start-up errors
//! an operator meets, against the built binary.

#[allow(dead_code)]
mod launch;
use launch::{Launch, TempFile, ask};

#[test]
fn the_files_flags_apply_and_the_command_line_wins() {
    let conf = TempFile::new(
        "applies",
        "-d\nlogfile /var/log/memcached.log\n-m 32   # item memory\n-c 77\n",
    );
    // The launcher's own flags (-p, -l, -u) follow, so they override.
    let server = Launch::ferrocache()
        .args(["--config-file", conf.path(), "-c", "99"])
        .start();
    let mut conn = server.connect();
    let settings = ask(&mut conn, "stats settings\r\n", "END\r\n");
    assert!(
        settings.contains("STAT maxbytes 33554432\r\n"),
        "{settings}"
    );
    assert!(settings.contains("STAT maxconns 99\r\n"), "{settings}");
}

/// The stderr of a start refused with exit status 64 (EX_USAGE).
fn refused(args: &[&str]) -> String {
    let out = Launch::ferrocache().args(args).run_to_exit();
    assert_eq!(out.status.code(), Some(64));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_line_ferrocache_refuses_is_named() {
    let conf = TempFile::new("unknown", "-m 64\n-k\n");
    let err = refused(&["--config-file", conf.path()]);
    assert!(
        err.contains(&format!("{}: line 2: `-k`", conf.path())),
        "{err}"
    );
}

#[test]
fn a_line_that_is_not_a_flag_is_named() {
    let conf = TempFile::new("directive", "maxconns 10\n");
    let err = refused(&["--config-file", conf.path()]);
    assert!(err.contains("line 1: `maxconns 10`: not a flag"), "{err}");
}

#[test]
fn a_missing_file_is_an_error() {
    let err = refused(&["--config-file", "/nonexistent/ferrocache.conf"]);
    assert!(
        err.contains("cannot read /nonexistent/ferrocache.conf"),
        "{err}"
    );
}

#[test]
fn a_missing_user_is_named() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Only root changes user; elsewhere -u is ignored, as in memcached.
        return;
    }
    let out = Launch::ferrocache()
        .args(["-u", "no-such-user-ferrocache"])
        .run_to_exit();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can't find the user no-such-user-ferrocache"),
        "{err}"
    );
}
