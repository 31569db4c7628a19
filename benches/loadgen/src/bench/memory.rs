//! Scenario (e), memory: each server at `-m` (small) gets more value data
//! than fits, set once per key, then reports what it holds and its
//! resident memory, the two side by side per value size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Ctx, Server, push_flags, ratio, run_client, thousands};

/// One value-size mix of the memory scenario.
pub struct MemoryWorkload {
    /// Its name in `--scenarios`.
    pub id: &'static str,
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
}

pub const MEMORY_WORKLOADS: [MemoryWorkload; 3] = [
    MemoryWorkload {
        id: "e1",
        name: "100 B",
        min: 100,
        max: 100,
    },
    MemoryWorkload {
        id: "e2",
        name: "1000 B",
        min: 1000,
        max: 1000,
    },
    MemoryWorkload {
        id: "e3",
        name: "100–1000 B mixed",
        min: 100,
        max: 1000,
    },
];

/// The idle-connection workload's name in `--scenarios`: connections that
/// each made one request and then wait, as a web server's pooled ones do.
pub const IDLE_ID: &str = "e4";

/// Connections it opens: under the usual limit of 1024 descriptors a
/// process, with room for the load generator's own.
pub const IDLE_CONNS: usize = 900;

/// What one server held after the fill.
#[derive(Clone, Copy, Default)]
struct Held {
    items: u64,
    evictions: u64,
    rss_kib: u64,
    /// Share of the last keys written that a get still finds.
    recent: f64,
    refused: u64,
}

/// The table's column headings; `c` is the candidate, `m` the reference.
pub fn table_head(c: &str, m: &str) -> String {
    format!(
        "| values | sets | items {m} | items {c} | ratio items | RSS {m} | RSS {c} | ratio RSS | RSS / -m {m} | RSS / -m {c} | evictions {m} / {c} | refused {m} / {c} | recent kept {m} / {c} |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
}

/// Sets needed to write `fill_factor` × `mem_mb` MiB of values whose mean
/// size is `mean`.
pub fn fill_count(fill_factor: f64, mem_mb: u64, mean: f64) -> u64 {
    (fill_factor * (mem_mb << 20) as f64 / mean).ceil() as u64
}

impl Ctx<'_> {
    /// Runs one memory workload on fresh servers; returns its table row.
    pub fn memory(&mut self, w: &MemoryWorkload) -> String {
        let a = self.args;
        let settings = self.small_settings();
        let count = fill_count(a.fill_factor, a.small_mem, (w.min + w.max) as f64 / 2.0);
        eprintln!(
            "== ({}) memory: {count} sets of {} values ({})",
            w.id,
            w.name,
            settings.describe()
        );
        let check = (count / 10).clamp(1, 20_000);
        let mut fill_args: Vec<String> = Vec::new();
        push_flags(
            &mut fill_args,
            [
                ("--workload", "fill".to_string()),
                ("--keys", count.to_string()),
                ("--value-size", w.min.to_string()),
                ("--value-max", w.max.to_string()),
                ("--conns", a.conns.to_string()),
                ("--depth", "16".into()),
                ("--warmup", "0".into()),
                ("--duration", "600".into()),
                ("--threads", self.client_threads().to_string()),
            ],
        );
        let mut scan_args = fill_args.clone();
        scan_args[1] = "scan".into();
        scan_args[3] = check.to_string();
        scan_args.extend(["--start".into(), (count - check).to_string()]);
        let outcome = (|| -> Result<[Held; 2], String> {
            let mut servers = self.start_both(&settings)?;
            let mut held = [Held::default(); 2];
            for i in [1, 0] {
                let fill = run_client(&mut servers[i], None, &fill_args, Duration::from_secs(660))?;
                let scan = run_client(&mut servers[i], None, &scan_args, Duration::from_secs(660))?;
                let stats = servers[i].stats()?;
                held[i] = Held {
                    items: servers[i].stat(&stats, "curr_items")?,
                    evictions: servers[i].stat(&stats, "evictions")?,
                    rss_kib: servers[i].rss_kib()?,
                    recent: scan.hit_ratio(),
                    refused: fill.refused,
                };
                eprintln!(
                    "   {:<16} {} sets in {:.1} s: {} items, {} evictions, RSS {} MiB",
                    servers[i].label,
                    fill.ops,
                    fill.seconds,
                    held[i].items,
                    held[i].evictions,
                    held[i].rss_kib / 1024
                );
            }
            Ok(held)
        })();
        match outcome {
            Ok([c, m]) => row(w, count, a.small_mem, &m, &c),
            Err(e) => {
                self.fail(&format!("{} ({} values)", w.id, w.name), e);
                failed_row(w)
            }
        }
    }
}

/// The idle-connection table's column headings.
pub fn idle_table_head(c: &str, m: &str) -> String {
    format!(
        "| connections | RSS before {m} | RSS with them {m} | per connection {m} | RSS before {c} | RSS with them {c} | per connection {c} | ratio per connection |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|"
    )
}

impl Ctx<'_> {
    /// (e4) Resident memory a connection costs once it has made a request
    /// and waits: each of [`IDLE_CONNS`] connections sets a 1000-byte value
    /// and reads it back, then all stay open while the RSS is read.
    pub fn idle_connections(&mut self) -> String {
        let settings = self.small_settings();
        eprintln!(
            "== ({IDLE_ID}) {IDLE_CONNS} idle connections ({})",
            settings.describe()
        );
        let outcome = (|| -> Result<[(u64, u64); 2], String> {
            let servers = self.start_both(&settings)?;
            let mut rss = [(0, 0); 2];
            for i in [1, 0] {
                let before = servers[i].rss_kib()?;
                let conns = open_idle(&servers[i], IDLE_CONNS)?;
                rss[i] = (before, servers[i].rss_kib()?);
                drop(conns);
                eprintln!(
                    "   {:<16} RSS {} KiB before, {} KiB with {IDLE_CONNS} connections",
                    servers[i].label, rss[i].0, rss[i].1
                );
            }
            Ok(rss)
        })();
        match outcome {
            Ok([c, m]) => idle_row(IDLE_CONNS, m, c),
            Err(e) => {
                self.fail(&format!("{IDLE_ID} (idle connections)"), e);
                format!("| {IDLE_CONNS} | FAILED: see the log | | | | | | |")
            }
        }
    }
}

/// Opens `n` connections to `server`, each having set a 1000-byte value
/// and read it back, the reply checked.
fn open_idle(server: &Server, n: usize) -> Result<Vec<TcpStream>, String> {
    let value = [b'v'; 1000];
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let fail = |e: std::io::Error| format!("{}: idle connection {i}: {e}", server.label);
        let mut s =
            TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).map_err(fail)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(fail)?;
        let mut req = format!("set idle:{i} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(format!("\r\nget idle:{i}\r\n").as_bytes());
        s.write_all(&req).map_err(fail)?;
        let mut want = format!("STORED\r\nVALUE idle:{i} 0 {}\r\n", value.len()).into_bytes();
        want.extend_from_slice(&value);
        want.extend_from_slice(b"\r\nEND\r\n");
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).map_err(fail)?;
        if got != want {
            return Err(format!(
                "{}: idle connection {i}: unexpected reply {:?}",
                server.label,
                String::from_utf8_lossy(&got)
            ));
        }
        conns.push(s);
    }
    Ok(conns)
}

/// A row of the idle-connection table: (before, with) RSS in KiB of the
/// reference `m` and the candidate `c`.
fn idle_row(n: usize, m: (u64, u64), c: (u64, u64)) -> String {
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let per = |(before, with): (u64, u64)| with.saturating_sub(before) as f64 / n as f64;
    format!(
        "| {n} | {} | {} | {:.1} KiB | {} | {} | {:.1} KiB | **{}** |",
        mib(m.0),
        mib(m.1),
        per(m),
        mib(c.0),
        mib(c.1),
        per(c),
        ratio(per(c), per(m)),
    )
}

/// A row: the reference `m` and the candidate `c` side by side.
fn row(w: &MemoryWorkload, count: u64, mem_mb: u64, m: &Held, c: &Held) -> String {
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let of_limit = |kib: u64| format!("{:.2}", kib as f64 / (mem_mb * 1024) as f64);
    format!(
        "| ({}) {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {} | {} / {} | {} / {} | {:.1}% / {:.1}% |",
        w.id,
        w.name,
        thousands(count as f64),
        thousands(m.items as f64),
        thousands(c.items as f64),
        ratio(c.items as f64, m.items as f64),
        mib(m.rss_kib),
        mib(c.rss_kib),
        ratio(c.rss_kib as f64, m.rss_kib as f64),
        of_limit(m.rss_kib),
        of_limit(c.rss_kib),
        thousands(m.evictions as f64),
        thousands(c.evictions as f64),
        thousands(m.refused as f64),
        thousands(c.refused as f64),
        m.recent * 100.0,
        c.recent * 100.0,
    )
}

fn failed_row(w: &MemoryWorkload) -> String {
    format!(
        "| ({}) {} | | FAILED: wrong replies or a crash, see the log | | | | | | | | | | |",
        w.id, w.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_write_the_factor_times_the_limit() {
        // 3 × 64 MiB of 100-byte values.
        assert_eq!(fill_count(3.0, 64, 100.0), 2_013_266);
        // Mixed 100..=1000: mean 550 bytes.
        let mixed = &MEMORY_WORKLOADS[2];
        let n = fill_count(3.0, 64, (mixed.min + mixed.max) as f64 / 2.0);
        assert_eq!(n, (3.0 * 64.0 * 1048576.0 / 550.0_f64).ceil() as u64);
    }

    #[test]
    fn an_idle_row_gives_each_server_its_growth_per_connection() {
        let row = idle_row(1000, (4096, 6096), (6144, 18144));
        assert_eq!(
            row,
            "| 1000 | 4.0 MiB | 6.0 MiB | 2.0 KiB | 6.0 MiB | 17.7 MiB | 12.0 KiB | **6.00** |"
        );
        assert_eq!(
            idle_table_head("c", "m")
                .lines()
                .next()
                .unwrap()
                .matches('|')
                .count(),
            row.matches('|').count()
        );
    }

    #[test]
    fn a_row_puts_the_servers_side_by_side_under_the_heading() {
        let m = Held {
            items: 200,
            evictions: 5,
            rss_kib: 64 * 1024,
            recent: 1.0,
            refused: 0,
        };
        let c = Held {
            items: 300,
            evictions: 7,
            rss_kib: 80 * 1024,
            recent: 0.5,
            refused: 2,
        };
        let row = row(&MEMORY_WORKLOADS[1], 1000, 64, &m, &c);
        assert_eq!(
            row,
            "| (e2) 1000 B | 1,000 | 200 | 300 | **1.50** | 64.0 MiB | 80.0 MiB | 1.25 | 1.00 | 1.25 | 5 / 7 | 0 / 2 | 100.0% / 50.0% |"
        );
        let head = table_head("ferrocache", "memcached");
        super::super::assert_columns_agree(&head, &[&row, &failed_row(&MEMORY_WORKLOADS[0])]);
    }
}
