//! The file descriptor limit: raised at start so that `-c` connections fit
//! under it, as memcached raises it, and what an accept loop does when it
//! is reached anyway: stop accepting until a connection closes, as
//! memcached turns its listeners off, rather than retry at once, which
//! spins a core and floods the log.

use std::io;
use std::time::{Duration, Instant};

use crate::stats::Stats;

/// Descriptors the process needs besides its connections: stdio, the
/// listening sockets, a ring or an epoll and a wake-up per worker, the
/// metrics listener and its scrapes, the snapshot and certificate files.
pub const HEADROOM: u64 = 64;

/// How often a paused accept loop looks whether it may accept again
/// (memcached's listeners, turned off, are looked at every 10 ms).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A paused accept loop tries again after this even with no connection
/// closed: descriptors may have been freed elsewhere (a scrape, a file,
/// another process for `ENFILE`).
const RETRY_ANYWAY: Duration = Duration::from_secs(1);

/// How often an accept loop that keeps running out says so in the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// memcached's refusal when `-c` does not fit under the hard limit.
const TOO_LOW: &str = "failed to set rlimit for open files. Try starting as root or \
                       requesting smaller maxconns value.";

/// The soft limit after [`raise_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub from: u64,
    pub to: u64,
}

/// Raises the soft descriptor limit to `conns` + [`HEADROOM`], and the hard
/// one too where allowed (as root). Err, with memcached's message, if not
/// even `conns` fit; Ok with a lower limit than asked if only the
/// headroom is short (connections near `-c` may then wait to be accepted).
pub fn raise_for(conns: usize) -> Result<Raised, String> {
    let (cur, max) = get()?;
    let want = conns as u64 + HEADROOM;
    if cur >= want {
        return Ok(Raised { from: cur, to: cur });
    }
    if set(want, max.max(want)).is_ok() || set(want.min(max), max).is_ok() {
        let (now, _) = get()?;
        if now >= conns as u64 {
            return Ok(Raised { from: cur, to: now });
        }
    }
    Err(TOO_LOW.into())
}

/// `reserved_fds`: the descriptors the limit leaves beyond `conns`
/// connections (memcached keeps 20 for itself).
pub fn reserved(conns: usize) -> u64 {
    get().map_or(0, |(cur, _)| cur.saturating_sub(conns as u64))
}

fn get() -> Result<(u64, u64), String> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err("failed to getrlimit number of files".into());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

fn set(cur: u64, max: u64) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether an accept failed for want of descriptors or kernel memory,
/// which the next attempt will meet again until a connection closes.
pub fn is_exhaustion(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

/// One accept loop's pauses: counted as memcached counts its listeners
/// being turned off (`listen_disabled_num`, `time_in_listen_disabled_us`,
/// `accepting_conns` 0 meanwhile), and logged at most every [`WARN_EVERY`].
#[derive(Debug, Default)]
pub struct AcceptPause {
    since: Option<Instant>,
    /// `Stats::closed_connections` when the pause began.
    closed: u64,
    warned: Option<Instant>,
}

impl AcceptPause {
    /// The loop stops accepting after `error`.
    pub fn begin(&mut self, stats: &Stats, error: &io::Error) {
        let now = Instant::now();
        if self.since.is_none() {
            self.since = Some(now);
            self.closed = stats.closed_connections();
            stats.accept_paused();
        }
        if self.warned.is_none_or(|w| now - w >= WARN_EVERY) {
            self.warned = Some(now);
            tracing::warn!(
                %error,
                "accept failed: not accepting connections for a while (raise the \
                 descriptor limit, ulimit -n or LimitNOFILE=, or lower -c)"
            );
        }
    }

    /// Looked at every [`ACCEPT_BACKOFF`] while paused: whether the loop
    /// may accept again (a connection has closed since the pause began, or
    /// [`RETRY_ANYWAY`] has passed), the pause then over.
    pub fn may_resume(&mut self, stats: &Stats) -> bool {
        let Some(since) = self.since else {
            return true;
        };
        let resume = stats.closed_connections() != self.closed || since.elapsed() >= RETRY_ANYWAY;
        if resume {
            self.end(stats);
        }
        resume
    }

    /// The loop accepts again.
    pub fn end(&mut self, stats: &Stats) {
        if self.since.take().is_some() {
            stats.accept_resumed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_counted_once_and_timed() {
        let stats = Stats::new(1);
        let mut pause = AcceptPause::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(stats.accepting_conns());
        pause.begin(&stats, &emfile);
        pause.begin(&stats, &emfile);
        assert!(!stats.accepting_conns());
        std::thread::sleep(Duration::from_millis(2));
        // Until a connection closes, it stays paused.
        assert!(!pause.may_resume(&stats));
        stats.connection_opened();
        stats.connection_closed();
        assert!(pause.may_resume(&stats));
        pause.end(&stats);
        assert!(stats.accepting_conns());
        let s = stats.snapshot();
        assert_eq!(s.listen_disabled_num, 1);
        assert!(s.time_in_listen_disabled_us >= 2_000, "{s:?}");
    }

    #[test]
    fn loops_paused_together_are_one_episode() {
        // Each io_uring worker has its own accept loop; memcached, one
        // thread turning every listener off at once, counts one.
        let stats = Stats::new(1);
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let (mut a, mut b) = (AcceptPause::default(), AcceptPause::default());
        a.begin(&stats, &emfile);
        b.begin(&stats, &emfile);
        a.end(&stats);
        assert!(!stats.accepting_conns(), "one loop is still paused");
        assert_eq!(stats.snapshot().time_in_listen_disabled_us, 0);
        b.end(&stats);
        assert!(stats.accepting_conns());
        assert_eq!(stats.snapshot().listen_disabled_num, 1);
        a.begin(&stats, &emfile);
        a.end(&stats);
        assert_eq!(stats.snapshot().listen_disabled_num, 2);
    }

    #[test]
    fn exhaustion_is_told_from_a_client_giving_up() {
        assert!(is_exhaustion(libc::EMFILE));
        assert!(is_exhaustion(libc::ENFILE));
        assert!(!is_exhaustion(libc::ECONNABORTED));
        assert!(!is_exhaustion(libc::EAGAIN));
    }

    #[test]
    fn the_limit_already_high_enough_is_left() {
        let (cur, _) = get().unwrap();
        let r = raise_for(cur.saturating_sub(HEADROOM) as usize).unwrap();
        assert_eq!((r.from, r.to), (cur, cur));
        assert_eq!(get().unwrap().0, cur);
        assert_eq!(reserved(0), cur);
        assert_eq!(reserved(cur as usize + 1), 0);
    }
}
