//! Prometheus metrics: names, descriptions, and the `/metrics` endpoint.
//!
//! Nothing here counts on the request path. The counters already exist in
//! [`crate::stats`] and the store; at scrape time [`Exporter::render`] copies
//! their current totals into a `metrics-exporter-prometheus` registry (as
//! absolute counter values and gauges) and renders it. `stats` and
//! `/metrics` thus read the same counters and cannot drift apart.
//!
//! Names, types and labels follow prometheus/memcached_exporter where it has
//! the figure (`memcached_*`), so dashboards and alerts written for it work
//! unchanged; what it has no name for is `ferrocache_*`. Two deliberate
//! differences: `memcached_uptime_seconds`, `memcached_slab_items_age_seconds`
//! and `memcached_slab_items_evicted_time_seconds` are gauges here (the
//! exporter types them as counters without a `_total` suffix, which
//! exposition linters reject), and the figures of parts ferrocache does not
//! have (LRU crawler, slab mover) are exported as 0 only where the exporter
//! always exports them.
//!
//! This module reads the counters and the store through [`Source`], which
//! the server implements; it knows nothing of the server or the protocol.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tokio_util::sync::CancellationToken;

use crate::hotkeys::{HotKeys, shown_key};
use crate::stats::{CommandKind, Detail, LATENCY_BOUNDS_NS, LATENCY_BUCKETS, Stats};
use crate::store::Store;

// memcached_exporter's names.
pub const UP: &str = "memcached_up";
pub const UPTIME: &str = "memcached_uptime_seconds";
pub const TIME: &str = "memcached_time_seconds";
pub const VERSION: &str = "memcached_version";
pub const CPU_USER: &str = "memcached_process_user_cpu_seconds_total";
pub const CPU_SYSTEM: &str = "memcached_process_system_cpu_seconds_total";
pub const READ_BYTES: &str = "memcached_read_bytes_total";
pub const WRITTEN_BYTES: &str = "memcached_written_bytes_total";
pub const CURRENT_CONNECTIONS: &str = "memcached_current_connections";
pub const MAX_CONNECTIONS: &str = "memcached_max_connections";
pub const CONNECTIONS: &str = "memcached_connections_total";
pub const CONNECTIONS_REJECTED: &str = "memcached_connections_rejected_total";
pub const CONNECTIONS_YIELDED: &str = "memcached_connections_yielded_total";
pub const LISTENER_DISABLED: &str = "memcached_connections_listener_disabled_total";
pub const ACCEPTING_CONNECTIONS: &str = "memcached_accepting_connections";
pub const CURRENT_BYTES: &str = "memcached_current_bytes";
pub const LIMIT_BYTES: &str = "memcached_limit_bytes";
pub const MALLOCED_BYTES: &str = "memcached_malloced_bytes";
pub const COMMANDS: &str = "memcached_commands_total";
pub const CURRENT_ITEMS: &str = "memcached_current_items";
pub const ITEMS: &str = "memcached_items_total";
pub const ITEMS_EVICTED: &str = "memcached_items_evicted_total";
pub const ITEMS_RECLAIMED: &str = "memcached_items_reclaimed_total";
pub const ITEM_TOO_LARGE: &str = "memcached_item_too_large_total";
pub const ITEM_NO_MEMORY: &str = "memcached_item_no_memory_total";
pub const DIRECT_RECLAIMS: &str = "memcached_direct_reclaims_total";
pub const CRAWLER_STARTS: &str = "memcached_lru_crawler_starts_total";
pub const CRAWLER_RECLAIMED: &str = "memcached_lru_crawler_reclaimed_total";
pub const CRAWLER_ITEMS_CHECKED: &str = "memcached_lru_crawler_items_checked_total";
pub const CRAWLER_MOVES_TO_COLD: &str = "memcached_lru_crawler_moves_to_cold_total";
pub const CRAWLER_MOVES_TO_WARM: &str = "memcached_lru_crawler_moves_to_warm_total";
pub const CRAWLER_MOVES_WITHIN_LRU: &str = "memcached_lru_crawler_moves_within_lru_total";
// memcached_exporter's per-class names (from `stats items`); one class, "1".
pub const SLAB_CURRENT_ITEMS: &str = "memcached_slab_current_items";
pub const SLAB_ITEMS_AGE: &str = "memcached_slab_items_age_seconds";
pub const SLAB_COLD_ITEMS: &str = "memcached_slab_cold_items";
pub const SLAB_HOT_ITEMS: &str = "memcached_slab_hot_items";
pub const SLAB_WARM_ITEMS: &str = "memcached_slab_warm_items";
pub const SLAB_MEM_REQUESTED: &str = "memcached_slab_mem_requested_bytes";
pub const SLAB_ITEMS_EVICTED: &str = "memcached_slab_items_evicted_total";
pub const SLAB_ITEMS_EVICTED_NONZERO: &str = "memcached_slab_items_evicted_nonzero_total";
pub const SLAB_ITEMS_EVICTED_TIME: &str = "memcached_slab_items_evicted_time_seconds";
pub const SLAB_ITEMS_EVICTED_UNFETCHED: &str = "memcached_slab_items_evicted_unfetched_total";
pub const SLAB_ITEMS_EXPIRED_UNFETCHED: &str = "memcached_slab_items_expired_unfetched_total";
pub const SLAB_ITEMS_OUTOFMEMORY: &str = "memcached_slab_items_outofmemory_total";
pub const SLAB_ITEMS_RECLAIMED: &str = "memcached_slab_items_reclaimed_total";
pub const SLAB_LRU_HITS: &str = "memcached_slab_lru_hits_total";
// Ours.
pub const COMMAND_DURATION: &str = "ferrocache_command_duration_seconds";
pub const SHARDS: &str = "ferrocache_shards";
pub const SHARD_ITEMS_MIN: &str = "ferrocache_shard_items_min";
pub const SHARD_ITEMS_MAX: &str = "ferrocache_shard_items_max";
pub const SHARD_BYTES_MIN: &str = "ferrocache_shard_bytes_min";
pub const SHARD_BYTES_MAX: &str = "ferrocache_shard_bytes_max";
pub const RESIDENT_MEMORY: &str = "ferrocache_process_resident_memory_bytes";
pub const LAST_EVICTED_AGE: &str = "ferrocache_last_evicted_item_age_seconds";
pub const OLDEST_ITEM_AGE: &str = "ferrocache_oldest_item_age_seconds";
pub const DETAIL_ENABLED: &str = "ferrocache_stats_detail_enabled";
pub const HOT_KEY_SHARE: &str = "ferrocache_hot_key_share";
pub const HOT_KEY_REQUESTS: &str = "ferrocache_hot_key_requests";
pub const WARM_START: &str = "ferrocache_warm_start";
pub const WARM_START_ITEMS: &str = "ferrocache_warm_start_items";
pub const WARM_START_DURATION: &str = "ferrocache_warm_start_duration_seconds";

const COMMAND_DURATION_HELP: &str = "Time to decode, execute and encode one request, by command \
     (not network or queueing time); a pipelined batch's time is shared evenly among its requests.";
const HOT_KEY_REQUESTS_HELP: &str = "Estimated requests for each of the hottest keys over the \
     hot-key window (shown with --metrics-hot-keys).";
const CPU_USER_HELP: &str = "Accumulated user time for this process.";
const CPU_SYSTEM_HELP: &str = "Accumulated system time for this process.";

/// Registers every description once; the renderer prints them as HELP.
fn describe() {
    describe_gauge!(UP, "Could the memcached server be reached.");
    describe_gauge!(UPTIME, "Number of seconds since the server started.");
    describe_gauge!(TIME, "current UNIX time according to the server.");
    describe_gauge!(VERSION, "The version of this memcached server.");
    describe_counter!(
        READ_BYTES,
        "Total number of bytes read by this server from network."
    );
    describe_counter!(
        WRITTEN_BYTES,
        "Total number of bytes sent by this server to network."
    );
    describe_gauge!(CURRENT_CONNECTIONS, "Current number of open connections.");
    describe_gauge!(MAX_CONNECTIONS, "Maximum number of clients allowed.");
    describe_counter!(
        CONNECTIONS,
        "Total number of connections opened since the server started running."
    );
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Total number of connections rejected due to hitting the memcached's -c limit in maxconns_fast mode."
    );
    describe_counter!(
        CONNECTIONS_YIELDED,
        "Total number of connections yielded running due to hitting the memcached's -R limit."
    );
    describe_counter!(
        LISTENER_DISABLED,
        "Number of times that memcached has hit its connections limit and disabled its listener."
    );
    describe_gauge!(
        ACCEPTING_CONNECTIONS,
        "The Memcached server is currently accepting new connections."
    );
    describe_gauge!(
        CURRENT_BYTES,
        "Current number of bytes used to store items."
    );
    describe_gauge!(
        LIMIT_BYTES,
        "Number of bytes this server is allowed to use for storage."
    );
    describe_gauge!(
        MALLOCED_BYTES,
        "Number of bytes of memory allocated to slab pages."
    );
    describe_counter!(
        COMMANDS,
        "Total number of all requests broken down by command (get, set, etc.) and status."
    );
    describe_gauge!(
        CURRENT_ITEMS,
        "Current number of items stored by this instance."
    );
    describe_counter!(
        ITEMS,
        "Total number of items stored during the life of this instance."
    );
    describe_counter!(
        ITEMS_EVICTED,
        "Total number of valid items removed from cache to free memory for new items."
    );
    describe_counter!(
        ITEMS_RECLAIMED,
        "Total number of times an entry was stored using memory from an expired entry."
    );
    describe_counter!(
        ITEM_TOO_LARGE,
        "The number of times an item exceeded the max-item-size when being stored."
    );
    describe_counter!(
        ITEM_NO_MEMORY,
        "The number of times an item could not be stored due to no more memory."
    );
    describe_counter!(
        DIRECT_RECLAIMS,
        "Times worker threads had to directly reclaim or evict items."
    );
    describe_counter!(CRAWLER_STARTS, "Times an LRU crawler was started.");
    describe_counter!(CRAWLER_RECLAIMED, "Total items freed by LRU Crawler.");
    describe_counter!(
        CRAWLER_ITEMS_CHECKED,
        "Total items examined by LRU Crawler."
    );
    describe_counter!(
        CRAWLER_MOVES_TO_COLD,
        "Total number of items moved from HOT/WARM to COLD LRU's."
    );
    describe_counter!(
        CRAWLER_MOVES_TO_WARM,
        "Total number of items moved from COLD to WARM LRU."
    );
    describe_counter!(
        CRAWLER_MOVES_WITHIN_LRU,
        "Total number of items reshuffled within HOT or WARM LRU's."
    );
    describe_gauge!(
        SLAB_CURRENT_ITEMS,
        "Number of items currently stored in this slab class."
    );
    describe_gauge!(
        SLAB_ITEMS_AGE,
        "Number of seconds the oldest item has been in the slab class."
    );
    describe_gauge!(
        SLAB_COLD_ITEMS,
        "Number of items presently stored in the COLD LRU."
    );
    describe_gauge!(
        SLAB_HOT_ITEMS,
        "Number of items presently stored in the HOT LRU."
    );
    describe_gauge!(
        SLAB_WARM_ITEMS,
        "Number of items presently stored in the WARM LRU."
    );
    describe_gauge!(
        SLAB_MEM_REQUESTED,
        "Number of bytes of memory actual items take up within a slab."
    );
    describe_counter!(
        SLAB_ITEMS_EVICTED,
        "Total number of times an item had to be evicted from the LRU before it expired."
    );
    describe_counter!(
        SLAB_ITEMS_EVICTED_NONZERO,
        "Total number of times an item which had an explicit expire time set had to be evicted from the LRU before it expired."
    );
    describe_gauge!(
        SLAB_ITEMS_EVICTED_TIME,
        "Seconds since the last access for the most recent item evicted from this class."
    );
    describe_counter!(
        SLAB_ITEMS_EVICTED_UNFETCHED,
        "Total number of items evicted and never fetched."
    );
    describe_counter!(
        SLAB_ITEMS_EXPIRED_UNFETCHED,
        "Total number of valid items evicted from the LRU which were never touched after being set."
    );
    describe_counter!(
        SLAB_ITEMS_OUTOFMEMORY,
        "Total number of items for this slab class that have triggered an out of memory error."
    );
    describe_counter!(SLAB_ITEMS_RECLAIMED, "Total number of items reclaimed.");
    describe_counter!(SLAB_LRU_HITS, "Number of get_hits to the LRU.");
    describe_gauge!(SHARDS, "Number of independently locked store shards.");
    describe_gauge!(SHARD_ITEMS_MIN, "Items in the emptiest shard.");
    describe_gauge!(SHARD_ITEMS_MAX, "Items in the fullest shard.");
    describe_gauge!(SHARD_BYTES_MIN, "Bytes charged to the emptiest shard.");
    describe_gauge!(SHARD_BYTES_MAX, "Bytes charged to the fullest shard.");
    describe_gauge!(
        RESIDENT_MEMORY,
        "Resident memory of the process, to compare with the item memory limit."
    );
    describe_gauge!(
        LAST_EVICTED_AGE,
        "Seconds the most recently evicted item had gone unaccessed when it was evicted (0: no eviction yet)."
    );
    describe_gauge!(
        OLDEST_ITEM_AGE,
        "Seconds since the least recently used item was stored or bumped (0: empty)."
    );
    describe_gauge!(
        DETAIL_ENABLED,
        "Whether stats detail per-prefix counting is on."
    );
    describe_gauge!(
        WARM_START,
        "Whether this process started from a snapshot (-e): 1, or 0 for an empty start."
    );
    describe_gauge!(
        WARM_START_ITEMS,
        "Items loaded from the snapshot at start (0 for an empty start)."
    );
    describe_gauge!(
        WARM_START_DURATION,
        "Time taken to load the snapshot at start (0 for an empty start)."
    );
    describe_gauge!(
        HOT_KEY_SHARE,
        "Share of this node's sampled requests over the hot-key window that the hottest key took (0 to 1)."
    );
}

/// The registry behind `/metrics`.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scrape reads: the same counters and store that `stats` reads,
/// so the two views cannot drift.
pub struct View<'a> {
    pub stats: &'a Stats,
    pub store: &'a Store,
    pub detail: &'a Detail,
    /// `-c`.
    pub conn_limit: usize,
    /// Whether connections time their commands (the histogram is served).
    pub timing: bool,
    pub hot: &'a HotKeys,
    /// `--metrics-hot-keys`: the top keys as labels.
    pub hot_key_labels: bool,
}

/// Whatever holds the server's figures; the server implements it, so this
/// module needs to know nothing of the server.
pub trait Source: Send + Sync + 'static {
    fn view(&self) -> View<'_>;
}

impl Exporter {
    /// A registry of its own, not the process-global recorder, so several
    /// servers (tests) in one process keep apart.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        with_local_recorder(&recorder, describe);
        Exporter { recorder, handle }
    }

    /// Copies the current figures into the registry and renders it in the
    /// Prometheus text format.
    pub fn render(&self, view: &View<'_>) -> String {
        let s = view.stats.totals();
        let st = view.store.stats();
        let shards = view.store.shard_usage();
        let clock = view.store.clock();
        let now = clock.now();

        with_local_recorder(&self.recorder, || {
            gauge!(UP).set(1.0);
            gauge!(UPTIME).set(f64::from(now.saturating_sub(2)));
            gauge!(TIME).set(clock.unix_now() as f64);
            gauge!(VERSION, "version" => crate::VERSION).set(1.0);
            counter!(READ_BYTES).absolute(s.bytes_read);
            counter!(WRITTEN_BYTES).absolute(s.bytes_written);
            gauge!(CURRENT_CONNECTIONS).set(view.stats.curr_connections() as f64);
            gauge!(MAX_CONNECTIONS).set(view.conn_limit as f64);
            counter!(CONNECTIONS).absolute(s.total_connections);
            counter!(CONNECTIONS_REJECTED).absolute(s.rejected_connections);
            counter!(CONNECTIONS_YIELDED).absolute(s.conn_yields);
            counter!(LISTENER_DISABLED).absolute(s.listen_disabled_num);
            gauge!(ACCEPTING_CONNECTIONS).set(f64::from(u8::from(view.stats.accepting_conns())));
            gauge!(CURRENT_BYTES).set(st.bytes as f64);
            gauge!(LIMIT_BYTES).set(st.limit_maxbytes as f64);
            gauge!(MALLOCED_BYTES).set(st.bytes as f64);

            let commands: [(&'static str, &'static str, u64); 16] = [
                ("get", "hit", s.get_hits),
                ("get", "miss", s.get_misses),
                ("delete", "hit", s.delete_hits),
                ("delete", "miss", s.delete_misses),
                ("incr", "hit", s.incr_hits),
                ("incr", "miss", s.incr_misses),
                ("decr", "hit", s.decr_hits),
                ("decr", "miss", s.decr_misses),
                ("cas", "hit", s.cas_hits),
                ("cas", "miss", s.cas_misses),
                ("cas", "badval", s.cas_badval),
                ("touch", "hit", s.touch_hits),
                ("touch", "miss", s.touch_misses),
                ("flush", "hit", s.cmd_flush),
                // cmd_set counts cas too; memcached_exporter takes it out.
                (
                    "set",
                    "hit",
                    s.cmd_set
                        .saturating_sub(s.cas_hits + s.cas_misses + s.cas_badval),
                ),
                // Not one of the exporter's series: memcached has no such
                // counter, but a meta debug (`me`) is a command too.
                ("meta", "hit", s.cmd_meta),
            ];
            for (command, status, v) in commands {
                counter!(COMMANDS, "command" => command, "status" => status).absolute(v);
            }

            gauge!(CURRENT_ITEMS).set(st.curr_items as f64);
            counter!(ITEMS).absolute(st.total_items);
            counter!(ITEMS_EVICTED).absolute(st.evictions);
            counter!(ITEMS_RECLAIMED).absolute(st.reclaimed);
            counter!(ITEM_TOO_LARGE).absolute(s.store_too_large);
            counter!(ITEM_NO_MEMORY).absolute(s.store_no_memory);
            for name in [
                DIRECT_RECLAIMS,
                CRAWLER_STARTS,
                CRAWLER_RECLAIMED,
                CRAWLER_ITEMS_CHECKED,
                CRAWLER_MOVES_TO_COLD,
                CRAWLER_MOVES_TO_WARM,
                CRAWLER_MOVES_WITHIN_LRU,
            ] {
                counter!(name).absolute(0);
            }

            let oldest = shards.iter().filter_map(|u| u.oldest).min();
            let oldest_age = oldest.map_or(0, |t| now.saturating_sub(t));
            let last_evicted = shards
                .iter()
                .filter(|u| u.last_evicted_at != 0)
                .max_by_key(|u| u.last_evicted_at)
                .map_or(0, |u| u.last_evicted_age);
            let evicted_nonzero: u64 = shards.iter().map(|u| u.evicted_nonzero).sum();

            let slab = [("slab", "1")];
            gauge!(SLAB_CURRENT_ITEMS, &slab).set(st.curr_items as f64);
            gauge!(SLAB_ITEMS_AGE, &slab).set(f64::from(oldest_age));
            gauge!(SLAB_COLD_ITEMS, &slab).set(st.curr_items as f64);
            gauge!(SLAB_HOT_ITEMS, &slab).set(0.0);
            gauge!(SLAB_WARM_ITEMS, &slab).set(0.0);
            gauge!(SLAB_MEM_REQUESTED, &slab).set(st.bytes as f64);
            counter!(SLAB_ITEMS_EVICTED, &slab).absolute(st.evictions);
            counter!(SLAB_ITEMS_EVICTED_NONZERO, &slab).absolute(evicted_nonzero);
            gauge!(SLAB_ITEMS_EVICTED_TIME, &slab).set(f64::from(last_evicted));
            counter!(SLAB_ITEMS_EVICTED_UNFETCHED, &slab).absolute(st.evicted_unfetched);
            counter!(SLAB_ITEMS_EXPIRED_UNFETCHED, &slab).absolute(st.expired_unfetched);
            counter!(SLAB_ITEMS_OUTOFMEMORY, &slab).absolute(s.store_no_memory);
            counter!(SLAB_ITEMS_RECLAIMED, &slab).absolute(st.reclaimed);
            // One LRU list, so every hit is a hit to "cold" (memcached's flat mode).
            for (lru, v) in [
                ("hot", 0),
                ("warm", 0),
                ("cold", s.get_hits),
                ("temporary", 0),
            ] {
                counter!(SLAB_LRU_HITS, "slab" => "1", "lru" => lru).absolute(v);
            }

            // Per-shard series would be 256 to 4096 of each; the extremes
            // show imbalance (compare with the mean, items / shards) at a
            // fixed cost.
            let warm = view.store.warm_start();
            gauge!(WARM_START).set(if warm.is_some() { 1.0 } else { 0.0 });
            gauge!(WARM_START_ITEMS).set(warm.map_or(0.0, |w| w.items as f64));
            gauge!(WARM_START_DURATION).set(warm.map_or(0.0, |w| w.duration.as_secs_f64()));
            gauge!(SHARDS).set(shards.len() as f64);
            let items = shards.iter().map(|u| u.items);
            let bytes = shards.iter().map(|u| u.bytes);
            gauge!(SHARD_ITEMS_MIN).set(items.clone().min().unwrap_or(0) as f64);
            gauge!(SHARD_ITEMS_MAX).set(items.max().unwrap_or(0) as f64);
            gauge!(SHARD_BYTES_MIN).set(bytes.clone().min().unwrap_or(0) as f64);
            gauge!(SHARD_BYTES_MAX).set(bytes.max().unwrap_or(0) as f64);
            if let Some(rss) = resident_memory() {
                gauge!(RESIDENT_MEMORY).set(rss as f64);
            }
            gauge!(LAST_EVICTED_AGE).set(f64::from(last_evicted));
            gauge!(OLDEST_ITEM_AGE).set(f64::from(oldest_age));
            gauge!(DETAIL_ENABLED).set(if view.detail.enabled() { 1.0 } else { 0.0 });
            gauge!(HOT_KEY_SHARE).set(view.hot.top_share(now));
        });

        let mut text = self.handle.render();
        // Fractional counters and a pre-bucketed histogram, which the
        // registry cannot hold, are written directly.
        let (user, system) = cpu_seconds();
        write_float_counter(&mut text, CPU_USER, CPU_USER_HELP, user);
        write_float_counter(&mut text, CPU_SYSTEM, CPU_SYSTEM_HELP, system);
        if view.timing {
            write_latency(&mut text, view.stats);
        }
        if view.hot_key_labels {
            write_hot_keys(&mut text, view.hot, now);
        }
        text
    }
}

fn write_float_counter(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n\n"
    );
}

/// The hottest keys as labels. Written here rather than kept in the
/// registry, which would go on exporting a key after it cooled down.
fn write_hot_keys(out: &mut String, hot: &HotKeys, now: u32) {
    let name = HOT_KEY_REQUESTS;
    let _ = write!(
        out,
        "# HELP {name} {HOT_KEY_REQUESTS_HELP}\n# TYPE {name} gauge\n"
    );
    for (rank, k) in hot.top(now).iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{rank=\"{}\",key=\"{}\"}} {}",
            rank + 1,
            shown_key(&k.key),
            k.count
        );
    }
    out.push('\n');
}

/// The processing-time histogram, cumulative as Prometheus wants it.
fn write_latency(out: &mut String, stats: &Stats) {
    let lat = stats.latency();
    let name = COMMAND_DURATION;
    let _ = write!(
        out,
        "# HELP {name} {COMMAND_DURATION_HELP}\n# TYPE {name} histogram\n"
    );
    for kind in CommandKind::ALL {
        let k = kind as usize;
        let label = kind.label();
        let mut cumulative = 0;
        for b in 0..LATENCY_BUCKETS {
            cumulative += lat.buckets[k][b];
            let le = match LATENCY_BOUNDS_NS.get(b) {
                Some(ns) => (*ns as f64 / 1e9).to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{command=\"{label}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = lat.sum_ns[k] as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{command=\"{label}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{command=\"{label}\"}} {cumulative}");
    }
    out.push('\n');
}

/// User and system CPU seconds of the process.
fn cpu_seconds() -> (f64, f64) {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (user, system) = crate::stats::cpu_times();
    (secs(user), secs(system))
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a request we read; a scrape request is a few hundred bytes.
const REQUEST_MAX: usize = 8 * 1024;

/// Binds the `/metrics` listener. Call before dropping privileges.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("failed to listen for metrics on {addr}: {e}"),
        )
    })
}

/// Answers `GET /metrics` on `listener` until the server shuts down. Each
/// request gets one response, then the connection is closed.
pub async fn serve<S: Source>(listener: TcpListener, source: Arc<S>, shutdown: CancellationToken) {
    let exporter = Arc::new(Exporter::new());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let source = source.clone();
                let exporter = exporter.clone();
                tokio::spawn(async move {
                    if let Err(e) = respond(stream, &*source, &exporter).await {
                        tracing::debug!(%peer, error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn respond<S: Source>(
    mut stream: TcpStream,
    source: &S,
    exporter: &Exporter,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= REQUEST_MAX {
                return Ok::<_, io::Error>(());
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request not sent in time"))??;
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => ("200 OK", exporter.render(&source.view())),
        (b"GET" | b"HEAD", b"/") => ("200 OK", "ferrocache: metrics are at /metrics\n".into()),
        (b"GET" | b"HEAD", _) => ("404 Not Found", "not found\n".into()),
        _ => ("405 Method Not Allowed", "only GET\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != b"HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use crate::item_rules::StoreMode;
    use crate::stats::LocalStats;
    use crate::store::{Clock, Store, StoreRequest};
    use clap::Parser;

    /// The figures a server would hand out, without the server.
    struct Figures {
        stats: Stats,
        store: Store,
        detail: Detail,
        hot: HotKeys,
    }

    impl Figures {
        fn new() -> Self {
            let config = Cli::try_parse_from(["ferrocache", "-t", "2"])
                .unwrap()
                .validate()
                .unwrap();
            Figures {
                stats: Stats::new(8),
                store: Store::new(config.store.clone(), Clock::manual(1_700_000_000)),
                detail: Detail::default(),
                hot: HotKeys::new(Default::default()),
            }
        }

        fn view(&self) -> View<'_> {
            View {
                stats: &self.stats,
                store: &self.store,
                detail: &self.detail,
                conn_limit: 1024,
                timing: true,
                hot: &self.hot,
                hot_key_labels: true,
            }
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn render_mirrors_stats_and_the_store() {
        let shared = Figures::new();
        let now = shared.store.clock().now();
        let req = StoreRequest::new(StoreMode::Set, b"k", 0, 0, b"v");
        shared.store.store(req, now);
        let mut l = LocalStats {
            cmd_get: 3,
            get_hits: 2,
            get_misses: 1,
            cmd_set: 5,
            cas_hits: 1,
            total_connections: 1,
            ..Default::default()
        };
        shared.stats.flush(1, &mut l);
        let e = Exporter::new();
        let text = e.render(&shared.view());
        assert_eq!(value(&text, "memcached_up"), Some(1.0));
        assert_eq!(value(&text, "memcached_current_items"), Some(1.0));
        assert_eq!(
            value(
                &text,
                r#"memcached_commands_total{command="get",status="hit"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"memcached_commands_total{command="set",status="hit"}"#
            ),
            Some(4.0)
        );
        assert_eq!(value(&text, "memcached_connections_total"), Some(1.0));
        assert!(text.contains("# TYPE memcached_process_user_cpu_seconds_total counter"));
        assert!(text.contains(&format!(
            r#"memcached_version{{version="{}"}} 1"#,
            crate::VERSION
        )));
        assert_eq!(value(&text, "ferrocache_hot_key_share"), Some(0.0));
        for _ in 0..3 {
            shared.hot.record(b"hot key", 10, now);
        }
        shared.hot.record(b"other", 0, now);
        let text = e.render(&shared.view());
        assert_eq!(value(&text, "ferrocache_hot_key_share"), Some(0.75));
        let sample = u64::from(shared.hot.config().sample);
        assert_eq!(
            value(
                &text,
                r#"ferrocache_hot_key_requests{rank="1",key="hot%20key"}"#
            ),
            Some((3 * sample) as f64)
        );
        // Counters keep counting across `stats reset`.
        shared.stats.reset();
        let text = e.render(&shared.view());
        assert_eq!(
            value(
                &text,
                r#"memcached_commands_total{command="get",status="hit"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn histogram_is_cumulative_and_ends_at_inf() {
        let shared = Figures::new();
        shared.stats.record_latency(1, CommandKind::Get, 500);
        shared.stats.record_latency(1, CommandKind::Get, 3_000);
        let mut text = String::new();
        write_latency(&mut text, &shared.stats);
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    r#"ferrocache_command_duration_seconds_bucket{{command="get",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(b("0.000001"), Some(1.0));
        assert_eq!(b("0.0000025"), Some(1.0));
        assert_eq!(b("0.000005"), Some(2.0));
        assert_eq!(b("+Inf"), Some(2.0));
        assert_eq!(
            value(
                &text,
                r#"ferrocache_command_duration_seconds_count{command="get"}"#
            ),
            Some(2.0)
        );
    }
}
