//! ferrocache: a memcached-compatible cache daemon.
//!
//! Data flows one way: a driver (`server::connection`) reads bytes and hands
//! them to the connection's sans-IO `server::session`; `protocol` turns them
//! into requests, `server::execute` runs each against the `store` and
//! reports typed replies, and `protocol::reply` spells them in the request's
//! wire format into one write buffer, sent once per batch.
//!
//! - [`auth`]: memcached's ascii authentication (`-Y`).
//! - [`sasl`]: SASL PLAIN for the binary protocol (`-S`), memcached's pwdb file.
//! - [`config`]: the command line, spelled as memcached's; [`config_file`]: memcached.conf;
//!   [`tuning`]: memcached's slab and LRU `-o` options, as `stats settings` shows them.
//! - [`hotkeys`]: the sampled top-K of the hottest keys (`stats hotkeys`).
//! - [`item_rules`]: write modes and item sizes, which protocol and store share.
//! - [`protocol`]: requests parsed from bytes, replies composed into bytes; no store, no sockets.
//! - [`store`]: the sharded segment store, second-chance eviction; no protocol, no sockets.
//! - [`server`]: listeners, the I/O driver, the session, and `execute`, the glue of the two.
//! - [`stats`]: the counters behind `stats`.
//! - [`tls`]: TLS (`-Z`) with memcached's `-o ssl_*` options.
//! - [`metrics`]: Prometheus names and the `/metrics` endpoint, fed from `stats`.
//! - [`notify`]: systemd readiness (`READY=1`, `STOPPING=1`) over `NOTIFY_SOCKET`.
//! - `test_rng`: the one pseudo-random generator of tests, fuzz replays and benches.

pub mod auth;
pub mod config;
pub mod config_file;
pub mod hotkeys;
pub mod item_rules;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod sasl;
pub mod server;
pub mod stats;
pub mod store;
#[doc(hidden)]
pub mod test_rng;
pub mod tls;
pub mod tuning;

/// Error type for start-up failures; they end the process with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The version we report in `version` and `stats`. It leads with the
/// memcached release whose protocol we follow, because clients parse the
/// leading `major.minor.patch` to decide which commands a server has
/// (libmemcached, for one); our own version follows the dash.
pub const VERSION: &str = concat!("1.6.45-ferrocache-", env!("CARGO_PKG_VERSION"));
