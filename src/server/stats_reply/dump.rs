//! The key listings: `stats cachedump <class> <limit>` and `lru_crawler
//! metadump`, which memcached-tool reads. Every item is in class 1 (see
//! `slabs.rs`).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::Context;
use super::slabs::CLASS;
use crate::protocol::ProtocolError;
use crate::protocol::encode::{self, Reply};

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
    out: &mut BytesMut,
) {
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
pub(in crate::server) fn metadump(cx: &mut Context<'_>, out: &mut BytesMut) {
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
