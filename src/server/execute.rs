//! `execute`: one decoded frame against the store, its reply appended to the
//! write buffer. The only module that sees both the protocol and the store.
//!
//! It is synchronous: the store's locks are held for short sections inside
//! store calls and never across an `.await`.

use bytes::BytesMut;

use super::{Context, Flow, stats_reply};
use crate::item_rules::StoreMode;
use crate::protocol::encode::{self, Reply};
use crate::protocol::{Command, Frame, Keys, ProtocolError, Rejected, ShutdownMode};
use crate::store::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, GetRequest, Lookup, Step, StoreRequest,
    StoreResult,
};

/// Runs one frame.
pub fn execute_frame(frame: Frame<'_>, cx: &mut Context<'_>, out: &mut BytesMut) -> Flow {
    match frame {
        Frame::Command(cmd) => execute(cmd, cx, out),
        Frame::Error {
            error,
            noreply,
            counts_as_set,
        } => {
            if counts_as_set {
                cx.stats.cmd_set += 1;
            }
            if !noreply {
                encode::error(out, error);
            }
            Flow::Continue
        }
        Frame::Rejected(r) => {
            rejected(r, cx, out);
            Flow::Continue
        }
        Frame::Close => Flow::Abort,
    }
}

fn rejected(r: Rejected, cx: &mut Context<'_>, out: &mut BytesMut) {
    if r.counts_as_set {
        cx.stats.cmd_set += 1;
    }
    match r.error {
        ProtocolError::TooLarge => cx.stats.store_too_large += 1,
        ProtocolError::OutOfMemory => cx.stats.store_no_memory += 1,
        _ => {}
    }
    if let Some(key) = r.unlink_key {
        cx.shared.store.delete(DeleteRequest::new(&key), cx.now);
    }
    if !r.noreply {
        encode::error(out, r.error);
    }
}

/// Cuts an exptime to 32 bits as memcached does (`(int32_t)` of a 64-bit read).
fn exptime32(exptime: i64) -> i64 {
    exptime as i32 as i64
}

/// Runs one command.
pub fn execute(cmd: Command<'_>, cx: &mut Context<'_>, out: &mut BytesMut) -> Flow {
    let store = &cx.shared.store;
    let now = cx.now;
    match cmd {
        Command::Get { keys, cas } => {
            get(keys, cas, None, cx, out);
        }
        Command::Gat { exptime, keys, cas } => {
            let deadline = store.clock().deadline(exptime32(exptime), now);
            get(keys, cas, Some(deadline), cx, out);
        }
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            value,
            cas_unique,
            noreply,
        } => {
            cx.stats.cmd_set += 1;
            if cx.shared.detail.enabled() {
                cx.shared.detail.record_set(key);
            }
            let deadline = store.clock().deadline(exptime32(exptime), now);
            let req = StoreRequest {
                compare_cas: (mode == StoreMode::Cas).then_some(cas_unique),
                ..StoreRequest::new(mode, key, flags, deadline, value)
            };
            let (result, _) = store.store(req, now);
            if mode == StoreMode::Cas {
                match result {
                    StoreResult::Stored => cx.stats.cas_hits += 1,
                    StoreResult::Exists => cx.stats.cas_badval += 1,
                    StoreResult::NotFound => cx.stats.cas_misses += 1,
                    _ => {}
                }
            }
            if result == StoreResult::OutOfMemory {
                cx.stats.store_no_memory += 1;
            }
            if !noreply {
                match result {
                    StoreResult::Stored => encode::reply(out, Reply::Stored),
                    StoreResult::NotStored => encode::reply(out, Reply::NotStored),
                    StoreResult::Exists => encode::reply(out, Reply::Exists),
                    StoreResult::NotFound => encode::reply(out, Reply::NotFound),
                    StoreResult::OutOfMemory => encode::error(out, ProtocolError::OutOfMemory),
                }
            }
        }
        Command::Delete { key, noreply } => {
            if cx.shared.detail.enabled() {
                cx.shared.detail.record_delete(key);
            }
            let hit = store.delete(DeleteRequest::new(key), now) == DeleteResult::Deleted;
            if hit {
                cx.stats.delete_hits += 1;
            } else {
                cx.stats.delete_misses += 1;
            }
            if !noreply {
                encode::reply(out, if hit { Reply::Deleted } else { Reply::NotFound });
            }
        }
        Command::Arith {
            key,
            delta,
            incr,
            noreply,
        } => {
            let result = store.arith(ArithRequest::new(key, incr, delta), now);
            let (hits, misses) = if incr {
                (&mut cx.stats.incr_hits, &mut cx.stats.incr_misses)
            } else {
                (&mut cx.stats.decr_hits, &mut cx.stats.decr_misses)
            };
            match result {
                ArithResult::Done(_) => *hits += 1,
                ArithResult::NotFound | ArithResult::NotStored | ArithResult::Exists => {
                    *misses += 1
                }
                ArithResult::NonNumeric | ArithResult::OutOfMemory => {}
            }
            if !noreply {
                match result {
                    ArithResult::Done(c) => encode::number(out, c.value),
                    ArithResult::NotFound | ArithResult::NotStored | ArithResult::Exists => {
                        encode::reply(out, Reply::NotFound)
                    }
                    ArithResult::NonNumeric => encode::error(out, ProtocolError::NonNumeric),
                    ArithResult::OutOfMemory => encode::error(out, ProtocolError::OutOfMemory),
                }
            }
        }
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            cx.stats.cmd_touch += 1;
            let deadline = store.clock().deadline(exptime32(exptime), now);
            let hit = store.touch(key, deadline, now);
            if hit {
                cx.stats.touch_hits += 1;
            } else {
                cx.stats.touch_misses += 1;
            }
            if !noreply {
                encode::reply(out, if hit { Reply::Touched } else { Reply::NotFound });
            }
        }
        Command::FlushAll { delay, noreply } => {
            if !cx.shared.config.flush_enabled {
                if !noreply {
                    encode::error(out, ProtocolError::FlushDisabled);
                }
                return Flow::Continue;
            }
            cx.stats.cmd_flush += 1;
            let delay = exptime32(delay);
            let deadline = if delay > 0 {
                store.clock().deadline(delay, now)
            } else {
                0
            };
            // An absolute time before the process started converts to the
            // "expired" deadline; memcached's oldest_live then becomes 0,
            // which flushes nothing.
            if deadline != crate::store::clock::EXPIRED {
                store.flush(deadline, now);
            }
            if !noreply {
                encode::reply(out, Reply::Ok);
            }
        }
        Command::Version => encode::version(out, crate::VERSION),
        Command::Verbosity { noreply } => {
            if !noreply {
                encode::reply(out, Reply::Ok);
            }
        }
        Command::Quit => return Flow::Close,
        Command::Shutdown { mode } => {
            if !cx.shared.config.shutdown_enabled {
                encode::error(out, ProtocolError::ShutdownNotEnabled);
                return Flow::Continue;
            }
            match mode {
                ShutdownMode::Immediate => return Flow::Shutdown { graceful: false },
                ShutdownMode::Graceful => return Flow::Shutdown { graceful: true },
                ShutdownMode::Invalid => encode::error(out, ProtocolError::InvalidShutdownMode),
            }
        }
        Command::Stats { args } => stats_reply::stats(args, cx, out),
        Command::CacheMemlimit { megabytes, noreply } => {
            let reply = if megabytes < 8 {
                Err(ProtocolError::MemlimitTooSmall)
            } else if megabytes > 1_000_000_000 {
                Err(ProtocolError::MemlimitAdjustFailed)
            } else {
                store.set_memory_limit((megabytes as usize).saturating_mul(1024 * 1024));
                Ok(())
            };
            if !noreply {
                match reply {
                    Ok(()) => encode::reply(out, Reply::Ok),
                    Err(e) => encode::error(out, e),
                }
            }
        }
        Command::LruCrawler { args } => lru_crawler(args, cx, out),
        Command::MetaNoop => encode::reply(out, Reply::MetaNoop),
        Command::Meta(cmd) => super::meta_execute::execute(cmd, cx, out),
    }
    Flow::Continue
}

/// get/gets/gat/gats: hits in request order, then `END`.
fn get(keys: Keys<'_>, cas: bool, touch: Option<u32>, cx: &mut Context<'_>, out: &mut BytesMut) {
    let store = &cx.shared.store;
    // Read per request, so `stats detail on` applies from the next one, as
    // in memcached.
    let detail = cx.shared.detail.enabled().then_some(&cx.shared.detail);
    let steps = touch.map(Step::Ttl);
    for key in keys.iter() {
        let req = GetRequest {
            steps: steps.as_slice(),
            ..GetRequest::new(key)
        };
        let lookup = store.get(req, cx.now);
        let hit = match lookup {
            Lookup::Hit(h) => {
                let v = h.value;
                encode::value(out, key, v.flags, &v.data, cas.then_some(v.cas));
                true
            }
            Lookup::Miss => false,
            Lookup::Expired => {
                cx.stats.get_expired += 1;
                false
            }
            Lookup::Flushed => {
                cx.stats.get_flushed += 1;
                false
            }
        };
        if let Some(detail) = detail {
            detail.record_get(key, hit);
        }
        match (touch.is_some(), hit) {
            (false, true) => cx.stats.get_hits += 1,
            (false, false) => cx.stats.get_misses += 1,
            (true, true) => cx.stats.touch_hits += 1,
            (true, false) => cx.stats.touch_misses += 1,
        }
        if touch.is_some() {
            cx.stats.cmd_touch += 1;
        } else {
            cx.stats.cmd_get += 1;
        }
    }
    encode::reply(out, Reply::End);
}

/// `lru_crawler metadump all|hash|<classes>`: the key listing tools such as
/// memcached-tool read. There is no crawler to start or tune, so the other
/// sub-commands are unknown.
fn lru_crawler(args: Keys<'_>, cx: &mut Context<'_>, out: &mut BytesMut) {
    let mut it = args.iter();
    if it.next() != Some(&b"metadump"[..]) {
        encode::error(out, ProtocolError::UnknownCommand);
        return;
    }
    let which = it.next().unwrap_or_default();
    // memcached hands the connection to its crawler, which cannot share it
    // with replies still owed.
    if !out.is_empty() {
        encode::line(out, b"ERROR cannot pipeline other commands before metadump");
        return;
    }
    match which {
        b"all" | b"hash" => stats_reply::metadump(cx, out),
        // A list of class ids: every item is in class 1 here (see `stats items`).
        ids if !ids.is_empty()
            && ids.split(|&b| b == b',').all(|id| {
                std::str::from_utf8(id)
                    .ok()
                    .and_then(|s| s.parse::<u8>().ok())
                    .is_some_and(|n| n > 0 && n < 64)
            }) =>
        {
            if ids.split(|&b| b == b',').any(|id| id == b"1") {
                stats_reply::metadump(cx, out);
            } else {
                encode::reply(out, Reply::End);
            }
        }
        _ => encode::line(out, b"BADCLASS invalid class id"),
    }
}
