//! The counters behind `stats`, with memcached's names.
//!
//! A connection counts into a plain [`LocalStats`] while it works through a
//! batch of requests and adds it into the shared [`Stats`] once per batch, so
//! the request path touches no shared cache line. The shared side is spread
//! over a few padded slots, summed when someone asks.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Per-connection counts for one batch; plain integers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct LocalStats {
            $(pub $name: u64,)*
        }

        /// Shared counts, one slot of atomics.
        #[derive(Debug, Default)]
        struct Slot {
            $($name: AtomicU64,)*
        }

        impl Slot {
            fn add(&self, l: &LocalStats) {
                $(if l.$name != 0 {
                    self.$name.fetch_add(l.$name, Ordering::Relaxed);
                })*
            }

            fn read_into(&self, out: &mut LocalStats) {
                $(out.$name = out.$name.wrapping_add(self.$name.load(Ordering::Relaxed));)*
            }

            fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }

        impl LocalStats {
            /// Every counter with its memcached name.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

counters!(
    total_connections,
    rejected_connections,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    idle_kicks,
    bytes_read,
    bytes_written,
    conn_yields,
);

impl LocalStats {
    pub fn is_zero(&self) -> bool {
        *self == LocalStats::default()
    }
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct PaddedSlot(Slot);

/// Shared counters, plus the gauge of open connections.
#[derive(Debug)]
pub struct Stats {
    slots: Box<[PaddedSlot]>,
    curr_connections: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(16)
    }
}

impl Stats {
    /// `slots` spreads writers; connection `n` writes to slot `n % slots`.
    pub fn new(slots: usize) -> Self {
        Stats {
            slots: (0..slots.max(1)).map(|_| PaddedSlot::default()).collect(),
            curr_connections: AtomicU64::new(0),
        }
    }

    /// Adds a batch's counts and zeroes them for the next batch.
    pub fn flush(&self, conn_id: u64, local: &mut LocalStats) {
        if local.is_zero() {
            return;
        }
        let slot = &self.slots[(conn_id as usize) % self.slots.len()];
        slot.0.add(local);
        *local = LocalStats::default();
    }

    /// Sums every slot.
    pub fn snapshot(&self) -> LocalStats {
        let mut out = LocalStats::default();
        for s in self.slots.iter() {
            s.0.read_into(&mut out);
        }
        out
    }

    /// `stats reset`.
    pub fn reset(&self) {
        for s in self.slots.iter() {
            s.0.reset();
        }
    }

    pub fn connection_opened(&self) {
        self.curr_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.curr_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn curr_connections(&self) -> u64 {
        self.curr_connections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_sum_across_slots_and_reset_clears() {
        let s = Stats::new(4);
        for conn in 0..10 {
            let mut l = LocalStats {
                cmd_get: 2,
                get_hits: 1,
                ..Default::default()
            };
            s.flush(conn, &mut l);
            assert!(l.is_zero());
        }
        let snap = s.snapshot();
        assert_eq!(snap.cmd_get, 20);
        assert_eq!(snap.get_hits, 10);
        s.reset();
        assert!(s.snapshot().is_zero());
    }

    #[test]
    fn field_names_are_memcached_names() {
        let names: Vec<_> = LocalStats::default().fields().map(|(n, _)| n).collect();
        assert!(names.contains(&"get_hits"));
        assert!(names.contains(&"cas_badval"));
    }
}
