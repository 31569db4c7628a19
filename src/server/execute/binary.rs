//! The binary protocol's requests against the store, following memcached's
//! `proto_bin.c`: the same store calls and counters as the text commands,
//! with the binary rules where they differ (a CAS in any write, a counter
//! created with an initial value, a Touch that returns the flags, the stats
//! groups binary serves).

use bytes::BytesMut;

use super::{Context, Flow, Replies, arith, flush_all, get_key, hot, sasl, write};
use crate::item_rules::StoreMode;
use crate::protocol::binary::{BinaryCommand, BinaryOp, NO_AUTO_CREATE, Refusal};
use crate::protocol::reply::{Reply, Wire};
use crate::server::stats_reply;
use crate::server::watch::FETCHERS;
use crate::server::watch_events;
use crate::store::{ArithRequest, DeleteRequest, DeleteResult, Step, StoreRequest};

/// Runs one binary request.
pub(super) fn run(cmd: &BinaryCommand<'_>, cx: &mut Context<'_>, buf: &mut BytesMut) -> Flow {
    let key = cmd.key;
    // SASL's answers are packets of the binary protocol alone.
    match cmd.op {
        BinaryOp::SaslListMechs => return sasl::list_mechanisms(cmd.reply_to, cx, buf),
        BinaryOp::SaslAuth { step, data } => {
            return sasl::auth(cmd.reply_to, step, key, data, cx, buf);
        }
        _ => {}
    }
    let wire = Wire::Binary {
        to: cmd.reply_to,
        quiet: cmd.quiet,
        key,
    };
    let out = &mut Replies::new(wire, buf);
    let clock = cx.shared.store.clock();
    // Binary exptimes are unsigned: never "already expired" by sign.
    let deadline = |exptime: u32| clock.deadline(i64::from(exptime), cx.now);
    match cmd.op {
        BinaryOp::Get => get(key, None, cx, out),
        BinaryOp::Touch { exptime } | BinaryOp::Gat { exptime } => {
            get(key, Some(deadline(exptime)), cx, out);
        }
        BinaryOp::Store {
            mode,
            flags,
            exptime,
            value,
        } => {
            if cx.shared.detail.enabled() {
                cx.shared.detail.record_set(key);
            }
            let mut req = StoreRequest::new(mode, key, flags, deadline(exptime), value);
            // Any CAS makes set/add/replace a CAS store; append and prepend
            // only compare it. memcached keeps it in the new item, which
            // under -C holds none: the CAS is then ignored.
            let cas = if cx.shared.config.limits.cas_enabled {
                cmd.cas
            } else {
                0
            };
            let cas_mode = cas != 0 && !matches!(mode, StoreMode::Append | StoreMode::Prepend);
            if cas != 0 {
                req.compare_cas = Some(cas);
            }
            if cas_mode {
                req.mode = StoreMode::Cas;
            }
            write(req, cas_mode, cx, out);
        }
        BinaryOp::Delete => delete(key, cmd.cas, cx, out),
        BinaryOp::Arith {
            incr,
            delta,
            initial,
            exptime,
        } => {
            let steps = [Step::Vivify(deadline(exptime))];
            let req = ArithRequest {
                compare_cas: cmd.cas,
                vivify: exptime != NO_AUTO_CREATE,
                initial,
                steps: &steps,
                held: cx.held.version(key),
                ..ArithRequest::new(key, incr, delta)
            };
            arith(req, cx, out, None);
        }
        BinaryOp::Quit => {
            out.send(Reply::Ok);
            return Flow::Close;
        }
        BinaryOp::Flush { delay } => flush_all(i64::from(delay), cx, out),
        BinaryOp::Noop => out.send(Reply::Ok),
        BinaryOp::Version => out.send(Reply::Version(crate::VERSION)),
        BinaryOp::Stat => stats_reply::binary(key, cx, out),
        BinaryOp::SaslListMechs | BinaryOp::SaslAuth { .. } => {
            unreachable!("SASL requests run in sasl.rs")
        }
    }
    Flow::Continue
}

/// A refused packet: its error, then the connection closed if memcached
/// closes it.
pub(super) fn refused(r: &Refusal, cx: &mut Context<'_>, buf: &mut BytesMut) -> Flow {
    if let Some(key) = &r.unlink_key {
        cx.shared.store.delete(DeleteRequest::new(key), cx.now);
    }
    let text = r.text.unwrap_or(r.status.message());
    crate::protocol::binary::compose::error_text(buf, r.reply_to, r.status, text);
    if r.close { Flow::Close } else { Flow::Continue }
}

/// Get, GetK and their quiet forms; with `touch`, Touch and GAT: one key
/// as text gets take each, and a miss answered.
fn get(key: &[u8], touch: Option<u32>, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    let detail = cx.shared.detail.enabled().then_some(&cx.shared.detail);
    if !get_key(key, touch, detail, cx, out) {
        out.send(Reply::Miss);
    }
}

/// Delete, comparing the header's CAS when there is one. Unlike `md`, a
/// CAS mismatch is not counted as a miss.
fn delete(key: &[u8], cas: u64, cx: &mut Context<'_>, out: &mut Replies<'_>) {
    if cx.shared.detail.enabled() {
        cx.shared.detail.record_delete(key);
    }
    hot(cx, key, 0);
    // memcached's binary delete logs its lookup, and no deletion line.
    if cx.shared.watch.wants(FETCHERS) {
        watch_events::looked_up(cx, key);
    }
    let mut req = DeleteRequest::new(key);
    req.compare_cas = (cas != 0).then_some(cas);
    out.send(match cx.shared.store.delete(req, cx.now) {
        DeleteResult::Deleted | DeleteResult::Invalidated => {
            cx.stats.delete_hits += 1;
            Reply::Deleted
        }
        DeleteResult::NotFound => {
            cx.stats.delete_misses += 1;
            Reply::NotFound
        }
        DeleteResult::Exists => Reply::Exists,
        // Only a delete that keeps an empty item (meta `x`) needs memory.
        DeleteResult::OutOfMemory => Reply::Error(crate::protocol::ProtocolError::OutOfMemory),
    });
}
