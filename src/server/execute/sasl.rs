//! The binary protocol's SASL requests (`-S`): list mechanisms, auth and
//! step against the connection's [`SaslConn`], answered as memcached
//! 1.6.18 answers them and counted in `auth_cmds` / `auth_errors`.
//!
//! The decoder refuses every other request until [`SaslConn`] says the
//! connection is authenticated; the session tells it after each request.

use bytes::BytesMut;

use super::{Context, Flow};
use crate::protocol::binary::{ReplyTo, Status, compose};
use crate::sasl::{Outcome, SaslConn};

/// memcached's body for a successful auth or step.
const AUTHENTICATED: &[u8] = b"Authenticated";

/// List mechanisms.
pub(super) fn list_mechanisms(to: ReplyTo, cx: &mut Context<'_>, out: &mut BytesMut) -> Flow {
    let mechanisms = cx.sasl.list_mechanisms();
    compose::success(out, to, 0, mechanisms);
    Flow::Continue
}

/// Auth (`step: false`) with mechanism `mech`, or step; `data` is the
/// client's message.
pub(super) fn auth(
    to: ReplyTo,
    step: bool,
    mech: &[u8],
    data: &[u8],
    cx: &mut Context<'_>,
    out: &mut BytesMut,
) -> Flow {
    let Some(db) = cx.shared.config.sasl.as_deref() else {
        // The decoder makes these requests only with -S.
        compose::error(out, to, Status::UnknownCommand);
        return Flow::Continue;
    };
    let sasl: &mut SaslConn = cx.sasl;
    let outcome = if step {
        sasl.step(data, db)
    } else {
        sasl.start(mech, data, db)
    };
    outcome.count(cx.stats);
    match outcome {
        Outcome::Authenticated => compose::success(out, to, 0, AUTHENTICATED),
        // An empty challenge: PLAIN has nothing to ask.
        Outcome::Continue => compose::error(out, to, Status::AuthContinue),
        Outcome::Failed => compose::error(out, to, Status::AuthError),
    }
    Flow::Continue
}
