//! `loadgen bench`: ferrocache against memcached with equal settings, on
//! fresh instances per scenario, measured alternately by the same client
//! (this binary's `run`, in a child process so it can be pinned), with a
//! markdown report on stdout. Progress goes to stderr.
//!
//! The memory (e) and hit-ratio (f) scenarios are groups of workloads, in
//! `memory.rs` and `hit_ratio.rs`; the throughput ones (a-d) are here.

mod hit_ratio;
mod memory;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::RunResult;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// The ferrocache binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/ferrocache")]
    ferrocache: PathBuf,
    /// The memcached binary.
    #[arg(long, default_value = "/usr/bin/memcached")]
    memcached: PathBuf,
    /// Run memcached on both sides (ratio ~1.0: the noise level).
    #[arg(long)]
    both_memcached: bool,
    /// Scenarios to run, comma-separated: a, b, c, d, e (memory: e1 100 B,
    /// e2 1000 B, e3 100-1000 B mixed, e4 900 idle connections), f (hit ratio: f1 Zipf 0.99 1000 B,
    /// f2 Zipf 0.99 100-2000 B, f3 Zipf 0.8 1000 B, f4 Zipf 0.8 100-2000 B,
    /// f5 Zipf 0.99 100 B, f6 as f1 with one-hit wonders). A group's letter
    /// runs all its workloads.
    #[arg(long, default_value = "a,b,c,d,e,f")]
    scenarios: String,
    /// Rounds per server in the throughput scenarios (a-d).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Warm-up seconds before each measured round.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds per round.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Server threads (-t); 0: the number of CPUs. Scenario d uses 1.
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Client threads; 0: the number of CPUs. Scenario d uses 1.
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
    /// Client connections.
    #[arg(long, default_value_t = 50)]
    conns: u64,
    /// Keys in the throughput scenarios (all fit in --mem).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Server memory (-m, MiB) in the throughput scenarios.
    #[arg(long, default_value_t = 1024)]
    mem: u64,
    /// Server connection limit (-c).
    #[arg(long, default_value_t = 1024)]
    conn_limit: u64,
    /// Server memory (-m, MiB) in the memory and hit-ratio scenarios.
    #[arg(long, default_value_t = 64)]
    small_mem: u64,
    /// Memory scenario: bytes of values written, as a multiple of -m.
    #[arg(long, default_value_t = 3.0)]
    fill_factor: f64,
    /// Hit-ratio scenarios: warm-up gets (not measured, 16 in flight per
    /// connection), as a multiple of the workload's key count.
    #[arg(long, default_value_t = 4.0)]
    hit_warmup: f64,
    /// Hit-ratio scenarios: measured gets per workload and round (the sets
    /// after misses come on top).
    #[arg(long, default_value_t = 1_000_000)]
    hit_ops: u64,
    /// Hit-ratio scenarios: rounds per server (the servers are kept, each
    /// round with the next seed; the table shows medians).
    #[arg(long, default_value_t = 1)]
    hit_rounds: usize,
    /// Hit-ratio scenario f6: percentage of gets that are of one-hit
    /// wonders (a key never used before or after: a sure miss, then a set).
    #[arg(long, default_value_t = 20)]
    scan_pct: u32,
    /// Count each server's system calls in the throughput scenarios
    /// (`perf stat -e raw_syscalls:sys_enter`; needs Debian's linux-perf).
    #[arg(long)]
    syscalls: bool,
    /// Extra arguments for ferrocache (e.g. `--io-driver=tokio`), one
    /// flag per use.
    #[arg(long = "ferrocache-arg", allow_hyphen_values = true)]
    ferrocache_args: Vec<String>,
    /// The command line to print in the report.
    #[arg(long)]
    command: Option<String>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    Ferrocache,
    Memcached,
}

#[derive(Clone, Debug)]
struct Side {
    label: String,
    binary: PathBuf,
    flavor: Flavor,
    /// Arguments added to the command line (--ferrocache-arg).
    extra: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    threads: usize,
    mem_mb: u64,
    conn_limit: u64,
    /// CPU list for `taskset -c`.
    pin: Option<&'static str>,
}

impl Settings {
    fn describe(&self) -> String {
        let pin = self
            .pin
            .map(|p| format!(", pinned to CPU {p}"))
            .unwrap_or_default();
        format!(
            "-t {} -m {} -c {}{pin}",
            self.threads, self.mem_mb, self.conn_limit
        )
    }
}

/// A running server; killed when dropped.
struct Server {
    label: String,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

/// Appends each `(flag, value)` as two command-line arguments.
fn push_flags<V: ToString>(
    args: &mut Vec<String>,
    pairs: impl IntoIterator<Item = (&'static str, V)>,
) {
    for (flag, v) in pairs {
        args.push(flag.into());
        args.push(v.to_string());
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Server {
    fn start(side: &Side, s: &Settings, logdir: &Path) -> Result<Server, String> {
        let port = free_port()?;
        let mut args: Vec<String> = Vec::new();
        for a in ["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"] {
            args.push(a.into());
        }
        args.extend([
            "-u".into(),
            if side.flavor == Flavor::Memcached {
                "nobody"
            } else {
                "root"
            }
            .into(),
        ]);
        if side.flavor != Flavor::Memcached {
            // Metrics stay on, as users run it, but on a free port so that
            // another instance on this machine cannot make the start fail.
            args.push("--metrics-listen".into());
            args.push(format!("127.0.0.1:{}", free_port()?));
        }
        push_flags(
            &mut args,
            [
                ("-t", s.threads as u64),
                ("-m", s.mem_mb),
                ("-c", s.conn_limit),
            ],
        );
        args.extend(side.extra.iter().cloned());
        let mut cmd = match s.pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&side.binary);
                c
            }
            None => Command::new(&side.binary),
        };
        let log = logdir.join(format!("{}-{port}.log", side.label.replace(' ', "_")));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("start {}: {e}", side.binary.display()))?;
        let mut server = Server {
            label: side.label.clone(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            server.check_alive()?;
            if server
                .request("version\r\n", "\r\n")
                .is_ok_and(|v| v.starts_with("VERSION "))
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer `version` within 15 s",
                    server.label
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); its log ({}):\n{}",
                self.label,
                self.log.display(),
                tail(&self.log)
            )),
            Err(e) => Err(format!("{}: {e}", self.label)),
        }
    }

    /// Sends `req` on a fresh connection and reads until the reply ends
    /// with `end`.
    fn request(&self, req: &str, end: &str) -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        while !reply.ends_with(end.as_bytes()) {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 || reply.len() > 1 << 20 {
                return Err("short reply".into());
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    fn stats(&self) -> Result<HashMap<String, String>, String> {
        let text = self
            .request("stats\r\n", "END\r\n")
            .map_err(|e| format!("{}: stats: {e}", self.label))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut p = l.trim_end().splitn(3, ' ');
                match (p.next(), p.next(), p.next()) {
                    (Some("STAT"), Some(k), Some(v)) => Some((k.to_string(), v.to_string())),
                    _ => None,
                }
            })
            .collect())
    }

    fn stat(&self, stats: &HashMap<String, String>, name: &str) -> Result<u64, String> {
        stats
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{}: `stats` has no numeric {name}", self.label))
    }

    fn rss_kib(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{path}: no VmRSS"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `loadgen run` against `server` (optionally pinned) and returns its
/// result; any wrong reply is an error.
fn run_client(
    server: &mut Server,
    pin: Option<&str>,
    args: &[String],
    limit: Duration,
) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = match pin {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg("run")
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(args);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the client: {e}"))?;
    // Drain the pipes on threads so a chatty child can't block.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "client against {} ran past {limit:?}; killed",
                    server.label
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    server.check_alive()?;
    let result = RunResult::parse(&stdout);
    match result {
        Some(r) if status.success() && r.errors == 0 => Ok(r),
        _ => Err(format!(
            "WRONG REPLIES from {} ({status}):\n{}{}",
            server.label,
            stderr.trim_end(),
            if stdout.is_empty() {
                String::new()
            } else {
                format!("\n{}", stdout.trim_end())
            }
        )),
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 10_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

/// The throughput scenarios: a mixed workload at some depth and fan-out.
struct Mixed {
    name: &'static str,
    get_pct: u32,
    value_size: usize,
    depth: usize,
    multi: usize,
    single_core: bool,
}

struct Ctx<'a> {
    args: &'a BenchArgs,
    sides: [Side; 2],
    cpus: usize,
    /// `<commit> · <machine>`, for the heading of each table.
    provenance: String,
    logdir: PathBuf,
    failures: Vec<String>,
    report: String,
}

impl Ctx<'_> {
    /// The settings of the memory and hit-ratio groups: `--small-mem`.
    fn small_settings(&self) -> Settings {
        Settings {
            threads: self.server_threads(),
            mem_mb: self.args.small_mem,
            conn_limit: self.args.conn_limit,
            pin: None,
        }
    }

    fn server_threads(&self) -> usize {
        if self.args.server_threads == 0 {
            self.cpus
        } else {
            self.args.server_threads
        }
    }

    fn client_threads(&self) -> usize {
        if self.args.client_threads == 0 {
            self.cpus
        } else {
            self.args.client_threads
        }
    }

    fn start_both(&self, s: &Settings) -> Result<[Server; 2], String> {
        Ok([
            Server::start(&self.sides[0], s, &self.logdir)?,
            Server::start(&self.sides[1], s, &self.logdir)?,
        ])
    }

    /// The line under a group's heading: when, on what commit and
    /// machine, and the load average before and after it ran.
    fn stamp(&self, load_before: &str) -> String {
        let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
        format!(
            "_{date} · {} · load average {load_before} → {}_",
            self.provenance,
            load_average()
        )
    }

    fn fail(&mut self, scenario: &str, e: String) {
        eprintln!("\n!!! scenario {scenario} FAILED: {e}\n");
        self.failures
            .push(format!("{scenario}: {}", e.lines().next().unwrap_or("")));
    }

    fn mixed(&mut self, m: &Mixed) {
        let a = self.args;
        let settings = Settings {
            threads: if m.single_core {
                1
            } else {
                self.server_threads()
            },
            mem_mb: a.mem,
            conn_limit: a.conn_limit,
            pin: if m.single_core { Some("0") } else { None },
        };
        let client_pin = if m.single_core { Some("1") } else { None };
        let client_threads = if m.single_core {
            1
        } else {
            self.client_threads()
        };
        eprintln!("== {} ({})", m.name, settings.describe());
        let mut client_args: Vec<String> =
            vec!["--workload".into(), "mixed".into(), "--all-fit".into()];
        push_flags(
            &mut client_args,
            [
                ("--conns", a.conns.to_string()),
                ("--depth", m.depth.to_string()),
                ("--multi", m.multi.to_string()),
                ("--get-pct", m.get_pct.to_string()),
                ("--keys", a.keys.to_string()),
                ("--value-size", m.value_size.to_string()),
                ("--warmup", a.warmup.to_string()),
                ("--duration", a.duration.to_string()),
                ("--threads", client_threads.to_string()),
            ],
        );
        let limit = Duration::from_secs_f64(a.warmup + a.duration + 180.0);
        let outcome = (|| -> Result<[Vec<RunResult>; 2], String> {
            let mut servers = self.start_both(&settings)?;
            let mut results: [Vec<RunResult>; 2] = [Vec::new(), Vec::new()];
            for round in 0..a.rounds {
                // Alternate who goes first, so drift hits both alike.
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let mut args = client_args.clone();
                    args.extend(["--server-pid".into(), servers[i].pid().to_string()]);
                    if a.syscalls {
                        args.push("--syscalls".into());
                    }
                    let r = run_client(&mut servers[i], client_pin, &args, limit)?;
                    eprintln!(
                        "   round {} {:<16} {:>12} ops/s  p50 {}  p99 {}  p99.9 {}  CPU/req {} (kernel {}, client {})  syscalls/req {}",
                        round + 1,
                        servers[i].label,
                        thousands(r.ops_per_sec()),
                        micros(r.p50_us),
                        micros(r.p99_us),
                        micros(r.p999_us),
                        r.cpu_us_per_request().map_or("n/a".into(), micros),
                        r.sys_us_per_request().map_or("n/a".into(), micros),
                        r.client_us_per_request().map_or("n/a".into(), micros),
                        r.syscalls_per_request()
                            .map_or("n/a".into(), |n| format!("{n:.2}"))
                    );
                    results[i].push(r);
                }
            }
            Ok(results)
        })();
        let results = match outcome {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    self.report,
                    "| {} | | FAILED: wrong replies or a crash, see the log | | | | | | | | | | | |",
                    m.name
                );
                return self.fail(m.name, e);
            }
        };
        let med = |rs: &[RunResult], f: fn(&RunResult) -> f64| {
            median(&mut rs.iter().map(f).collect::<Vec<_>>())
        };
        let summary: Vec<[f64; 10]> = results
            .iter()
            .map(|rs| {
                let ops: Vec<f64> = rs.iter().map(RunResult::ops_per_sec).collect();
                [
                    med(rs, RunResult::ops_per_sec),
                    ops.iter().copied().fold(f64::INFINITY, f64::min),
                    ops.iter().copied().fold(0.0, f64::max),
                    med(rs, |r| r.p50_us),
                    med(rs, |r| r.p99_us),
                    med(rs, |r| r.p999_us),
                    med(rs, |r| r.cpu_us_per_request().unwrap_or(f64::NAN)),
                    med(rs, |r| r.syscalls_per_request().unwrap_or(f64::NAN)),
                    med(rs, |r| r.sys_us_per_request().unwrap_or(f64::NAN)),
                    med(rs, |r| r.client_us_per_request().unwrap_or(f64::NAN)),
                ]
            })
            .collect();
        for i in [1, 0] {
            let s = summary[i];
            let (r_ops, r_p99, r_cpu) = if i == 0 {
                (
                    format!("**{}**", ratio(s[0], summary[1][0])),
                    ratio(s[4], summary[1][4]),
                    format!("**{}**", ratio(s[6], summary[1][6])),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            let us = |v: f64| if v.is_nan() { "n/a".into() } else { micros(v) };
            let calls = if s[7].is_nan() {
                "n/a".into()
            } else {
                format!("{:.2}", s[7])
            };
            let _ = writeln!(
                self.report,
                "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if i == 1 { m.name } else { "" },
                self.sides[i].label,
                thousands(s[0]),
                thousands(s[1]),
                thousands(s[2]),
                micros(s[3]),
                micros(s[4]),
                micros(s[5]),
                us(s[6]),
                us(s[8]),
                us(s[9]),
                calls,
                r_ops,
                r_p99,
                r_cpu
            );
        }
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> String {
    let Ok(f) = std::fs::File::open("/proc/cpuinfo") else {
        return "unknown CPU".into();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn main(args: &BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// A name `--scenarios` accepts: a group's letter or one of its workloads.
fn known_scenario(name: &str) -> bool {
    ["a", "b", "c", "d", "e", "f"].contains(&name)
        || memory::MEMORY_WORKLOADS.iter().any(|w| w.id == name)
        || name == memory::IDLE_ID
        || hit_ratio::HIT_WORKLOADS.iter().any(|w| w.id == name)
}

fn bench(args: &BenchArgs) -> Result<usize, String> {
    let wanted: Vec<String> = args
        .scenarios
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .collect();
    for w in &wanted {
        if !known_scenario(w) {
            return Err(format!(
                "unknown scenario {w:?}: use a, b, c, d, e (or e1-e4), f (or f1-f6)"
            ));
        }
    }
    if !(args.rounds >= 1 && args.rounds <= 50 && args.hit_rounds >= 1 && args.hit_rounds <= 10) {
        return Err("--rounds must be 1..=50 and --hit-rounds 1..=10".into());
    }
    if !(args.fill_factor > 1.0 && args.fill_factor <= 20.0) {
        return Err("--fill-factor must be above 1 (to evict) and at most 20".into());
    }
    if !(0.0..=100.0).contains(&args.hit_warmup)
        || !(1..=1_000_000_000).contains(&args.hit_ops)
        || args.scan_pct > 100
    {
        return Err(
            "--hit-warmup must be 0..=100, --hit-ops 1..=10^9 and --scan-pct 0..=100".into(),
        );
    }
    let want = |s: &str| wanted.iter().any(|w| w == s);
    // A workload of a group runs when named or when its group's letter is.
    let want_in = |id: &str| want(id) || want(&id[..1]);
    let candidate = if args.both_memcached {
        Side {
            label: "memcached (B)".into(),
            binary: args.memcached.clone(),
            flavor: Flavor::Memcached,
            extra: Vec::new(),
        }
    } else {
        Side {
            label: "ferrocache".into(),
            binary: args.ferrocache.clone(),
            flavor: Flavor::Ferrocache,
            extra: args.ferrocache_args.clone(),
        }
    };
    let reference = Side {
        label: if args.both_memcached {
            "memcached (A)"
        } else {
            "memcached"
        }
        .into(),
        binary: args.memcached.clone(),
        flavor: Flavor::Memcached,
        extra: Vec::new(),
    };
    for side in [&candidate, &reference] {
        if !side.binary.is_file() {
            return Err(format!(
                "{} not found at {}",
                side.label,
                side.binary.display()
            ));
        }
    }
    if want("d") && command_output("taskset", &["-V"]).is_none() {
        return Err("scenario d needs taskset (util-linux)".into());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let logdir = std::env::temp_dir().join(format!("ferrocache-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&logdir).map_err(|e| format!("{}: {e}", logdir.display()))?;
    let load_start = load_average();
    if load_start.parse::<f64>().unwrap_or(0.0) > 1.0 {
        eprintln!(
            "warning: load average is {load_start}: something else is running, the numbers will be noisy"
        );
    }
    let started = Instant::now();
    let nproc = command_output("nproc", &[]).unwrap_or_else(|| cpus.to_string());
    let rev = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let mut ctx = Ctx {
        args,
        sides: [candidate, reference],
        cpus,
        provenance: format!(
            "commit {} · {} ({nproc} cores)",
            rev.as_deref().unwrap_or("unknown"),
            cpu_model()
        ),
        logdir,
        failures: Vec::new(),
        report: String::new(),
    };
    let c = ctx.sides[0].label.clone();
    let m = ctx.sides[1].label.clone();

    let mut throughput = Vec::new();
    if want("a") {
        throughput.push(Mixed {
            name: "(a) get:set 90:10, 100 B, 50 conns",
            get_pct: 90,
            value_size: 100,
            depth: 1,
            multi: 1,
            single_core: false,
        });
    }
    if want("b") {
        throughput.push(Mixed {
            name: "(b1) as (a), 16 pipelined per conn",
            get_pct: 90,
            value_size: 100,
            depth: 16,
            multi: 1,
            single_core: false,
        });
        throughput.push(Mixed {
            name: "(b2) as (a), gets are 16-key multi-gets",
            get_pct: 90,
            value_size: 100,
            depth: 1,
            multi: 16,
            single_core: false,
        });
    }
    if want("c") {
        throughput.push(Mixed {
            name: "(c) get:set 10:90, 1 KiB",
            get_pct: 10,
            value_size: 1024,
            depth: 1,
            multi: 1,
            single_core: false,
        });
    }
    if want("d") {
        throughput.push(Mixed {
            name: "(d) as (a), server -t 1 on CPU 0, client on CPU 1",
            get_pct: 90,
            value_size: 100,
            depth: 1,
            multi: 1,
            single_core: true,
        });
    }
    let mut sections = Vec::new();
    if !throughput.is_empty() {
        let load_before = load_average();
        for t in &throughput {
            ctx.mixed(t);
        }
        sections.push(format!(
            "### Throughput and latency\n\n{}\n\n\
             Medians of {} round(s) per server ({} s warm-up + {} s measured each, servers alternating), \
             {} keys (all fit: any miss fails the run), keys uniform, {} connections; \
             ops are keys (a 16-key multi-get is 16), latency is per request. \
             CPU/req: the server's user + system time (/proc/PID/stat, all threads) over the \
             measured window, divided by the requests completed in it; kernel/req: the system part \
             of it (mostly the network stack); client CPU/req: the load generator's own, over the \
             same window (it shares the machine, so it bounds what a cheaper server gains in ops/s); \
             syscalls/req: the server's system calls (`perf stat -e raw_syscalls:sys_enter`, with \
             --syscalls) likewise. Ratio: {c} / {m}.\n\n\
             | scenario | server | ops/s | ops/s range | p50 | p99 | p99.9 | CPU/req | kernel/req | client CPU/req | syscalls/req | ratio ops/s | ratio p99 | ratio CPU/req |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{}",
            ctx.stamp(&load_before),
            args.rounds,
            args.warmup,
            args.duration,
            thousands(args.keys as f64),
            args.conns,
            std::mem::take(&mut ctx.report)
        ));
    }
    let memory: Vec<_> = memory::MEMORY_WORKLOADS
        .iter()
        .filter(|w| want_in(w.id))
        .collect();
    if !memory.is_empty() {
        let load_before = load_average();
        let rows: Vec<String> = memory.iter().map(|w| ctx.memory(w)).collect();
        sections.push(format!(
            "### Memory\n\n{}\n\n\
             `-m {}`, {}× that much value data written once per key (pipelined sets, {} connections \
             × 16 in flight), then `curr_items` and `evictions` from `stats` and VmRSS of the process. \
             Mixed sizes: each key's value has a fixed size spread evenly over the range (a function \
             of the key). \"Refused\": sets answered `SERVER_ERROR out of memory storing object`. \
             \"Recent kept\": share of the last 10% of keys written (at most 20,000) that a get still \
             finds. Ratios: {c} / {m}; RSS / -m: resident memory over the `-m` limit.\n\n{}\n{}\n",
            ctx.stamp(&load_before),
            args.small_mem,
            args.fill_factor,
            args.conns,
            memory::table_head(&c, &m),
            rows.join("\n")
        ));
    }
    if want_in(memory::IDLE_ID) {
        let load_before = load_average();
        let row = ctx.idle_connections();
        sections.push(format!(
            "### Idle connections\n\n{}\n\n\
             `-m {}`, {} connections opened one after another, each sets a 1000-byte value and \
             reads it back, then all stay open: VmRSS of the process before and with them, and \
             what each connection adds.\n\n{}\n{}\n",
            ctx.stamp(&load_before),
            args.small_mem,
            memory::IDLE_CONNS,
            memory::idle_table_head(&c, &m),
            row
        ));
    }
    let hits: Vec<_> = hit_ratio::HIT_WORKLOADS
        .iter()
        .filter(|w| want_in(w.id))
        .collect();
    if !hits.is_empty() {
        let load_before = load_average();
        let rows: Vec<String> = hits.iter().map(|w| ctx.hit_ratio(w)).collect();
        sections.push(format!(
            "### Hit ratio\n\n{}\n\n\
             Cache-aside (get; on a miss, set the key's value), `-m {}`, Zipf keys over a key space \
             holding 4× `-m` of values (keys = 4 × `-m` / mean value size), {} connections, one \
             request in flight each. Mixed sizes: each key's value has a fixed size spread evenly over \
             the range. One-hit wonders (f6): {}% of the gets are of keys from a range above the Zipf \
             keys that no request uses twice (a sure miss, then a set); its hit ratio is of the Zipf \
             gets only. Per workload: fresh servers, {}× the key count of warm-up gets (not counted; \
             16 in flight per connection, to fill the cache sooner), then {} measured gets (one in \
             flight), {} round(s) (medians); both servers get the same seeds and so the \
             same gets. Difference: {c} − {m}, in percentage points.\n\n{}\n{}\n",
            ctx.stamp(&load_before),
            args.small_mem,
            args.conns,
            args.scan_pct,
            args.hit_warmup,
            thousands(args.hit_ops as f64),
            args.hit_rounds,
            hit_ratio::table_head(&c, &m),
            rows.join("\n")
        ));
    }

    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let versions: Vec<String> = ctx
        .sides
        .iter()
        .map(|s| {
            let v = command_output(&s.binary.to_string_lossy(), &["-V"]).unwrap_or_default();
            match (s.flavor, &rev) {
                (Flavor::Ferrocache, Some(r)) => format!("`{v}` (commit {r})"),
                _ => format!("`{v}`"),
            }
        })
        .collect();
    let command = args
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let mut report = String::new();
    let _ = writeln!(report, "## Load benchmark: {c} vs {m}\n");
    let _ = writeln!(report, "- Date: {date}");
    let _ = writeln!(report, "- Machine: {nproc} CPUs (nproc), {}", cpu_model());
    let _ = writeln!(report, "- Command: `{command}`");
    let _ = writeln!(report, "- Servers: {}", versions.join(" vs "));
    let _ = writeln!(
        report,
        "- Both run `-l 127.0.0.1 -U 0 -t {} -c {}` (and `-m` as stated) on free loopback ports, \
         fresh per scenario; the client is `loadgen` ({} threads, {} connections) on the same machine, \
         and checks every reply.",
        ctx.server_threads(),
        args.conn_limit,
        ctx.client_threads(),
        args.conns
    );
    let load_end = load_average();
    let _ = writeln!(
        report,
        "- Load average before / after: {load_start} / {load_end}; total time {:.0} s\n",
        started.elapsed().as_secs_f64()
    );
    let busy = |l: &str| l.parse::<f64>().unwrap_or(0.0) > 1.5;
    if busy(&load_start) || busy(&load_end) {
        let _ = writeln!(
            report,
            "**The machine was busy with other work during this run: the numbers are noisy. \
             Compare with a `--both-memcached` run made under the same conditions.**\n"
        );
    }
    report.push_str(&sections.join("\n"));
    if !ctx.failures.is_empty() {
        let _ = writeln!(
            report,
            "\n**FAILED** (wrong replies or a crash; details on stderr):\n"
        );
        for f in &ctx.failures {
            let _ = writeln!(report, "- {f}");
        }
    }
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    if ctx.failures.is_empty() {
        let _ = std::fs::remove_dir_all(&ctx.logdir);
    } else {
        eprintln!("server logs kept in {}", ctx.logdir.display());
    }
    Ok(ctx.failures.len())
}

/// A markdown table's heading line, its rule and every row have as many
/// columns; for the table writers' tests.
#[cfg(test)]
fn assert_columns_agree(head: &str, rows: &[&str]) {
    let cols = |l: &str| l.matches('|').count();
    let mut lines = head.lines();
    let (names, rule) = (lines.next().unwrap(), lines.next().unwrap());
    assert_eq!(cols(names), cols(rule));
    for row in rows {
        assert_eq!(cols(names), cols(row), "{row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(micros(5.31), "5.3 µs");
        assert_eq!(micros(250.0), "250 µs");
        assert_eq!(micros(12_345.0), "12.3 ms");
        assert_eq!(ratio(3.0, 2.0), "1.50");
    }

    #[test]
    fn scenario_names_are_groups_and_their_workloads() {
        for ok in ["a", "b", "d", "e", "e1", "e3", "e4", "f", "f1", "f6"] {
            assert!(known_scenario(ok), "{ok}");
        }
        for bad in ["", "g", "e0", "e5", "f0", "f7", "ff", "b1"] {
            assert!(!known_scenario(bad), "{bad}");
        }
    }
}
