//! The one executor: a decoded request against the store, whatever wire
//! format it came in, its outcomes reported as typed [`Reply`]s. The only
//! module that sees both the protocol and the store.
//!
//! Counting happens here, from the request and its outcome: `stats`,
//! `stats detail` and `/metrics` all read what is counted, and nothing reads
//! back the bytes a reply was composed into. How a reply is spelled (and
//! whether `noreply` or `q` hides it) is the composer's ([`Wire`]).
//!
//! The binary protocol's requests run in `execute/binary.rs`, on the same
//! store calls and counting helpers.
//!
//! It is synchronous: the store's locks are held for short sections inside
//! store calls and never across an `.await`.

mod binary;
mod sasl;

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::stats_reply::slab_class;
use super::watch::{DELETIONS, FETCHERS, MUTATIONS};
use super::{Context, Flow, Replies, admin, stats_reply, watch, watch_events};
use crate::item_rules::StoreMode;
use crate::protocol::meta::long_opaque;
use crate::protocol::reply::{self, Item, Reply, Wire};
use crate::protocol::request::{KeyBuf, MetaCommand, MetaFlags, MetaOp};
use crate::protocol::{Frame, KEY_MAX_LEN, Keys, ProtocolError, Rejected, Request, ShutdownMode};
use crate::stats::Detail;
use crate::store::{
    ArithRequest, ArithResult, DeleteRequest, DeleteResult, GetRequest, Hit, Lookup, Step,
    StoreRequest, StoreResult,
};

/// Runs one frame. It is borrowed where the decoder left it: a frame is
/// as large as its largest request (a meta command's flags), and a copy per
/// request costs more than the few reads through a reference.
pub fn execute_frame(frame: &Frame<'_>, cx: &mut Context<'_>, out: &mut BytesMut) -> Flow {
    match *frame {
        Frame::Request(Request::Meta(ref cmd)) => {
            meta(cmd, cx, out);
            Flow::Continue
        }
        Frame::Request(Request::Binary(ref cmd)) => binary::run(cmd, cx, out),
        Frame::BinaryRefusal(ref r) => binary::refused(r, cx, out),
        Frame::Request(ref cmd) => {
            let wire = classic_wire(cmd);
            execute(cmd, cx, &mut Replies::new(wire, out))
        }
        Frame::Error {
            error,
            noreply,
            counts_as_set,
        } => {
            if counts_as_set {
                cx.stats.cmd_set += 1;
            }
            let wire = Wire::Classic {
                noreply,
                cas: false,
            };
            Replies::new(wire, out).send(Reply::Error(error));
            Flow::Continue
        }
        Frame::Rejected(ref r) => {
            rejected(r, cx, out);
            Flow::Continue
        }
        Frame::Close => Flow::Abort,
    }
}

/// How a classic command's replies are spelled.
fn classic_wire(cmd: &Request<'_>) -> Wire<'static> {
    let (noreply, cas) = match *cmd {
        Request::Get { cas, .. } | Request::Gat { cas, .. } => (false, cas),
        Request::Store { noreply, .. }
        | Request::Delete { noreply, .. }
        | Request::Arith { noreply, .. }
        | Request::Touch { noreply, .. }
        | Request::FlushAll { noreply, .. }
        | Request::Verbosity { noreply, .. }
        | Request::CacheMemlimit { noreply, .. }
        | Request::LruCrawler { noreply, .. }
        | Request::Slabs { noreply, .. }
        | Request::Lru { noreply, .. } => (noreply, false),
        _ => (false, false),
    };
    Wire::Classic { noreply, cas }
}

fn rejected(r: &Rejected, cx: &mut Context<'_>, out: &mut BytesMut) {
    if r.counts_as_set {
        cx.stats.cmd_set += 1;
    }
    match r.error {
        ProtocolError::TooLarge => cx.stats.store_too_large += 1,
        ProtocolError::OutOfMemory => cx.stats.store_no_memory += 1,
        _ => {}
    }
    if let Some(key) = &r.unlink_key {
        cx.shared.store.delete(DeleteRequest::new(key), cx.now);
    }
    let wire = Wire::Classic {
        noreply: r.noreply,
        cas: false,
    };
    Replies::new(wire, out).send(Reply::Error(r.error));
}

/// Counts a request for `key`, which sent `bytes` of value, in the hot-key
/// top-K when this connection's sampler picks it.
#[inline]
fn hot(cx: &mut Context<'_>, key: &[u8], bytes: usize) {
    let hot = &cx.shared.hot;
    let config = hot.config();
    if config.enabled && cx.sampler.take(config.sample) {
        hot.record(key, bytes, cx.now);
    }
}

/// Cuts an exptime to 32 bits as memcached does (`(int32_t)` of a 64-bit read).
fn exptime32(exptime: i64) -> i64 {
    exptime as i32 as i64
}

/// Runs one classic command.
fn execute(cmd: &Request<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) -> Flow {
    let store = &cx.shared.store;
    let now = cx.now;
    match *cmd {
        Request::Get { keys, .. } => get(keys, None, cx, out),
        Request::Gat { exptime, keys, .. } => {
            let deadline = store.clock().deadline(exptime32(exptime), now);
            get(keys, Some(deadline), cx, out);
        }
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            value,
            cas_unique,
            ..
        } => {
            if cx.shared.detail.enabled() {
                cx.shared.detail.record_set(key);
            }
            let deadline = store.clock().deadline(exptime32(exptime), now);
            let mut req = StoreRequest::new(mode, key, flags, deadline, value);
            if mode == StoreMode::Cas {
                req.compare_cas = Some(cas_unique);
            }
            write(req, mode == StoreMode::Cas, cx, out);
        }
        Request::Delete { key, .. } => {
            if cx.shared.detail.enabled() {
                cx.shared.detail.record_delete(key);
            }
            delete(DeleteRequest::new(key), "delete", cx, out);
        }
        Request::Arith {
            key, delta, incr, ..
        } => {
            let req = ArithRequest {
                held: cx.held.version(key),
                ..ArithRequest::new(key, incr, delta)
            };
            arith(req, cx, out, None)
        }
        Request::Touch { key, exptime, .. } => {
            cx.stats.cmd_touch += 1;
            hot(cx, key, 0);
            if cx.shared.watch.wants(FETCHERS) {
                watch_events::looked_up(cx, key);
            }
            let deadline = store.clock().deadline(exptime32(exptime), now);
            let hit = store.touch(key, deadline, now);
            if hit {
                cx.stats.touch_hits += 1;
            } else {
                cx.stats.touch_misses += 1;
            }
            out.send(if hit { Reply::Touched } else { Reply::NotFound });
        }
        Request::FlushAll { delay, .. } => flush_all(exptime32(delay), cx, out),
        Request::Version => out.send(Reply::Version(crate::VERSION)),
        Request::Verbosity { level, .. } => {
            // memcached caps it at its highest level, 2.
            let level = level.min(2) as u8;
            cx.shared.verbosity.store(level, Ordering::Relaxed);
            out.send(Reply::Ok);
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown { mode } => {
            if !cx.shared.config.shutdown_enabled {
                out.send(Reply::Error(ProtocolError::ShutdownNotEnabled));
                return Flow::Continue;
            }
            match mode {
                ShutdownMode::Immediate => return Flow::Shutdown { graceful: false },
                ShutdownMode::Graceful => return Flow::Shutdown { graceful: true },
                ShutdownMode::Invalid => {
                    out.send(Reply::Error(ProtocolError::InvalidShutdownMode));
                }
            }
        }
        Request::Stats { args } => stats_reply::stats(args, cx, out),
        Request::CacheMemlimit { megabytes, .. } => {
            if megabytes < 8 {
                out.send(Reply::Error(ProtocolError::MemlimitTooSmall));
            } else if megabytes > 1_000_000_000 {
                out.send(Reply::Error(ProtocolError::MemlimitAdjustFailed));
            } else {
                store.set_memory_limit((megabytes as usize).saturating_mul(1024 * 1024));
                out.send(Reply::Ok);
            }
        }
        Request::LruCrawler { args, .. } => admin::lru_crawler(args, cx, out),
        Request::Slabs { args, .. } => admin::slabs(args, cx, out),
        Request::Lru { args, .. } => admin::lru(args, cx, out),
        Request::Watch { args } => return start_watch(args, cx, out),
        Request::RefreshCerts => refresh_certs(cx, out),
        Request::MetaNoop => out.send(Reply::MetaNoop),
        Request::Meta(_) => unreachable!("meta commands run in meta()"),
        Request::Binary(_) => unreachable!("binary commands run in binary::run()"),
    }
    Flow::Continue
}

/// `flush_all` / binary Flush, `delay` seconds (an exptime) from now.
fn flush_all(delay: i64, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    if !cx.shared.config.flush_enabled {
        return out.send(Reply::Error(ProtocolError::FlushDisabled));
    }
    cx.stats.cmd_flush += 1;
    let store = &cx.shared.store;
    let deadline = if delay > 0 {
        store.clock().deadline(delay, cx.now)
    } else {
        0
    };
    // An absolute time before the process started converts to the
    // "expired" deadline; memcached's oldest_live then becomes 0,
    // which flushes nothing.
    if deadline != crate::store::clock::EXPIRED {
        store.flush(deadline, cx.now);
    }
    out.send(Reply::Ok);
}

/// The reply's view of a hit on `key`.
#[inline]
fn item<'h>(key: &'h [u8], hit: &'h Hit, now: u32) -> Item<'h> {
    Item {
        key,
        data: &hit.value.data,
        flags: hit.value.flags,
        cas: hit.value.cas,
        ttl: ttl_left(hit.ttl_at_read, now),
        idle: hit.idle,
        fetched: hit.fetched,
        key_binary: hit.key_binary,
        token_sent: hit.token_sent,
        stale: hit.stale,
        won: hit.won,
    }
}

/// Seconds left before `deadline` (0: none), wrapped as memcached prints them.
fn ttl_left(deadline: u32, now: u32) -> Option<u32> {
    (deadline != 0).then(|| deadline.wrapping_sub(now))
}

/// get/gets/gat/gats: hits in request order, then `END`.
fn get(keys: Keys<'_>, touch: Option<u32>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    // Read per request, so `stats detail on` applies from the next one, as
    // in memcached.
    let detail = cx.shared.detail.enabled().then_some(&cx.shared.detail);
    for key in keys.iter() {
        get_key(key, touch, detail, cx, out);
    }
    out.send(Reply::End);
}

/// One key of a get or touch, text or binary: looks it up (with `touch`,
/// sets its TTL), sends a hit and counts the outcome; whether it hit. A
/// miss sends nothing: text ends a whole get with `END`, binary answers
/// each key.
pub(super) fn get_key(
    key: &[u8],
    touch: Option<u32>,
    detail: Option<&Detail>,
    cx: &mut Context<'_>,
    out: &mut Replies<'_>,
) -> bool {
    let steps = touch.map(Step::Ttl);
    let mut req = GetRequest::new(key);
    req.steps = steps.as_slice();
    let lookup = cx.shared.store.get(req, cx.now);
    if cx.shared.watch.wants(FETCHERS) {
        watch_events::fetched(cx, key, &lookup);
    }
    // Whether it hit, and the bytes of value sent.
    let (hit, sent) = match &lookup {
        Lookup::Hit(hit) => {
            out.send(Reply::Hit(item(key, hit, cx.now)));
            cx.held.hit(key, hit.value.cas);
            (true, hit.value.data.len())
        }
        miss => {
            count_miss_kind(miss, cx);
            (false, 0)
        }
    };
    hot(cx, key, sent);
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
    hit
}

/// memcached's `get_expired` and `get_flushed`.
fn count_miss_kind(lookup: &Lookup, cx: &mut Context<'_>) {
    match lookup {
        Lookup::Expired => cx.stats.get_expired += 1,
        Lookup::Flushed => cx.stats.get_flushed += 1,
        _ => {}
    }
}

/// A write (classic storage command or `ms`); `cas_mode` counts it as a
/// CAS store.
fn write(req: StoreRequest<'_>, cas_mode: bool, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    cx.stats.cmd_set += 1;
    hot(cx, req.key, 0);
    // A store makes a new item, which no reply holds yet.
    cx.held.forget(req.key);
    let watched = cx.shared.watch.wants(FETCHERS | MUTATIONS);
    let old = watched.then(|| watch_events::looked_up(cx, req.key));
    let written = cx.shared.store.store_sized(req, cx.now);
    let (result, cas) = (written.result, written.cas);
    if watched {
        watch_events::stored(cx, &req, old.flatten().as_ref(), result);
    }
    if cas_mode {
        match result {
            StoreResult::Stored => cx.stats.cas_hits += 1,
            StoreResult::Exists => cx.stats.cas_badval += 1,
            StoreResult::NotFound => cx.stats.cas_misses += 1,
            _ => {}
        }
    }
    out.send(match result {
        StoreResult::Stored => Reply::Stored {
            cas,
            size: written.len,
        },
        StoreResult::NotStored => Reply::NotStored,
        StoreResult::Exists => Reply::Exists,
        StoreResult::NotFound => Reply::NotFound,
        StoreResult::OutOfMemory => {
            cx.stats.store_no_memory += 1;
            Reply::Error(ProtocolError::OutOfMemory)
        }
    });
}

/// A delete (classic `delete` or `md`, which `cmd` names for `watch`).
fn delete(req: DeleteRequest<'_>, cmd: &str, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    hot(cx, req.key, 0);
    cx.held.forget(req.key);
    let old = cx
        .shared
        .watch
        .wants(FETCHERS | DELETIONS)
        .then(|| watch_events::looked_up(cx, req.key))
        .flatten();
    out.send(match cx.shared.store.delete(req, cx.now) {
        DeleteResult::Deleted => {
            if let Some(old) = &old {
                watch_events::deleted(cx, req.key, old, cmd);
            }
            cx.stats.delete_hits += 1;
            Reply::Deleted
        }
        DeleteResult::Invalidated => Reply::Deleted,
        DeleteResult::NotFound => {
            cx.stats.delete_misses += 1;
            Reply::NotFound
        }
        DeleteResult::Exists => {
            cx.stats.delete_misses += 1;
            Reply::Exists
        }
        DeleteResult::OutOfMemory => Reply::Error(ProtocolError::ArithOutOfMemory),
    });
}

/// incr/decr/`ma`. `late_error`, for `ma`: an error found while parsing
/// that memcached reports only once the counter has been changed.
fn arith(
    req: ArithRequest<'_>,
    cx: &mut Context<'_>,
    out: &mut Replies<'_>,
    late_error: Option<ProtocolError>,
) {
    hot(cx, req.key, 0);
    if cx.shared.watch.wants(FETCHERS) {
        watch_events::looked_up(cx, req.key);
    }
    let outcome = cx.shared.store.arith(req, cx.now);
    // The counter is a new version now (or was not held).
    cx.held.forget(req.key);
    let (hits, misses) = if req.incr {
        (&mut cx.stats.incr_hits, &mut cx.stats.incr_misses)
    } else {
        (&mut cx.stats.decr_hits, &mut cx.stats.decr_misses)
    };
    let reply = match outcome {
        ArithResult::Done(c) => {
            if !c.created {
                *hits += 1;
            } else if cx.shared.watch.wants(FETCHERS | MUTATIONS) {
                watch_events::counter_created(cx, &req, c.value);
            }
            Reply::Counter(reply::Counter {
                value: c.value,
                cas: c.cas,
                ttl: ttl_left(c.ttl_at_read, cx.now),
                created: c.created,
            })
        }
        ArithResult::NotFound => {
            *misses += 1;
            Reply::NotFound
        }
        ArithResult::NotStored => Reply::NotStored,
        ArithResult::Exists => Reply::Exists,
        // Wrong values are reported before a late error.
        ArithResult::NonNumeric => return out.send(Reply::Error(ProtocolError::NonNumeric)),
        ArithResult::OutOfMemory => return out.send(Reply::Error(ProtocolError::OutOfMemory)),
    };
    match late_error {
        Some(e) => out.send(Reply::Error(e)),
        None => out.send(reply),
    }
}

/// Runs one meta command.
fn meta(cmd: &MetaCommand<'_>, cx: &mut Context<'_>, buf: &mut BytesMut) {
    let mut key_buf: KeyBuf = [0; KEY_MAX_LEN];
    let key = cmd.key.bytes(&mut key_buf);
    let flags = &cmd.flags;
    let wire = Wire::Meta {
        op: cmd.op,
        key,
        binary: cmd.key.is_binary(),
        flags: cmd.flags,
        sent: cmd.value.len(),
    };
    let out = &mut Replies::new(wire, buf);
    let clock = cx.shared.store.clock();
    let deadline = |exptime: Option<i32>| clock.deadline(i64::from(exptime.unwrap_or(0)), cx.now);
    match cmd.op {
        MetaOp::Get => {
            // A long opaque is refused where the scan reaches it, after the
            // flags before it took effect.
            let bad = long_opaque(flags);
            let (steps, n) = steps(flags, bad.unwrap_or(usize::MAX), &deadline);
            let req = GetRequest {
                key,
                key_binary: cmd.key.is_binary(),
                vivify: flags.vivify.is_some(),
                bump: !flags.has(b'u'),
                tokens: true,
                unlink_expired: false,
                cas_in: flags.cas_in,
                steps: &steps[..n],
            };
            let lookup = cx.shared.store.get(req, cx.now);
            if cx.shared.watch.wants(FETCHERS) {
                watch_events::fetched(cx, key, &lookup);
            }
            // A matching `C` leaves the value out.
            let sent = match &lookup {
                Lookup::Hit(h)
                    if flags.has(b'v')
                        && bad.is_none()
                        && flags.compare_cas != Some(h.value.cas) =>
                {
                    h.value.data.len()
                }
                _ => 0,
            };
            hot(cx, key, sent);
            let reply = match &lookup {
                // A hit refused for its opaque is not counted.
                Lookup::Hit(_) if bad.is_some() => Reply::Error(ProtocolError::OpaqueTooLong),
                Lookup::Hit(hit) => {
                    if hit.touched {
                        cx.stats.cmd_touch += 1;
                        cx.stats.touch_hits += 1;
                    } else {
                        cx.stats.cmd_get += 1;
                        cx.stats.get_hits += 1;
                    }
                    cx.held.hit(key, hit.value.cas);
                    Reply::Hit(item(key, hit, cx.now))
                }
                miss => {
                    count_miss_kind(miss, cx);
                    // A miss runs no flag, so `T` does not make it a touch;
                    // it is counted even when its opaque is refused.
                    cx.stats.cmd_get += 1;
                    cx.stats.get_misses += 1;
                    match bad {
                        Some(_) => Reply::Error(ProtocolError::OpaqueTooLong),
                        None => Reply::Miss,
                    }
                }
            };
            out.send(reply);
        }
        MetaOp::Set { mode } => {
            // `N` makes append and prepend create a missing item, which
            // takes its TTL from `N`.
            let vivify =
                flags.vivify.is_some() && matches!(mode, StoreMode::Append | StoreMode::Prepend);
            let req = StoreRequest {
                mode,
                key,
                key_binary: cmd.key.is_binary(),
                flags: flags.client_flags,
                deadline: deadline(if vivify { flags.vivify } else { flags.ttl }),
                value: cmd.value,
                compare_cas: flags.compare_cas,
                invalidate: flags.has(b'I'),
                oom_deletes: true,
                vivify,
                // memcached's text protocol takes `E0` as no `E`.
                cas_in: flags.cas_in.filter(|&c| c != 0),
            };
            let cas_mode =
                flags.compare_cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace);
            write(req, cas_mode, cx, out);
        }
        MetaOp::Delete => {
            let invalidate = flags.has(b'I');
            let req = DeleteRequest {
                key,
                compare_cas: flags.compare_cas,
                invalidate,
                deadline: flags.ttl.map(|t| deadline(Some(t))),
                remove_value: flags.has(b'x'),
                flags: flags.client_flags,
                cas_in: flags.cas_in,
            };
            delete(req, "md", cx, out);
        }
        MetaOp::Arith { incr } => {
            let bad = long_opaque(flags);
            let (steps, n) = steps(flags, bad.unwrap_or(usize::MAX), &deadline);
            let req = ArithRequest {
                key,
                key_binary: cmd.key.is_binary(),
                incr,
                delta: flags.delta,
                compare_cas: flags.compare_cas.unwrap_or(0),
                vivify: flags.vivify.is_some(),
                initial: flags.initial,
                cas_in: flags.cas_in,
                held: cx.held.version(key),
                steps: &steps[..n],
            };
            arith(req, cx, out, bad.map(|_| ProtocolError::OpaqueTooLong));
        }
        MetaOp::Debug => debug(key, cx, out),
    }
}

/// The order-dependent flags of `mg`/`ma` before token `end`, as store steps.
fn steps(
    flags: &MetaFlags<'_>,
    end: usize,
    deadline: &impl Fn(Option<i32>) -> u32,
) -> ([Step; 4], usize) {
    let mut steps = [Step::ReadTtl; 4];
    let mut n = 0;
    for token in flags.tokens().take(end) {
        let step = match token[0] {
            b'T' => Step::Ttl(deadline(flags.ttl)),
            b'N' => Step::Vivify(deadline(flags.vivify)),
            b'R' => Step::Recache(deadline(flags.recache)),
            b't' => Step::ReadTtl,
            _ => continue,
        };
        // Each flag appears at most once, so four slots are enough.
        steps[n] = step;
        n += 1;
    }
    (steps, n)
}

/// `me`: the debug line of one item, or `EN`.
fn debug(key: &[u8], cx: &mut Context<'_>, out: &mut Replies<'_>) {
    cx.stats.cmd_meta += 1;
    let Some(info) = cx.shared.store.peek(key, cx.now) else {
        return out.send(Reply::Miss);
    };
    let size = cx
        .shared
        .config
        .limits
        .item_total_size(key.len(), info.value_len, info.flags);
    out.send(Reply::Debug(reply::Debug {
        key,
        key_binary: info.key_binary,
        // The seconds left, as memcached 1.6.45 prints them (1.6.18 printed
        // them negated, `current_time - exptime`).
        exp: if info.deadline == 0 {
            -1
        } else {
            i64::from(info.deadline.wrapping_sub(cx.now) as i32)
        },
        last_access: cx.now.wrapping_sub(info.time),
        cas: info.cas,
        fetched: info.fetched,
        class: slab_class(size),
        size,
    }));
}

/// `watch [streams]`: on success the reply is `OK` and the connection
/// becomes a log stream ([`Flow::Watch`]).
fn start_watch(args: Keys<'_>, cx: &mut Context<'_>, out: &mut Replies<'_>) -> Flow {
    if !cx.shared.config.watch_enabled {
        out.send(Reply::Line(b"CLIENT_ERROR watch commands not allowed"));
        return Flow::Continue;
    }
    // memcached hands the connection to its logger thread, which cannot
    // share it with replies still owed.
    if out.owes_earlier() {
        out.send(Reply::Line(
            b"ERROR cannot pipeline other commands before watch",
        ));
        return Flow::Continue;
    }
    let Some(streams) = watch::streams(args.iter()) else {
        out.send(Reply::Error(ProtocolError::UnknownCommand));
        return Flow::Continue;
    };
    match cx.shared.watch.join(streams) {
        Ok(w) => {
            *cx.watcher = Some(w);
            out.send(Reply::Ok);
            Flow::Watch
        }
        Err(watch::JoinError::TooMany) => {
            out.send(Reply::Line(b"WATCHER_TOO_MANY log watcher limit reached"));
            Flow::Continue
        }
    }
}

/// `refresh_certs`: the TLS certificate, key and CA read again, as
/// memcached 1.6.40+ does; on failure the old ones stay and the reply says
/// why, in memcached's words.
fn refresh_certs(cx: &mut Context<'_>, out: &mut Replies<'_>) {
    match &cx.shared.config.tls {
        None => out.send(Reply::Line(b"Error TLS not enabled")),
        Some(tls) => match tls.reload() {
            Ok(()) => out.send(Reply::Ok),
            Err(e) => out.send(Reply::Line(e.as_bytes())),
        },
    }
}
