//! What the server spent during the measured window: CPU time from
//! `/proc/<pid>/stat` (user and system, every thread), and optionally its
//! system calls, counted by `perf stat -e raw_syscalls:sys_enter` (Debian's
//! `linux-perf`; a software event, so it works where hardware counters do
//! not). Both are read for the server process by pid, so the client's own
//! work is never counted.

use std::io::Read;
use std::process::{Child, Command, Stdio};

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf CLK_TCK`;
/// 100 on every Linux architecture we run on).
const CLK_TCK: f64 = 100.0;

/// CPU seconds a process has spent so far, in user space and in the
/// kernel. The kernel's share is mostly the network stack, which a server
/// cannot make cheaper, so the split says how low its total could go.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

impl CpuTime {
    pub fn total_s(self) -> f64 {
        self.user_s + self.system_s
    }

    /// What was spent from `earlier` to `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

/// The CPU time of process `pid` so far, or None if it is gone.
pub fn cpu_time(pid: u32) -> Option<CpuTime> {
    read_cpu_time(&format!("/proc/{pid}/stat"))
}

/// The CPU time of this process (every thread) so far.
pub fn own_cpu_time() -> Option<CpuTime> {
    read_cpu_time("/proc/self/stat")
}

fn read_cpu_time(path: &str) -> Option<CpuTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let (user, system) = parse_cpu_ticks(&text)?;
    Some(CpuTime {
        user_s: user as f64 / CLK_TCK,
        system_s: system as f64 / CLK_TCK,
    })
}

/// utime and stime (fields 14 and 15). The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from its closing `)`.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")" come field 3 (state) onwards: utime is the 12th of those.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// A running `perf stat` counting one process's system calls.
pub struct Syscalls(Child);

impl Syscalls {
    /// Starts counting; None (with a note on stderr) if perf cannot run.
    pub fn start(pid: u32) -> Option<Syscalls> {
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(c) => Some(Syscalls(c)),
            Err(e) => {
                eprintln!("loadgen: perf not started ({e}); no system call counts");
                None
            }
        }
    }

    /// Stops counting (perf prints its totals on SIGINT) and returns the count.
    pub fn stop(mut self) -> Option<u64> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let mut err = String::new();
        self.0.stderr.take()?.read_to_string(&mut err).ok()?;
        let _ = self.0.wait();
        let count = parse_perf_count(&err);
        if count.is_none() {
            eprintln!("loadgen: no count from perf: {}", err.trim());
        }
        count
    }
}

/// The count from `perf stat -x,` output: `<count>,<unit>,<event>,...`.
fn parse_perf_count(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_from_the_last_parenthesis() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some((250, 75)));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn perf_count_is_read_from_its_csv_line() {
        let out = "\n512633,,raw_syscalls:sys_enter,512633,100.00,,\n";
        assert_eq!(parse_perf_count(out), Some(512_633));
        assert_eq!(
            parse_perf_count("<not supported>,,raw_syscalls:sys_enter,0,100.00,,"),
            None
        );
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let by_pid = cpu_time(std::process::id()).expect("this process's stat");
        let own = own_cpu_time().expect("/proc/self/stat");
        assert!(own.user_s >= by_pid.user_s && own.system_s >= by_pid.system_s);
        assert!(cpu_time(u32::MAX).is_none());
    }
}
