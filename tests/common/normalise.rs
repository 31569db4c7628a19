//! Turns the bytes a server sent into readable lines in which only what must
//! differ between two correct servers is masked:
//!
//! - cas values (`VALUE k f n CAS`, meta `c<CAS>` tokens) become `\$1`,
//!   `\$2`, ... in order of first appearance, so equal and unequal cas
//!   values are still told apart; `0` stays `0`.
//! - `VERSION x` becomes `VERSION <version>`.
//! - `STAT name value`: the name is kept (so their order is compared); the
//!   value only for the names in [`COMPARED_STATS`] (plus a session's
//!   `@stats-compare`, minus its `@stats-ignore`). Digits-only segments of a
//!   name match `*` there (`items:1:number` is `items:*:number`).
//! - `stats conns` names start with a file descriptor number, which is a
//!   detail of the process: they become `fd1`, `fd2`, ... in order.
//! - `STAT` lines of ferrocache's own settings ([`FERROCACHE_ONLY_STATS`])
//!   are dropped: memcached has no such feature to compare with.
//! - `me` lines (`ME key exp=... la=... cas=...`): the cas is numbered; the
//!   times are relative and compared.
//! - `lru_crawler metadump` lines (`key=... exp=... la=... cas=...`): the
//!   last access time and absolute expiry times are masked, cas numbered.
//!
//! Data blocks are found from the reply headers (`VALUE`, `VA`), so a value
//! that happens to look like a reply line is never taken for one.

use super::escape;
use std::collections::HashSet;

/// STAT values that are the same in two fresh servers given the same
/// session: counters of commands and items, and the settings that follow
/// from the command line. Times, pids, rusage, byte counts, memory layout and
/// connection counts are left out, and so are get_expired and get_flushed
/// (memcached's background threads may reclaim the item first).
pub const COMPARED_STATS: &[&str] = &[
    // General counters.
    "pointer_size",
    "max_connections",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "auth_cmds",
    "auth_errors",
    "idle_kicks",
    "limit_maxbytes",
    "accepting_conns",
    "listen_disabled_num",
    "threads",
    "curr_items",
    "total_items",
    "evictions",
    "rejected_connections",
    // `stats settings` values that the flags decide.
    "maxbytes",
    "maxconns",
    "udpport",
    "inter",
    "verbosity",
    "growth_factor",
    "chunk_size",
    "num_threads",
    "cas_enabled",
    "tcp_backlog",
    "item_size_max",
    "reqs_per_event",
    "detail_enabled",
    "binding_protocol",
    "shutdown_command",
    "flush_enabled",
    "idle_timeout",
    "maxconns_fast",
    "slab_chunk_max",
    // `stats items`, `stats slabs`, `stats sizes`.
    "items:*:number",
    "*:chunk_size",
    "*:used_chunks",
    "active_slabs",
    "*",
    "sizes_status",
];

/// `stats settings` lines only ferrocache prints, after all of memcached's:
/// its own features' settings, dropped from the comparison.
pub const FERROCACHE_ONLY_STATS: &[&str] = &[
    "hot_keys",
    "hot_keys_top",
    "hot_keys_window",
    "hot_keys_sample",
    "warm_start",
    "warm_start_items",
    "warm_start_seconds",
];

/// Normalisation state of one server's side of one session.
pub struct Normaliser {
    cas: Vec<u64>,
    fds: Vec<String>,
    compare: HashSet<String>,
}

/// A piece of a reply stream: a line (with its `\n`), a data block (with
/// its `\r\n`), or bytes cut off before their end.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit<'a> {
    Line(&'a [u8]),
    Data(&'a [u8]),
    Partial(&'a [u8]),
}

/// A `STAT` line of [`FERROCACHE_ONLY_STATS`].
fn ferrocache_only(line: &[u8]) -> bool {
    let mut tokens = line.split(|&b| b == b' ');
    tokens.next() == Some(b"STAT")
        && tokens
            .next()
            .is_some_and(|name| FERROCACHE_ONLY_STATS.iter().any(|s| s.as_bytes() == name))
}

/// Splits a reply stream into lines and data blocks.
pub fn units(bytes: &[u8]) -> Vec<Unit<'_>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            out.push(Unit::Partial(rest));
            break;
        };
        let (line, after) = rest.split_at(nl + 1);
        out.push(Unit::Line(line));
        rest = after;
        if let Some(n) = data_len(line) {
            let want = n.saturating_add(2);
            if rest.len() < want {
                out.push(Unit::Partial(rest));
                break;
            }
            let (data, after) = rest.split_at(want);
            out.push(Unit::Data(data));
            rest = after;
        }
    }
    out
}

/// How many fence replies (`MN\r\n` lines) a reply stream holds.
pub fn count_fences(bytes: &[u8]) -> usize {
    units(bytes)
        .iter()
        .filter(|u| **u == Unit::Line(b"MN\r\n"))
        .count()
}

/// The data length announced by a `VALUE` or `VA` header line.
fn data_len(line: &[u8]) -> Option<usize> {
    let body = trim_eol(line);
    let tokens: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
    let len = match tokens.first().copied() {
        Some(b"VALUE") if tokens.len() >= 4 => tokens[3],
        Some(b"VA") if tokens.len() >= 2 => tokens[1],
        _ => return None,
    };
    std::str::from_utf8(len).ok()?.parse().ok()
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The line ending as written: `\r\n`, `\n` or nothing.
fn eol(line: &[u8]) -> &'static str {
    if line.ends_with(b"\r\n") {
        "\\r\\n"
    } else if line.ends_with(b"\n") {
        "\\n"
    } else {
        ""
    }
}

impl Normaliser {
    pub fn new(stats_compare: &[String], stats_ignore: &[String]) -> Normaliser {
        let mut compare: HashSet<String> = COMPARED_STATS.iter().map(|s| s.to_string()).collect();
        compare.extend(stats_compare.iter().cloned());
        for name in stats_ignore {
            compare.remove(name);
        }
        Normaliser {
            cas: Vec::new(),
            fds: Vec::new(),
            compare,
        }
    }

    /// The distinct non-zero cas values seen so far, in order.
    pub fn cas_values(&self) -> &[u64] {
        &self.cas
    }

    /// Renders a reply stream as lines (one per reply line or data block).
    pub fn render(&mut self, bytes: &[u8]) -> Vec<String> {
        units(bytes)
            .into_iter()
            .filter(|u| !matches!(u, Unit::Line(l) if ferrocache_only(l)))
            .map(|u| match u {
                Unit::Line(l) => self.render_line(l),
                Unit::Data(d) => format!("  {}", escape(d)),
                Unit::Partial(p) => format!("{} <incomplete>", escape(p)),
            })
            .collect()
    }

    fn cas_token(&mut self, text: &[u8]) -> Option<String> {
        let v: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
        if v == 0 {
            return Some("0".into());
        }
        let n = match self.cas.iter().position(|&c| c == v) {
            Some(i) => i + 1,
            None => {
                self.cas.push(v);
                self.cas.len()
            }
        };
        Some(format!("\\${n}"))
    }

    fn render_line(&mut self, line: &[u8]) -> String {
        let body = trim_eol(line);
        let end = eol(line);
        let tokens: Vec<&[u8]> = body.split(|&b| b == b' ').collect();
        match tokens.first().copied() {
            Some(b"VALUE") if tokens.len() == 5 => {
                if let Some(cas) = self.cas_token(tokens[4]) {
                    let head = escape(&body[..body.len() - tokens[4].len()]);
                    return format!("{head}{cas}{end}");
                }
            }
            Some(b"VERSION") if tokens.len() >= 2 => return format!("VERSION <version>{end}"),
            Some(b"STAT") if tokens.len() >= 3 => return self.render_stat(body, end),
            Some(b"ME") => {
                let parts: Vec<String> = tokens
                    .iter()
                    .map(|t| match t.strip_prefix(b"cas=") {
                        Some(cas) => self
                            .cas_token(cas)
                            .map(|c| format!("cas={c}"))
                            .unwrap_or_else(|| escape(t)),
                        None => escape(t),
                    })
                    .collect();
                return format!("{}{end}", parts.join(" "));
            }
            Some(t) if t.starts_with(b"key=") => {
                let parts: Vec<String> = tokens
                    .iter()
                    .map(|t| {
                        if t.starts_with(b"la=") {
                            "la=<time>".to_string()
                        } else if t.starts_with(b"exp=") && *t != b"exp=-1" {
                            "exp=<time>".to_string()
                        } else if let Some(cas) = t.strip_prefix(b"cas=")
                            && let Some(c) = self.cas_token(cas)
                        {
                            format!("cas={c}")
                        } else {
                            escape(t)
                        }
                    })
                    .collect();
                return format!("{}{end}", parts.join(" "));
            }
            Some(b"HD" | b"VA" | b"EN" | b"NF" | b"NS" | b"EX") => {
                let parts: Vec<String> = tokens
                    .iter()
                    .map(|t| match t.strip_prefix(b"c") {
                        Some(digits) if !digits.is_empty() => self
                            .cas_token(digits)
                            .map(|c| format!("c{c}"))
                            .unwrap_or_else(|| escape(t)),
                        _ => escape(t),
                    })
                    .collect();
                return format!("{}{end}", parts.join(" "));
            }
            _ => {}
        }
        format!("{}{end}", escape(body))
    }

    fn render_stat(&mut self, body: &[u8], end: &str) -> String {
        let text = String::from_utf8_lossy(body);
        let mut it = text.splitn(3, ' ');
        it.next();
        let name = it.next().unwrap_or("");
        let value = it.next().unwrap_or("");
        let mut name = name.to_string();
        // `stats conns`: <fd>:addr, <fd>:listen_addr, <fd>:state, ...
        if let Some((fd, field)) = name.split_once(':')
            && fd.chars().all(|c| c.is_ascii_digit())
            && matches!(
                field,
                "addr" | "listen_addr" | "state" | "secs_since_last_cmd"
            )
        {
            let n = match self.fds.iter().position(|f| f == fd) {
                Some(i) => i + 1,
                None => {
                    self.fds.push(fd.to_string());
                    self.fds.len()
                }
            };
            name = format!("fd{n}:{field}");
        }
        let pattern: String = name
            .split(':')
            .map(|seg| {
                if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
                    "*"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join(":");
        let shown = if self.compare.contains(&name) || self.compare.contains(&pattern) {
            escape(value.as_bytes())
        } else {
            "<masked>".to_string()
        };
        format!("STAT {} {shown}{end}", escape(name.as_bytes()))
    }
}
