//! What the meta commands (`mg`, `ms`, `md`, `ma`, `me`) need from the
//! store beyond the classic API: the per-item state they read and change,
//! and their store-side semantics, each under one shard lock.
//!
//! Per-item state lives where the classic store keeps it: the fetched bit,
//! the stale bit (an invalidated item) and the win bit (a client was handed
//! the right to recache) are state bits of the record's prefix; the last
//! access is the prefix's `time`; whether the key came in base64 is a bit
//! of the item's own header, fixed for the life of that version.
//!
//! Flags apply in request order in memcached (`mg k t T30` shows the old
//! TTL, `mg k T30 t` the new one), so the order-dependent ones reach the
//! store as a list of [`Step`]s; everything that is only read is returned
//! for the caller to print.

use bytes::Bytes;

use super::loc::Loc;
use super::record::{ACTIVE, FETCHED, Meta, NewItem, STALE, WIN};
use super::shard::{Ctx, Find, Full, Shard};
use super::{Lookup, MAX_WRITE_ATTEMPTS, Store, StoreResult, Value, item};
use crate::item_rules::{Limits, StoreMode};

/// An order-dependent flag of `mg` or `ma`, in request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `T`: the item's new deadline.
    Ttl(u32),
    /// `N`: the deadline of an item this request created; `mg` also wins
    /// the recache token by creating it.
    Vivify(u32),
    /// `R`: win the recache token if the deadline is before this one.
    Recache(u32),
    /// `t`: note the deadline as it is at this point.
    ReadTtl,
}

/// An `mg` request, as the store sees it.
#[derive(Debug, Clone, Copy)]
pub struct GetRequest<'a> {
    /// Whether the key came in base64, for an item this request creates.
    pub key_binary: bool,
    /// `N` was given: create an empty item on a miss.
    pub vivify: bool,
    /// `u` turns this off: neither mark the item fetched nor bump it.
    pub bump: bool,
    pub steps: &'a [Step],
    /// False when the request fails after its steps (an over-long opaque):
    /// memcached then neither hands out a token nor bumps the item.
    pub complete: bool,
}

/// The item an `mg` found or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetHit {
    pub value: Value,
    pub key_binary: bool,
    /// Fetched before this request (`h`).
    pub fetched: bool,
    /// Seconds since the last access before this request (`l`).
    pub idle: u32,
    /// The deadline at the `t` step, 0 for none.
    pub ttl_at_read: u32,
    /// The request created the item (`N` on a miss).
    pub created: bool,
    /// A `T` step ran: memcached counts the request as a touch.
    pub touched: bool,
    /// `Z`: a token had been handed out already.
    pub token_sent: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `W`: this request won the token.
    pub won: bool,
}

/// The outcome of an `mg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Get {
    Hit(GetHit),
    /// No live item: `Miss`, `Expired` or `Flushed`, for the counters.
    Miss(Lookup),
}

/// An `ms` request.
#[derive(Debug, Clone, Copy)]
pub struct SetRequest<'a> {
    /// Set, Add, Replace, Append or Prepend.
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub key_binary: bool,
    pub flags: u32,
    pub deadline: u32,
    pub value: &'a [u8],
    /// `C`: store only over this CAS value (Set and Replace become a CAS
    /// store; Append and Prepend check a non-zero one; Add ignores it).
    pub compare_cas: Option<u64>,
    /// `I`: a CAS store whose CAS is older than the item's still stores, but
    /// marks the item stale and keeps its deadline.
    pub invalidate: bool,
}

/// The outcome of an `md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    Deleted,
    /// `I`: kept, marked stale, with a new CAS.
    Invalidated,
    NotFound,
    /// `C` did not match.
    Exists,
}

/// An `ma` request.
#[derive(Debug, Clone, Copy)]
pub struct ArithRequest<'a> {
    pub key_binary: bool,
    pub incr: bool,
    pub delta: u64,
    /// `C`: apply only if the CAS still matches (0 means no check, as in memcached).
    pub compare_cas: u64,
    /// `N`: on a miss, create the item with the value `initial`.
    pub vivify: bool,
    pub initial: u64,
    pub steps: &'a [Step],
}

/// The item an `ma` changed or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub value: u64,
    pub cas: u64,
    /// The deadline at the `t` step, 0 for none.
    pub ttl_at_read: u32,
    /// The request created the item (`N`): the delta was not applied.
    pub created: bool,
}

/// The outcome of an `ma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Done(Counter),
    NotFound,
    /// The item appeared between the miss and the create (`NS`).
    NotStored,
    Exists,
    NonNumeric,
    OutOfMemory,
}

/// What `me` shows of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugInfo {
    pub key_binary: bool,
    /// 0 for none.
    pub deadline: u32,
    /// The last access, on the store's clock.
    pub time: u32,
    pub cas: u64,
    pub fetched: bool,
    pub flags: u32,
    pub value_len: usize,
}

/// Runs `steps` against a record's state; returns the deadline seen at `t`
/// and whether a `T` step ran and whether an `R`/`N` step won the token.
fn run_steps(e: &mut Meta, steps: &[Step], created: bool) -> (u32, bool, bool) {
    let (mut ttl, mut touched, mut won) = (0, false, false);
    for step in steps {
        match *step {
            Step::Ttl(d) => {
                e.deadline = d;
                touched = true;
            }
            Step::Vivify(d) => {
                if created {
                    e.deadline = d;
                    won = true;
                }
            }
            Step::Recache(d) => {
                if !e.has(WIN) && !created && e.deadline != 0 && e.deadline < d {
                    won = true;
                }
            }
            Step::ReadTtl => ttl = e.deadline,
        }
    }
    (ttl, touched, won)
}

impl Shard {
    /// Inserts `new` for a key known to be missing.
    fn insert_new(
        &mut self,
        key: &[u8],
        hash: u64,
        new: &mut NewItem,
        ctx: &Ctx,
    ) -> Result<(Loc, Option<Bytes>), Full> {
        self.commit(key, hash, None, new, 0, ctx)
    }

    fn meta_get(
        &mut self,
        key: &[u8],
        hash: u64,
        req: &GetRequest<'_>,
        fresh: Option<&mut NewItem>,
        ctx: &Ctx,
    ) -> Result<(Get, Option<Bytes>), Full> {
        let (i, created, garbage) = match (self.find_live(key, hash, ctx), fresh) {
            (Find::Live(i), _) => (i, false, None),
            (Find::Dead(why, old), None) => return Ok((Get::Miss(why), old)),
            (Find::Missing, None) => return Ok((Get::Miss(Lookup::Miss), None)),
            (Find::Dead(_, old), Some(fresh)) => {
                let (i, garbage) = self.insert_new(key, hash, fresh, ctx)?;
                (i, true, garbage.or(old))
            }
            (Find::Missing, Some(fresh)) => {
                let (i, garbage) = self.insert_new(key, hash, fresh, ctx)?;
                (i, true, garbage)
            }
        };
        let value = self.value(i);
        let key_binary = item::key_binary(self.item(i));
        let mut e = self.meta(i);
        let fetched = e.has(FETCHED);
        let idle = ctx.now.wrapping_sub(e.time);
        let (ttl_at_read, touched, mut won) = run_steps(&mut e, req.steps, created);
        let token_sent = e.has(WIN);
        let stale = e.has(STALE);
        if req.complete {
            // A stale item hands its token to the first reader.
            won |= stale && !token_sent;
            if won {
                e.set(WIN);
            }
            self.set_meta(i, e);
            if req.bump {
                self.hit(i, ctx.now);
            }
        } else {
            self.set_meta(i, e);
            won = false;
        }
        let hit = GetHit {
            value,
            key_binary,
            fetched,
            idle,
            ttl_at_read,
            created,
            touched,
            token_sent: token_sent && req.complete,
            stale: stale && req.complete,
            won,
        };
        Ok((Get::Hit(hit), garbage))
    }

    /// A CAS store with `I`: a CAS older than the item's still stores, as a
    /// stale item that keeps the old deadline and token.
    fn store_invalidating(
        &mut self,
        key: &[u8],
        hash: u64,
        new: &mut NewItem,
        compare: u64,
        deadline: u32,
        ctx: &Ctx,
    ) -> Result<(StoreResult, Option<Bytes>), Full> {
        let i = match self.find_live(key, hash, ctx) {
            Find::Live(i) => i,
            Find::Dead(_, old) => return Ok((StoreResult::NotFound, old)),
            Find::Missing => return Ok((StoreResult::NotFound, None)),
        };
        let cur = item::header(self.item(i)).cas;
        if compare == cur {
            let (_, old) = self.commit(key, hash, Some(i), new, deadline, ctx)?;
            return Ok((StoreResult::Stored, old));
        }
        // memcached 1.6.18 treats C0 as no CAS to invalidate with.
        if compare > cur || compare == 0 {
            return Ok((StoreResult::Exists, None));
        }
        let prev = self.meta(i);
        let (at, old) = self.commit(key, hash, Some(i), new, prev.deadline, ctx)?;
        let mut e = self.meta(at);
        e.set(STALE);
        if prev.has(WIN) {
            e.set(WIN);
        }
        self.set_meta(at, e);
        Ok((StoreResult::Stored, old))
    }

    /// Replaces the version `old` with `new` as an in-place change would:
    /// the record keeps its last access and fetched bit, then `f` adjusts it.
    /// Unless `new_item`, it is not counted in `total_items` (memcached
    /// rewrites such an item rather than linking a new one). False if the
    /// item changed meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn swap_in_place(
        &mut self,
        key: &[u8],
        hash: u64,
        old: &Bytes,
        new: &mut NewItem,
        new_item: bool,
        ctx: &Ctx,
        f: impl FnOnce(&mut Meta),
    ) -> Result<(bool, Option<Bytes>), Full> {
        let i = match self.find_live(key, hash, ctx) {
            Find::Live(i) => i,
            Find::Dead(_, dead) => return Ok((false, dead)),
            Find::Missing => return Ok((false, None)),
        };
        if !self.is_version(i, old) {
            return Ok((false, None));
        }
        let prev = self.meta(i);
        let (at, garbage) = self.commit(key, hash, Some(i), new, prev.deadline, ctx)?;
        if !new_item {
            self.counters.total_items -= 1;
        }
        let mut e = self.meta(at);
        e.time = prev.time;
        e.set(prev.bits() & (FETCHED | ACTIVE | STALE | WIN));
        f(&mut e);
        self.set_meta(at, e);
        Ok((true, garbage))
    }
}

impl Store {
    /// Runs a write against shard `si` until it finds the memory it needs:
    /// `None` when it cannot (full with evictions off, or too contended).
    fn with_room<R>(
        &self,
        si: usize,
        now: u32,
        mut write: impl FnMut(&mut Shard, &Ctx) -> Result<(R, Option<Bytes>), Full>,
    ) -> Option<R> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let outcome = write(&mut self.lock(si), &ctx);
            match outcome {
                Ok((r, garbage)) => {
                    drop(garbage);
                    return Some(r);
                }
                Err(Full::Elsewhere(need)) if self.evict_elsewhere(si, need, now) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// `mg`: reads the item, applies `req.steps` in order, and hands out
    /// the recache token (`R` below its threshold, a stale item's first
    /// reader, or the creator under `N`). A miss with `N` creates an empty
    /// item; if there is no memory for it, the request misses.
    pub fn meta_get(&self, key: &[u8], req: &GetRequest<'_>, now: u32) -> Get {
        if key.len() > item::KEY_MAX {
            return Get::Miss(Lookup::Miss);
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        if !req.vivify {
            let ctx = self.ctx(now);
            let outcome = self.lock(si).meta_get(key, hash, req, None, &ctx);
            return match outcome {
                Ok((get, garbage)) => {
                    drop(garbage);
                    get
                }
                Err(_) => unreachable!("a read without N allocates nothing"),
            };
        }
        let cas = self.next_cas(si);
        let mut fresh = NewItem::new(self.layout, key, req.key_binary, 0, cas, 0, &|_| {});
        let fits = self.fits(&fresh);
        // A retry after a failed insert still holds `fresh`.
        self.with_room(si, now, |shard, ctx| {
            shard.meta_get(key, hash, req, fits.then_some(&mut fresh), ctx)
        })
        .unwrap_or(Get::Miss(Lookup::Miss))
    }

    /// `ms`: returns the outcome and the new item's CAS (0 unless stored).
    /// Out of memory removes the old value whatever the mode, as memcached's
    /// `ms` does, so that a failed write leaves no stale data behind.
    pub fn meta_set(&self, req: &SetRequest<'_>, now: u32) -> (StoreResult, u64) {
        let key = req.key;
        if key.len() > item::KEY_MAX {
            return (StoreResult::NotStored, 0);
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        let result = match req.mode {
            StoreMode::Append | StoreMode::Prepend => self.meta_concat(req, hash, now),
            mode => {
                let mode = match (mode, req.compare_cas) {
                    (StoreMode::Set | StoreMode::Replace, Some(_)) => StoreMode::Cas,
                    (mode, _) => mode,
                };
                let cas = self.next_cas(si);
                let fill = |d: &mut [u8]| d.copy_from_slice(req.value);
                let mut built = NewItem::new(
                    self.layout,
                    key,
                    req.key_binary,
                    req.flags,
                    cas,
                    req.value.len(),
                    &fill,
                );
                let compare = req.compare_cas.unwrap_or(0);
                let result = if !self.fits(&built) {
                    None
                } else {
                    self.with_room(si, now, |shard, ctx| {
                        if mode == StoreMode::Cas && req.invalidate {
                            shard.store_invalidating(
                                key,
                                hash,
                                &mut built,
                                compare,
                                req.deadline,
                                ctx,
                            )
                        } else {
                            shard.store(mode, key, hash, &mut built, compare, req.deadline, ctx)
                        }
                    })
                };
                match result {
                    Some(StoreResult::Stored) => (StoreResult::Stored, cas),
                    Some(other) => (other, 0),
                    None => (StoreResult::OutOfMemory, 0),
                }
            }
        };
        if result.0 == StoreResult::OutOfMemory {
            self.delete(key, now);
        }
        result
    }

    /// `ms` in append/prepend mode: a non-zero `C` must match the item.
    pub(super) fn meta_concat(
        &self,
        req: &SetRequest<'_>,
        hash: u64,
        now: u32,
    ) -> (StoreResult, u64) {
        let si = self.shard_of(hash);
        let append = req.mode == StoreMode::Append;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(req.key, hash, &ctx);
            drop(garbage);
            let Some(old) = old else {
                return (StoreResult::NotStored, 0);
            };
            let h = item::header(&old);
            if let Some(c) = req.compare_cas.filter(|&c| c != 0)
                && c != h.cas
            {
                return (StoreResult::Exists, 0);
            }
            let old_value = &old[h.value_start..];
            let limits = Limits {
                item_size_max: self.config().item_size_max,
                cas_enabled: self.config().cas_enabled,
            };
            if limits.too_large(req.key.len(), old_value.len() + req.value.len(), h.flags) {
                return (StoreResult::NotStored, 0);
            }
            let cas = self.next_cas(si);
            let (first, second) = if append {
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
                return (StoreResult::OutOfMemory, 0);
            }
            match self.swap(si, req.key, hash, &old, &mut built, now) {
                Ok(true) => return (StoreResult::Stored, cas),
                Ok(false) => continue,
                Err(()) => return (StoreResult::OutOfMemory, 0),
            }
        }
        (StoreResult::OutOfMemory, 0)
    }

    /// `md`: with `compare_cas`, only if the CAS matches; with `invalidate`,
    /// the item is kept but marked stale with a new CAS, its token is taken
    /// back, and `Some(deadline)` (from `T`) replaces its deadline.
    pub fn meta_delete(
        &self,
        key: &[u8],
        compare_cas: Option<u64>,
        invalidate: Option<Option<u32>>,
        now: u32,
    ) -> Delete {
        if key.len() > item::KEY_MAX {
            return Delete::NotFound;
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let mut shard = self.lock(si);
            let i = match shard.find_live(key, hash, &ctx) {
                Find::Live(i) => i,
                Find::Dead(_, old) => {
                    drop(shard);
                    drop(old);
                    return Delete::NotFound;
                }
                Find::Missing => return Delete::NotFound,
            };
            let old = shard.item_shared(i);
            if compare_cas.is_some_and(|c| c != item::header(&old).cas) {
                return Delete::Exists;
            }
            let Some(new_ttl) = invalidate else {
                let removed = shard.remove(i, hash, &ctx);
                drop(shard);
                drop(removed);
                return Delete::Deleted;
            };
            drop(shard);
            // A new CAS means a new version of the item.
            let h = item::header(&old);
            let value = &old[h.value_start..];
            let fill = |d: &mut [u8]| d.copy_from_slice(value);
            let cas = self.next_cas(si);
            let key_binary = item::key_binary(&old);
            let mut built = NewItem::new(
                self.layout,
                key,
                key_binary,
                h.flags,
                cas,
                value.len(),
                &fill,
            );
            let swapped = self.with_room(si, now, |shard, ctx| {
                shard.swap_in_place(key, hash, &old, &mut built, false, ctx, |e| {
                    if let Some(d) = new_ttl {
                        e.deadline = d;
                    }
                    e.set(STALE);
                    e.clear(WIN);
                })
            });
            match swapped {
                Some(true) => return Delete::Invalidated,
                // Changed meanwhile: look again.
                Some(false) => {}
                None => return Delete::NotFound,
            }
        }
        Delete::NotFound
    }

    /// `ma`: incr/decr as the classic command does, with `C`, `N`/`J` and
    /// the `T`/`N`/`t` steps applied to the result under the same lock.
    pub fn meta_arith(&self, key: &[u8], req: &ArithRequest<'_>, now: u32) -> Arith {
        if key.len() > item::KEY_MAX {
            return Arith::NotFound;
        }
        let hash = self.hash(key);
        let si = self.shard_of(hash);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let ctx = self.ctx(now);
            let (old, garbage) = self.lock(si).snapshot(key, hash, &ctx);
            drop(garbage);
            let Some(old) = old else {
                if !req.vivify {
                    return Arith::NotFound;
                }
                return self.vivify_counter(key, hash, req, now);
            };
            let h = item::header(&old);
            if req.compare_cas != 0 && req.compare_cas != h.cas {
                return Arith::Exists;
            }
            let old_value = &old[h.value_start..];
            let Some(n) = item::parse_counter(old_value) else {
                return Arith::NonNumeric;
            };
            let n = if req.incr {
                n.wrapping_add(req.delta)
            } else {
                n.saturating_sub(req.delta)
            };
            let mut digits = [0u8; 20];
            let ndigits = item::format_counter(n, &mut digits);
            let len = ndigits.max(old_value.len());
            let cas = self.next_cas(si);
            let fill = |d: &mut [u8]| {
                d[..ndigits].copy_from_slice(&digits[..ndigits]);
                d[ndigits..].fill(b' ');
            };
            let key_binary = item::key_binary(&old);
            let mut built = NewItem::new(self.layout, key, key_binary, h.flags, cas, len, &fill);
            let mut ttl_at_read = 0;
            let swapped = self.with_room(si, now, |shard, ctx| {
                // memcached rewrites the number in place when it fits.
                let grew = ndigits > old_value.len();
                shard.swap_in_place(key, hash, &old, &mut built, grew, ctx, |e| {
                    ttl_at_read = run_steps(e, req.steps, false).0;
                })
            });
            match swapped {
                Some(true) => {
                    return Arith::Done(Counter {
                        value: n,
                        cas,
                        ttl_at_read,
                        created: false,
                    });
                }
                Some(false) => {}
                None => return Arith::OutOfMemory,
            }
        }
        Arith::OutOfMemory
    }

    /// `ma N` on a miss: adds the item with `J` as its value; the delta is
    /// not applied.
    fn vivify_counter(&self, key: &[u8], hash: u64, req: &ArithRequest<'_>, now: u32) -> Arith {
        let si = self.shard_of(hash);
        let mut digits = [0u8; 20];
        let ndigits = item::format_counter(req.initial, &mut digits);
        let cas = self.next_cas(si);
        let fill = |d: &mut [u8]| d.copy_from_slice(&digits[..ndigits]);
        let mut built = NewItem::new(self.layout, key, req.key_binary, 0, cas, ndigits, &fill);
        let outcome = self.with_room(si, now, |shard, ctx| {
            let garbage = match shard.find_live(key, hash, ctx) {
                Find::Live(_) => return Ok((None, None)),
                Find::Dead(_, old) => old,
                Find::Missing => None,
            };
            let (i, more) = shard.insert_new(key, hash, &mut built, ctx)?;
            let mut e = shard.meta(i);
            let (ttl, _, _) = run_steps(&mut e, req.steps, true);
            shard.set_meta(i, e);
            Ok((Some(ttl), more.or(garbage)))
        });
        match outcome {
            Some(Some(ttl_at_read)) => Arith::Done(Counter {
                value: req.initial,
                cas,
                ttl_at_read,
                created: true,
            }),
            Some(None) => Arith::NotStored,
            None => Arith::OutOfMemory,
        }
    }

    /// `me`: the item as memcached's debug line shows it; no bump.
    pub fn meta_debug(&self, key: &[u8], now: u32) -> Option<DebugInfo> {
        if key.len() > item::KEY_MAX {
            return None;
        }
        let hash = self.hash(key);
        let ctx = self.ctx(now);
        let mut shard = self.lock(self.shard_of(hash));
        match shard.find_live(key, hash, &ctx) {
            Find::Live(i) => {
                let it = shard.item(i);
                let h = item::header(it);
                let e = shard.meta(i);
                Some(DebugInfo {
                    key_binary: item::key_binary(it),
                    deadline: e.deadline,
                    time: e.time,
                    cas: h.cas,
                    fetched: e.has(FETCHED),
                    flags: h.flags,
                    value_len: it.len() - h.value_start,
                })
            }
            Find::Dead(_, old) => {
                drop(shard);
                drop(old);
                None
            }
            Find::Missing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Clock, StoreConfig};

    fn store() -> Store {
        Store::new(
            StoreConfig {
                memory_limit: 64 << 20,
                evictions: true,
                cas_enabled: true,
                shards: 4,
                item_size_max: 1024 * 1024,
            },
            Clock::manual(1_700_000_000),
        )
    }

    fn get(s: &Store, key: &[u8], steps: &[Step], vivify: bool, bump: bool) -> Option<GetHit> {
        let req = GetRequest {
            key_binary: false,
            vivify,
            bump,
            steps,
            complete: true,
        };
        match s.meta_get(key, &req, s.clock().now()) {
            Get::Hit(hit) => Some(hit),
            Get::Miss(_) => None,
        }
    }

    fn set(s: &Store, key: &[u8], value: &[u8], deadline: u32) -> u64 {
        let req = SetRequest {
            mode: StoreMode::Set,
            key,
            key_binary: false,
            flags: 0,
            deadline,
            value,
            compare_cas: None,
            invalidate: false,
        };
        let (result, cas) = s.meta_set(&req, s.clock().now());
        assert_eq!(result, StoreResult::Stored);
        cas
    }

    /// The token and stale marks of a hit, as `Z`, `X`, `W`.
    fn marks(hit: &GetHit) -> (bool, bool, bool) {
        (hit.token_sent, hit.stale, hit.won)
    }

    #[test]
    fn fetched_and_idle_show_the_state_before_the_read() {
        let s = store();
        let now = s.clock().now();
        set(&s, b"k", b"v", 0);
        s.clock().advance(7);
        let hit = get(&s, b"k", &[], false, false).unwrap();
        assert_eq!((hit.fetched, hit.idle), (false, 7));
        // `u`: still not fetched.
        let hit = get(&s, b"k", &[], false, true).unwrap();
        assert!(!hit.fetched);
        let hit = get(&s, b"k", &[], false, true).unwrap();
        assert!(hit.fetched);
        assert_eq!(&hit.value.data[..], b"v");
        let dbg = s.meta_debug(b"k", now + 7).unwrap();
        assert!(dbg.fetched);
        assert_eq!((dbg.deadline, dbg.value_len, dbg.flags), (0, 1, 0));
    }

    #[test]
    fn steps_apply_in_request_order() {
        let s = store();
        let now = s.clock().now();
        set(&s, b"k", b"v", now + 100);
        let hit = get(&s, b"k", &[Step::ReadTtl, Step::Ttl(now + 50)], false, true).unwrap();
        assert_eq!(hit.ttl_at_read, now + 100);
        assert!(hit.touched);
        let hit = get(&s, b"k", &[Step::Ttl(now + 30), Step::ReadTtl], false, true).unwrap();
        assert_eq!(hit.ttl_at_read, now + 30);
        let hit = get(&s, b"k", &[Step::ReadTtl], false, true).unwrap();
        assert_eq!((hit.ttl_at_read, hit.touched), (now + 30, false));
    }

    #[test]
    fn vivify_creates_once_and_hands_out_one_token() {
        let s = store();
        let now = s.clock().now();
        let steps = [Step::Vivify(now + 30), Step::ReadTtl];
        let first = get(&s, b"k", &steps, true, true).unwrap();
        assert!(first.created && first.value.data.is_empty());
        assert_eq!(first.ttl_at_read, now + 30);
        assert_eq!(marks(&first), (false, false, true));
        let second = get(&s, b"k", &steps, true, true).unwrap();
        assert!(!second.created && second.fetched);
        assert_eq!(marks(&second), (true, false, false));
        // Without N the token is still shown as taken.
        assert_eq!(
            marks(&get(&s, b"k", &[], false, true).unwrap()),
            (true, false, false)
        );
        // A new value clears it.
        set(&s, b"k", b"fresh", 0);
        assert_eq!(
            marks(&get(&s, b"k", &[], false, true).unwrap()),
            (false, false, false)
        );
        // Without N a miss creates nothing.
        assert!(get(&s, b"other", &[], false, true).is_none());
        assert!(get(&s, b"other", &[], false, true).is_none());
    }

    #[test]
    fn recache_wins_below_the_threshold_once() {
        let s = store();
        let now = s.clock().now();
        set(&s, b"k", b"v", now + 100);
        let r = |secs: u32| [Step::Recache(now + secs)];
        assert_eq!(
            marks(&get(&s, b"k", &r(30), false, true).unwrap()),
            (false, false, false)
        );
        // The threshold must be above the deadline, not equal.
        assert_eq!(
            marks(&get(&s, b"k", &r(100), false, true).unwrap()),
            (false, false, false)
        );
        assert_eq!(
            marks(&get(&s, b"k", &r(200), false, true).unwrap()),
            (false, false, true)
        );
        assert_eq!(
            marks(&get(&s, b"k", &r(200), false, true).unwrap()),
            (true, false, false)
        );
        // Never for an item without a deadline.
        set(&s, b"forever", b"v", 0);
        assert_eq!(
            marks(&get(&s, b"forever", &r(200), false, true).unwrap()),
            (false, false, false)
        );
    }

    #[test]
    fn invalidating_set_and_delete_mark_stale() {
        let s = store();
        let now = s.clock().now();
        let cas = set(&s, b"k", b"a", now + 100);
        let mut req = SetRequest {
            mode: StoreMode::Set,
            key: b"k",
            key_binary: false,
            flags: 0,
            deadline: 0,
            value: b"b",
            compare_cas: Some(cas - 1),
            invalidate: true,
        };
        let (result, new_cas) = s.meta_set(&req, now);
        assert_eq!(result, StoreResult::Stored);
        assert!(new_cas > cas);
        // Stored stale, keeping the old deadline; first reader wins.
        let hit = get(&s, b"k", &[Step::ReadTtl], false, true).unwrap();
        assert_eq!(
            (&hit.value.data[..], hit.ttl_at_read),
            (&b"b"[..], now + 100)
        );
        assert_eq!(marks(&hit), (false, true, true));
        assert_eq!(
            marks(&get(&s, b"k", &[], false, true).unwrap()),
            (true, true, false)
        );
        // A newer CAS than the item's is refused; a plain set clears staleness.
        req.compare_cas = Some(new_cas + 1);
        assert_eq!(s.meta_set(&req, now), (StoreResult::Exists, 0));
        req.compare_cas = None;
        req.invalidate = false;
        s.meta_set(&req, now);
        assert_eq!(
            marks(&get(&s, b"k", &[], false, true).unwrap()),
            (false, false, false)
        );

        // md I: kept with a new CAS and deadline, token taken back.
        let before = get(&s, b"k", &[], false, true).unwrap().value.cas;
        assert_eq!(
            s.meta_delete(b"k", None, Some(Some(now + 30)), now),
            Delete::Invalidated
        );
        let hit = get(&s, b"k", &[Step::ReadTtl], false, true).unwrap();
        assert!(hit.value.cas > before && hit.fetched);
        assert_eq!(
            (hit.ttl_at_read, marks(&hit)),
            (now + 30, (false, true, true))
        );
        assert_eq!(
            s.meta_delete(b"k", None, Some(None), now),
            Delete::Invalidated
        );
        assert_eq!(
            marks(&get(&s, b"k", &[], false, true).unwrap()),
            (false, true, true)
        );
        // C must match; then a plain md deletes.
        assert_eq!(s.meta_delete(b"k", Some(1), None, now), Delete::Exists);
        assert_eq!(s.meta_delete(b"k", None, None, now), Delete::Deleted);
        assert_eq!(s.meta_delete(b"k", None, Some(None), now), Delete::NotFound);
    }

    #[test]
    fn set_modes_with_cas() {
        let s = store();
        let now = s.clock().now();
        let req = |mode, value: &'static [u8], compare_cas| SetRequest {
            mode,
            key: b"k",
            key_binary: true,
            flags: 5,
            deadline: 0,
            value,
            compare_cas,
            invalidate: false,
        };
        assert_eq!(
            s.meta_set(&req(StoreMode::Set, b"x", Some(1)), now),
            (StoreResult::NotFound, 0)
        );
        assert_eq!(
            s.meta_set(&req(StoreMode::Append, b"x", None), now).0,
            StoreResult::NotStored
        );
        let (r, cas) = s.meta_set(&req(StoreMode::Add, b"mid", Some(99)), now);
        assert!(r == StoreResult::Stored && cas != 0);
        assert_eq!(
            s.meta_set(&req(StoreMode::Add, b"x", None), now),
            (StoreResult::NotStored, 0)
        );
        assert_eq!(
            s.meta_set(&req(StoreMode::Append, b"x", Some(cas + 1)), now)
                .0,
            StoreResult::Exists
        );
        // C0 is no check for append, as in memcached.
        let (r, cas) = s.meta_set(&req(StoreMode::Append, b"-end", Some(0)), now);
        assert_eq!(r, StoreResult::Stored);
        let (r, _) = s.meta_set(&req(StoreMode::Prepend, b"start-", Some(cas)), now);
        assert_eq!(r, StoreResult::Stored);
        let hit = get(&s, b"k", &[], false, true).unwrap();
        assert_eq!(
            (&hit.value.data[..], hit.value.flags),
            (&b"start-mid-end"[..], 5)
        );
        assert!(hit.key_binary);
        assert_eq!(
            s.meta_set(&req(StoreMode::Replace, b"r", Some(1)), now).0,
            StoreResult::Exists
        );
        let cas = hit.value.cas;
        assert_eq!(
            s.meta_set(&req(StoreMode::Replace, b"r", Some(cas)), now).0,
            StoreResult::Stored
        );
    }

    #[test]
    fn arith_vivifies_without_the_delta_and_checks_cas() {
        let s = store();
        let now = s.clock().now();
        let req = |vivify, compare_cas, steps| ArithRequest {
            key_binary: false,
            incr: true,
            delta: 5,
            compare_cas,
            vivify,
            initial: 42,
            steps,
        };
        assert_eq!(
            s.meta_arith(b"n", &req(false, 0, &[]), now),
            Arith::NotFound
        );
        let steps = [Step::Vivify(now + 100), Step::ReadTtl];
        let Arith::Done(c) = s.meta_arith(b"n", &req(true, 0, &steps), now) else {
            panic!()
        };
        assert_eq!((c.value, c.created, c.ttl_at_read), (42, true, now + 100));
        let Arith::Done(c2) = s.meta_arith(b"n", &req(true, 0, &steps), now) else {
            panic!()
        };
        // N does not change an item that was there; the delta applies.
        assert_eq!(
            (c2.value, c2.created, c2.ttl_at_read),
            (47, false, now + 100)
        );
        assert!(c2.cas > c.cas);
        assert_eq!(
            s.meta_arith(b"n", &req(false, c.cas, &[]), now),
            Arith::Exists
        );
        let steps = [Step::ReadTtl, Step::Ttl(0)];
        let Arith::Done(c3) = s.meta_arith(b"n", &req(false, c2.cas, &steps), now) else {
            panic!()
        };
        assert_eq!((c3.value, c3.ttl_at_read), (52, now + 100));
        assert_eq!(s.meta_debug(b"n", now).unwrap().deadline, 0);
        set(&s, b"text", b"abc", 0);
        assert_eq!(
            s.meta_arith(b"text", &req(false, 0, &[]), now),
            Arith::NonNumeric
        );
        // Decrement floors at zero and pads in place.
        set(&s, b"d", b"100", 0);
        let dec = ArithRequest {
            incr: false,
            delta: 1,
            ..req(false, 0, &[])
        };
        assert!(matches!(
            s.meta_arith(b"d", &dec, now),
            Arith::Done(Counter { value: 99, .. })
        ));
        assert_eq!(
            &get(&s, b"d", &[], false, true).unwrap().value.data[..],
            b"99 "
        );
    }

    #[test]
    fn expired_items_miss_and_are_not_revived_by_reads() {
        let s = store();
        let now = s.clock().now();
        set(&s, b"k", b"v", now + 2);
        s.clock().advance(2);
        let req = GetRequest {
            key_binary: false,
            vivify: false,
            bump: true,
            steps: &[],
            complete: true,
        };
        assert_eq!(s.meta_get(b"k", &req, now + 2), Get::Miss(Lookup::Expired));
        assert_eq!(s.meta_debug(b"k", now + 2), None);
    }
}
