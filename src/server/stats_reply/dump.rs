//! The key listings: `stats cachedump <class> <limit>` and `lru_crawler
//! metadump|mgdump`, which memcached-tool and meta clients read. Every item is in class 1 (see
//! `slabs.rs`).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::Context;
use super::slabs::CLASS;
use crate::protocol::reply::Reply;
use crate::protocol::{ProtocolError, base64};
use crate::server::Replies;

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: `stats cachedump` accepts
/// class ids below it.
const CLASS_ID_LIMIT: u64 = 64;

/// memcached stops a cachedump at 2 MB of output.
const CACHEDUMP_MAX_BYTES: usize = 2 * 1024 * 1024;

fn parse_u64(token: &[u8]) -> Option<u64> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <exptime> s]`
/// per item of the class (all items are in class 1), least recently used
/// first within each shard; a limit of 0 means all, and like memcached the
/// reply stops at 2 MB.
pub(super) fn cachedump(
    class: Option<&[u8]>,
    limit: Option<&[u8]>,
    cx: &mut Context<'_>,
    out: &mut Replies<'_>,
) {
    // These two replies are memcached's own, not shared with other commands.
    let (Some(class), Some(limit)) = (class, limit) else {
        out.send(Reply::Line(b"CLIENT_ERROR bad command line"));
        return;
    };
    let (Some(class), Some(limit)) = (parse_u64(class), parse_u64(limit)) else {
        out.send(Reply::Error(ProtocolError::BadCommandLineFormat));
        return;
    };
    if class >= CLASS_ID_LIMIT {
        out.send(Reply::Line(b"CLIENT_ERROR Illegal slab id"));
        return;
    }
    if class == u64::from(CLASS) {
        let clock = cx.shared.store.clock();
        let mut line = BytesMut::new();
        let mut sent = 0;
        let mut shown = 0u64;
        cx.shared.store.for_each_item(cx.now, |it| {
            if (limit != 0 && shown >= limit) || sent >= CACHEDUMP_MAX_BYTES {
                return false;
            }
            let exp = if it.deadline == 0 {
                0
            } else {
                clock.to_unix(it.deadline)
            };
            line.clear();
            line.put_slice(b"ITEM ");
            line.put_slice(it.key);
            let _ = write!(line, " [{} b; {} s]", it.value_len, exp);
            out.send(Reply::Line(&line));
            sent += line.len() + 2;
            shown += 1;
            true
        });
    }
    out.send(Reply::End);
}

/// `lru_crawler metadump|mgdump`, as memcached 1.6.45 writes them: `OK`,
/// then one line per item (when `items` is set: the store's one class was
/// named), then `END` (metadump) or `EN` (mgdump).
///
/// metadump's lines are what memcached-tool's `dump` and `keys` read:
/// `key=<url-encoded> exp=<unix|-1> la=<unix> cas=<n> fetch=<yes|no> cls=1
/// size=<n> flags=<n> `, each ended by a bare `\n`. mgdump's are `mg <key>`
/// requests, a key stored from base64 sent in base64 with ` b`.
pub(in crate::server) fn dump_keys(
    cx: &mut Context<'_>,
    out: &mut Replies<'_>,
    mg: bool,
    items: bool,
) {
    let clock = cx.shared.store.clock();
    let limits = cx.shared.config.limits;
    let mut line = BytesMut::new();
    out.send(Reply::Line(b"OK"));
    if items {
        cx.shared.store.for_each_item(cx.now, |it| {
            line.clear();
            if mg {
                line.put_slice(b"mg ");
                if it.key_binary {
                    base64::encode(it.key, &mut line);
                    line.put_slice(b" b");
                } else {
                    line.put_slice(it.key);
                }
                out.send(Reply::Line(&line));
                return true;
            }
            line.put_slice(b"key=");
            url_encode(it.key, &mut line);
            let exp = if it.deadline == 0 {
                -1
            } else {
                clock.to_unix(it.deadline)
            };
            let _ = writeln!(
                line,
                " exp={} la={} cas={} fetch={} cls={CLASS} size={} flags={} ",
                exp,
                clock.to_unix(it.time),
                it.cas,
                if it.fetched { "yes" } else { "no" },
                limits.item_total_size(it.key.len(), it.value_len, it.flags),
                it.flags,
            );
            // memcached ends these lines with a bare newline.
            out.send(Reply::Raw(&line));
            true
        });
    }
    out.send(if mg { Reply::Line(b"EN") } else { Reply::End });
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
