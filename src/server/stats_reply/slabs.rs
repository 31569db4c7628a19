//! `stats items`, `stats slabs` and `stats sizes`: memcached's per-class
//! figures for a store that has no slab classes. Items are packed at their
//! exact size, so all of them are shown as one class, number 1 (see
//! [`slabs`] for how its figures are made).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Context;
use crate::protocol::reply::Reply;
use crate::server::Replies;
use crate::store::ShardUsage;

/// The one class every item is shown in.
pub(super) const CLASS: u32 = 1;

/// What `stats slabs` calls a page: the unit memcached grows classes by.
const PAGE_SIZE: u64 = 1024 * 1024;

/// The store's per-shard figures folded into the one class.
struct ClassUsage {
    /// Last store or bump of the least recently used item (relative seconds).
    oldest: Option<u32>,
    evicted_nonzero: u64,
    /// How long the most recently evicted item had gone unaccessed.
    evicted_time: u32,
}

fn class_usage(shards: &[ShardUsage]) -> ClassUsage {
    let oldest = shards.iter().filter_map(|s| s.oldest).min();
    let last = shards
        .iter()
        .filter(|s| s.last_evicted_at != 0)
        .max_by_key(|s| s.last_evicted_at);
    ClassUsage {
        oldest,
        evicted_nonzero: shards.iter().map(|s| s.evicted_nonzero).sum(),
        evicted_time: last.map_or(0, |s| s.last_evicted_age),
    }
}

/// `stats items`: memcached's per-class LRU figures for class 1. The LRU is
/// one list (memcached's flat mode), so every item counts as cold, and the
/// hot/warm and crawler figures are 0. An empty cache gives just `END`.
pub(super) fn items(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let shared = cx.shared;
    shared.stats.flush(0, cx.stats);
    let s = shared.stats.snapshot();
    let st = shared.store_stats();
    if st.curr_items == 0 {
        out.send(Reply::End);
        return;
    }
    let u = class_usage(&shared.store.shard_usage());
    let age = u.oldest.map_or(0, |t| cx.now.saturating_sub(t));
    let rows: [(&str, u64); 28] = [
        ("number", st.curr_items),
        ("number_hot", 0),
        ("number_warm", 0),
        ("number_cold", st.curr_items),
        ("age_hot", 0),
        ("age_warm", 0),
        ("age", u64::from(age)),
        ("mem_requested", st.bytes),
        ("evicted", st.evictions),
        ("evicted_nonzero", u.evicted_nonzero),
        ("evicted_time", u64::from(u.evicted_time)),
        ("outofmemory", s.store_no_memory),
        ("tailrepairs", 0),
        ("reclaimed", st.reclaimed),
        ("expired_unfetched", st.expired_unfetched),
        ("evicted_unfetched", st.evicted_unfetched),
        ("evicted_active", 0),
        ("crawler_reclaimed", 0),
        ("crawler_items_checked", 0),
        ("lrutail_reflocked", 0),
        ("moves_to_cold", 0),
        ("moves_to_warm", 0),
        ("moves_within_lru", 0),
        ("direct_reclaims", 0),
        ("hits_to_hot", 0),
        ("hits_to_warm", 0),
        ("hits_to_cold", s.get_hits),
        ("hits_to_temp", 0),
    ];
    let mut name = String::new();
    for (field, v) in rows {
        name.clear();
        let _ = write!(name, "items:{CLASS}:{field}");
        out.stat(&name, v);
    }
    out.send(Reply::End);
}

/// `stats slabs`, for a store that allocates every item at its own size.
/// Class 1 holds all items; its "chunk" is the mean cost of an item
/// (bytes charged / items) and its "pages" are 1 MiB of such chunks, so
/// `used_chunks` is the item count and `total_pages` what that many items
/// of the mean size would take. `total_malloced` is the bytes charged
/// against `-m`. An empty cache lists no class, as memcached's does.
pub(super) fn slabs(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let shared = cx.shared;
    shared.stats.flush(0, cx.stats);
    let s = shared.stats.snapshot();
    let st = shared.store_stats();
    if st.curr_items > 0 {
        let chunk_size = st.bytes.div_ceil(st.curr_items).max(1);
        let per_page = (PAGE_SIZE / chunk_size).max(1);
        let pages = st.curr_items.div_ceil(per_page);
        let total_chunks = pages * per_page;
        let rows: [(&str, u64); 15] = [
            ("chunk_size", chunk_size),
            ("chunks_per_page", per_page),
            ("total_pages", pages),
            ("total_chunks", total_chunks),
            ("used_chunks", st.curr_items),
            ("free_chunks", total_chunks - st.curr_items),
            ("free_chunks_end", 0),
            ("get_hits", s.get_hits),
            ("cmd_set", s.cmd_set),
            ("delete_hits", s.delete_hits),
            ("incr_hits", s.incr_hits),
            ("decr_hits", s.decr_hits),
            ("cas_hits", s.cas_hits),
            ("cas_badval", s.cas_badval),
            ("touch_hits", s.touch_hits),
        ];
        let mut name = String::new();
        for (field, v) in rows {
            name.clear();
            let _ = write!(name, "{CLASS}:{field}");
            out.stat(&name, v);
        }
    }
    out.stat("active_slabs", u64::from(st.curr_items > 0));
    out.stat("total_malloced", st.bytes);
    out.send(Reply::End);
}

/// `stats sizes`: item counts by memcached's item size (header, key, value
/// and CRLF), in 32-byte buckets, with `-o track_sizes`; the buckets are
/// computed from every item present when asked.
pub(super) fn sizes(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let shared = cx.shared;
    if !shared.config.track_sizes {
        out.stat("sizes_status", "disabled");
        out.send(Reply::End);
        return;
    }
    let limits = shared.config.limits;
    let mut buckets: BTreeMap<usize, u64> = BTreeMap::new();
    shared.store.for_each_item(cx.now, |it| {
        let size = limits.item_total_size(it.key.len(), it.value_len, it.flags);
        *buckets.entry(size.div_ceil(32) * 32).or_default() += 1;
        true
    });
    for (size, n) in buckets {
        out.stat(&size.to_string(), n);
    }
    out.send(Reply::End);
}

/// The slab class memcached would keep an item of `size` bytes in
/// (`slabs_clsid` over classes from 96 bytes, growth factor 1.25, aligned
/// to 8, up to half a 1 MiB page); `me` prints it.
pub(in crate::server) fn slab_class(size: usize) -> u32 {
    const CHUNK_MAX: usize = 512 * 1024;
    let mut class_size = 96usize;
    let mut class = 1;
    loop {
        if class_size as f64 >= CHUNK_MAX as f64 / 1.25 {
            // The largest class holds the rest (larger items are chunked).
            return class;
        }
        class_size = class_size.next_multiple_of(8);
        if size <= class_size {
            return class;
        }
        class += 1;
        class_size = (class_size as f64 * 1.25) as usize;
    }
}
