//! The command line, spelled as memcached's, validated once.
//!
//! Flags that mean the same as memcached's keep its letters and long names,
//! so an existing service file or container command line works unchanged.
//! Values memcached refuses are refused here with the same reasons. Tuning
//! knobs of memcached's slab allocator and LRU threads are read by
//! [`Tuning`] for `stats settings`; memcached's other options for parts
//! ferrocache lacks are accepted with a warning, because a command line
//! written for memcached must still start.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::auth::AuthFile;
use crate::sasl::Pwdb;
use crate::tls::{Tls, TlsOptions};

use crate::hotkeys::HotKeysConfig;
use crate::item_rules::Limits;
use crate::store::StoreConfig;
use crate::tuning::Tuning;

/// Where `/metrics` is served unless `--metrics-listen` says otherwise.
pub const METRICS_DEFAULT: &str = "127.0.0.1:9150";

/// memcached's per-watcher buffer unless `-o watcher_logbuf_size` says (256 KiB).
const WATCHER_BUF_DEFAULT: usize = 256 * 1024;

/// memcached's lower bound for `-I`.
const ITEM_SIZE_MIN: usize = 1024;
/// memcached's upper bound for `-I` (1 GiB).
const ITEM_SIZE_MAX: usize = 1024 * 1024 * 1024;

/// `-o` names of memcached's that tune parts ferrocache does not have and
/// that `stats settings` does not show as set (extstore, the hash
/// function, privileges). They are accepted so memcached command lines keep
/// working; the slab and LRU options are read by [`Tuning`].
const IGNORED_EXTENDED: &[&str] = &[
    "no_inline_ascii_resp",
    "inline_ascii_resp",
    "resp_obj_mem_limit",
    "drop_privileges",
    "no_drop_privileges",
    "relaxed_privileges",
    "lru_segmented",
    "no_lru_segmented",
    "ext_path",
    "ext_item_size",
    "ext_item_age",
    "ext_low_ttl",
    "ext_recache_rate",
    "ext_wbuf_size",
    "ext_threads",
    "ext_io_depth",
    "ext_compact_under",
    "ext_drop_under",
    "ext_max_sleep",
    "ext_max_frag",
    "ext_drop_unread",
    "hash_algorithm",
];

/// The command line as the user typed it.
#[derive(Parser, Debug, Clone)]
// A flag given twice takes its last value, as memcached's getopt does; so
// the command line overrides a --config-file.
#[command(
    name = "ferrocache",
    args_override_self = true,
    version,
    disable_version_flag = true,
    about = "A memcached-compatible cache daemon",
    after_help = "Flags follow memcached's. The default listen address is 127.0.0.1; \
                  use -l 0.0.0.0 (or -l ::) to serve other hosts."
)]
pub struct Cli {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// UDP port; only 0 (off) is supported.
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    pub udp_port: u16,

    /// Unix socket path to listen on (disables TCP, as in memcached).
    #[arg(short = 's', long = "unix-socket")]
    pub unix_socket: Option<PathBuf>,

    /// Access mask of the unix socket, in octal.
    #[arg(short = 'a', long = "unix-mask", default_value = "700")]
    pub unix_mask: String,

    /// Interface(s) to listen on: repeatable and comma-separated, `addr` or `addr:port`.
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1", action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Item memory in megabytes.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    pub memory_limit: u64,

    /// Max simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024)]
    pub conn_limit: usize,

    /// Worker threads (default: the number of cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,

    /// Max item size, with an optional k or m suffix (min 1k, max 1024m, at most half of -m).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    pub max_item_size: String,

    /// Return an error on memory exhausted instead of evicting items.
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,

    /// Disable the use of CAS.
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,

    /// Disable flush_all.
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,

    /// Enable the ascii `shutdown` command.
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,

    /// Disable the `watch` command (live logging).
    #[arg(short = 'W', long = "disable-watch")]
    pub disable_watch: bool,

    /// Max requests handled per connection before yielding to others.
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = 20)]
    pub reqs_per_event: usize,

    /// TCP listen backlog.
    #[arg(short = 'b', long = "listen-backlog", default_value_t = 1024)]
    pub backlog: u32,

    /// Run as a daemon: fork into the background, detach from the terminal
    /// and, unless -v, send stdin, stdout and stderr to /dev/null.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Write the process id to this file.
    #[arg(short = 'P', long = "pidfile")]
    pub pidfile: Option<PathBuf>,

    /// Assume the identity of this user when started as root.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,

    /// Protocol: ascii, binary or auto (each connection picks by its first
    /// byte) [default: auto; ascii with -Y; binary with -S].
    #[arg(short = 'B', long = "protocol")]
    pub protocol: Option<String>,

    /// Extended options, comma-separated: idle_timeout=N; hot_keys=on|off,
    /// hot_keys_top=K, hot_keys_window=SECONDS, hot_keys_sample=N;
    /// memcached's slab and LRU tuning options (slab_automove=N,
    /// hot_lru_pct=N, ...) tune nothing but show in `stats settings`.
    #[arg(short = 'o', long = "extended", action = ArgAction::Append)]
    pub extended: Vec<String>,

    /// Verbose: -v errors and connections, -vv commands and replies, -vvv
    /// internals. RUST_LOG, when set, overrides it.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Serve Prometheus metrics over HTTP at http://ADDR/metrics; `off`
    /// disables [default: 127.0.0.1:9150; if that is taken, ferrocache
    /// starts without metrics and says so].
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Export the hottest keys as labels of ferrocache_hot_key_requests in
    /// /metrics. Off by default: keys may hold data that does not belong in
    /// a monitoring system.
    #[arg(long = "metrics-hot-keys")]
    pub metrics_hot_keys: bool,

    /// Do not serve metrics (same as --metrics-listen off).
    #[arg(long = "no-metrics")]
    pub no_metrics: bool,

    /// Require ascii authentication against this file of `user:password` lines.
    #[arg(short = 'Y', long = "auth-file")]
    pub auth_file: Option<PathBuf>,

    // SASL (-S).
    /// Require SASL PLAIN authentication on binary connections, against the
    /// `user:password` lines of the file named by MEMCACHED_SASL_PWDB.
    #[arg(short = 'S', long = "enable-sasl")]
    pub enable_sasl: bool,

    /// Serve TLS on every TCP connection (see -o ssl_chain_cert, ssl_key).
    #[arg(short = 'Z', long = "enable-ssl")]
    pub enable_ssl: bool,

    /// Warm restart: on a graceful stop (SIGTERM, SIGINT, SIGUSR1, or
    /// `shutdown` with -A) save the cache to this file, and load it at the
    /// next start if it was made with the same -m, -I, -C and shard count.
    /// Any file system will do; writes during the restart are lost.
    #[arg(short = 'e', long = "memory-file", value_name = "PATH")]
    pub memory_file: Option<PathBuf>,
    /// How connections are driven: io-uring (a ring per worker thread,
    /// fewer system calls per request), tokio (epoll), or auto: io-uring
    /// where the kernel allows it (containers often forbid it), else tokio.
    /// An explicit io-uring that cannot be set up stops the start. TLS
    /// (-Z) is always served by tokio.
    #[arg(
        long = "io-driver",
        value_enum,
        default_value = "auto",
        env = "FERROCACHE_IO_DRIVER",
        value_name = "DRIVER"
    )]
    pub io_driver: IoDriver,

    /// Read flags from this file first, one per line as in Debian's
    /// /etc/memcached.conf (`#` comments; `-d`, `-h` and `logfile` lines are
    /// skipped); flags on the command line win.
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Print version and exit.
    #[arg(short = 'V', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// `--io-driver`: what drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    Auto,
    #[value(name = "io-uring")]
    IoUring,
    Tokio,
}

/// `-B`: the protocols connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingProtocol {
    Ascii,
    Binary,
    /// Each connection picks by its first byte: 0x80 is binary.
    Auto,
}

impl BindingProtocol {
    /// As memcached's `stats settings` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BindingProtocol::Ascii => "ascii",
            BindingProtocol::Binary => "binary",
            BindingProtocol::Auto => "auto-negotiate",
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(Vec<SocketAddr>),
    Unix { path: PathBuf, mask: u32 },
}

/// Validated settings, split by the part that uses them.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    /// The `-l` text as given, for `stats settings` `inter`.
    pub listen_text: String,
    pub port: u16,
    pub backlog: u32,
    pub threads: usize,
    pub conn_limit: usize,
    pub reqs_per_event: usize,
    pub idle_timeout: Option<Duration>,
    pub io_driver: IoDriver,
    pub flush_enabled: bool,
    pub shutdown_enabled: bool,
    /// `-W` turns `watch` off.
    pub watch_enabled: bool,
    /// `-o watcher_logbuf_size`, in bytes: what one watcher may have queued.
    pub watcher_buf: usize,
    pub pidfile: Option<PathBuf>,
    /// `-d`: fork into the background before serving.
    pub daemon: bool,
    pub user: Option<String>,
    pub verbose: u8,
    /// Where `/metrics` is served; `None` when off.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `--metrics-listen` was given: only then does a taken
    /// address stop the start (a second instance on a host must come up).
    pub metrics_explicit: bool,
    pub limits: Limits,
    pub store: StoreConfig,
    /// `-B`: which protocols connections speak.
    pub binding_protocol: BindingProtocol,
    /// `-Y`: the credentials every connection must present first.
    pub auth: Option<Arc<AuthFile>>,
    /// `-S`: the credentials binary connections present by SASL first.
    pub sasl: Option<Arc<Pwdb>>,
    /// `-Z`: TLS on TCP connections.
    pub tls: Option<Tls>,
    /// The `-o ssl_*` options, shown by `stats settings` even without `-Z`.
    pub tls_options: TlsOptions,
    /// `-o hot_keys=...`: the sampled top-K of the hottest keys.
    pub hot_keys: HotKeysConfig,
    /// `-e`: where the cache is saved on a graceful stop and loaded from
    /// at start.
    pub memory_file: Option<PathBuf>,
    /// `--metrics-hot-keys`: the top keys as labels in /metrics.
    pub metrics_hot_keys: bool,
    /// `-o no_lru_crawler` / `no_lru_maintainer` turn these off, as they
    /// turn off memcached's threads: `stats` then leaves their lines out.
    pub lru_crawler: bool,
    pub lru_maintainer: bool,
    /// memcached's slab and LRU tuning options, as `stats settings` shows
    /// them (the admin commands change some at run time).
    pub tuning: Tuning,
    /// `stats settings` `slab_chunk_max`, from `-o slab_chunk_max` and `-I`.
    pub slab_chunk_max: usize,
    /// `-o track_sizes`: `stats sizes` lists item sizes (memcached 1.6.45
    /// has no other way to turn them on).
    pub track_sizes: bool,
    /// Warnings for accepted-but-ignored options, logged once logging is up.
    pub warnings: Vec<String>,
}

/// A refused command line; the message is printed and the process exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Parses `-I` as memcached does: a number with an optional k/K/m/M suffix.
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, mult) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// Splits the `-l` values (repeatable, comma-separated) and resolves each,
/// with `port` where the value does not name its own.
fn resolve_listen(values: &[String], port: u16) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut addrs = Vec::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let resolved: Vec<SocketAddr> = if let Ok(ip) = part.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Ok(sa) = part.parse::<SocketAddr>() {
            vec![sa]
        } else {
            let host_port = if part.contains(':') {
                part.to_string()
            } else {
                format!("{part}:{port}")
            };
            match host_port.to_socket_addrs() {
                Ok(it) => it.collect(),
                Err(e) => return err(format!("cannot resolve listen address {part:?}: {e}")),
            }
        };
        if resolved.is_empty() {
            return err(format!("listen address {part:?} resolves to nothing"));
        }
        for a in resolved {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    if addrs.is_empty() {
        return err("no listen address given");
    }
    Ok(addrs)
}

/// `--metrics-listen`: `ip:port`, `host:port`, or a bare port on 127.0.0.1.
fn resolve_metrics_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(sa);
    }
    match text.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(sa)) => Ok(sa),
        _ => err(format!(
            "invalid --metrics-listen address {text:?}: use ip:port, host:port or off"
        )),
    }
}

impl Cli {
    /// Checks the command line and turns it into [`Config`].
    ///
    /// # Errors
    /// A message naming the refused value, worded as memcached's where it has one.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        if self.conn_limit == 0 {
            return err("Maximum connections must be greater than 0");
        }
        let threads = match self.threads {
            Some(0) => return err("Number of threads must be greater than 0"),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(4, |n| n.get()),
        };
        if self.reqs_per_event == 0 {
            return err("Number of requests per event must be greater than 0");
        }
        if self.udp_port != 0 {
            return err("UDP is not supported: use -U 0");
        }
        let binding_protocol = match self.protocol.as_deref() {
            // Ascii authentication has no binary form: memcached then
            // serves ascii only, and refuses to be asked for binary.
            None if self.auth_file.is_some() => BindingProtocol::Ascii,
            // SASL (-S): a text connection could not authenticate, so
            // memcached serves binary only.
            None if self.enable_sasl => BindingProtocol::Binary,
            None | Some("auto") => BindingProtocol::Auto,
            Some("ascii") => BindingProtocol::Ascii,
            Some("binary") => BindingProtocol::Binary,
            Some(other) => {
                return err(format!(
                    "Invalid value for binding protocol: {other}\n -- should be one of auto, binary, or ascii"
                ));
            }
        };
        // SASL (-S): memcached refuses any other -B, checking before -Y.
        if self.enable_sasl
            && self.protocol.is_some()
            && binding_protocol != BindingProtocol::Binary
        {
            return err("ERROR: You cannot allow the ASCII protocol while using SASL.");
        }
        if self.auth_file.is_some() && binding_protocol != BindingProtocol::Ascii {
            return err(
                "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
            );
        }
        let sasl = if self.enable_sasl {
            Some(Arc::new(Pwdb::from_env().map_err(ConfigError)?))
        } else {
            None
        };
        let memory_limit = match self.memory_limit.checked_mul(1024 * 1024) {
            Some(b) if b <= usize::MAX as u64 => b as usize,
            _ => return err("memory limit too large"),
        };
        let item_size_max = match parse_size(&self.max_item_size) {
            Some(s) => s,
            None => return err(format!("Invalid item size: {}", self.max_item_size)),
        };
        if item_size_max < ITEM_SIZE_MIN {
            return err("Item max size cannot be less than 1024 bytes.");
        }
        if item_size_max > memory_limit / 2 {
            return err("Cannot set item size limit higher than 1/2 of memory max.");
        }
        if item_size_max > ITEM_SIZE_MAX {
            return err("Cannot set item size limit higher than a gigabyte.");
        }

        let mut idle_timeout = None;
        let mut watcher_buf = WATCHER_BUF_DEFAULT;
        let mut hot_keys = HotKeysConfig::default();
        let mut tuning = Tuning::default();
        let mut track_sizes = false;
        let mut tls_options = TlsOptions {
            min_version: "tlsv1.2".into(),
            ..Default::default()
        };
        for opt in self.extended.iter().flat_map(|o| o.split(',')) {
            let opt = opt.trim();
            if opt.is_empty() {
                continue;
            }
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            match name {
                "idle_timeout" => {
                    let secs: u64 = match value.map(str::parse) {
                        Some(Ok(s)) => s,
                        _ => return err(format!("Invalid idle_timeout: {opt}")),
                    };
                    idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "watcher_logbuf_size" => {
                    // Kilobytes, as memcached reads it.
                    watcher_buf = match value.map(str::parse::<usize>) {
                        Some(Ok(kb)) if kb > 0 && kb <= 1024 * 1024 => kb * 1024,
                        _ => return err(format!("Invalid watcher_logbuf_size: {opt}")),
                    };
                }
                "track_sizes" => track_sizes = true,
                "hot_keys" => {
                    hot_keys.enabled = match value {
                        Some("on") => true,
                        Some("off") => false,
                        _ => return err(format!("Invalid hot_keys: {opt} (on or off)")),
                    };
                }
                "hot_keys_top" | "hot_keys_window" | "hot_keys_sample" => {
                    let (min, max) = match name {
                        "hot_keys_top" => (1, 100),
                        "hot_keys_window" => (2, 3600),
                        _ => (1, 65536),
                    };
                    let n = match value.map(str::parse::<u32>) {
                        Some(Ok(n)) if (min..=max).contains(&n) => n,
                        _ => return err(format!("Invalid {name}: {opt} ({min} to {max})")),
                    };
                    match name {
                        "hot_keys_top" => hot_keys.top = n as usize,
                        "hot_keys_window" => hot_keys.window = n,
                        _ => hot_keys.sample = n,
                    }
                }
                "ssl_chain_cert" | "ssl_key" | "ssl_ca_cert" => {
                    let path = match value {
                        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
                        _ => return err(format!("Missing {name} argument")),
                    };
                    match name {
                        "ssl_chain_cert" => tls_options.chain_cert = path,
                        "ssl_key" => tls_options.key = path,
                        _ => tls_options.ca_cert = path,
                    }
                }
                "ssl_verify_mode" => {
                    tls_options.verify_mode = match value.map(str::parse::<u8>) {
                        Some(Ok(m)) if m <= 3 => m,
                        _ => return err("could not parse argument to ssl_verify_mode"),
                    };
                }
                "ssl_min_version" => {
                    tls_options.min_version = match value {
                        Some("tlsv1.2") => "tlsv1.2".into(),
                        Some("tlsv1.3") => "tlsv1.3".into(),
                        Some("tlsv1" | "tlsv1.1") => {
                            warnings.push(format!(
                                "-o {opt}: TLS before 1.2 is not offered; using tlsv1.2"
                            ));
                            "tlsv1.2".into()
                        }
                        _ => return err(format!("Invalid ssl_min_version: {opt}")),
                    };
                }
                "ssl_keyformat" | "ssl_ciphers" | "ssl_wbuf_size" | "ssl_session_cache"
                | "ssl_kernel_tls" => {
                    warnings.push(format!(
                        "-o {name}: OpenSSL tuning option, does not apply; ignored"
                    ));
                }
                // memcached's slab allocator and LRU threads. ferrocache has
                // none of them (a sweep reclaims expired items); the options
                // decide what `stats settings` shows, and which of the
                // threads' lines `stats` prints.
                _ if tuning.apply(name, value).map_err(ConfigError)? => {}
                _ if IGNORED_EXTENDED.contains(&name) => {
                    warnings.push(format!(
                        "-o {name}: memcached tuning option, does not apply; ignored"
                    ));
                }
                _ => return err(format!("Illegal suboption \"{opt}\"")),
            }
        }

        tuning.check().map_err(ConfigError)?;
        let slab_chunk_max = tuning.slab_chunk_max(item_size_max).map_err(ConfigError)?;

        let mask = u32::from_str_radix(&self.unix_mask, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| ConfigError(format!("Invalid unix socket mask: {}", self.unix_mask)))?;
        let listen = match &self.unix_socket {
            Some(path) => Listen::Unix {
                path: path.clone(),
                mask,
            },
            None => Listen::Tcp(resolve_listen(&self.listen, self.port)?),
        };

        let metrics_listen = match self
            .metrics_listen
            .as_deref()
            .unwrap_or(METRICS_DEFAULT)
            .trim()
        {
            _ if self.no_metrics => None,
            "off" | "none" | "" => None,
            text => Some(resolve_metrics_listen(text)?),
        };

        let auth = match &self.auth_file {
            Some(path) => {
                let file = AuthFile::load(path).map_err(ConfigError)?;
                if file.is_empty() {
                    // memcached starts with an empty file too; no one can log in.
                    warnings.push(format!(
                        "authfile {} holds no entries: no client can authenticate",
                        path.display()
                    ));
                }
                Some(Arc::new(file))
            }
            None => None,
        };

        let tls = if self.enable_ssl {
            if let Listen::Unix { .. } = listen {
                warnings.push("-Z: TLS applies to TCP; the unix socket stays plain".into());
            }
            Some(Tls::new(tls_options.clone()).map_err(ConfigError)?)
        } else {
            None
        };

        let cas_enabled = !self.disable_cas;
        if self
            .memory_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty() || p.file_name().is_none())
        {
            return err("-e needs the path of a file");
        }
        Ok(Config {
            memory_file: self.memory_file.clone(),
            listen,
            listen_text: self.listen.join(","),
            port: self.port,
            backlog: self.backlog,
            threads,
            conn_limit: self.conn_limit,
            reqs_per_event: self.reqs_per_event,
            idle_timeout,
            io_driver: self.io_driver,
            hot_keys,
            metrics_hot_keys: self.metrics_hot_keys,
            lru_crawler: tuning.lru_crawler,
            track_sizes,
            lru_maintainer: tuning.lru_maintainer,
            tuning,
            slab_chunk_max,
            flush_enabled: !self.disable_flush_all,
            shutdown_enabled: self.enable_shutdown,
            watch_enabled: !self.disable_watch,
            watcher_buf,
            pidfile: self.pidfile.clone(),
            daemon: self.daemon,
            user: self.user.clone(),
            verbose: self.verbose,
            metrics_listen,
            metrics_explicit: self.metrics_listen.is_some(),
            limits: Limits {
                item_size_max,
                cas_enabled,
            },
            store: StoreConfig {
                memory_limit,
                evictions: !self.disable_evictions,
                cas_enabled,
                shards: shard_count(threads, memory_limit),
                item_size_max,
            },
            binding_protocol,
            auth,
            sasl,
            tls,
            tls_options,
            warnings,
        })
    }
}

/// Smallest share of `-m` a shard should have. A shard stores items in
/// segments of up to 64 KiB and evicts a whole segment at a time, oldest
/// first, so it needs many of them (64 at 4 MiB) for eviction to free a
/// small share at once and for the segment being filled to waste little.
/// A write also evicts from its own shard first, which stands in for one
/// global order only while each shard holds many items.
const MIN_SHARD_MEMORY: usize = 4 * 1024 * 1024;

/// Many more shards than threads, so two threads rarely want the same lock;
/// a power of two so the shard is a few bits of the hash; few enough that
/// each has [`MIN_SHARD_MEMORY`].
fn shard_count(threads: usize, memory_limit: usize) -> usize {
    let wanted = (threads * 64).next_power_of_two().clamp(256, 4096);
    let by_memory = (memory_limit / MIN_SHARD_MEMORY).max(1);
    // The largest power of two not above by_memory.
    let by_memory = 1 << (usize::BITS - 1 - by_memory.leading_zeros());
    wanted.min(by_memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, String> {
        let mut full = vec!["ferrocache"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        cli.validate().map_err(|e| e.0)
    }

    #[test]
    fn defaults_match_memcached_except_the_listen_address() {
        let c = cli(&[]).unwrap();
        assert_eq!(c.port, 11211);
        assert_eq!(c.store.memory_limit, 64 * 1024 * 1024);
        assert_eq!(c.limits.item_size_max, 1024 * 1024);
        assert_eq!(c.conn_limit, 1024);
        assert_eq!(c.reqs_per_event, 20);
        assert!(c.store.evictions && c.store.cas_enabled && c.flush_enabled);
        assert!(!c.shutdown_enabled);
        assert_eq!(
            c.listen,
            Listen::Tcp(vec!["127.0.0.1:11211".parse().unwrap()])
        );
        assert!(c.store.shards.is_power_of_two());
    }

    #[test]
    fn shards_are_many_but_each_keeps_a_useful_share_of_memory() {
        assert_eq!(shard_count(2, 64 << 20), 16);
        assert_eq!(shard_count(2, 1 << 30), 256);
        assert_eq!(shard_count(16, 1 << 30), 256);
        assert_eq!(shard_count(16, 4 << 30), 1024);
        assert_eq!(shard_count(64, 64 << 30), 4096);
        assert_eq!(shard_count(2, 8 << 20), 2);
        assert_eq!(shard_count(2, 3 << 20), 1);
        assert_eq!(shard_count(2, 0), 1);
    }

    #[test]
    fn listen_is_repeatable_and_comma_separated() {
        let c = cli(&["-p", "5000", "-l", "127.0.0.1,::1", "-l", "127.0.0.2:6000"]).unwrap();
        assert_eq!(
            c.listen,
            Listen::Tcp(vec![
                "127.0.0.1:5000".parse().unwrap(),
                "[::1]:5000".parse().unwrap(),
                "127.0.0.2:6000".parse().unwrap(),
            ])
        );
    }

    #[test]
    fn item_size_takes_suffixes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("2K"), Some(2048));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(cli(&["-I", "2k"]).unwrap().limits.item_size_max, 2048);
    }

    #[test]
    fn refuses_what_memcached_refuses() {
        assert_eq!(
            cli(&["-c", "0"]).unwrap_err(),
            "Maximum connections must be greater than 0"
        );
        assert_eq!(
            cli(&["-t", "0"]).unwrap_err(),
            "Number of threads must be greater than 0"
        );
        assert_eq!(
            cli(&["-I", "512"]).unwrap_err(),
            "Item max size cannot be less than 1024 bytes."
        );
        assert_eq!(
            cli(&["-m", "1", "-I", "1m"]).unwrap_err(),
            "Cannot set item size limit higher than 1/2 of memory max."
        );
        assert!(cli(&["-U", "11211"]).unwrap_err().contains("UDP"));
        assert_eq!(
            cli(&["-B", "binary"]).unwrap().binding_protocol,
            BindingProtocol::Binary
        );
        assert_eq!(cli(&[]).unwrap().binding_protocol, BindingProtocol::Auto);
        assert!(
            cli(&["-B", "udp"])
                .unwrap_err()
                .contains("binding protocol")
        );
        assert!(
            cli(&["-o", "bogus"])
                .unwrap_err()
                .contains("Illegal suboption")
        );
        assert!(cli(&["--bogus"]).is_err());
        assert!(
            cli(&["-l", "nosuchhost.invalid"])
                .unwrap_err()
                .contains("resolve")
        );
    }

    #[test]
    fn extended_options_act_or_warn() {
        let c = cli(&[
            "-o",
            "idle_timeout=5,hash_algorithm=murmur3",
            "-o",
            "ext_item_size=512",
        ])
        .unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.warnings.len(), 2);
        // The slab and LRU options set what stats settings shows, silently.
        let c = cli(&["-o", "slab_chunk_max=16,hashpower=20,no_slab_reassign"]).unwrap();
        assert!(c.warnings.is_empty());
        assert_eq!(c.slab_chunk_max, 16 * 1024);
        assert_eq!(c.tuning.hashpower_init, 20);
        assert!(!c.tuning.slab_reassign);
        assert!(
            cli(&["-o", "slab_chunk_max=16384"])
                .unwrap_err()
                .contains("kilobytes")
        );
        assert!(
            cli(&["-I", "8k", "-o", "slab_chunk_max=16"])
                .unwrap_err()
                .contains("cannot be larger than -I")
        );
        // The LRU threads' switches act (on what stats shows) and so warn of nothing.
        let c = cli(&["-o", "no_lru_crawler,no_lru_maintainer"]).unwrap();
        assert!(c.warnings.is_empty());
        assert!(!c.lru_crawler && !c.lru_maintainer);
        let c = cli(&["-o", "no_lru_crawler,lru_crawler"]).unwrap();
        assert!(c.lru_crawler && c.lru_maintainer);
        assert!(cli(&["-o", "idle_timeout=abc"]).is_err());
    }

    #[test]
    fn hot_keys_options_set_the_top_k_and_refuse_bad_values() {
        let c = cli(&[]).unwrap();
        assert_eq!(c.hot_keys, HotKeysConfig::default());
        assert!(c.hot_keys.enabled);
        let c = cli(&[
            "-o",
            "hot_keys=off,hot_keys_top=5,hot_keys_window=30,hot_keys_sample=2",
        ])
        .unwrap();
        assert_eq!(
            c.hot_keys,
            HotKeysConfig {
                enabled: false,
                top: 5,
                window: 30,
                sample: 2
            }
        );
        for bad in [
            "hot_keys=maybe",
            "hot_keys_top=0",
            "hot_keys_top=101",
            "hot_keys_window=1",
            "hot_keys_sample=0",
            "hot_keys_sample=x",
        ] {
            assert!(cli(&["-o", bad]).is_err(), "{bad}");
        }
        assert!(cli(&["--metrics-hot-keys"]).unwrap().metrics_hot_keys);
    }

    #[test]
    fn metrics_listen_defaults_on_and_can_be_turned_off() {
        assert_eq!(
            cli(&[]).unwrap().metrics_listen,
            Some("127.0.0.1:9150".parse().unwrap())
        );
        assert_eq!(
            cli(&["--metrics-listen", "0.0.0.0:9999"])
                .unwrap()
                .metrics_listen,
            Some("0.0.0.0:9999".parse().unwrap())
        );
        assert_eq!(
            cli(&["--metrics-listen", "off"]).unwrap().metrics_listen,
            None
        );
        assert_eq!(cli(&["--no-metrics"]).unwrap().metrics_listen, None);
        assert!(!cli(&[]).unwrap().metrics_explicit);
        assert!(
            cli(&["--metrics-listen", "127.0.0.1:9150"])
                .unwrap()
                .metrics_explicit
        );
        assert!(cli(&["--metrics-listen", "nope:x"]).is_err());
    }

    #[test]
    fn memory_file_takes_a_file_path() {
        assert_eq!(cli(&[]).unwrap().memory_file, None);
        assert_eq!(
            cli(&["-e", "/var/lib/ferrocache/cache"])
                .unwrap()
                .memory_file,
            Some(PathBuf::from("/var/lib/ferrocache/cache"))
        );
        assert_eq!(
            cli(&["--memory-file", "snap"]).unwrap().memory_file,
            Some(PathBuf::from("snap"))
        );
        assert!(cli(&["-e", ""]).is_err());
        assert!(cli(&["-e", "/var/lib/.."]).is_err());
    }

    #[test]
    fn sasl_refuses_any_protocol_but_binary_as_memcached_does() {
        for proto in ["ascii", "auto"] {
            assert_eq!(
                cli(&["-S", "-B", proto]).unwrap_err(),
                "ERROR: You cannot allow the ASCII protocol while using SASL."
            );
        }
        assert!(cli(&[]).unwrap().sasl.is_none());
    }

    #[test]
    fn unix_socket_replaces_tcp() {
        let c = cli(&["-s", "/tmp/x.sock", "-a", "0766"]).unwrap();
        assert_eq!(
            c.listen,
            Listen::Unix {
                path: "/tmp/x.sock".into(),
                mask: 0o766
            }
        );
    }
}
