//! `loadgen`: load for memcached-protocol servers that checks every reply.
//!
//! - `loadgen run`: one load run against one server, printing a `RESULT`
//!   line; exits non-zero if any reply was wrong.
//! - `loadgen bench`: starts ferrocache and memcached with equal settings
//!   and measures them alternately over the benchmark's scenarios, printing
//!   a markdown report. `benches/run-load.sh` builds everything and runs it.

mod bench;
mod client;
mod hist;
mod procstat;
mod proto;
mod sample;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use client::{Conn, Generator, Plan, Stats, Workload};
use proto::Values;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for memcached-protocol servers; checks every reply"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One load run against one server.
    Run(RunArgs),
    /// ferrocache against memcached, side by side, all scenarios.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkloadKind {
    /// Uniform keys, gets and sets mixed (--get-pct), keys preloaded first.
    Mixed,
    /// Set keys --start .. --start+--keys once each.
    Fill,
    /// Get keys --start .. --start+--keys (misses allowed).
    Scan,
    /// Get Zipf(--zipf) keys over --keys; on a miss, set.
    CacheAside,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Server address (loopback).
    #[arg(long, default_value = "127.0.0.1:11211")]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value = "mixed")]
    workload: WorkloadKind,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: u64,
    /// Requests in flight per connection (pipelining).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Keys per get request (multi-get), at most 16.
    #[arg(long, default_value_t = 1)]
    multi: usize,
    /// Percentage of gets in the mixed workload.
    #[arg(long, default_value_t = 90)]
    get_pct: u32,
    /// Number of keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// First key id (fill and scan).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Value size in bytes (with --value-max: the smallest).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Mixed value sizes: each key's value has a fixed size in
    /// --value-size..=--value-max, a function of the key.
    #[arg(long)]
    value_max: Option<usize>,
    /// Zipf exponent (cache-aside).
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// Cache-aside: percentage of requests that get and then set a
    /// one-hit wonder, a key no request uses again, instead of a Zipf key.
    #[arg(long, default_value_t = 0)]
    scan_pct: u32,
    /// Cache-aside: the first one-hit-wonder id (default: --keys, just past
    /// the Zipf keys; must not be below it).
    #[arg(long)]
    scan_start: Option<u64>,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds; for fill, scan and --ops runs, a time limit.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Warm-up requests in total (instead of time); in cache-aside, gets.
    #[arg(long)]
    warmup_ops: Option<u64>,
    /// Measured requests in total (instead of time); in cache-aside, gets
    /// (the sets after misses come on top).
    #[arg(long)]
    ops: Option<u64>,
    /// Client threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the key sequences.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every key fits in memory: a get miss or a set refused for lack of
    /// memory is an error.
    #[arg(long)]
    all_fit: bool,
    /// The server's pid: report its CPU time (user + system, from /proc)
    /// over the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --server-pid, also count its system calls over the measured
    /// window (needs `perf`, from Debian's linux-perf).
    #[arg(long)]
    syscalls: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub ops: u64,
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    /// Gets of one-hit-wonder keys (not in `gets`).
    pub scan_gets: u64,
    pub refused: u64,
    pub errors: u64,
    /// The server's CPU seconds over the measured window (--server-pid).
    pub server_cpu_s: Option<f64>,
    /// The kernel's part of `server_cpu_s`.
    pub server_sys_s: Option<f64>,
    /// This load generator's own CPU seconds over the same window.
    pub client_cpu_s: Option<f64>,
    /// The server's system calls over the measured window (--syscalls).
    pub server_syscalls: Option<u64>,
}

impl RunResult {
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The server's CPU microseconds per request, when measured.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        self.per_request_us(self.server_cpu_s?)
    }

    /// The kernel's part of the server's CPU per request, in microseconds.
    pub fn sys_us_per_request(&self) -> Option<f64> {
        self.per_request_us(self.server_sys_s?)
    }

    /// The load generator's CPU microseconds per request.
    pub fn client_us_per_request(&self) -> Option<f64> {
        self.per_request_us(self.client_cpu_s?)
    }

    fn per_request_us(&self, seconds: f64) -> Option<f64> {
        (self.requests > 0).then(|| seconds * 1e6 / self.requests as f64)
    }

    /// The server's system calls per request, when counted.
    pub fn syscalls_per_request(&self) -> Option<f64> {
        let n = self.server_syscalls?;
        (self.requests > 0).then(|| n as f64 / self.requests as f64)
    }

    pub fn hit_ratio(&self) -> f64 {
        if self.gets > 0 {
            self.hits as f64 / self.gets as f64
        } else {
            0.0
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "RESULT ops={} requests={} seconds={:.6} ops_per_sec={:.1} p50_us={:.1} p99_us={:.1} p999_us={:.1} gets={} hits={} misses={} sets={} scan_gets={} refused={} errors={}",
            self.ops,
            self.requests,
            self.seconds,
            self.ops_per_sec(),
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.gets,
            self.hits,
            self.misses,
            self.sets,
            self.scan_gets,
            self.refused,
            self.errors
        );
        for (name, seconds) in [
            ("server_cpu_s", self.server_cpu_s),
            ("server_sys_s", self.server_sys_s),
            ("client_cpu_s", self.client_cpu_s),
        ] {
            if let Some(s) = seconds {
                line.push_str(&format!(" {name}={s:.3}"));
            }
        }
        if let Some(n) = self.server_syscalls {
            line.push_str(&format!(" server_syscalls={n}"));
        }
        line
    }

    /// Parses the `RESULT` line printed by `loadgen run`.
    pub fn parse(text: &str) -> Option<RunResult> {
        let line = text.lines().find(|l| l.starts_with("RESULT "))?;
        let mut r = RunResult::default();
        for field in line.split_whitespace().skip(1) {
            let (k, v) = field.split_once('=')?;
            let int = || v.parse::<u64>().ok();
            let float = || v.parse::<f64>().ok();
            match k {
                "ops" => r.ops = int()?,
                "requests" => r.requests = int()?,
                "seconds" => r.seconds = float()?,
                "p50_us" => r.p50_us = float()?,
                "p99_us" => r.p99_us = float()?,
                "p999_us" => r.p999_us = float()?,
                "gets" => r.gets = int()?,
                "hits" => r.hits = int()?,
                "misses" => r.misses = int()?,
                "sets" => r.sets = int()?,
                "scan_gets" => r.scan_gets = int()?,
                "refused" => r.refused = int()?,
                "errors" => r.errors = int()?,
                "server_cpu_s" => r.server_cpu_s = Some(float()?),
                "server_sys_s" => r.server_sys_s = Some(float()?),
                "client_cpu_s" => r.client_cpu_s = Some(float()?),
                "server_syscalls" => r.server_syscalls = Some(int()?),
                _ => {}
            }
        }
        Some(r)
    }
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Run(args) => run_command(&args),
        Cmd::Bench(args) => bench::main(&args),
    }
}

fn run_command(args: &RunArgs) -> ExitCode {
    let result = match run(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stats, result) = result;
    println!("{}", result.line());
    if !stats.errors.is_empty() {
        eprintln!("loadgen: {} WRONG OR MISSING REPLIES:", stats.errors.len());
        for e in stats.errors.iter().take(10) {
            eprintln!("  {e}");
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run(args: &RunArgs) -> Result<(Stats, RunResult), String> {
    if !args.addr.ip().is_loopback() {
        return Err(format!(
            "{}: only loopback addresses are load targets",
            args.addr
        ));
    }
    let value_max = args.value_max.unwrap_or(args.value_size);
    if args.value_size < proto::MIN_VALUE_SIZE
        || value_max > 1024 * 1024
        || value_max < args.value_size
    {
        return Err(format!(
            "--value-size must be {}..=1048576, and --value-max at least --value-size and at most 1048576",
            proto::MIN_VALUE_SIZE
        ));
    }
    let scan_start = args.scan_start.unwrap_or(args.keys);
    if args.scan_pct > 100 || (args.scan_pct > 0 && scan_start < args.keys) {
        return Err(
            "--scan-pct must be at most 100, and --scan-start at least --keys (one-hit wonders lie outside the Zipf keys)"
                .into(),
        );
    }
    if args.conns == 0 || args.conns > 10_000 {
        return Err("--conns must be 1..=10000".into());
    }
    if !(args.warmup >= 0.0 && args.duration > 0.0 && args.warmup + args.duration < 3600.0) {
        return Err("--warmup and --duration must be positive and under an hour in total".into());
    }
    let workload = match args.workload {
        WorkloadKind::Mixed => Workload::Mixed {
            keys: args.keys,
            get_pct: args.get_pct.min(100),
            multi: args.multi,
        },
        WorkloadKind::Fill => Workload::Fill {
            start: args.start,
            count: args.keys,
        },
        WorkloadKind::Scan => Workload::Scan {
            start: args.start,
            count: args.keys,
        },
        WorkloadKind::CacheAside => Workload::CacheAside {
            keys: args.keys.max(1),
            s: args.zipf,
            scan_pct: args.scan_pct,
            scan_start: scan_start.max(args.keys.max(1)),
        },
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("runtime: {e}"))?;
    let (stats, server) = runtime.block_on(run_load(args, workload))?;
    let seconds = match (stats.first_send, stats.last_done) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mut errors = stats.errors.len() as u64;
    let mut stats = stats;
    if args.all_fit && stats.all_misses + stats.refused > 0 {
        errors += stats.all_misses + stats.refused;
        stats.errors.push(format!(
            "{} get misses and {} sets refused (out of memory), though every key fits in memory",
            stats.all_misses, stats.refused
        ));
    }
    let us = |q| stats.latency.quantile(q) as f64 / 1000.0;
    let result = RunResult {
        ops: stats.ops,
        requests: stats.requests,
        seconds,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        gets: stats.gets,
        hits: stats.hits,
        misses: stats.misses,
        sets: stats.sets,
        scan_gets: stats.scan_gets,
        refused: stats.refused,
        errors,
        server_cpu_s: server.cpu.map(procstat::CpuTime::total_s),
        server_sys_s: server.cpu.map(|c| c.system_s),
        client_cpu_s: server.client_cpu.map(procstat::CpuTime::total_s),
        server_syscalls: server.syscalls,
    };
    Ok((stats, result))
}

/// What the server spent over the measured window.
#[derive(Default)]
struct ServerCost {
    cpu: Option<procstat::CpuTime>,
    /// What this process spent over the same window: on a shared machine
    /// the client's CPU bounds how much a cheaper server can gain.
    client_cpu: Option<procstat::CpuTime>,
    syscalls: Option<u64>,
}

/// Samples the server's CPU time (and starts counting its system calls)
/// when the measured window opens, and again when it closes.
fn watch_server(
    args: &RunArgs,
    from: Instant,
    until: Instant,
) -> std::thread::JoinHandle<ServerCost> {
    let pid = args.server_pid;
    let syscalls = args.syscalls;
    std::thread::spawn(move || {
        let Some(pid) = pid else {
            return ServerCost::default();
        };
        std::thread::sleep(from.saturating_duration_since(Instant::now()));
        let counter = if syscalls {
            procstat::Syscalls::start(pid)
        } else {
            None
        };
        let before = procstat::cpu_time(pid);
        let client_before = procstat::own_cpu_time();
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        let after = procstat::cpu_time(pid);
        let client_after = procstat::own_cpu_time();
        ServerCost {
            cpu: before.zip(after).map(|(b, a)| a.since(b)),
            client_cpu: client_before.zip(client_after).map(|(b, a)| a.since(b)),
            syscalls: counter.and_then(procstat::Syscalls::stop),
        }
    })
}

async fn run_load(args: &RunArgs, workload: Workload) -> Result<(Stats, ServerCost), String> {
    let values = match args.value_max {
        Some(max) => Values::mixed(args.value_size, max),
        None => Values::new(args.value_size),
    };
    // Connect everyone and preload (mixed workloads) before the clock starts.
    let mut tasks = Vec::new();
    for c in 0..args.conns {
        let generator = Generator::new(&workload, c, args.conns, args.seed, values.clone());
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut stats = Stats::default();
            if let Some(mut preload) = generator.preload() {
                let now = Instant::now();
                let plan = Plan {
                    warmup_ops: u64::MAX,
                    warmup_until: now,
                    max_ops: u64::MAX,
                    until: now + Duration::from_secs(120),
                };
                conn.drive(&mut preload, &plan, 16, &mut stats).await;
                if !preload.is_exhausted() {
                    stats
                        .errors
                        .push(format!("connection {c}: preload did not finish in 120 s"));
                }
            }
            Ok::<_, String>((conn, generator, stats))
        }));
    }
    let mut ready = Vec::new();
    let mut total = Stats::default();
    for t in tasks {
        let (conn, generator, stats) = t.await.map_err(|e| e.to_string())??;
        total.merge(&stats);
        ready.push((conn, generator));
    }
    if !total.errors.is_empty() {
        return Ok((total, ServerCost::default()));
    }
    total.all_misses = 0;
    let start = Instant::now();
    let per_conn = |n: u64| n.div_ceil(args.conns);
    let plan = Plan {
        warmup_ops: args.warmup_ops.map_or(0, per_conn),
        warmup_until: start
            + Duration::from_secs_f64(if args.warmup_ops.is_some() {
                0.0
            } else {
                args.warmup
            }),
        max_ops: match args.ops {
            Some(n) => args.warmup_ops.map_or(0, per_conn) + per_conn(n),
            None => u64::MAX,
        },
        until: start + Duration::from_secs_f64(args.warmup + args.duration),
    };
    let count_based =
        args.ops.is_some() || matches!(workload, Workload::Fill { .. } | Workload::Scan { .. });
    // Time-based runs only: a count-based run's window is not known ahead.
    let watcher = (!count_based && args.warmup_ops.is_none())
        .then(|| watch_server(args, plan.warmup_until, plan.until));
    let mut tasks = Vec::new();
    for (mut conn, mut generator) in ready {
        let depth = args.depth;
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            conn.drive(&mut generator, &plan, depth, &mut stats).await;
            if count_based && stats.errors.is_empty() && Instant::now() >= plan.until {
                stats
                    .errors
                    .push("did not finish its requests within the time limit".into());
            }
            stats
        }));
    }
    for t in tasks {
        total.merge(&t.await.map_err(|e| e.to_string())?);
    }
    let server = match watcher {
        Some(w) => tokio::task::spawn_blocking(move || w.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the server watcher panicked".to_string())?,
        None => ServerCost::default(),
    };
    Ok((total, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trips() {
        let r = RunResult {
            ops: 10,
            requests: 5,
            seconds: 2.0,
            p50_us: 1.5,
            p99_us: 20.0,
            p999_us: 300.0,
            gets: 4,
            hits: 3,
            misses: 1,
            sets: 1,
            scan_gets: 6,
            refused: 2,
            errors: 0,
            server_cpu_s: Some(0.5),
            server_sys_s: Some(0.3),
            client_cpu_s: Some(0.25),
            server_syscalls: Some(10),
        };
        let back = RunResult::parse(&format!("noise\n{}\n", r.line())).unwrap();
        assert_eq!(back.ops, 10);
        assert_eq!(back.ops_per_sec(), 5.0);
        assert_eq!(back.p999_us, 300.0);
        assert_eq!(back.refused, 2);
        assert_eq!(back.scan_gets, 6);
        assert_eq!(back.hit_ratio(), 0.75);
        assert_eq!(back.cpu_us_per_request(), Some(100_000.0));
        assert_eq!(back.sys_us_per_request(), Some(60_000.0));
        assert_eq!(back.client_us_per_request(), Some(50_000.0));
        assert_eq!(back.syscalls_per_request(), Some(2.0));
    }
}
