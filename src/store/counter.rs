//! incr / decr ([`Store::arith`]): the number is read, changed outside the
//! lock and swapped in if the item is still the version read, as memcached
//! rewrites it in place; with `vivify`, a miss creates the counter.
//!
//! PROTOCOL.md section 6: incr wraps at 2^64, decr stops at 0. A result no
//! longer than the stored text is right-padded with spaces to its length
//! (unless the request says that version is held); a longer one is stored as
//! its digits. Flags and deadline are kept; the CAS
//! is new.

use super::read::{created_deadline, run_steps};
use super::record::{NewItem, keep_state};
use super::request::{ArithRequest, ArithResult, Counter};
use super::shard::Find;
use super::{MAX_WRITE_ATTEMPTS, Store, item};

impl Store {
    /// incr / decr, with the request's CAS compare, vivify and steps
    /// applied to the result under the same lock.
    pub fn arith(&self, req: ArithRequest<'_>, now: u32) -> ArithResult {
        let key = req.key;
        let Some((hash, si)) = self.route(key) else {
            return ArithResult::NotFound;
        };
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(key, hash, &ctx);
            drop(garbage);
            let Some((old, old_cas)) = old else {
                if !req.vivify {
                    return ArithResult::NotFound;
                }
                return self.vivify_counter(&req, hash, si, now);
            };
            let h = item::header(&old);
            if req.compare_cas != 0 && req.compare_cas != old_cas {
                return ArithResult::Exists;
            }
            let old_value = &old[h.value_start..];
            let Some(n) = item::parse_counter(old_value) else {
                return ArithResult::NonNumeric;
            };
            let n = if req.incr {
                n.wrapping_add(req.delta)
            } else {
                n.saturating_sub(req.delta)
            };
            let mut digits = [0u8; 20];
            let ndigits = item::format_counter(n, &mut digits);
            // memcached rewrites the number in place (no new item for
            // total_items), padded to the old length, unless it is longer
            // than the stored text or something else holds the item.
            let in_place = ndigits <= old_value.len() && req.held != Some(old_cas);
            let len = if in_place { old_value.len() } else { ndigits };
            let cas = self.cas_for(req.cas_in);
            let fill = |d: &mut [u8]| {
                d[..ndigits].copy_from_slice(&digits[..ndigits]);
                d[ndigits..].fill(b' ');
            };
            let key_binary = item::key_binary(&old);
            let mut built = NewItem::new(self.layout, key, key_binary, h.flags, cas, len, &fill);
            let mut ttl_at_read = 0;
            let swapped = self.with_room(si, now, |shard, ctx| {
                let swapped = shard.swap(key, hash, &old, &mut built, ctx, |prev, e| {
                    keep_state(prev, e);
                    ttl_at_read = run_steps(e, req.steps, false).ttl;
                })?;
                if swapped.0.is_some() && in_place {
                    shard.counters.total_items -= 1;
                }
                Ok(swapped)
            });
            match swapped {
                Some(Some(cas)) => {
                    return ArithResult::Done(Counter {
                        value: n,
                        cas,
                        ttl_at_read,
                        created: false,
                    });
                }
                // Changed meanwhile: read it again.
                Some(None) => {}
                None => return ArithResult::OutOfMemory,
            }
        }
        ArithResult::OutOfMemory
    }

    /// A miss with `vivify`: adds the item with `initial` as its value; the
    /// delta is not applied.
    fn vivify_counter(
        &self,
        req: &ArithRequest<'_>,
        hash: u64,
        si: usize,
        now: u32,
    ) -> ArithResult {
        let key = req.key;
        let mut digits = [0u8; 20];
        let ndigits = item::format_counter(req.initial, &mut digits);
        let cas = self.cas_for(req.cas_in);
        let fill = |d: &mut [u8]| d.copy_from_slice(&digits[..ndigits]);
        let mut built = NewItem::new(self.layout, key, req.key_binary, 0, cas, ndigits, &fill);
        let outcome = self.with_room(si, now, |shard, ctx| {
            let garbage = match shard.find_live(key, hash, ctx) {
                Find::Live(..) => return Ok((None, None)),
                Find::Dead(_, old) => old,
                Find::Missing => None,
            };
            let deadline = created_deadline(req.steps);
            let (loc, more) = shard.insert_new(key, hash, &mut built, deadline, ctx)?;
            let mut e = shard.meta(loc);
            // As the steps found it: no deadline yet.
            e.deadline = 0;
            let ttl = run_steps(&mut e, req.steps, true).ttl;
            shard.set_meta(loc, e);
            Ok((Some((ttl, shard.cas(loc))), more.or(garbage)))
        });
        match outcome {
            Some(Some((ttl_at_read, cas))) => ArithResult::Done(Counter {
                value: req.initial,
                cas,
                ttl_at_read,
                created: true,
            }),
            Some(None) => ArithResult::NotStored,
            None => ArithResult::OutOfMemory,
        }
    }
}
