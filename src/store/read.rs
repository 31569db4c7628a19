//! Lookups: [`Store::get`] with its options, [`Store::touch`] and
//! [`Store::peek`], each under one shard lock.
//!
//! The per-item state a lookup reads and changes lives in the record's
//! prefix: the fetched bit, the stale bit (an invalidated item) and the win
//! bit (a client was handed the right to recache) are state bits, the last
//! access is its `time`; whether the key came in base64 is a bit of the
//! item's own header, fixed for the life of that version. Everything that
//! is only read goes back to the caller to report.

use bytes::Bytes;

use super::record::{FETCHED, Meta, NewItem, STALE, WIN};
use super::request::{GetRequest, Hit, ItemInfo, Lookup, Step, Value};
use super::shard::{Ctx, Find, Full, Shard};
use super::{Store, clock, item};

/// What running a request's steps against a record found.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ran {
    /// The deadline seen at [`Step::ReadTtl`].
    pub ttl: u32,
    /// A [`Step::Ttl`] ran.
    pub touched: bool,
    /// A [`Step::Recache`] or [`Step::Vivify`] won the token.
    pub won: bool,
}

/// The deadline `steps` give an item they create.
pub(super) fn created_deadline(steps: &[Step]) -> u32 {
    let mut e = Meta::new(0, 0);
    run_steps(&mut e, steps, true);
    e.deadline
}

/// Runs `steps` in order against a record's state.
pub(super) fn run_steps(e: &mut Meta, steps: &[Step], created: bool) -> Ran {
    let mut ran = Ran::default();
    for step in steps {
        match *step {
            Step::Ttl(d) => {
                e.deadline = d;
                ran.touched = true;
            }
            Step::Vivify(d) => {
                if created {
                    e.deadline = d;
                    ran.won = true;
                }
            }
            Step::Recache(d) => {
                if !e.has(WIN) && !created && e.deadline != 0 && e.deadline < d {
                    ran.won = true;
                }
            }
            Step::ReadTtl => ran.ttl = e.deadline,
        }
    }
    ran
}

impl Shard {
    /// A lookup; with `fresh`, a miss inserts it (`req.vivify`). A new
    /// deadline for a record without room for one may need memory (see
    /// [`Shard::set_meta_moving`], and `evict_if_full`).
    pub(super) fn get(
        &mut self,
        req: &GetRequest<'_>,
        hash: u64,
        fresh: Option<&mut NewItem>,
        evict_if_full: bool,
        ctx: &Ctx,
    ) -> Result<(Lookup, Option<Bytes>), Full> {
        let key = req.key;
        // An item created here is written with the deadline its steps will
        // give it, so that they need not write it again.
        let (loc, created, garbage) = match (self.find_live(key, hash, ctx), fresh) {
            (Find::Live(loc, _), _) => (loc, false, None),
            (Find::Dead(why, old), None) => return Ok((why, old)),
            (Find::Missing, None) => return Ok((Lookup::Miss, None)),
            (Find::Dead(_, old), Some(fresh)) => {
                let deadline = created_deadline(req.steps);
                let (loc, garbage) = self.insert_new(key, hash, fresh, deadline, ctx)?;
                (loc, true, garbage.or(old))
            }
            (Find::Missing, Some(fresh)) => {
                let deadline = created_deadline(req.steps);
                let (loc, garbage) = self.insert_new(key, hash, fresh, deadline, ctx)?;
                (loc, true, garbage)
            }
        };
        let it = self.item_shared(loc);
        let h = item::header(&it);
        let key_binary = item::key_binary(&it);
        let value = Value {
            data: it.slice(h.value_start..),
            flags: h.flags,
            cas: self.cas_of(loc, &h),
        };
        let mut e = self.meta(loc);
        if created {
            // As the steps found it: no deadline yet.
            e.deadline = 0;
        }
        let fetched = e.has(FETCHED);
        let idle = ctx.now.wrapping_sub(e.time);
        let ran = run_steps(&mut e, req.steps, created);
        let (token_sent, stale) = (req.tokens && e.has(WIN), req.tokens && e.has(STALE));
        // A stale item hands its token to the first reader.
        let won = req.tokens && (ran.won || (stale && !token_sent));
        if won {
            e.set(WIN);
        }
        if req.bump {
            e.bump(ctx.now);
        }
        if req.unlink_expired && ran.touched && e.deadline == clock::EXPIRED {
            let removed = self.remove(loc, hash, ctx);
            self.garbage.extend(removed);
        } else {
            self.set_meta_moving(loc, hash, e, evict_if_full, ctx)?;
        }
        let hit = Hit {
            value,
            key_binary,
            fetched,
            idle,
            ttl_at_read: ran.ttl,
            created,
            touched: ran.touched,
            token_sent,
            stale,
            won,
        };
        Ok((Lookup::Hit(hit), garbage))
    }

    /// touch: a new deadline, CAS unchanged; memory as for
    /// [`Shard::get`].
    pub(super) fn touch(
        &mut self,
        key: &[u8],
        hash: u64,
        deadline: u32,
        evict_if_full: bool,
        ctx: &Ctx,
    ) -> Result<(bool, Option<Bytes>), Full> {
        Ok(match self.find_live(key, hash, ctx) {
            Find::Live(loc, _) => {
                let mut m = self.meta(loc);
                m.bump(ctx.now);
                m.deadline = deadline;
                self.set_meta_moving(loc, hash, m, evict_if_full, ctx)?;
                (true, None)
            }
            Find::Dead(_, garbage) => (false, garbage),
            Find::Missing => (false, None),
        })
    }
}

impl Store {
    /// A lookup: the value, and what `req` asks besides. Its steps run in
    /// order; the item is bumped unless `req.bump` is off; with
    /// `req.tokens` the recache token goes to a [`Step::Recache`] below its
    /// threshold, a stale item's first reader, or the creator under
    /// `req.vivify`. A miss with `req.vivify` creates an empty item; if
    /// there is no memory for it, the request misses.
    pub fn get(&self, req: GetRequest<'_>, now: u32) -> Lookup {
        let key = req.key;
        let Some((hash, si)) = self.route(key) else {
            return Lookup::Miss;
        };
        if !req.vivify {
            // Without a new deadline for a record that has no field for
            // one, a lookup needs no memory: try once without `with_room`.
            let ctx = self.ctx(now);
            let outcome = self.lock(si).get(&req, hash, None, false, &ctx);
            if let Ok((lookup, garbage)) = outcome {
                drop(garbage);
                return lookup;
            }
        }
        let cas = self.cas_for(req.cas_in);
        let fill = |_: &mut [u8]| {};
        let mut fresh = req
            .vivify
            .then(|| NewItem::new(self.layout, key, req.key_binary, 0, cas, 0, &fill))
            .filter(|fresh| self.fits(fresh));
        // A retry after a failed insert still holds `fresh`.
        let found = self.with_room(si, now, |shard, ctx| {
            shard.get(&req, hash, fresh.as_mut(), false, ctx)
        });
        found.unwrap_or_else(|| {
            // No memory: for the item a miss would create (the request
            // misses), or for a deadline given to a record without room for
            // one (the item goes, as if evicted).
            let ctx = self.ctx(now);
            let (lookup, garbage) = self
                .lock(si)
                .get(&req, hash, None, true, &ctx)
                .expect("a lookup that creates nothing and may evict needs no memory");
            drop(garbage);
            lookup
        })
    }

    /// touch: a new deadline, CAS unchanged. True if the item was there.
    pub fn touch(&self, key: &[u8], deadline: u32, now: u32) -> bool {
        let Some((hash, si)) = self.route(key) else {
            return false;
        };
        let touched = self.with_room(si, now, |shard, ctx| {
            shard.touch(key, hash, deadline, false, ctx)
        });
        touched.unwrap_or_else(|| {
            // No memory for a record with the deadline: the item goes, as
            // if evicted.
            let ctx = self.ctx(now);
            let (found, garbage) = self
                .lock(si)
                .touch(key, hash, deadline, true, &ctx)
                .expect("a touch that may evict needs no memory");
            drop(garbage);
            found
        })
    }

    /// The item's state as memcached's `me` shows it, without bumping it.
    pub fn peek(&self, key: &[u8], now: u32) -> Option<ItemInfo> {
        let (hash, si) = self.route(key)?;
        let ctx = self.ctx(now);
        let mut shard = self.lock(si);
        match shard.find_live(key, hash, &ctx) {
            Find::Live(loc, _) => {
                let it = shard.item(loc);
                let h = item::header(it);
                let e = shard.meta(loc);
                Some(ItemInfo {
                    key_binary: item::key_binary(it),
                    deadline: e.deadline,
                    time: e.time,
                    cas: shard.cas_of(loc, &h),
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
