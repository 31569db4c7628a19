//! memcached's slab, LRU and crawler admin commands: `slabs reassign|automove`,
//! `lru tune|mode|temp_ttl`, `lru_crawler crawl|metadump|mgdump|enable|
//! disable|sleep|tocrawl`, answered as memcached 1.6.45 answers them.
//!
//! ferrocache has no slab classes to rebalance, no segmented LRU and no
//! crawler thread (expired items are reclaimed on access and by the store's
//! bounded sweep), so the tuning commands are accepted and only remembered
//! in [`Tunables`] (seeded from the `-o` options), which `stats settings`
//! shows; the dumps list the store's
//! items. Must not know the wire format: replies are typed.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::stats_reply::{self, slab_class};
use super::{Context, Replies};
use crate::protocol::number::{safe_strtoul, token_i32, token_u32};
use crate::protocol::reply::Reply;
use crate::protocol::{Keys, ProtocolError};
use crate::tuning::Tuning;

/// The settings the admin commands change, shown by `stats settings`.
#[derive(Debug)]
pub struct Tunables {
    pub slab_automove: AtomicU8,
    slab_automove_ratio: AtomicU64,
    pub slab_automove_window: AtomicU32,
    slab_automove_freeratio: AtomicU64,
    /// Whether the crawler commands are served (`lru_crawler enable|disable`,
    /// `-o no_lru_crawler`); `stats` shows the crawler's lines only then.
    pub lru_crawler: AtomicBool,
    pub lru_crawler_sleep: AtomicU32,
    pub lru_crawler_tocrawl: AtomicU32,
    pub lru_segmented: AtomicBool,
    pub hot_lru_pct: AtomicU32,
    pub warm_lru_pct: AtomicU32,
    hot_max_factor: AtomicU64,
    warm_max_factor: AtomicU64,
    pub temp_lru: AtomicBool,
    pub temporary_ttl: AtomicI32,
}

impl Tunables {
    /// Seeded from the `-o` options (memcached's defaults where none is
    /// given), so `stats settings` starts where memcached's would.
    pub fn new(t: &Tuning) -> Self {
        Tunables {
            slab_automove: AtomicU8::new(t.slab_automove),
            slab_automove_ratio: AtomicU64::new(t.slab_automove_ratio.to_bits()),
            slab_automove_window: AtomicU32::new(t.slab_automove_window),
            slab_automove_freeratio: AtomicU64::new(t.slab_automove_freeratio.to_bits()),
            lru_crawler: AtomicBool::new(t.lru_crawler),
            lru_crawler_sleep: AtomicU32::new(t.lru_crawler_sleep),
            lru_crawler_tocrawl: AtomicU32::new(t.lru_crawler_tocrawl),
            lru_segmented: AtomicBool::new(t.lru_segmented),
            hot_lru_pct: AtomicU32::new(t.hot_lru_pct),
            warm_lru_pct: AtomicU32::new(t.warm_lru_pct),
            hot_max_factor: AtomicU64::new(t.hot_max_factor.to_bits()),
            warm_max_factor: AtomicU64::new(t.warm_max_factor.to_bits()),
            temp_lru: AtomicBool::new(t.temp_lru),
            temporary_ttl: AtomicI32::new(t.temporary_ttl),
        }
    }

    pub fn slab_automove_ratio(&self) -> f64 {
        f64::from_bits(self.slab_automove_ratio.load(Ordering::Relaxed))
    }

    pub fn slab_automove_freeratio(&self) -> f64 {
        f64::from_bits(self.slab_automove_freeratio.load(Ordering::Relaxed))
    }

    pub fn hot_max_factor(&self) -> f64 {
        f64::from_bits(self.hot_max_factor.load(Ordering::Relaxed))
    }

    pub fn warm_max_factor(&self) -> f64 {
        f64::from_bits(self.warm_max_factor.load(Ordering::Relaxed))
    }
}

fn store_f64(cell: &AtomicU64, v: f64) {
    cell.store(v.to_bits(), Ordering::Relaxed);
}

/// memcached's sub-command match: `strncmp(word, name, len(word))`, so a
/// prefix of the name matches too (`lru_crawler c 1` crawls).
fn names(word: &[u8], name: &str) -> bool {
    !word.is_empty() && name.as_bytes().starts_with(word)
}

/// memcached's `mc_toktod`: a number `strtod` reads whole.
fn token_f64(word: &[u8]) -> Option<f64> {
    if word.is_empty() || word.len() > 31 {
        return None;
    }
    let text = std::str::from_utf8(word).ok()?;
    // strtod's forms that Rust's parser also takes; no leading `+`/spaces
    // from a token, and no hex floats, as in practice.
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn ok(out: &mut Replies<'_>) {
    out.send(Reply::Line(b"OK"));
}

fn error(out: &mut Replies<'_>) {
    out.send(Reply::Error(ProtocolError::UnknownCommand));
}

fn bad_format(out: &mut Replies<'_>) {
    out.send(Reply::Error(ProtocolError::BadCommandLineFormat));
}

/// `slabs reassign <src> <dst>` and `slabs automove ...`.
pub(super) fn slabs(args: Keys<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let words: Vec<&[u8]> = args.iter().collect();
    let t = &cx.shared.tunables;
    match words.as_slice() {
        [sub, src, dst] if names(sub, "reassign") => {
            let (Some(src), Some(dst)) = (token_i32(src), token_i32(dst)) else {
                return bad_format(out);
            };
            // One class of items, and no pages to move between classes.
            let largest = slab_class(usize::MAX) as i32;
            let valid = |c: i32| (0..=largest).contains(&c);
            out.send(Reply::Line(if src == dst {
                b"SAME src and dst class are identical"
            } else if !valid(src) || !valid(dst) {
                // -1 asks memcached to pick a class with a spare page: none.
                b"BADCLASS invalid src or dst class id"
            } else {
                b"NOSPARE source class has no spare pages"
            }));
        }
        [sub, rest @ ..] if names(sub, "automove") && !rest.is_empty() => automove(rest, t, out),
        _ => error(out),
    }
}

fn automove(rest: &[&[u8]], t: &Tunables, out: &mut Replies<'_>) {
    let which = rest[0];
    let value = rest.get(1).copied();
    if names(which, "ratio") || names(which, "freeratio") {
        let cell = if names(which, "ratio") {
            &t.slab_automove_ratio
        } else {
            &t.slab_automove_freeratio
        };
        match value.and_then(token_f64) {
            Some(v) => {
                store_f64(cell, v);
                ok(out)
            }
            None => error(out),
        }
    } else if names(which, "window") {
        match value.and_then(token_u32) {
            None => bad_format(out),
            Some(w) if !(3..=1800).contains(&w) => out.send(Reply::Line(
                b"CLIENT_ERROR automove window too low or too high",
            )),
            Some(w) => {
                t.slab_automove_window.store(w, Ordering::Relaxed);
                ok(out)
            }
        }
    } else {
        match token_u32(which) {
            None => bad_format(out),
            Some(level @ 0..=2) => {
                t.slab_automove.store(level as u8, Ordering::Relaxed);
                ok(out)
            }
            Some(_) => error(out),
        }
    }
}

/// `lru tune <hot%> <warm%> <hot factor> <warm factor>`, `lru mode
/// flat|segmented`, `lru temp_ttl <ttl>`; `mode` and `temp_ttl` need the LRU
/// maintainer (`-o no_lru_maintainer` refuses them, as memcached does).
pub(super) fn lru(args: Keys<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let words: Vec<&[u8]> = args.iter().collect();
    let t = &cx.shared.tunables;
    let maintainer = cx.shared.config.lru_maintainer;
    match words.as_slice() {
        [sub, hot, warm, hot_factor, warm_factor, ..] if names(sub, "tune") => {
            let parsed = (
                token_u32(hot),
                token_u32(warm),
                token_f64(hot_factor),
                token_f64(warm_factor),
            );
            let (Some(hot), Some(warm), Some(hot_factor), Some(warm_factor)) = parsed else {
                return error(out);
            };
            if u64::from(hot) + u64::from(warm) > 80 {
                out.send(Reply::Line(b"ERROR hot and warm pcts must not exceed 80"));
            } else if hot_factor <= 0.0 || warm_factor <= 0.0 {
                out.send(Reply::Line(
                    b"ERROR hot/warm age factors must be greater than 0",
                ));
            } else {
                t.hot_lru_pct.store(hot, Ordering::Relaxed);
                t.warm_lru_pct.store(warm, Ordering::Relaxed);
                store_f64(&t.hot_max_factor, hot_factor);
                store_f64(&t.warm_max_factor, warm_factor);
                ok(out)
            }
        }
        [sub, mode, ..] if names(sub, "mode") && maintainer => match *mode {
            b"flat" => {
                t.lru_segmented.store(false, Ordering::Relaxed);
                ok(out)
            }
            b"segmented" => {
                t.lru_segmented.store(true, Ordering::Relaxed);
                ok(out)
            }
            _ => error(out),
        },
        [sub, ttl, ..] if names(sub, "temp_ttl") && maintainer => match token_i32(ttl) {
            Some(ttl) if ttl < 0 => {
                t.temp_lru.store(false, Ordering::Relaxed);
                ok(out)
            }
            Some(ttl) => {
                t.temp_lru.store(true, Ordering::Relaxed);
                t.temporary_ttl.store(ttl, Ordering::Relaxed);
                ok(out)
            }
            None => error(out),
        },
        _ => error(out),
    }
}

/// Which classes a crawl or dump names: `all`, or ids separated by commas.
/// Every item is in class 1 here (see `stats items`).
enum Classes {
    All,
    Ids(bool),
    Bad,
}

fn classes(which: &[u8]) -> Classes {
    if which == b"all" {
        return Classes::All;
    }
    let mut has_one = false;
    for id in which.split(|&b| b == b',') {
        match safe_strtoul(id) {
            Some(n) if (1..64).contains(&n) => has_one |= n == 1,
            _ => return Classes::Bad,
        }
    }
    Classes::Ids(has_one)
}

/// `lru_crawler <sub-command>`.
pub(super) fn lru_crawler(args: Keys<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let words: Vec<&[u8]> = args.iter().collect();
    let t = &cx.shared.tunables;
    let enabled = t.lru_crawler.load(Ordering::Relaxed);
    match words.as_slice() {
        [sub, which] if names(sub, "crawl") => {
            if !enabled {
                return out.send(Reply::Line(b"CLIENT_ERROR lru crawler disabled"));
            }
            // Expired items are reclaimed on access and by the store's sweep,
            // so there is nothing to start; the reply says the crawl is taken.
            match classes(which) {
                Classes::Bad => out.send(Reply::Line(b"BADCLASS invalid class id")),
                _ => ok(out),
            }
        }
        [sub, which] if names(sub, "metadump") || names(sub, "mgdump") => {
            let mg = names(sub, "mgdump") && !names(sub, "metadump");
            if !enabled {
                return out.send(Reply::Line(b"CLIENT_ERROR lru crawler disabled"));
            }
            // memcached hands the connection to its crawler, which cannot
            // share it with replies still owed.
            if out.owes_earlier() {
                return out.send(Reply::Line(if mg {
                    b"ERROR cannot pipeline other commands before mgdump"
                } else {
                    b"ERROR cannot pipeline other commands before metadump"
                }));
            }
            let dump = match (classes(which), which == b"hash") {
                (_, true) | (Classes::All, _) | (Classes::Ids(true), _) => true,
                (Classes::Ids(false), _) => false,
                (Classes::Bad, _) => {
                    return out.send(Reply::Line(b"BADCLASS invalid class id"));
                }
            };
            stats_reply::dump_keys(cx, out, mg, dump);
        }
        [sub, n] if names(sub, "tocrawl") => match token_u32(n) {
            Some(n) => {
                t.lru_crawler_tocrawl.store(n, Ordering::Relaxed);
                ok(out)
            }
            None => bad_format(out),
        },
        [sub, n] if names(sub, "sleep") => match token_u32(n) {
            Some(n) if n > 1_000_000 => out.send(Reply::Line(
                b"CLIENT_ERROR sleep must be one second or less",
            )),
            Some(n) => {
                t.lru_crawler_sleep.store(n, Ordering::Relaxed);
                ok(out)
            }
            None => bad_format(out),
        },
        [sub] if names(sub, "enable") => {
            t.lru_crawler.store(true, Ordering::Relaxed);
            ok(out)
        }
        [sub] if names(sub, "disable") => {
            t.lru_crawler.store(false, Ordering::Relaxed);
            ok(out)
        }
        _ => error(out),
    }
}
