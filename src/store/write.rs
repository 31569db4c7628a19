//! Writes and deletes: [`Store::store`] in every [`StoreMode`], with CAS
//! compare and invalidation, and [`Store::delete`].
//!
//! A whole new value is built before the lock and stored under it in one
//! step. Append and prepend, and an invalidating delete, build the new
//! version from the current one outside the lock and swap it in only if
//! that version is still current, reading again if it is not. Memory for
//! either comes through [`Store::with_room`].

use bytes::Bytes;

use super::record::{ACTIVE, NewItem, STALE, WIN, keep_state};
use super::request::{DeleteRequest, DeleteResult, StoreRequest, StoreResult, Written};
use super::shard::{Ctx, Find, Full, Shard};
use super::{MAX_WRITE_ATTEMPTS, Store, item};
use crate::item_rules::{Limits, StoreMode};

impl Shard {
    /// set / add / replace / cas (`mode`, the request's mode with a CAS
    /// compare folded in). Append and prepend go through [`Shard::swap`].
    /// Returns the outcome and, if stored, the new item's CAS.
    pub(super) fn store(
        &mut self,
        req: &StoreRequest<'_>,
        mode: StoreMode,
        hash: u64,
        new: &mut NewItem,
        ctx: &Ctx,
    ) -> Result<((StoreResult, u64), Option<Bytes>), Full> {
        let key = req.key;
        let (current, garbage) = match self.find_live(key, hash, ctx) {
            Find::Live(loc, entry) => (Some((loc, Some(entry))), None),
            Find::Dead(_, garbage) => (None, garbage),
            Find::Missing => (None, None),
        };
        let at = current.map(|(loc, _)| loc);
        let mut deadline = req.deadline;
        let mut invalidated = None;
        match (mode, at) {
            (StoreMode::Add, Some(loc)) => {
                // memcached bumps the item a failed add ran into.
                let mut m = self.meta(loc);
                m.set(ACTIVE);
                self.set_meta(loc, m);
                return Ok(((StoreResult::NotStored, 0), garbage));
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return Ok(((StoreResult::NotStored, 0), garbage));
            }
            (StoreMode::Cas, None) => return Ok(((StoreResult::NotFound, 0), garbage)),
            (StoreMode::Cas, Some(loc)) => {
                let (compare, cur) = (req.compare_cas.unwrap_or(0), self.cas(loc));
                if req.invalidate {
                    // A CAS older than the item's still stores, as a stale
                    // item keeping the old deadline and token; memcached
                    // 1.6.18 treats C0 as no CAS to invalidate with.
                    if compare != cur {
                        if compare > cur || compare == 0 {
                            return Ok(((StoreResult::Exists, 0), garbage));
                        }
                        let prev = self.meta(loc);
                        deadline = prev.deadline;
                        invalidated = Some(prev);
                    }
                } else if compare == 0 || compare != cur {
                    // A cas of 0 never matches, also when -C leaves every
                    // item's CAS at 0 (memcached answers EXISTS there too).
                    return Ok(((StoreResult::Exists, 0), garbage));
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some(_)) => {
                unreachable!("append and prepend are built from the old value: use swap")
            }
            _ => {}
        }
        let (loc, old) = self.commit(key, hash, current, new, deadline, ctx)?;
        if let Some(prev) = invalidated {
            let mut e = self.meta(loc);
            e.set(STALE);
            if prev.has(WIN) {
                e.set(WIN);
            }
            self.set_meta(loc, e);
        }
        Ok((
            (StoreResult::Stored, self.placed_cas(loc, new)),
            old.or(garbage),
        ))
    }
}

impl Store {
    /// A write in any [`StoreMode`]: returns the outcome and the new item's
    /// CAS (0 unless stored). See [`Store::store_sized`].
    pub fn store(&self, req: StoreRequest<'_>, now: u32) -> (StoreResult, u64) {
        let w = self.store_sized(req, now);
        (w.result, w.cas)
    }

    /// A write in any [`StoreMode`]: the outcome, the new item's CAS and
    /// the length of the value stored. A key longer than 255 bytes (the
    /// protocol allows 250) is not stored. With `req.oom_deletes`, running
    /// out of memory also deletes the old value.
    pub fn store_sized(&self, req: StoreRequest<'_>, now: u32) -> Written {
        let Some((hash, si)) = self.route(req.key) else {
            return Written {
                result: StoreResult::NotStored,
                cas: 0,
                len: req.value.len(),
            };
        };
        let (result, cas, len) = match req.mode {
            StoreMode::Append | StoreMode::Prepend => self.concat(&req, hash, si, now),
            _ => {
                let (result, cas) = self.replace_whole(&req, req.mode, hash, si, now);
                (result, cas, req.value.len())
            }
        };
        if result == StoreResult::OutOfMemory && req.oom_deletes {
            self.delete_routed(DeleteRequest::new(req.key), hash, si, now);
        }
        Written { result, cas, len }
    }

    /// set / add / replace / cas: the new item is built before the lock.
    fn replace_whole(
        &self,
        req: &StoreRequest<'_>,
        mode: StoreMode,
        hash: u64,
        si: usize,
        now: u32,
    ) -> (StoreResult, u64) {
        let mode = match (mode, req.compare_cas) {
            (StoreMode::Set | StoreMode::Replace, Some(_)) => StoreMode::Cas,
            (mode, _) => mode,
        };
        let cas = self.cas_for(req.cas_in);
        let fill = |d: &mut [u8]| d.copy_from_slice(req.value);
        let mut built = NewItem::new(
            self.layout,
            req.key,
            req.key_binary,
            req.flags,
            cas,
            req.value.len(),
            &fill,
        );
        if !self.fits(&built) {
            return (StoreResult::OutOfMemory, 0);
        }
        let stored = self.with_room(si, now, |shard, ctx| {
            shard.store(req, mode, hash, &mut built, ctx)
        });
        stored.unwrap_or((StoreResult::OutOfMemory, 0))
    }

    /// append / prepend: flags and deadline are kept, a non-zero
    /// `compare_cas` must match, and a result larger than `-I` is refused.
    /// With `req.vivify`, a miss stores the value as a new item (no CAS
    /// compare). Returns the outcome, the CAS and the value's length.
    fn concat(
        &self,
        req: &StoreRequest<'_>,
        hash: u64,
        si: usize,
        now: u32,
    ) -> (StoreResult, u64, usize) {
        let sent = req.value.len();
        let limits = Limits {
            item_size_max: self.config.item_size_max,
            cas_enabled: self.config.cas_enabled,
        };
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(req.key, hash, &ctx);
            drop(garbage);
            let Some((old, old_cas)) = old else {
                if !req.vivify {
                    return (StoreResult::NotStored, 0, sent);
                }
                match self.replace_whole(req, StoreMode::Add, hash, si, now) {
                    // There meanwhile: append to it.
                    (StoreResult::NotStored, _) => continue,
                    (result, cas) => return (result, cas, sent),
                }
            };
            let h = item::header(&old);
            if let Some(c) = req.compare_cas.filter(|&c| c != 0)
                && c != old_cas
            {
                return (StoreResult::Exists, 0, sent);
            }
            let old_value = &old[h.value_start..];
            if limits.too_large(req.key.len(), old_value.len() + req.value.len(), h.flags) {
                return (StoreResult::NotStored, 0, sent);
            }
            let cas = self.cas_for(req.cas_in);
            let (first, second) = if req.mode == StoreMode::Append {
                (old_value, req.value)
            } else {
                (req.value, old_value)
            };
            let fill = |d: &mut [u8]| {
                d[..first.len()].copy_from_slice(first);
                d[first.len()..].copy_from_slice(second);
            };
            let len = old_value.len() + req.value.len();
            let mut built = NewItem::new(
                self.layout,
                req.key,
                req.key_binary,
                h.flags,
                cas,
                len,
                &fill,
            );
            if !self.fits(&built) {
                return (StoreResult::OutOfMemory, 0, sent);
            }
            let swapped = self.with_room(si, now, |shard, ctx| {
                shard.swap(req.key, hash, &old, &mut built, ctx, |_, _| {})
            });
            match swapped {
                Some(Some(cas)) => return (StoreResult::Stored, cas, len),
                // Changed meanwhile: read it again.
                Some(None) => {}
                None => return (StoreResult::OutOfMemory, 0, sent),
            }
        }
        (StoreResult::OutOfMemory, 0, sent)
    }

    /// A delete; with `req.compare_cas`, only if the CAS matches; with
    /// `req.invalidate`, the item is kept but marked stale with a new CAS,
    /// its token is taken back, and `req.deadline` (if any) replaces its
    /// deadline.
    pub fn delete(&self, req: DeleteRequest<'_>, now: u32) -> DeleteResult {
        match self.route(req.key) {
            Some((hash, si)) => self.delete_routed(req, hash, si, now),
            None => DeleteResult::NotFound,
        }
    }

    fn delete_routed(
        &self,
        req: DeleteRequest<'_>,
        hash: u64,
        si: usize,
        now: u32,
    ) -> DeleteResult {
        let key = req.key;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let mut shard = self.lock(si);
            let loc = match shard.find_live(key, hash, &ctx) {
                Find::Live(loc, _) => loc,
                Find::Dead(_, old) => {
                    drop(shard);
                    drop(old);
                    return DeleteResult::NotFound;
                }
                Find::Missing => return DeleteResult::NotFound,
            };
            if req.compare_cas.is_some_and(|c| c != shard.cas(loc)) {
                return DeleteResult::Exists;
            }
            if !req.invalidate && !req.remove_value {
                let removed = shard.remove(loc, hash, &ctx);
                drop(shard);
                drop(removed);
                return DeleteResult::Deleted;
            }
            let old = shard.item_shared(loc);
            let old_cas = shard.cas(loc);
            drop(shard);
            let h = item::header(&old);
            let key_binary = item::key_binary(&old);
            let swapped = if req.remove_value {
                self.remove_value(&req, hash, si, now, &old, old_cas)
            } else {
                // A new CAS means a new version of the item.
                let value = &old[h.value_start..];
                let fill = |d: &mut [u8]| d.copy_from_slice(value);
                let cas = self.cas_for(req.cas_in);
                let mut built = NewItem::new(
                    self.layout,
                    key,
                    key_binary,
                    h.flags,
                    cas,
                    value.len(),
                    &fill,
                );
                self.with_room(si, now, |shard, ctx| {
                    let swapped = shard.swap(key, hash, &old, &mut built, ctx, |prev, e| {
                        keep_state(prev, e);
                        if let Some(d) = req.deadline {
                            e.deadline = d;
                        }
                        e.set(STALE);
                        e.clear(WIN);
                    })?;
                    if swapped.0.is_some() {
                        // memcached changes the item in place: no new item.
                        shard.counters.total_items -= 1;
                    }
                    Ok(swapped)
                })
            };
            match swapped {
                Some(Some(_)) if req.invalidate => return DeleteResult::Invalidated,
                Some(Some(_)) => return DeleteResult::Deleted,
                // Changed meanwhile: look again.
                Some(None) => {}
                None if req.remove_value => return DeleteResult::OutOfMemory,
                None => return DeleteResult::NotFound,
            }
        }
        DeleteResult::NotFound
    }

    /// `md x`: the item `old` (whose CAS is `old_cas`) gives way to a new
    /// one with an empty value, the request's flags and deadline (none
    /// without one), and its CAS kept unless the request brings one. With
    /// `req.invalidate` that item is also marked stale with a new CAS.
    /// `None`: no memory for it; else what [`Shard::swap`] returned.
    fn remove_value(
        &self,
        req: &DeleteRequest<'_>,
        hash: u64,
        si: usize,
        now: u32,
        old: &Bytes,
        old_cas: u64,
    ) -> Option<Option<u64>> {
        let cas = if req.invalidate {
            self.cas_for(req.cas_in)
        } else {
            self.cas_for(Some(req.cas_in.unwrap_or(old_cas)))
        };
        // memcached builds the new item from the key alone, so it no
        // longer remembers that the key came in base64.
        let fill = |_: &mut [u8]| {};
        let mut built = NewItem::new(self.layout, req.key, false, req.flags, cas, 0, &fill);
        let deadline = req.deadline.unwrap_or(0);
        self.with_room(si, now, |shard, ctx| {
            shard.swap(req.key, hash, old, &mut built, ctx, |_, e| {
                e.deadline = deadline;
                if req.invalidate {
                    e.set(STALE);
                }
            })
        })
    }
}
