//! SASL for the binary protocol (`-S`): memcached's password file and the
//! PLAIN mechanism.
//!
//! The credentials are `user:password` lines in the file named by
//! `MEMCACHED_SASL_PWDB`, read as memcached's `sasl_defs.c` reads it. The
//! per-connection state, [`SaslConn`], answers the binary protocol's SASL
//! list-mechanisms, auth and step requests as memcached 1.6.18 built with
//! Cyrus SASL does, quirks included (see its methods). It knows neither
//! sockets nor the wire: the binary composer spells its outcomes.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::auth::ct_eq;
use crate::stats::LocalStats;

/// The environment variable naming the password file, as in memcached.
pub const PWDB_ENV: &str = "MEMCACHED_SASL_PWDB";

/// The mechanisms offered, in list-mechanisms' spelling.
pub const MECHANISMS: &[u8] = b"PLAIN";

/// memcached reads the file in lines of at most 255 bytes and refuses a
/// user and password longer together than this without reading it.
const PAIR_MAX: usize = 256 - 4;

/// The credentials read from the password file at start-up.
pub struct Pwdb {
    path: PathBuf,
    /// The user, and the rest of the line after its `:`, for the first line
    /// of each user: memcached stops at the first line naming the user.
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Pwdb {
    // Never print the passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pwdb")
            .field("path", &self.path)
            .field("users", &self.entries.len())
            .finish()
    }
}

impl Pwdb {
    /// Reads the file named by [`PWDB_ENV`].
    ///
    /// # Errors
    /// The variable is not set, or the file cannot be read.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var_os(PWDB_ENV) {
            Some(path) if !path.is_empty() => Self::load(Path::new(&path)),
            _ => Err(format!(
                "-S needs {PWDB_ENV} to name a file of user:password lines"
            )),
        }
    }

    /// Reads `path`.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn load(path: &Path) -> Result<Self, String> {
        let data = std::fs::read(path).map_err(|e| {
            format!(
                "Could not open sasl database [{}] for reading, error {e}",
                path.display()
            )
        })?;
        Ok(Self::parse(path, &data))
    }

    /// The database in `data`, the contents of the file at `path` (kept
    /// for messages). Every line is `user:password`, with anything after a
    /// further `:` ignored; a line without `:` names no one (memcached
    /// skips it too).
    pub fn parse(path: &Path, data: &[u8]) -> Self {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let user = &line[..colon];
            if entries.iter().any(|(u, _)| u == user) {
                continue;
            }
            entries.push((user.to_vec(), line[colon + 1..].to_vec()));
        }
        Pwdb {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many users the file names.
    pub fn users(&self) -> usize {
        self.entries.len()
    }

    /// Whether `pass` is `user`'s password. As in memcached the password
    /// field ends at `:`, `\r`, NUL or the end of the line. Every entry is
    /// looked at, and each comparison takes a time that depends on the
    /// lengths only, not on where the bytes first differ.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        if user.len() + pass.len() > PAIR_MAX {
            return false;
        }
        let mut found = false;
        for (u, field) in &self.entries {
            let pass_ok = match field.get(..pass.len()) {
                Some(head) => {
                    let end = field.get(pass.len()).copied();
                    ct_eq(head, pass) & matches!(end, None | Some(b':' | b'\r' | 0))
                }
                None => false,
            };
            // `&`, not `&&`: both are compared, always.
            found |= ct_eq(u, user) & pass_ok;
        }
        found
    }
}

/// What an auth or step request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials are good: memcached answers "Authenticated".
    Authenticated,
    /// The mechanism wants more (PLAIN started without credentials):
    /// memcached answers "auth continue" with an empty challenge.
    Continue,
    /// memcached answers "auth error".
    Failed,
}

impl Outcome {
    /// Counts the outcome in `stats` as memcached does: a finished
    /// exchange is an `auth_cmds`, a failed one an `auth_errors` too.
    pub fn count(self, stats: &mut LocalStats) {
        match self {
            Outcome::Authenticated => stats.auth_cmds += 1,
            Outcome::Failed => {
                stats.auth_cmds += 1;
                stats.auth_errors += 1;
            }
            Outcome::Continue => {}
        }
    }
}

/// One connection's SASL state.
///
/// memcached keeps a Cyrus SASL connection per client and a flag saying
/// whether the client is authenticated. Its behaviours, each checked
/// against memcached 1.6.18:
/// - every SASL request (even list-mechanisms) first clears the flag, so
///   a client is authenticated only while its last SASL request succeeded;
/// - once credentials have been accepted on a connection, no later ones
///   are: a second auth or step fails;
/// - a step needs a started exchange; after PLAIN started without
///   credentials, steps may be retried until one succeeds.
#[derive(Debug, Default)]
pub struct SaslConn {
    authenticated: bool,
    /// memcached's `sasl_started`: the last auth succeeded or continued.
    started: bool,
    /// Credentials were accepted once on this connection.
    done: bool,
}

impl SaslConn {
    /// Whether requests other than SASL ones and Version may run.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// List mechanisms: the names, space-separated.
    pub fn list_mechanisms(&mut self) -> &'static [u8] {
        self.authenticated = false;
        MECHANISMS
    }

    /// An auth request: mechanism `mech` (matched regardless of case, as
    /// Cyrus does) with the client's first message `data`.
    pub fn start(&mut self, mech: &[u8], data: &[u8], db: &Pwdb) -> Outcome {
        self.authenticated = false;
        if !mech.eq_ignore_ascii_case(MECHANISMS) {
            self.started = false;
            return Outcome::Failed;
        }
        if data.is_empty() {
            self.started = true;
            return Outcome::Continue;
        }
        let outcome = self.plain(data, db);
        self.started = outcome == Outcome::Authenticated;
        outcome
    }

    /// A step request with the client's next message `data`. Its mechanism
    /// name is not looked at, as in memcached.
    pub fn step(&mut self, data: &[u8], db: &Pwdb) -> Outcome {
        self.authenticated = false;
        if !self.started {
            return Outcome::Failed;
        }
        self.plain(data, db)
    }

    /// PLAIN's one message: `authzid NUL authcid NUL password`, none of
    /// them holding a NUL. An authzid, when given, must be the authcid.
    fn plain(&mut self, data: &[u8], db: &Pwdb) -> Outcome {
        let mut parts = data.splitn(3, |&b| b == 0);
        let (Some(authzid), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next())
        else {
            return Outcome::Failed;
        };
        let well_formed = !user.is_empty()
            && !pass.is_empty()
            && !pass.contains(&0)
            && (authzid.is_empty() || authzid == user);
        // The file is consulted even when the answer is known, so a failure
        // takes as long whatever its reason.
        let known = db.check(user, pass);
        if well_formed && known && !self.done {
            self.done = true;
            self.authenticated = true;
            Outcome::Authenticated
        } else {
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Pwdb {
        Pwdb::parse(
            Path::new("pwdb"),
            b"user:pass\nalice:secret:extra tokens\r\nbob:dos\r\nalice:other\nnocolon\n:empty\n",
        )
    }

    const GOOD: &[u8] = b"\0user\0pass";

    #[test]
    fn the_file_is_read_as_memcached_reads_it() {
        let db = db();
        assert!(db.check(b"user", b"pass"));
        // Tokens after a further colon are ignored, and a password is
        // accepted if it reaches one of them.
        assert!(db.check(b"alice", b"secret"));
        assert!(db.check(b"alice", b"secret:extra tokens"));
        assert!(!db.check(b"alice", b"secret:extra"));
        // DOS line ends; memcached takes the `\r` as a password's end or
        // as part of it.
        assert!(db.check(b"bob", b"dos"));
        assert!(db.check(b"bob", b"dos\r"));
        assert!(!db.check(b"bob", b"do"));
        // The first line naming a user decides.
        assert!(!db.check(b"alice", b"other"));
        assert!(!db.check(b"user", b"pas"));
        assert!(!db.check(b"user", b"passs"));
        assert!(!db.check(b"User", b"pass"));
        assert!(!db.check(b"nocolon", b""));
        assert_eq!(db.users(), 4);
    }

    #[test]
    fn an_over_long_pair_never_matches_as_in_memcached() {
        let long = vec![b'p'; PAIR_MAX - 1];
        let mut file = b"u:".to_vec();
        file.extend_from_slice(&long);
        let db = Pwdb::parse(Path::new("pwdb"), &file);
        assert!(db.check(b"u", &long));
        let mut file = b"uu:".to_vec();
        file.extend_from_slice(&long);
        let db = Pwdb::parse(Path::new("pwdb"), &file);
        assert!(!db.check(b"uu", &long));
    }

    #[test]
    fn debug_output_shows_no_password() {
        let shown = format!("{:?}", db());
        assert!(!shown.contains("pass") && !shown.contains("secret"));
        assert!(shown.contains("users: 4"));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = Pwdb::load(Path::new("/nonexistent/pwdb")).unwrap_err();
        assert!(e.contains("/nonexistent/pwdb"), "{e}");
    }

    #[test]
    fn plain_accepts_good_credentials_once() {
        let db = db();
        let mut c = SaslConn::default();
        assert!(!c.is_authenticated());
        assert_eq!(c.start(b"PLAIN", GOOD, &db), Outcome::Authenticated);
        assert!(c.is_authenticated());
        // memcached (Cyrus) accepts no second credentials on a connection.
        assert_eq!(c.start(b"PLAIN", GOOD, &db), Outcome::Failed);
        assert!(!c.is_authenticated());
        assert_eq!(c.step(GOOD, &db), Outcome::Failed);
    }

    #[test]
    fn plain_refuses_what_memcached_refuses() {
        let db = db();
        for (mech, data) in [
            (&b"PLAIN"[..], &b"\0user\0nope"[..]),
            (b"FOO", GOOD),
            (b"PLAIN ", GOOD),
            (b"PLAIN", b"other\0user\0pass"),
            (b"PLAIN", b"user\0pass"),
            (b"PLAIN", b"userpass"),
            (b"PLAIN", b"\0user\0pass\0"),
            (b"PLAIN", b"\0user\0"),
            (b"PLAIN", b"\0\0pass"),
            (b"PLAIN", b"\0USER\0pass"),
        ] {
            let mut c = SaslConn::default();
            assert_eq!(c.start(mech, data, &db), Outcome::Failed, "{data:?}");
            assert!(!c.is_authenticated());
        }
        let mut c = SaslConn::default();
        assert_eq!(
            c.start(b"plain", b"user\0user\0pass", &db),
            Outcome::Authenticated
        );
    }

    #[test]
    fn plain_without_credentials_continues_and_steps_may_retry() {
        let db = db();
        let mut c = SaslConn::default();
        assert_eq!(c.start(b"PLAIN", b"", &db), Outcome::Continue);
        assert!(!c.is_authenticated());
        assert_eq!(c.step(b"\0user\0bad", &db), Outcome::Failed);
        assert_eq!(c.step(b"", &db), Outcome::Failed);
        // list-mechanisms keeps the exchange going.
        assert_eq!(c.list_mechanisms(), b"PLAIN");
        assert_eq!(c.step(GOOD, &db), Outcome::Authenticated);
        assert!(c.is_authenticated());
    }

    #[test]
    fn a_step_needs_a_started_exchange() {
        let db = db();
        let mut c = SaslConn::default();
        assert_eq!(c.step(GOOD, &db), Outcome::Failed);
        assert_eq!(c.start(b"PLAIN", b"\0user\0bad", &db), Outcome::Failed);
        assert_eq!(c.step(GOOD, &db), Outcome::Failed);
        assert_eq!(c.start(b"PLAIN", b"", &db), Outcome::Continue);
        assert_eq!(c.start(b"FOO", b"x", &db), Outcome::Failed);
        assert_eq!(c.step(GOOD, &db), Outcome::Failed);
        // A failed auth leaves the way open to a good one.
        assert_eq!(c.start(b"PLAIN", GOOD, &db), Outcome::Authenticated);
    }

    #[test]
    fn every_sasl_request_clears_the_authentication() {
        let db = db();
        let mut c = SaslConn::default();
        assert_eq!(c.start(b"PLAIN", GOOD, &db), Outcome::Authenticated);
        c.list_mechanisms();
        assert!(!c.is_authenticated());
        // Continues, but no step can succeed any more.
        assert_eq!(c.start(b"PLAIN", b"", &db), Outcome::Continue);
        assert_eq!(c.step(GOOD, &db), Outcome::Failed);
    }

    #[test]
    fn outcomes_count_as_memcached_counts_them() {
        let mut s = LocalStats::default();
        Outcome::Authenticated.count(&mut s);
        Outcome::Continue.count(&mut s);
        Outcome::Failed.count(&mut s);
        assert_eq!((s.auth_cmds, s.auth_errors), (2, 1));
    }
}
