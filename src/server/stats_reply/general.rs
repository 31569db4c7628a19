//! `stats` and `stats settings`: memcached 1.6's lines in memcached's order.

use std::sync::atomic::Ordering;

use super::Context;
use crate::config::Listen;
use crate::protocol::reply::Reply;
use crate::server::Replies;

/// `rusage_user` / `rusage_system`: seconds with six decimals, as memcached prints them.
fn rusage() -> (String, String) {
    let tv = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    let (user, system) = crate::stats::cpu_times();
    (tv(user), tv(system))
}

pub(super) fn general(cx: &mut Context<'_>, out: &mut Replies<'_>) {
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
            out.stat($name, $v)
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
    // memcached counts (and shows) refusals only with maxconns_fast.
    if cfg.tuning.maxconns_fast {
        stat!("rejected_connections", s.rejected_connections);
    }
    stat!("connection_structures", curr + listeners);
    stat!("response_obj_oom", 0);
    stat!("response_obj_count", 0);
    stat!("response_obj_bytes", 0);
    let bufs = crate::server::bufpool::totals();
    stat!("read_buf_count", bufs.count);
    stat!("read_buf_bytes", bufs.bytes);
    stat!("read_buf_bytes_free", bufs.bytes_free);
    stat!("read_buf_oom", 0);
    stat!(
        "reserved_fds",
        crate::server::fd_limit::reserved(cfg.conn_limit)
    );
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
    stat!("accepting_conns", u8::from(shared.stats.accepting_conns()));
    stat!("listen_disabled_num", s.listen_disabled_num);
    stat!("time_in_listen_disabled_us", s.time_in_listen_disabled_us);
    stat!("threads", cfg.threads);
    stat!("conn_yields", s.conn_yields);
    // The shards' indexes are not one power-of-two table: the power shown
    // is that of their buckets together, rounded down. An index grows
    // under its shard's lock, so none is ever seen expanding.
    stat!(
        "hash_power_level",
        st.hash_buckets.checked_ilog2().unwrap_or(0)
    );
    stat!("hash_bytes", st.hash_bytes);
    stat!("hash_is_expanding", 0);
    // memcached 1.6.45's slab mover lines, shown while `slab_reassign` is
    // on (`-o no_slab_reassign` leaves them out); there are no slabs to
    // move here.
    if cfg.tuning.slab_reassign {
        for name in [
            "slab_reassign_rescues",
            "slab_reassign_chunk_rescues",
            "slab_reassign_inline_reclaim",
            "slab_reassign_busy_items",
            "slab_reassign_busy_deletes",
            "slab_reassign_busy_nomem",
        ] {
            out.stat(name, 0);
        }
        stat!("slab_reassign_last_busy_status", "none");
        stat!("slab_reassign_running", 0);
        stat!("slabs_moved", 0);
    }
    if shared.tunables.lru_crawler.load(Ordering::Relaxed) {
        stat!("lru_crawler_running", 0);
        stat!("lru_crawler_starts", 0);
    }
    if cfg.lru_maintainer {
        stat!("lru_maintainer_juggles", 0);
    }
    stat!("malloc_fails", 0);
    // Events are formatted once, where they happen; none is dropped
    // before the watchers' queues.
    let log = shared.watch.stats();
    stat!("log_worker_dropped", 0);
    stat!("log_worker_written", log.worker_written);
    stat!("log_watcher_skipped", log.watcher_skipped);
    stat!("log_watcher_sent", log.watcher_sent);
    stat!("log_watchers", log.watchers);
    // memcached shows these only with -Z.
    if let Some(tls) = &shared.config.tls {
        stat!("ssl_handshake_errors", s.ssl_handshake_errors);
        stat!(
            "time_since_server_cert_refresh",
            tls.loaded().elapsed().as_secs()
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
    if cfg.lru_maintainer {
        stat!("evicted_active", 0);
    }
    stat!("evictions", st.evictions);
    stat!("reclaimed", st.reclaimed);
    for name in [
        "crawler_reclaimed",
        "crawler_items_checked",
        "lrutail_reflocked",
    ] {
        out.stat(name, 0);
    }
    if cfg.lru_maintainer {
        for name in [
            "moves_to_cold",
            "moves_to_warm",
            "moves_within_lru",
            "direct_reclaims",
            "lru_bumps_dropped",
        ] {
            out.stat(name, 0);
        }
    }
    // ferrocache's own, after memcached's and only with -e: how the last
    // start went.
    if cfg.memory_file.is_some() {
        let warm = shared.store.warm_start();
        stat!("warm_start", u8::from(warm.is_some()));
        stat!("warm_start_items", warm.map_or(0, |w| w.items));
        let d = warm.map_or(std::time::Duration::ZERO, |w| w.duration);
        stat!(
            "warm_start_seconds",
            format!("{}.{:06}", d.as_secs(), d.subsec_micros())
        );
    }
    out.send(Reply::End);
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub(super) fn settings(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let cfg = &cx.shared.config;
    let t = &cx.shared.tunables;
    use Ordering::Relaxed;
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
        (
            "verbosity",
            cx.shared.verbosity.load(Ordering::Relaxed).to_string(),
        ),
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
        ("binding_protocol", cfg.binding_protocol.name().into()),
        ("auth_enabled_sasl", yes_no(cfg.sasl.is_some()).into()),
        // memcached shows the file's path here, not `yes`.
        (
            "auth_enabled_ascii",
            cfg.auth
                .as_ref()
                .map_or_else(|| "no".into(), |a| a.path().display().to_string()),
        ),
        ("item_size_max", cfg.limits.item_size_max.to_string()),
        ("maxconns_fast", yes_no(cfg.tuning.maxconns_fast).into()),
        ("hashpower_init", cfg.tuning.hashpower_init.to_string()),
        ("slab_reassign", yes_no(cfg.tuning.slab_reassign).into()),
        ("slab_automove", t.slab_automove.load(Relaxed).to_string()),
        (
            "slab_automove_ratio",
            format!("{:.2}", t.slab_automove_ratio()),
        ),
        (
            "slab_automove_window",
            t.slab_automove_window.load(Relaxed).to_string(),
        ),
        ("slab_chunk_max", cfg.slab_chunk_max.to_string()),
        // No crawler thread: expired items are reclaimed on access and by
        // the store's bounded sweep.
        ("lru_crawler", yes_no(t.lru_crawler.load(Relaxed)).into()),
        (
            "lru_crawler_sleep",
            t.lru_crawler_sleep.load(Relaxed).to_string(),
        ),
        (
            "lru_crawler_tocrawl",
            t.lru_crawler_tocrawl.load(Relaxed).to_string(),
        ),
        ("tail_repair_time", cfg.tuning.tail_repair_time.to_string()),
        ("flush_enabled", yes_no(cfg.flush_enabled).into()),
        ("dump_enabled", "yes".into()),
        ("hash_algorithm", "foldhash".into()),
        ("lru_maintainer_thread", yes_no(cfg.lru_maintainer).into()),
        (
            "lru_segmented",
            yes_no(t.lru_segmented.load(Relaxed)).into(),
        ),
        ("hot_lru_pct", t.hot_lru_pct.load(Relaxed).to_string()),
        ("warm_lru_pct", t.warm_lru_pct.load(Relaxed).to_string()),
        ("hot_max_factor", format!("{:.2}", t.hot_max_factor())),
        ("warm_max_factor", format!("{:.2}", t.warm_max_factor())),
        ("temp_lru", yes_no(t.temp_lru.load(Relaxed)).into()),
        // `%u` in memcached: a negative `-o temporary_ttl` shows wrapped.
        (
            "temporary_ttl",
            (t.temporary_ttl.load(Relaxed) as u32).to_string(),
        ),
        (
            "idle_timeout",
            cfg.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
        ("watcher_logbuf_size", cfg.watcher_buf.to_string()),
        // Shown as set: there are no per-worker log buffers here, and read
        // buffers are per connection.
        (
            "worker_logbuf_size",
            cfg.tuning.worker_logbuf_size.to_string(),
        ),
        (
            "read_buf_mem_limit",
            cfg.tuning.read_buf_mem_limit.to_string(),
        ),
        ("track_sizes", yes_no(cfg.track_sizes).into()),
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
        (
            "slab_automove_freeratio",
            format!("{:.3}", t.slab_automove_freeratio()),
        ),
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
        // `%d` in 1.6.45 (1.6.18 printed `(null)`); no NAPI ids here.
        ("num_napi_ids", "0".into()),
        // As given to -e; memcached prints its unset pointer as `(null)`.
        ("memory_file", shown_path(&cfg.memory_file, "(null)")),
        // The size of the client flags field, in bytes (a 32-bit number).
        ("client_flags_size", "4".into()),
        // ferrocache's own, after memcached's: the hot-key top-K.
        (
            "hot_keys",
            if cfg.hot_keys.enabled { "on" } else { "off" }.into(),
        ),
        ("hot_keys_top", cfg.hot_keys.top.to_string()),
        ("hot_keys_window", cfg.hot_keys.window.to_string()),
        ("hot_keys_sample", cfg.hot_keys.sample.to_string()),
    ];
    for (name, value) in rows {
        out.stat(name, value);
    }
    out.send(Reply::End);
}

/// A path setting as memcached prints it: its `NULL`/`(null)` when unset.
fn shown_path(path: &Option<std::path::PathBuf>, unset: &str) -> String {
    path.as_ref()
        .map_or_else(|| unset.to_string(), |p| p.display().to_string())
}
