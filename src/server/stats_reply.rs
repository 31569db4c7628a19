//! The `stats` command's sub-commands, rendered in memcached 1.6's order and
//! names so that tools written for memcached read them unchanged. Parts we
//! do not have (libevent, slab rebalancing, the LRU crawler) print the value
//! memcached prints when they are idle.
//!
//! The store has no slab classes: items are allocated at their exact size.
//! `stats items`, `stats slabs`, `stats cachedump` and the metadump show all
//! items as one class, number 1 (see [`slabs`] for how its figures are made).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};

use super::execute::Context;
use crate::config::Listen;
use crate::protocol::encode::{self, Reply};
use crate::protocol::{Keys, ProtocolError};
use crate::store::ShardUsage;

/// The one class every item is shown in.
const CLASS: u32 = 1;

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: `stats cachedump` accepts
/// class ids below it.
const CLASS_ID_LIMIT: u64 = 64;

/// memcached stops a cachedump at 2 MB of output.
const CACHEDUMP_MAX_BYTES: usize = 2 * 1024 * 1024;

/// What `stats slabs` calls a page: the unit memcached grows classes by.
const PAGE_SIZE: u64 = 1024 * 1024;

pub fn stats(args: Keys<'_>, cx: &mut Context<'_>, out: &mut BytesMut) {
    let mut it = args.iter();
    match it.next() {
        None => general(cx, out),
        Some(b"settings") => settings(cx, out),
        Some(b"reset") => {
            cx.shared.reset_stats();
            *cx.stats = Default::default();
            encode::reply(out, Reply::Reset);
        }
        Some(b"items") => items(cx, out),
        Some(b"slabs") => slabs(cx, out),
        Some(b"sizes") => sizes(cx, out),
        // memcached answers these two with the status line only, no END.
        Some(b"sizes_enable") => {
            cx.shared.sizes_enabled.store(true, Ordering::Relaxed);
            encode::stat(out, "sizes_status", "enabled");
        }
        Some(b"sizes_disable") => {
            cx.shared.sizes_enabled.store(false, Ordering::Relaxed);
            encode::stat(out, "sizes_status", "disabled");
        }
        Some(b"conns") => conns(cx, out),
        Some(b"detail") => detail(it.next(), cx, out),
        Some(b"cachedump") => cachedump(it.next(), it.next(), cx, out),
        Some(b"extstore") => encode::reply(out, Reply::End),
        Some(_) => encode::error(out, ProtocolError::UnknownCommand),
    }
}

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
fn items(cx: &mut Context<'_>, out: &mut BytesMut) {
    let shared = cx.shared;
    shared.stats.flush(0, cx.stats);
    let s = shared.stats.snapshot();
    let st = shared.store_stats();
    if st.curr_items == 0 {
        encode::reply(out, Reply::End);
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
        encode::stat(out, &name, v);
    }
    encode::reply(out, Reply::End);
}

/// `stats slabs`, for a store that allocates every item at its own size.
/// Class 1 holds all items; its "chunk" is the mean cost of an item
/// (bytes charged / items) and its "pages" are 1 MiB of such chunks, so
/// `used_chunks` is the item count and `total_pages` what that many items
/// of the mean size would take. `total_malloced` is the bytes charged
/// against `-m`. An empty cache lists no class, as memcached's does.
fn slabs(cx: &mut Context<'_>, out: &mut BytesMut) {
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
            encode::stat(out, &name, v);
        }
    }
    encode::stat(out, "active_slabs", u64::from(st.curr_items > 0));
    encode::stat(out, "total_malloced", st.bytes);
    encode::reply(out, Reply::End);
}

/// `stats sizes`: item counts by memcached's item size (header, key, value
/// and CRLF), in 32-byte buckets. memcached counts items stored after
/// `sizes_enable`; here the buckets are computed from every item present
/// when asked, so nothing is counted while it is on and nothing is missed.
fn sizes(cx: &mut Context<'_>, out: &mut BytesMut) {
    let shared = cx.shared;
    if !shared.sizes_enabled.load(Ordering::Relaxed) {
        encode::stat(out, "sizes_status", "disabled");
        encode::reply(out, Reply::End);
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
        encode::stat(out, &size.to_string(), n);
    }
    encode::reply(out, Reply::End);
}

/// `stats conns`: the listeners, then every open connection, by descriptor.
fn conns(cx: &mut Context<'_>, out: &mut BytesMut) {
    let shared = cx.shared;
    let now = cx.now;
    let mut rows: Vec<(i32, Vec<(&str, String)>)> = Vec::new();
    for (fd, addr) in shared
        .listening
        .lock()
        .expect("listening lock poisoned")
        .iter()
    {
        rows.push((
            *fd,
            vec![
                ("addr", addr.clone()),
                ("state", "conn_listening".into()),
                ("secs_since_last_cmd", now.saturating_sub(2).to_string()),
            ],
        ));
    }
    for c in shared.conns.list() {
        rows.push((
            c.fd,
            vec![
                ("addr", c.addr.clone()),
                ("listen_addr", c.listen_addr.clone()),
                ("state", c.state_name().into()),
                (
                    "secs_since_last_cmd",
                    now.saturating_sub(c.last_cmd()).to_string(),
                ),
            ],
        ));
    }
    rows.sort_by_key(|(fd, _)| *fd);
    let mut name = String::new();
    for (fd, fields) in rows {
        for (field, v) in fields {
            name.clear();
            let _ = write!(name, "{fd}:{field}");
            encode::stat(out, &name, v);
        }
    }
    encode::reply(out, Reply::End);
}

/// `stats detail on|off|dump`.
fn detail(arg: Option<&[u8]>, cx: &mut Context<'_>, out: &mut BytesMut) {
    let detail = &cx.shared.detail;
    match arg {
        Some(b"on") => {
            detail.set_enabled(true);
            encode::reply(out, Reply::Ok);
        }
        Some(b"off") => {
            detail.set_enabled(false);
            encode::reply(out, Reply::Ok);
        }
        Some(b"dump") => {
            for (prefix, c) in detail.dump() {
                out.put_slice(b"PREFIX ");
                out.put_slice(&prefix);
                let _ = write!(
                    out,
                    " get {} hit {} set {} del {}\r\n",
                    c.get, c.hit, c.set, c.del
                );
            }
            encode::reply(out, Reply::End);
        }
        _ => encode::error(out, ProtocolError::StatsDetailUsage),
    }
}

fn parse_u64(token: &[u8]) -> Option<u64> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <exptime> s]`
/// per item of the class (all items are in class 1), least recently used
/// first within each shard; a limit of 0 means all, and like memcached the
/// reply stops at 2 MB.
fn cachedump(class: Option<&[u8]>, limit: Option<&[u8]>, cx: &mut Context<'_>, out: &mut BytesMut) {
    // These two replies are memcached's own, not shared with other commands.
    let (Some(class), Some(limit)) = (class, limit) else {
        encode::line(out, b"CLIENT_ERROR bad command line");
        return;
    };
    let (Some(class), Some(limit)) = (parse_u64(class), parse_u64(limit)) else {
        encode::error(out, ProtocolError::BadCommandLineFormat);
        return;
    };
    if class >= CLASS_ID_LIMIT {
        encode::line(out, b"CLIENT_ERROR Illegal slab id");
        return;
    }
    if class == u64::from(CLASS) {
        let clock = cx.shared.store.clock();
        let start = out.len();
        let mut shown = 0u64;
        cx.shared.store.for_each_item(cx.now, |it| {
            if (limit != 0 && shown >= limit) || out.len() - start >= CACHEDUMP_MAX_BYTES {
                return false;
            }
            let exp = if it.deadline == 0 {
                0
            } else {
                clock.to_unix(it.deadline)
            };
            out.put_slice(b"ITEM ");
            out.put_slice(it.key);
            let _ = write!(out, " [{} b; {} s]\r\n", it.value_len, exp);
            shown += 1;
            true
        });
    }
    encode::reply(out, Reply::End);
}

/// `lru_crawler metadump all`: one line per item, as memcached-tool's
/// `dump` and `keys` read them: `key=<url-encoded> exp=<unix|-1>
/// la=<unix> cas=<n> fetch=<yes|no> cls=1 size=<n>`, each ended by a bare
/// `\n`, then `END\r\n`.
// TODO(metrics): reached once the parser turns `lru_crawler metadump
// all|<classes>` into a command; until then only the tests call it.
pub(super) fn metadump(cx: &mut Context<'_>, out: &mut BytesMut) {
    let clock = cx.shared.store.clock();
    let limits = cx.shared.config.limits;
    cx.shared.store.for_each_item(cx.now, |it| {
        out.put_slice(b"key=");
        url_encode(it.key, out);
        let exp = if it.deadline == 0 {
            -1
        } else {
            clock.to_unix(it.deadline)
        };
        let _ = writeln!(
            out,
            " exp={} la={} cas={} fetch={} cls={CLASS} size={}",
            exp,
            clock.to_unix(it.time),
            it.cas,
            if it.fetched { "yes" } else { "no" },
            limits.item_total_size(it.key.len(), it.value_len, it.flags),
        );
        true
    });
    encode::reply(out, Reply::End);
}

/// Percent-encodes all but RFC 3986's unreserved characters, as memcached's
/// `uriencode` does.
fn url_encode(key: &[u8], out: &mut BytesMut) {
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.put_u8(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0;
    let tv = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    if ok {
        (tv(ru.ru_utime), tv(ru.ru_stime))
    } else {
        ("0.000000".into(), "0.000000".into())
    }
}

fn general(cx: &mut Context<'_>, out: &mut BytesMut) {
    let shared = cx.shared;
    // This connection's counts so far belong in what it is shown.
    shared.stats.flush(0, cx.stats);
    let s = shared.stats.snapshot();
    let st = shared.store_stats();
    let cfg = &shared.config;
    let clock = shared.store.clock();
    let (user, system) = rusage();
    let curr = shared.stats.curr_connections();
    let listeners = shared.listeners as u64;

    macro_rules! stat {
        ($name:literal, $v:expr) => {
            encode::stat(out, $name, $v)
        };
    }
    stat!("pid", std::process::id());
    stat!("uptime", cx.now.saturating_sub(2));
    stat!("time", clock.unix_now());
    stat!("version", crate::VERSION);
    stat!("libevent", "tokio");
    stat!("pointer_size", usize::BITS);
    stat!("rusage_user", user);
    stat!("rusage_system", system);
    stat!("max_connections", cfg.conn_limit);
    stat!("curr_connections", curr);
    stat!("total_connections", s.total_connections);
    stat!("rejected_connections", s.rejected_connections);
    stat!("connection_structures", curr + listeners);
    stat!("response_obj_oom", 0);
    stat!("response_obj_count", 0);
    stat!("response_obj_bytes", 0);
    stat!("read_buf_count", 0);
    stat!("read_buf_bytes", 0);
    stat!("read_buf_bytes_free", 0);
    stat!("read_buf_oom", 0);
    stat!("reserved_fds", 0);
    stat!("cmd_get", s.cmd_get);
    stat!("cmd_set", s.cmd_set);
    stat!("cmd_flush", s.cmd_flush);
    stat!("cmd_touch", s.cmd_touch);
    stat!("cmd_meta", s.cmd_meta);
    stat!("get_hits", s.get_hits);
    stat!("get_misses", s.get_misses);
    stat!("get_expired", s.get_expired);
    stat!("get_flushed", s.get_flushed);
    stat!("delete_misses", s.delete_misses);
    stat!("delete_hits", s.delete_hits);
    stat!("incr_misses", s.incr_misses);
    stat!("incr_hits", s.incr_hits);
    stat!("decr_misses", s.decr_misses);
    stat!("decr_hits", s.decr_hits);
    stat!("cas_misses", s.cas_misses);
    stat!("cas_hits", s.cas_hits);
    stat!("cas_badval", s.cas_badval);
    stat!("touch_hits", s.touch_hits);
    stat!("touch_misses", s.touch_misses);
    stat!("store_too_large", s.store_too_large);
    stat!("store_no_memory", s.store_no_memory);
    stat!("auth_cmds", s.auth_cmds);
    stat!("auth_errors", s.auth_errors);
    if cfg.idle_timeout.is_some() {
        stat!("idle_kicks", s.idle_kicks);
    }
    stat!("bytes_read", s.bytes_read);
    stat!("bytes_written", s.bytes_written);
    stat!("limit_maxbytes", st.limit_maxbytes);
    stat!("accepting_conns", 1);
    stat!("listen_disabled_num", 0);
    stat!("time_in_listen_disabled_us", 0);
    stat!("threads", cfg.threads);
    stat!("conn_yields", s.conn_yields);
    stat!("hash_power_level", 0);
    stat!("hash_bytes", 0);
    stat!("hash_is_expanding", 0);
    for name in [
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
        "slabs_moved",
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
    ] {
        encode::stat(out, name, 0);
    }
    // memcached shows these only with -Z.
    if let Some(tls) = &shared.config.tls {
        stat!("ssl_handshake_errors", s.ssl_handshake_errors);
        stat!(
            "time_since_server_cert_refresh",
            tls.loaded.elapsed().as_secs()
        );
    }
    stat!("unexpected_napi_ids", 0);
    stat!("round_robin_fallback", 0);
    stat!("bytes", st.bytes);
    stat!("curr_items", st.curr_items);
    stat!("total_items", st.total_items);
    stat!("slab_global_page_pool", 0);
    stat!("expired_unfetched", st.expired_unfetched);
    stat!("evicted_unfetched", st.evicted_unfetched);
    stat!("evicted_active", 0);
    stat!("evictions", st.evictions);
    stat!("reclaimed", st.reclaimed);
    for name in [
        "crawler_reclaimed",
        "crawler_items_checked",
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ] {
        encode::stat(out, name, 0);
    }
    encode::reply(out, Reply::End);
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn settings(cx: &mut Context<'_>, out: &mut BytesMut) {
    let cfg = &cx.shared.config;
    let st = cx.shared.store_stats();
    let (domain_socket, umask) = match &cfg.listen {
        Listen::Unix { path, mask } => (path.display().to_string(), format!("{mask:o}")),
        Listen::Tcp(_) => ("NULL".to_string(), "700".to_string()),
    };
    let rows: Vec<(&str, String)> = vec![
        ("maxbytes", st.limit_maxbytes.to_string()),
        ("maxconns", cfg.conn_limit.to_string()),
        ("tcpport", cfg.port.to_string()),
        ("udpport", "0".into()),
        ("inter", cfg.listen_text.clone()),
        ("verbosity", cfg.verbose.to_string()),
        ("oldest", "0".into()),
        (
            "evictions",
            if cfg.store.evictions { "on" } else { "off" }.into(),
        ),
        ("domain_socket", domain_socket),
        ("umask", umask),
        ("shutdown_command", yes_no(cfg.shutdown_enabled).into()),
        ("growth_factor", "1.25".into()),
        ("chunk_size", "48".into()),
        ("num_threads", cfg.threads.to_string()),
        ("num_threads_per_udp", cfg.threads.to_string()),
        ("stat_key_prefix", ":".into()),
        ("detail_enabled", yes_no(cx.shared.detail.enabled()).into()),
        ("reqs_per_event", cfg.reqs_per_event.to_string()),
        ("cas_enabled", yes_no(cfg.store.cas_enabled).into()),
        ("tcp_backlog", cfg.backlog.to_string()),
        ("binding_protocol", cfg.binding_protocol.into()),
        ("auth_enabled_sasl", "no".into()),
        // memcached shows the file's path here, not `yes`.
        (
            "auth_enabled_ascii",
            cfg.auth
                .as_ref()
                .map_or_else(|| "no".into(), |a| a.path().display().to_string()),
        ),
        ("item_size_max", cfg.limits.item_size_max.to_string()),
        ("maxconns_fast", "yes".into()),
        ("hashpower_init", "0".into()),
        ("slab_reassign", "no".into()),
        ("slab_automove", "0".into()),
        ("slab_automove_ratio", "0.00".into()),
        ("slab_automove_window", "0".into()),
        // memcached's default (half a 1 MiB slab page), bounded by -I as
        // memcached requires.
        (
            "slab_chunk_max",
            cfg.limits.item_size_max.min(512 * 1024).to_string(),
        ),
        // No crawler thread: expired items are reclaimed on access and by
        // the store's bounded sweep.
        ("lru_crawler", "no".into()),
        ("lru_crawler_sleep", "0".into()),
        ("lru_crawler_tocrawl", "0".into()),
        ("tail_repair_time", "0".into()),
        ("flush_enabled", yes_no(cfg.flush_enabled).into()),
        ("dump_enabled", "yes".into()),
        ("hash_algorithm", "foldhash".into()),
        ("lru_maintainer_thread", "no".into()),
        ("lru_segmented", "no".into()),
        ("hot_lru_pct", "0".into()),
        ("warm_lru_pct", "0".into()),
        ("hot_max_factor", "0.00".into()),
        ("warm_max_factor", "0.00".into()),
        ("temp_lru", "no".into()),
        ("temporary_ttl", "0".into()),
        (
            "idle_timeout",
            cfg.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
        ("watcher_logbuf_size", "0".into()),
        ("worker_logbuf_size", "0".into()),
        ("read_buf_mem_limit", "0".into()),
        (
            "track_sizes",
            yes_no(cx.shared.sizes_enabled.load(Ordering::Relaxed)).into(),
        ),
        ("inline_ascii_response", "no".into()),
        ("ext_item_size", "0".into()),
        ("ext_item_age", "0".into()),
        ("ext_low_ttl", "0".into()),
        ("ext_recache_rate", "0".into()),
        ("ext_wbuf_size", "0".into()),
        ("ext_compact_under", "0".into()),
        ("ext_drop_under", "0".into()),
        ("ext_max_sleep", "0".into()),
        ("ext_max_frag", "0.00".into()),
        ("slab_automove_freeratio", "0.000".into()),
        ("ext_drop_unread", "no".into()),
        ("ssl_enabled", yes_no(cfg.tls.is_some()).into()),
        (
            "ssl_chain_cert",
            shown_path(&cfg.tls_options.chain_cert, "(null)"),
        ),
        ("ssl_key", shown_path(&cfg.tls_options.key, "(null)")),
        ("ssl_verify_mode", cfg.tls_options.verify_mode.to_string()),
        ("ssl_keyformat", "1".into()),
        ("ssl_ciphers", "NULL".into()),
        ("ssl_ca_cert", shown_path(&cfg.tls_options.ca_cert, "NULL")),
        ("ssl_wbuf_size", "16384".into()),
        ("ssl_session_cache", "no".into()),
        ("ssl_kernel_tls", "no".into()),
        ("ssl_min_version", cfg.tls_options.min_version.clone()),
        ("num_napi_ids", "(null)".into()),
        ("memory_file", "(null)".into()),
    ];
    for (name, value) in rows {
        encode::stat(out, name, value);
    }
    encode::reply(out, Reply::End);
}

/// A path setting as memcached prints it: its `NULL`/`(null)` when unset.
fn shown_path(path: &Option<std::path::PathBuf>, unset: &str) -> String {
    path.as_ref()
        .map_or_else(|| unset.to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Cli;
    use crate::item_rules::StoreMode;
    use crate::server::Shared;
    use crate::stats::LocalStats;
    use crate::store::{Clock, Store, StoreRequest};

    const UNIX: i64 = 1_700_000_000;

    fn shared() -> Shared {
        let config = Cli::try_parse_from(["ferrocache", "-t", "1"])
            .unwrap()
            .validate()
            .unwrap();
        let store = Store::new(config.store.clone(), Clock::manual(UNIX));
        Shared::new(config, store, 1)
    }

    fn run(shared: &Shared, args: &str) -> String {
        let mut local = LocalStats::default();
        let mut cx = Context {
            shared,
            stats: &mut local,
            now: shared.store.clock().now(),
        };
        let mut out = BytesMut::new();
        stats(Keys::new(args.as_bytes()), &mut cx, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn set(shared: &Shared, key: &[u8], flags: u32, deadline: u32, value: &[u8]) {
        let now = shared.store.clock().now();
        let req = StoreRequest::new(StoreMode::Set, key, flags, deadline, value);
        let (r, _) = shared.store.store(req, now);
        assert_eq!(r, crate::store::StoreResult::Stored);
    }

    #[test]
    fn empty_cache_lists_no_class() {
        let s = shared();
        assert_eq!(run(&s, "items"), "END\r\n");
        assert_eq!(
            run(&s, "slabs"),
            "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n"
        );
    }

    #[test]
    fn items_and_slabs_show_one_class() {
        let s = shared();
        set(&s, b"a", 0, 0, b"x");
        set(&s, b"b", 0, 0, b"yy");
        let items = run(&s, "items");
        assert!(items.starts_with("STAT items:1:number 2\r\nSTAT items:1:number_hot 0\r\n"));
        assert!(items.contains("STAT items:1:number_cold 2\r\n"));
        assert!(items.ends_with("STAT items:1:hits_to_temp 0\r\nEND\r\n"));
        assert_eq!(items.lines().count(), 29);
        let slabs = run(&s, "slabs");
        assert!(slabs.contains("STAT 1:used_chunks 2\r\n"));
        assert!(slabs.contains("STAT active_slabs 1\r\n"));
        assert_eq!(slabs.matches("STAT 1:").count(), 15);
    }

    #[test]
    fn sizes_are_off_until_enabled_and_enable_has_no_end() {
        let s = shared();
        set(&s, b"bar", 0, 0, b"x");
        set(&s, b"foo:1", 5, 0, b"abc");
        assert_eq!(run(&s, "sizes"), "STAT sizes_status disabled\r\nEND\r\n");
        assert_eq!(run(&s, "sizes_enable"), "STAT sizes_status enabled\r\n");
        // memcached 1.6.18 puts these two at 64 and 96 (sizes 63 and 71).
        assert_eq!(run(&s, "sizes"), "STAT 64 1\r\nSTAT 96 1\r\nEND\r\n");
        assert_eq!(run(&s, "sizes_disable"), "STAT sizes_status disabled\r\n");
    }

    #[test]
    fn detail_usage_and_dump() {
        let s = shared();
        assert_eq!(
            run(&s, "detail"),
            "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
        );
        assert_eq!(run(&s, "detail dump"), "END\r\n");
        assert_eq!(run(&s, "detail on"), "OK\r\n");
        s.detail.record_get(b"foo:1", true);
        assert_eq!(
            run(&s, "detail dump"),
            "PREFIX foo get 1 hit 1 set 0 del 0\r\nEND\r\n"
        );
        assert_eq!(run(&s, "detail off"), "OK\r\n");
        assert!(!s.detail.enabled());
    }

    #[test]
    fn cachedump_replies_as_memcached() {
        let s = shared();
        let now = s.store.clock().now();
        set(&s, b"foo:1", 5, now + 100, b"abc");
        let exp = UNIX + 100;
        assert_eq!(
            run(&s, "cachedump 1 0"),
            format!("ITEM foo:1 [3 b; {exp} s]\r\nEND\r\n")
        );
        assert_eq!(run(&s, "cachedump 2 0"), "END\r\n");
        assert_eq!(run(&s, "cachedump 1"), "CLIENT_ERROR bad command line\r\n");
        assert_eq!(
            run(&s, "cachedump x 0"),
            "CLIENT_ERROR bad command line format\r\n"
        );
        assert_eq!(
            run(&s, "cachedump 64 0"),
            "CLIENT_ERROR Illegal slab id\r\n"
        );
    }

    #[test]
    fn metadump_lines_end_in_a_bare_newline() {
        let s = shared();
        let now = s.store.clock().now();
        set(&s, b"a:b c", 0, 0, b"x");
        let mut local = LocalStats::default();
        let mut cx = Context {
            shared: &s,
            stats: &mut local,
            now,
        };
        let mut out = BytesMut::new();
        metadump(&mut cx, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let la = UNIX;
        assert!(
            text.starts_with(&format!("key=a%3Ab%20c exp=-1 la={la} cas=")),
            "{text}"
        );
        assert!(text.ends_with(" fetch=no cls=1 size=65\nEND\r\n"), "{text}");
    }

    #[test]
    fn conns_lists_listeners_and_connections_by_fd() {
        let s = shared();
        *s.listening.lock().unwrap() = vec![(7, "tcp:127.0.0.1:11211".into())];
        let now = s.store.clock().now();
        s.conns.register(
            1,
            crate::stats::ConnInfo::new(
                9,
                "tcp:127.0.0.1:5555".into(),
                "tcp:127.0.0.1:11211".into(),
                now,
            ),
        );
        let text = run(&s, "conns");
        assert!(
            text.starts_with("STAT 7:addr tcp:127.0.0.1:11211\r\nSTAT 7:state conn_listening\r\n")
        );
        assert!(text.contains(
            "STAT 9:addr tcp:127.0.0.1:5555\r\nSTAT 9:listen_addr tcp:127.0.0.1:11211\r\nSTAT 9:state conn_waiting\r\nSTAT 9:secs_since_last_cmd 0\r\n"
        ));
        assert!(text.ends_with("END\r\n"));
    }
}
