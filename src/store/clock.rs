//! Time as the store sees it: coarse seconds since the process started, and
//! the conversion of a client's `exptime` into a deadline on that scale.
//!
//! memcached keeps `current_time` in seconds relative to `process_started`,
//! which it sets two seconds in the past so that the relative time 1 is
//! always behind us and can mean "already expired". We do the same, so that
//! an item stamped with deadline 1 is dead at once, as memcached's is.
//! It knows nothing of items or shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The relative time in which every clock starts (memcached: `process_started = time(0) - 2`).
const START_REL: u32 = 2;

/// Relative exptimes above this are absolute unix times (memcached's `REALTIME_MAXDELTA`).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// A deadline meaning "expired already": earlier than any `now`.
pub const EXPIRED: u32 = 1;

/// A seconds clock. `System` follows the machine's monotonic clock; `Manual`
/// moves only when a test advances it, so no test needs to sleep.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Unix time that relative time 0 stands for.
    process_started: i64,
    source: Source,
}

#[derive(Debug)]
enum Source {
    System(Instant),
    Manual(AtomicU32),
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Clock {
            inner: Arc::new(Inner {
                process_started: unix - START_REL as i64,
                source: Source::System(Instant::now()),
            }),
        }
    }

    /// A clock for tests that stands still until [`Clock::advance`];
    /// `unix_now` is the unix time it reports at first.
    pub fn manual(unix_now: i64) -> Self {
        Clock {
            inner: Arc::new(Inner {
                process_started: unix_now - START_REL as i64,
                source: Source::Manual(AtomicU32::new(START_REL)),
            }),
        }
    }

    /// A manual clock that goes on from another's frame: relative time 0
    /// is the same unix time, and it reads `now` (a process that kept its
    /// clock across a restart, as memcached's does).
    #[cfg(test)]
    pub fn manual_resumed(process_started: i64, now: u32) -> Self {
        Clock {
            inner: Arc::new(Inner {
                process_started,
                source: Source::Manual(AtomicU32::new(now)),
            }),
        }
    }

    /// Moves a manual clock forward. Does nothing to the system clock.
    pub fn advance(&self, secs: u32) {
        if let Source::Manual(t) = &self.inner.source {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Seconds since `process_started` (never less than 2).
    pub fn now(&self) -> u32 {
        match &self.inner.source {
            Source::System(start) => {
                START_REL.saturating_add(start.elapsed().as_secs().min(u32::MAX as u64) as u32)
            }
            Source::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Unix time of `process_started`.
    pub fn process_started(&self) -> i64 {
        self.inner.process_started
    }

    /// Unix time now, as `stats` reports it.
    pub fn unix_now(&self) -> i64 {
        self.inner.process_started + self.now() as i64
    }

    /// Converts a relative time back to unix time.
    pub fn to_unix(&self, rel: u32) -> i64 {
        self.inner.process_started + rel as i64
    }

    /// See [`deadline`].
    pub fn deadline(&self, exptime: i64, now: u32) -> u32 {
        deadline(exptime, now, self.inner.process_started)
    }
}

/// Converts a client's `exptime` into a relative deadline; 0 means never.
///
/// memcached's `realtime()`: 0 never expires; a negative value is already
/// expired; up to 30 days it is seconds from now; beyond, a unix time, which
/// is already expired if it is not after the process start. memcached reads
/// the number as 64 bits and then keeps 32 (`(int32_t)`), so 99999999999
/// lands in the past; callers pass the value already cut to `i32`.
pub fn deadline(exptime: i64, now: u32, process_started: i64) -> u32 {
    if exptime == 0 {
        return 0;
    }
    if exptime < 0 {
        return EXPIRED;
    }
    if exptime > REALTIME_MAXDELTA {
        if exptime <= process_started {
            return EXPIRED;
        }
        return (exptime - process_started).min(u32::MAX as i64) as u32;
    }
    (exptime + now as i64).min(u32::MAX as i64) as u32
}

/// Whether an item with this deadline is dead at `now`.
pub fn is_expired(deadline: u32, now: u32) -> bool {
    deadline != 0 && deadline <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTED: i64 = 1_700_000_000;

    #[test]
    fn zero_never_expires() {
        assert_eq!(deadline(0, 100, STARTED), 0);
        assert!(!is_expired(0, u32::MAX));
    }

    #[test]
    fn negative_is_expired_at_once() {
        let d = deadline(-1, 100, STARTED);
        assert!(is_expired(d, 2));
    }

    #[test]
    fn relative_up_to_thirty_days() {
        assert_eq!(deadline(10, 100, STARTED), 110);
        assert_eq!(
            deadline(REALTIME_MAXDELTA, 100, STARTED),
            100 + REALTIME_MAXDELTA as u32
        );
        assert!(!is_expired(110, 109));
        assert!(is_expired(110, 110));
    }

    #[test]
    fn beyond_thirty_days_is_absolute_unix_time() {
        let abs = STARTED + 500;
        assert_eq!(deadline(abs, 100, STARTED), 500);
    }

    #[test]
    fn absolute_time_in_the_past_is_expired() {
        // Just over 30 days is a unix time in 1970: long gone.
        let d = deadline(REALTIME_MAXDELTA + 1, 100, STARTED);
        assert!(is_expired(d, 2));
        assert!(is_expired(deadline(STARTED, 100, STARTED), 2));
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = Clock::manual(STARTED);
        assert_eq!(c.now(), START_REL);
        assert_eq!(c.unix_now(), STARTED);
        c.advance(5);
        assert_eq!(c.now(), START_REL + 5);
        assert_eq!(c.unix_now(), STARTED + 5);
        assert_eq!(c.deadline(STARTED + 60, c.now()), START_REL + 60);
    }
}
