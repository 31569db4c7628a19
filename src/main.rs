//! The `ferrocache` binary: parse the command line, set up logging, bind,
//! drop privileges, and serve until a signal or the `shutdown` command.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ferrocache::config::{Cli, Config};
use ferrocache::config_file;
use ferrocache::server::{self, Shared};
use ferrocache::store::{Clock, Restore, Store};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = match config_file::expand(std::env::args_os().collect(), check_line) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ferrocache: {e}");
            return ExitCode::from(64);
        }
    };
    let cli = Cli::parse_from(args);
    let config = match cli.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrocache: {e}");
            return ExitCode::from(64); // EX_USAGE, as memcached exits
        }
    };
    if config.daemon
        && let Err(e) = daemonize(config.verbose > 0)
    {
        eprintln!("ferrocache: failed to daemonize: {e}");
        return ExitCode::FAILURE;
    }
    init_logging(config.verbose);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Before the user changes: only root may raise the hard limit.
    if let Err(e) = raise_fd_limit(config.conn_limit) {
        eprintln!("{e}");
        return ExitCode::from(71); // EX_OSERR, as memcached exits
    }
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocache: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `-d`, as memcached's `daemonize()`: fork (the parent exits 0), start a
/// new session, move to `/`, and unless `keep_stdio` (`-v`)
/// point stdin, stdout and stderr at /dev/null. Done before the runtime
/// starts any thread, so the child is a whole process. Binding, the user
/// change and the pid file (`-P`) follow in the child, as in memcached.
/// SIGHUP is ignored only until the server installs its handler, which
/// reloads the TLS certificates, daemon or not, as memcached 1.6.40+ does:
/// the hang-up of the terminal being left must not end the process first.
fn daemonize(keep_stdio: bool) -> std::io::Result<()> {
    let last = std::io::Error::last_os_error;
    // SAFETY: no other thread exists yet; the child only makes plain libc
    // calls before it returns to ordinary single-threaded code.
    unsafe {
        match libc::fork() {
            -1 => return Err(last()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(last());
        }
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(last());
        }
        if !keep_stdio {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if fd == -1 {
                return Err(last());
            }
            for target in 0..=2 {
                if libc::dup2(fd, target) == -1 {
                    return Err(last());
                }
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
    Ok(())
}

/// Whether one line of a `--config-file` parses as flags on its own.
fn check_line(args: &[std::ffi::OsString]) -> Result<(), String> {
    match Cli::try_parse_from(args) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_string())
        }
    }
}

/// memcached's verbosity mapped onto tracing: lifecycle by default, `-v`
/// connection events and errors, `-vv` every command and reply, `-vvv`
/// our internals too. `RUST_LOG`, when set, wins.
fn init_logging(verbose: u8) {
    let directives = match verbose {
        0 => "ferrocache=info,warn",
        1 => "ferrocache=debug,warn",
        2 => "ferrocache=debug,ferrocache::server::session=trace,warn",
        _ => "ferrocache=trace,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn start(mut config: Config) -> Result<(), ferrocache::Error> {
    choose_user(&mut config);
    // With one server thread there is nothing to steal work from: the
    // current-thread scheduler runs the same tasks with less bookkeeping
    // per wake-up.
    let mut builder = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.threads);
        b
    };
    let runtime = builder
        .thread_name("ferrocache-worker")
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> Result<(), ferrocache::Error> {
    // Before the snapshot is loaded and removed: a stop asked for from now
    // on waits for the server to be up, and then saves.
    let signals = stop_signals();
    // The snapshot is loaded before the sockets exist: a client that can
    // connect finds the cache ready.
    let (store, warm) = open_store(&config);
    let listeners = server::bind(&config)?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => match ferrocache::metrics::bind(addr).await {
            Ok(l) => Some(l),
            // A second instance on the same host finds the default address
            // taken: the cache must still come up.
            Err(e) if !config.metrics_explicit => {
                tracing::warn!(
                    "{e}; serving without metrics (give --metrics-listen ADDR to serve them elsewhere)"
                );
                config.metrics_listen = None;
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if let Some(user) = &config.user {
        drop_privileges(user)?;
    }
    if let Some(path) = &config.pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("could not write pidfile {}: {e}", path.display()))?;
    }
    if let Some(path) = &config.memory_file {
        // As the user that will save it, now rather than at the stop.
        if let Err(e) = ferrocache::store::check_snapshot_writable(path) {
            tracing::warn!(
                path = %path.display(),
                "the snapshot cannot be saved there ({e}): the next restart will start empty"
            );
        }
        // Nothing can fail the start now. Removed so that a crash later
        // cannot bring back what this run deletes or changes.
        if warm && let Err(e) = ferrocache::store::discard_snapshot(path) {
            tracing::warn!(path = %path.display(), "could not remove the loaded snapshot: {e}");
        }
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.describe()).collect();
    tracing::info!(
        listen = %addrs.join(","),
        memory_limit_mb = config.store.memory_limit / (1024 * 1024),
        max_item_size = config.limits.item_size_max,
        conn_limit = config.conn_limit,
        threads = config.threads,
        shards = config.store.shards,
        evictions = config.store.evictions,
        cas = config.store.cas_enabled,
        version = ferrocache::VERSION,
        "ferrocache listening"
    );
    let driver = server::choose_driver(&config)?;
    let pidfile = config.pidfile.clone();
    let unix_path = match &config.listen {
        ferrocache::config::Listen::Unix { path, .. } => Some(path.clone()),
        _ => None,
    };
    let shared = Arc::new(Shared::new(config, store, listeners.len()));
    tokio::spawn(stop_on_signal(shared.clone(), signals));
    // Installed here, before READY=1, so a reload systemd sends at once
    // finds its handler.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hup) => drop(tokio::spawn(reload_on_hangup(hup, shared.clone()))),
        Err(e) => tracing::warn!(error = %e, "could not install the SIGHUP handler"),
    }
    {
        // systemd (Type=notify): ready once the listeners accept; stopping
        // when the drain starts, whatever started it.
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.shutdown.cancelled().await;
            ferrocache::notify::tell("STOPPING=1");
        });
    }
    if let Some(l) = metrics_listener {
        let addr = l.local_addr()?;
        tracing::info!(metrics = %format!("http://{addr}/metrics"), "serving metrics");
        tokio::spawn(ferrocache::metrics::serve(
            l,
            shared.clone(),
            shared.shutdown.clone(),
        ));
    }
    ferrocache::notify::tell("READY=1");
    server::run(listeners, shared.clone(), driver).await?;
    let saved = save_store(shared).await;
    tracing::info!("ferrocache stopped");
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = unix_path {
        let _ = std::fs::remove_file(p);
    }
    saved
}

/// The store, loaded from the `-e` snapshot when there is one that loads
/// (then `true`); one log line says what happened.
fn open_store(config: &Config) -> (Store, bool) {
    let clock = Clock::system();
    let Some(path) = &config.memory_file else {
        return (Store::new(config.store.clone(), clock), false);
    };
    let (store, outcome) = Store::restore(config.store.clone(), clock, path);
    let shown = path.display();
    match outcome {
        Restore::Loaded(w) => {
            tracing::info!(
                path = %shown,
                items = w.items,
                mib = w.bytes / (1024 * 1024),
                seconds = format!("{:.3}", w.duration.as_secs_f64()),
                "warm start: loaded the snapshot"
            );
            return (store, true);
        }
        Restore::Missing => {
            tracing::info!(path = %shown, "no snapshot to load: starting empty");
        }
        Restore::Refused(why) => {
            tracing::warn!(path = %shown, "not loading the snapshot: {why}; starting empty");
        }
    }
    (store, false)
}

/// After the drain: writes the `-e` snapshot, if there is a path.
async fn save_store(shared: Arc<Shared>) -> Result<(), ferrocache::Error> {
    let Some(path) = shared.config.memory_file.clone() else {
        return Ok(());
    };
    tracing::info!(path = %path.display(), "saving the snapshot");
    let to = path.clone();
    let saved = tokio::task::spawn_blocking(move || shared.store.save(&to)).await;
    match saved {
        Ok(Ok(s)) => {
            tracing::info!(
                path = %path.display(),
                items = s.items,
                mib = s.bytes / (1024 * 1024),
                seconds = format!("{:.3}", s.duration.as_secs_f64()),
                "saved the snapshot"
            );
            Ok(())
        }
        Ok(Err(e)) => Err(format!("could not save the snapshot to {}: {e}", path.display()).into()),
        Err(e) => Err(format!("saving the snapshot failed: {e}").into()),
    }
}

/// The signals that stop the server gracefully. SIGUSR1 is memcached's
/// graceful stop (the one that keeps its -e file).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

/// Installs the handlers; from then on such a signal is kept until
/// [`stop_on_signal`] reads it, instead of killing the process.
fn stop_signals() -> Option<StopSignals> {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(term), Ok(int), Ok(usr1)) => Some(StopSignals { term, int, usr1 }),
        _ => {
            tracing::warn!("could not install signal handlers");
            None
        }
    }
}

async fn stop_on_signal(shared: Arc<Shared>, signals: Option<StopSignals>) {
    let Some(StopSignals {
        mut term,
        mut int,
        mut usr1,
    }) = signals
    else {
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = usr1.recv() => "SIGUSR1",
    };
    tracing::info!(
        signal = name,
        "stopping: no new connections, finishing replies in flight"
    );
    shared.shutdown.cancel();
}

/// SIGHUP reads the TLS certificate, key and CA files again (memcached
/// 1.6.40+); a failed reload keeps the old ones and logs why.
async fn reload_on_hangup(mut hup: tokio::signal::unix::Signal, shared: Arc<Shared>) {
    while hup.recv().await.is_some() {
        match &shared.config.tls {
            None => tracing::info!("SIGHUP: TLS is off, nothing to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => tracing::error!("Could not reload TLS certificates on SIGHUP: {e}"),
            },
        }
    }
}

/// The user a root process drops to when no `-u` is given.
const FALLBACK_USER: &str = "nobody";

/// memcached refuses to start as root without `-u`. We drop to `nobody`
/// instead, with a warning: a root shell (a container, a fresh VM) is where
/// newcomers first type `cargo run --release`, and the network-facing
/// process still never runs as root. An explicit `-u` is used as given.
fn choose_user(config: &mut Config) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && config.user.is_none() {
        tracing::warn!(
            user = FALLBACK_USER,
            "started as root without -u: switching to user {FALLBACK_USER} after binding (pass -u USER to choose)"
        );
        config.user = Some(FALLBACK_USER.to_string());
    }
}

/// Makes room for `-c` connections under the descriptor limit, as
/// memcached does at start; Err with memcached's message if it cannot.
fn raise_fd_limit(conns: usize) -> Result<(), String> {
    let raised = server::fd_limit::raise_for(conns)?;
    let want = conns as u64 + server::fd_limit::HEADROOM;
    if raised.to < want {
        tracing::warn!(
            limit = raised.to,
            "the open files limit is below -c + {}: connections near -c may wait to be \
             accepted (raise ulimit -n or LimitNOFILE=)",
            server::fd_limit::HEADROOM
        );
    } else if raised.to > raised.from {
        tracing::debug!(
            from = raised.from,
            to = raised.to,
            "raised the open files limit"
        );
    }
    Ok(())
}

/// Becomes `user` when running as root (after binding, so low ports work).
fn drop_privileges(user: &str) -> Result<(), ferrocache::Error> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other
    // call that could overwrite its static buffer.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(());
        }
        let name = std::ffi::CString::new(user).map_err(|_| "invalid user name")?;
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!("can't find the user {user} to switch to").into());
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if uid == 0 {
            return Ok(());
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(format!(
                "failed to assume the identity of {user}: {}",
                std::io::Error::last_os_error()
            )
            .into());
        }
    }
    Ok(())
}
