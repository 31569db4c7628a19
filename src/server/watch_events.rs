//! What the executor tells `watch` (`watch.rs`): each helper is called only
//! after [`Hub::wants`](super::watch::Hub::wants) said somebody listens, so
//! a request nobody watches pays that one atomic load and nothing here.
//!
//! memcached logs a `type=item_get` line for every lookup of a key, and a
//! write, delete, touch or arithmetic looks its key up first. Here the
//! reads report what they found; the others look at the item first with
//! [`Store::peek`](crate::store::Store::peek) (only while somebody
//! watches), which is also where a delete's or an append's size comes from.

use super::Context;
use super::stats_reply::slab_class;
use super::watch::{DELETIONS, FETCHERS, FetchStatus, MUTATIONS};
use crate::item_rules::StoreMode;
use crate::store::{ArithRequest, ItemInfo, Lookup, Step, StoreRequest, StoreResult};

/// memcached's slab class of an item with these sizes.
fn class(cx: &Context<'_>, key: &[u8], value_len: usize, flags: u32) -> u32 {
    slab_class(
        cx.shared
            .config
            .limits
            .item_total_size(key.len(), value_len, flags),
    )
}

/// A read of `key` found `lookup`.
pub fn fetched(cx: &Context<'_>, key: &[u8], lookup: &Lookup) {
    let (status, clsid, size) = match lookup {
        Lookup::Hit(hit) => {
            let len = hit.value.data.len();
            (
                FetchStatus::Found,
                class(cx, key, len, hit.value.flags),
                len,
            )
        }
        Lookup::Miss => (FetchStatus::NotFound, 0, 0),
        Lookup::Expired => (FetchStatus::Expired, 0, 0),
        Lookup::Flushed => (FetchStatus::Flushed, 0, 0),
    };
    cx.shared.watch.item_get(key, status, clsid, cx.fd, size);
}

/// Before a write, delete, touch or arithmetic on `key`: the item as it is,
/// and its `item_get` line if fetchers are watched.
pub fn looked_up(cx: &Context<'_>, key: &[u8]) -> Option<ItemInfo> {
    let info = cx.shared.store.peek(key, cx.now);
    let hub = &cx.shared.watch;
    if hub.wants(FETCHERS) {
        match &info {
            Some(i) => hub.item_get(
                key,
                FetchStatus::Found,
                class(cx, key, i.value_len, i.flags),
                cx.fd,
                i.value_len,
            ),
            None => hub.item_get(key, FetchStatus::NotFound, 0, cx.fd, 0),
        }
    }
    info
}

/// A write of `req` ended in `result`; `old` is the item before it.
pub fn stored(
    cx: &Context<'_>,
    req: &StoreRequest<'_>,
    old: Option<&ItemInfo>,
    result: StoreResult,
) {
    let hub = &cx.shared.watch;
    if !hub.wants(MUTATIONS) {
        return;
    }
    let joined = matches!(req.mode, StoreMode::Append | StoreMode::Prepend);
    let (size, deadline, flags) = match old {
        // The new item is the old one grown, with its expiry and flags.
        Some(o) if joined && result == StoreResult::Stored => {
            (o.value_len + req.value.len(), o.deadline, o.flags)
        }
        _ => (req.value.len(), req.deadline, req.flags),
    };
    let status = match result {
        StoreResult::Stored => "stored",
        StoreResult::NotStored => "not_stored",
        StoreResult::Exists => "exists",
        StoreResult::NotFound => "not_found",
        StoreResult::OutOfMemory => "no_memory",
    };
    let cmd = match req.mode {
        StoreMode::Set => "set",
        StoreMode::Add => "add",
        StoreMode::Replace => "replace",
        StoreMode::Append => "append",
        StoreMode::Prepend => "prepend",
        StoreMode::Cas => "cas",
    };
    // memcached prints the seconds left unsigned (`%u`).
    let ttl = if deadline == 0 {
        0
    } else {
        deadline.wrapping_sub(cx.now)
    };
    let clsid = class(cx, req.key, size, flags);
    hub.item_store(req.key, status, cmd, ttl, clsid, cx.fd, size);
}

/// `old`, the item at `key`, was deleted by `cmd` (`delete` or `md`).
pub fn deleted(cx: &Context<'_>, key: &[u8], old: &ItemInfo, cmd: &str) {
    let hub = &cx.shared.watch;
    if hub.wants(DELETIONS) {
        let clsid = class(cx, key, old.value_len, old.flags);
        hub.deleted(key, cmd, clsid, old.value_len);
    }
}

/// `ma ... N` created the counter `req` missed, with `value`: memcached
/// adds it as a store would, looking the key up once more first.
pub fn counter_created(cx: &Context<'_>, req: &ArithRequest<'_>, value: u64) {
    let hub = &cx.shared.watch;
    if hub.wants(FETCHERS) {
        hub.item_get(req.key, FetchStatus::NotFound, 0, cx.fd, 0);
    }
    if hub.wants(MUTATIONS) {
        let deadline = req
            .steps
            .iter()
            .find_map(|s| match s {
                Step::Vivify(d) => Some(*d),
                _ => None,
            })
            .unwrap_or(0);
        let ttl = if deadline == 0 {
            0
        } else {
            deadline.wrapping_sub(cx.now)
        };
        let size = value.checked_ilog10().map_or(1, |d| d as usize + 1);
        let clsid = class(cx, req.key, size, 0);
        hub.item_store(req.key, "stored", "add", ttl, clsid, cx.fd, size);
    }
}
