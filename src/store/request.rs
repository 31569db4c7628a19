//! The store's requests and their outcomes: one type per kind of request,
//! whatever wire format it came in. A classic command is a request with
//! the options it lacks left at their defaults (`GetRequest::new`,
//! `StoreRequest::new`, ...); a meta command sets the options it has.
//!
//! Keys, values, flags and deadlines arrive already converted (deadlines by
//! [`super::clock`]). Nothing here knows how a request was spelled or how
//! its outcome is written back; the callers map flags and replies.

use bytes::Bytes;

use crate::item_rules::StoreMode;

/// An order-dependent option of a lookup or an arithmetic request, applied
/// in request order: memcached answers `mg k t T30` with the old TTL and
/// `mg k T30 t` with the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new deadline (meta `T`; classic `gat`).
    Ttl(u32),
    /// The deadline of an item this request created (meta `N`); a lookup
    /// also wins the recache token by creating it.
    Vivify(u32),
    /// Win the recache token if the deadline is before this one (meta `R`).
    Recache(u32),
    /// Note the deadline as it is at this point (meta `t`).
    ReadTtl,
}

/// A lookup: classic `get`/`gat`, meta `mg`.
#[derive(Debug, Clone, Copy)]
pub struct GetRequest<'a> {
    pub key: &'a [u8],
    /// Whether the key came in base64, for an item this request creates.
    pub key_binary: bool,
    /// On a miss, create an empty item (its deadline from [`Step::Vivify`]);
    /// if there is no memory for it, the request misses.
    pub vivify: bool,
    /// Mark the item fetched and refresh its recency (meta `u` turns it off).
    pub bump: bool,
    /// Take part in the recache protocol: report the stale mark and whether
    /// a token was handed out, and hand one out (to a stale item's first
    /// reader, or as [`Step::Recache`] or [`Step::Vivify`] decide). Off, the
    /// token state is neither read nor changed.
    pub tokens: bool,
    /// A [`Step::Ttl`] deadline that has already passed removes the item
    /// once it is read (classic `gat`); otherwise it expires on its next
    /// access, as after any other deadline.
    pub unlink_expired: bool,
    /// The CAS an item this request creates gets, instead of the next one.
    pub cas_in: Option<u64>,
    pub steps: &'a [Step],
}

impl<'a> GetRequest<'a> {
    /// A classic `get`: the value, the item bumped, nothing else.
    pub fn new(key: &'a [u8]) -> GetRequest<'a> {
        GetRequest {
            key,
            key_binary: false,
            vivify: false,
            bump: true,
            tokens: false,
            unlink_expired: true,
            cas_in: None,
            steps: &[],
        }
    }
}

/// An item as a read returns it. `data` shares the stored allocation, so
/// handing it out copies no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub data: Bytes,
    pub flags: u32,
    pub cas: u64,
}

/// The item a lookup found or created, and its state before the lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub value: Value,
    /// The key was stored from base64.
    pub key_binary: bool,
    /// Fetched before this request (meta `h`).
    pub fetched: bool,
    /// Seconds since the last access before this request (meta `l`).
    pub idle: u32,
    /// The deadline at the [`Step::ReadTtl`] step, 0 for none.
    pub ttl_at_read: u32,
    /// The request created the item ([`GetRequest::vivify`] on a miss).
    pub created: bool,
    /// A [`Step::Ttl`] ran: memcached counts the request as a touch.
    pub touched: bool,
    /// A token had been handed out already (meta `Z`).
    pub token_sent: bool,
    /// The item is stale (meta `X`).
    pub stale: bool,
    /// This request won the token (meta `W`).
    pub won: bool,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Hit),
    /// No such key.
    Miss,
    /// The key was there but its time had passed (memcached's `get_expired`).
    Expired,
    /// The key was there but a `flush_all` hid it (`get_flushed`).
    Flushed,
}

/// A write: classic set/add/replace/append/prepend/cas, meta `ms`.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub key_binary: bool,
    pub flags: u32,
    pub deadline: u32,
    pub value: &'a [u8],
    /// Store only over this CAS value. [`StoreMode::Cas`] always compares
    /// (classic `cas`: 0 never matches); Set and Replace with one become a
    /// CAS store; Append and Prepend check a non-zero one; Add ignores it.
    pub compare_cas: Option<u64>,
    /// A CAS store whose CAS is older than the item's still stores, but
    /// marks the item stale and keeps its deadline (meta `I`).
    pub invalidate: bool,
    /// Out of memory deletes the old value too, so that a failed write
    /// leaves no stale data behind: memcached does so for a classic `set`
    /// and for every `ms`.
    pub oom_deletes: bool,
    /// Append and Prepend on a miss store the value as a new item (with
    /// `flags` and `deadline`) instead of refusing (meta `N`).
    pub vivify: bool,
    /// The CAS the stored item gets, instead of the next one (meta `E`).
    pub cas_in: Option<u64>,
}

/// What [`super::Store::store_sized`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub result: StoreResult,
    /// The item's new CAS; 0 unless stored.
    pub cas: u64,
    /// The length of the value stored (after append or prepend, the whole
    /// value), or of the value sent when nothing was stored.
    pub len: usize,
}

impl<'a> StoreRequest<'a> {
    /// A classic storage command (for `cas`, set `compare_cas`).
    pub fn new(
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        deadline: u32,
        value: &'a [u8],
    ) -> StoreRequest<'a> {
        StoreRequest {
            mode,
            key,
            key_binary: false,
            flags,
            deadline,
            value,
            compare_cas: None,
            invalidate: false,
            oom_deletes: mode == StoreMode::Set,
            vivify: false,
            cas_in: None,
        }
    }
}

/// The outcome of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    Stored,
    NotStored,
    /// A CAS compare against a changed item.
    Exists,
    /// A CAS compare against a missing item.
    NotFound,
    /// The item cannot be made to fit: larger than the whole limit, or the
    /// store is full and evictions are off (`-M`).
    OutOfMemory,
}

/// incr/decr: classic `incr`/`decr`, meta `ma`.
#[derive(Debug, Clone, Copy)]
pub struct ArithRequest<'a> {
    pub key: &'a [u8],
    /// Whether the key came in base64, for an item this request creates.
    pub key_binary: bool,
    pub incr: bool,
    pub delta: u64,
    /// Apply only if the CAS still matches (0 means no check, as in memcached).
    pub compare_cas: u64,
    /// On a miss, create the item with the value `initial` (meta `N`/`J`).
    pub vivify: bool,
    pub initial: u64,
    /// The CAS the changed or created item gets, instead of the next one.
    pub cas_in: Option<u64>,
    /// The CAS of a version of the item something else still holds
    /// (memcached: an unsent reply). If that is the current version, a
    /// shorter result is stored at its length, not padded in place.
    pub held: Option<u64>,
    pub steps: &'a [Step],
}

impl<'a> ArithRequest<'a> {
    /// A classic `incr` or `decr`.
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> ArithRequest<'a> {
        ArithRequest {
            key,
            key_binary: false,
            incr,
            delta,
            compare_cas: 0,
            vivify: false,
            initial: 0,
            cas_in: None,
            held: None,
            steps: &[],
        }
    }
}

/// The counter an arithmetic request changed or created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub value: u64,
    pub cas: u64,
    /// The deadline at the [`Step::ReadTtl`] step, 0 for none.
    pub ttl_at_read: u32,
    /// The request created the item: the delta was not applied.
    pub created: bool,
}

/// The outcome of an arithmetic request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithResult {
    Done(Counter),
    NotFound,
    /// The item appeared between the miss and the create.
    NotStored,
    /// The CAS compare failed.
    Exists,
    NonNumeric,
    OutOfMemory,
}

/// A delete: classic `delete`, meta `md`.
#[derive(Debug, Clone, Copy)]
pub struct DeleteRequest<'a> {
    pub key: &'a [u8],
    /// Delete only if the CAS matches.
    pub compare_cas: Option<u64>,
    /// Keep the item, marked stale with a new CAS, and take its recache
    /// token back (meta `I`).
    pub invalidate: bool,
    /// With `invalidate` or `remove_value`, the item's new deadline
    /// (meta `T`; `remove_value` without one: none).
    pub deadline: Option<u32>,
    /// Keep the key as a new item with an empty value, `flags` and
    /// `deadline`, the old item's CAS unless `cas_in` (meta `x`).
    pub remove_value: bool,
    /// The client flags of the item `remove_value` leaves.
    pub flags: u32,
    /// The CAS the kept item gets: with `invalidate` instead of the next
    /// one, with `remove_value` instead of the old one (meta `E`).
    pub cas_in: Option<u64>,
}

impl<'a> DeleteRequest<'a> {
    /// A classic `delete`.
    pub fn new(key: &'a [u8]) -> DeleteRequest<'a> {
        DeleteRequest {
            key,
            compare_cas: None,
            invalidate: false,
            deadline: None,
            remove_value: false,
            flags: 0,
            cas_in: None,
        }
    }
}

/// The outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted,
    /// Kept, marked stale, with a new CAS.
    Invalidated,
    NotFound,
    /// The CAS compare failed.
    Exists,
    /// No memory for the item `remove_value` leaves.
    OutOfMemory,
}

/// An item as [`super::Store::peek`] shows it, without touching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
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

/// One live item as [`super::Store::for_each_item`] shows it.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    pub key: &'a [u8],
    /// The key was stored from base64 (meta `b`).
    pub key_binary: bool,
    pub value_len: usize,
    pub flags: u32,
    pub cas: u64,
    /// Relative seconds, 0 for never.
    pub deadline: u32,
    /// Last store or bump, relative seconds.
    pub time: u32,
    pub fetched: bool,
}
