//! The `stats` command's sub-commands, rendered in memcached 1.6's order and
//! names so that tools written for memcached read them unchanged. Parts we
//! do not have (libevent, slab rebalancing, the LRU crawler) print the value
//! memcached prints when they are idle.
//!
//! - `general.rs`: `stats` itself and `stats settings`;
//! - `slabs.rs`: `stats items`, `slabs` and `sizes`, which emulate
//!   memcached's slab classes (the store has none: all items show as class 1);
//! - `dump.rs`: the key listings, `stats cachedump` and `lru_crawler metadump|mgdump`;
//! - here: the dispatch, `stats conns`, `stats detail` and `stats hotkeys`.

mod dump;
mod general;
mod slabs;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use dump::cachedump;
pub(super) use dump::dump_keys;
use general::{general, settings};
pub(super) use slabs::slab_class;
use slabs::{items, sizes, slabs};

use super::Context;
use crate::hotkeys::shown_key;
use crate::protocol::reply::Reply;
use crate::protocol::{Keys, ProtocolError};
use crate::server::Replies;

pub fn stats(args: Keys<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let mut it = args.iter();
    match it.next() {
        None => general(cx, out),
        Some(b"settings") => settings(cx, out),
        Some(b"reset") => {
            // What was counted before the reset (this connection's, or,
            // under io_uring, its worker's this turn) goes into the totals
            // first: `/metrics` keeps it, and `stats` no longer shows it.
            cx.shared.stats.flush(0, cx.stats);
            cx.shared.reset_stats();
            out.send(Reply::Reset);
        }
        Some(b"items") => items(cx, out),
        Some(b"slabs") => slabs(cx, out),
        Some(b"sizes") => sizes(cx, out),
        // (memcached 1.6.45 dropped `sizes_enable` / `sizes_disable`: they
        // are unknown, and `-o track_sizes` is the one switch.)
        Some(b"conns") => conns(cx, out),
        Some(b"detail") => detail(it.next(), cx, out),
        Some(b"cachedump") => cachedump(it.next(), it.next(), cx, out),
        Some(b"extstore") => out.send(Reply::End),
        Some(b"hotkeys") => hotkeys(cx, out),
        Some(_) => out.send(Reply::Error(ProtocolError::UnknownCommand)),
    }
}

/// The binary Stat request, whose key names the group. memcached serves
/// fewer groups in binary than in text, matches some by prefix only, and
/// answers the others not found; each listing ends with an empty packet.
pub fn binary(group: &[u8], cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let named = |name: &'static [u8]| Keys::new(name);
    let args = match group {
        b"" => named(b""),
        // memcached compares these with strncmp: a longer key matches too.
        g if g.starts_with(b"reset") => named(b"reset"),
        g if g.starts_with(b"settings") => named(b"settings"),
        g if g.starts_with(b"detail") => return binary_detail(&g[6..], cx, out),
        // (1.6.45 answers `sizes_enable` / `sizes_disable` not found, as it
        // has dropped them from text too.)
        b"items" | b"slabs" | b"sizes" | b"hotkeys" => Keys::new(group),
        _ => return out.send(Reply::NotFound),
    };
    stats(args, cx, out);
}

/// Binary `detail on|off|dump`: the dump is one stat, `detailed`, holding
/// the text listing.
fn binary_detail(arg: &[u8], cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let detail = &cx.shared.detail;
    if arg.starts_with(b" dump") {
        let mut text = String::new();
        for (prefix, c) in detail.dump() {
            let _ = write!(
                text,
                "PREFIX {} get {} hit {} set {} del {}\r\n",
                String::from_utf8_lossy(&prefix),
                c.get,
                c.hit,
                c.set,
                c.del
            );
        }
        text.push_str("END\r\n");
        out.stat("detailed", text);
    } else if arg.starts_with(b" on") {
        detail.set_enabled(true);
    } else if arg.starts_with(b" off") {
        detail.set_enabled(false);
    } else {
        return out.send(Reply::NotFound);
    }
    out.send(Reply::End);
}

/// `stats conns`: the listeners, then every open connection, by descriptor.
fn conns(cx: &mut Context<'_>, out: &mut Replies<'_>) {
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
            out.stat(&name, v);
        }
    }
    out.send(Reply::End);
}

/// `stats detail on|off|dump`.
fn detail(arg: Option<&[u8]>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let detail = &cx.shared.detail;
    match arg {
        Some(b"on") => {
            detail.set_enabled(true);
            out.send(Reply::Ok);
        }
        Some(b"off") => {
            detail.set_enabled(false);
            out.send(Reply::Ok);
        }
        Some(b"dump") => {
            let mut line = BytesMut::new();
            for (prefix, c) in detail.dump() {
                line.clear();
                line.put_slice(b"PREFIX ");
                line.put_slice(&prefix);
                let _ = write!(
                    line,
                    " get {} hit {} set {} del {}",
                    c.get, c.hit, c.set, c.del
                );
                out.send(Reply::Line(&line));
            }
            out.send(Reply::End);
        }
        _ => out.send(Reply::Error(ProtocolError::StatsDetailUsage)),
    }
}

/// `stats hotkeys`: `STAT <rank> <key> <requests> <error> <bytes>`, hottest
/// first, then `END`: the sampled top-K over the last window, each count an
/// estimate that exceeds the truth by at most its error. Keys are shown as
/// [`shown_key`] escapes them. Empty when `-o hot_keys=off`.
fn hotkeys(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    for (rank, k) in cx.shared.hot.top(cx.now).iter().enumerate() {
        out.stat(
            &(rank + 1).to_string(),
            format_args!("{} {} {} {}", shown_key(&k.key), k.count, k.error, k.bytes),
        );
    }
    out.send(Reply::End);
}
