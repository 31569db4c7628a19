//! Scenario (f), hit ratio: cache-aside traffic (get; on a miss, set) over
//! a key space holding 4× `-m` (small) of values, against both servers with
//! the same seeds, so both answer the same gets; one row per workload.

use std::time::Duration;

use super::{Ctx, median, push_flags, run_client, thousands};
use crate::RunResult;

/// One workload of the hit-ratio group.
pub struct HitWorkload {
    /// Its name in `--scenarios`.
    pub id: &'static str,
    pub name: &'static str,
    pub zipf: f64,
    pub min: usize,
    pub max: usize,
    /// Mix in one-hit wonders (`--scan-pct` of the gets).
    pub scan: bool,
}

pub const HIT_WORKLOADS: [HitWorkload; 6] = [
    HitWorkload {
        id: "f1",
        name: "Zipf 0.99, 1000 B",
        zipf: 0.99,
        min: 1000,
        max: 1000,
        scan: false,
    },
    HitWorkload {
        id: "f2",
        name: "Zipf 0.99, 100–2000 B mixed",
        zipf: 0.99,
        min: 100,
        max: 2000,
        scan: false,
    },
    HitWorkload {
        id: "f3",
        name: "Zipf 0.8, 1000 B",
        zipf: 0.8,
        min: 1000,
        max: 1000,
        scan: false,
    },
    HitWorkload {
        id: "f4",
        name: "Zipf 0.8, 100–2000 B mixed",
        zipf: 0.8,
        min: 100,
        max: 2000,
        scan: false,
    },
    HitWorkload {
        id: "f5",
        name: "Zipf 0.99, 100 B",
        zipf: 0.99,
        min: 100,
        max: 100,
        scan: false,
    },
    HitWorkload {
        id: "f6",
        name: "Zipf 0.99, 1000 B, with one-hit wonders",
        zipf: 0.99,
        min: 1000,
        max: 1000,
        scan: true,
    },
];

/// Client runs against the same servers (warm-up and measurement, round
/// after round) take their one-hit wonders this far apart, so that none
/// repeats a key an earlier one set.
const SCAN_RUN_STRIDE: u64 = 1 << 40;

/// Requests in flight per connection during warm-up: it only has to fill
/// the cache, and pipelined it does so several times faster.
const WARMUP_DEPTH: usize = 16;

/// The Zipf key space: 4× `mem_mb` of values of mean size `mean`.
pub fn key_space(mem_mb: u64, mean: f64) -> u64 {
    (4.0 * (mem_mb << 20) as f64 / mean).floor() as u64
}

/// Where the one-hit wonders of client run `run` (0, 1, ... against the same
/// servers) start: past the `keys` Zipf keys and past every earlier run's.
pub fn scan_start(keys: u64, run: usize) -> u64 {
    keys + run as u64 * SCAN_RUN_STRIDE
}

/// The seed of a round's warm-up (`measured` false) or measurement: the
/// same for both servers, different for each run.
pub fn seed(round: usize, measured: bool) -> u64 {
    2 * round as u64 + 1 + u64::from(measured)
}

/// The table's column headings; `c` is the candidate, `m` the reference.
pub fn table_head(c: &str, m: &str) -> String {
    format!(
        "| workload | keys | gets measured | hit ratio {m} | hit ratio {c} | difference, points | ops/s {m} | ops/s {c} | sets refused {m} / {c} |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
}

/// What the rounds against one server came to.
#[derive(Clone, Copy, Default)]
struct Outcome {
    hit_ratio: f64,
    ops_per_sec: f64,
    gets: u64,
    refused: u64,
}

impl Outcome {
    fn of(results: &[RunResult]) -> Outcome {
        let med = |f: fn(&RunResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
        Outcome {
            hit_ratio: med(RunResult::hit_ratio),
            ops_per_sec: med(RunResult::ops_per_sec),
            gets: results.iter().map(|r| r.gets).sum(),
            refused: results.iter().map(|r| r.refused).sum(),
        }
    }
}

/// The difference of two hit ratios in percentage points, signed.
pub fn points(candidate: f64, reference: f64) -> String {
    format!("{:+.2}", (candidate - reference) * 100.0)
}

impl Ctx<'_> {
    /// Runs one hit-ratio workload on fresh servers; returns its table row.
    pub fn hit_ratio(&mut self, w: &HitWorkload) -> String {
        let a = self.args;
        let settings = self.small_settings();
        let keys = key_space(a.small_mem, (w.min + w.max) as f64 / 2.0);
        let warmup = (a.hit_warmup * keys as f64).round() as u64;
        eprintln!(
            "== ({}) hit ratio: {} over {keys} keys ({})",
            w.id,
            w.name,
            settings.describe()
        );
        let mut base: Vec<String> = Vec::new();
        push_flags(
            &mut base,
            [
                ("--workload", "cache-aside".to_string()),
                ("--keys", keys.to_string()),
                ("--zipf", w.zipf.to_string()),
                ("--value-size", w.min.to_string()),
                ("--value-max", w.max.to_string()),
                (
                    "--scan-pct",
                    if w.scan { a.scan_pct } else { 0 }.to_string(),
                ),
                ("--conns", a.conns.to_string()),
                ("--warmup-ops", "0".into()),
                ("--warmup", "0".into()),
                ("--duration", "900".into()),
                ("--threads", self.client_threads().to_string()),
            ],
        );
        let outcome = (|| -> Result<[Vec<RunResult>; 2], String> {
            let mut servers = self.start_both(&settings)?;
            let mut results: [Vec<RunResult>; 2] = [Vec::new(), Vec::new()];
            for round in 0..a.hit_rounds {
                // Both servers get the same seeds, and so the same gets:
                // first the warm-up's (pipelined, not counted), then the
                // measured ones, one at a time per connection.
                let run_args = |measured: bool| {
                    let mut args = base.clone();
                    push_flags(
                        &mut args,
                        [
                            ("--seed", seed(round, measured)),
                            (
                                "--scan-start",
                                scan_start(keys, 2 * round + usize::from(measured)),
                            ),
                            ("--ops", if measured { a.hit_ops } else { warmup }),
                            ("--depth", if measured { 1 } else { WARMUP_DEPTH as u64 }),
                        ],
                    );
                    args
                };
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    if warmup > 0 {
                        let w = run_client(
                            &mut servers[i],
                            None,
                            &run_args(false),
                            Duration::from_secs(960),
                        )?;
                        eprintln!(
                            "   round {} {:<16} warm-up: {} gets, hit ratio {:.2}%, {:.1} s",
                            round + 1,
                            servers[i].label,
                            w.gets,
                            w.hit_ratio() * 100.0,
                            w.seconds
                        );
                    }
                    let r = run_client(
                        &mut servers[i],
                        None,
                        &run_args(true),
                        Duration::from_secs(960),
                    )?;
                    eprintln!(
                        "   round {} {:<16} hit ratio {:.2}% of {} gets ({} one-hit wonders)  {} ops/s",
                        round + 1,
                        servers[i].label,
                        r.hit_ratio() * 100.0,
                        r.gets,
                        r.scan_gets,
                        thousands(r.ops_per_sec())
                    );
                    results[i].push(r);
                }
            }
            Ok(results)
        })();
        match outcome {
            Ok([c, m]) => row(w, keys, &Outcome::of(&m), &Outcome::of(&c)),
            Err(e) => {
                self.fail(&format!("{} ({})", w.id, w.name), e);
                failed_row(w)
            }
        }
    }
}

/// A row: the reference `m` and the candidate `c` side by side.
fn row(w: &HitWorkload, keys: u64, m: &Outcome, c: &Outcome) -> String {
    // The same seeds give both the same gets; say so if they did not.
    let gets = if m.gets == c.gets {
        thousands(m.gets as f64)
    } else {
        format!(
            "{} / {}",
            thousands(m.gets as f64),
            thousands(c.gets as f64)
        )
    };
    format!(
        "| ({}) {} | {} | {} | {:.2}% | {:.2}% | **{}** | {} | {} | {} / {} |",
        w.id,
        w.name,
        thousands(keys as f64),
        gets,
        m.hit_ratio * 100.0,
        c.hit_ratio * 100.0,
        points(c.hit_ratio, m.hit_ratio),
        thousands(m.ops_per_sec),
        thousands(c.ops_per_sec),
        thousands(m.refused as f64),
        thousands(c.refused as f64),
    )
}

fn failed_row(w: &HitWorkload) -> String {
    format!(
        "| ({}) {} | | FAILED: wrong replies or a crash, see the log | | | | | | |",
        w.id, w.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spaces_hold_four_times_the_memory() {
        assert_eq!(key_space(64, 100.0), 2_684_354);
        assert_eq!(key_space(64, 1000.0), 268_435);
        // 100..=2000 mixed: mean 1050 bytes.
        let mixed = &HIT_WORKLOADS[1];
        assert_eq!(key_space(64, (mixed.min + mixed.max) as f64 / 2.0), 255_652);
    }

    #[test]
    fn client_runs_never_share_one_hit_wonders_nor_seeds() {
        let keys = key_space(64, 100.0);
        assert_eq!(scan_start(keys, 0), keys);
        // A run issues far fewer than the stride of them (--hit-ops is at
        // most 10^9, warm-up at most 100 × the keys).
        for r in 0..20 {
            assert!(scan_start(keys, r + 1) - scan_start(keys, r) >= 1 << 40);
        }
        let mut seeds: Vec<u64> = (0..10)
            .flat_map(|r| [seed(r, false), seed(r, true)])
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), 20);
    }

    #[test]
    fn points_are_signed_percentage_points() {
        assert_eq!(points(0.8145, 0.8001), "+1.44");
        assert_eq!(points(0.70, 0.7525), "-5.25");
        assert_eq!(points(0.5, 0.5), "+0.00");
    }

    #[test]
    fn a_row_puts_the_servers_side_by_side_under_the_heading() {
        let m = Outcome {
            hit_ratio: 0.8,
            ops_per_sec: 100_000.0,
            gets: 1_000_000,
            refused: 0,
        };
        let c = Outcome {
            hit_ratio: 0.81,
            ops_per_sec: 120_000.0,
            gets: 1_000_000,
            refused: 3,
        };
        let row = row(&HIT_WORKLOADS[0], 268_435, &m, &c);
        assert_eq!(
            row,
            "| (f1) Zipf 0.99, 1000 B | 268,435 | 1,000,000 | 80.00% | 81.00% | **+1.00** | 100,000 | 120,000 | 0 / 3 |"
        );
        let head = table_head("ferrocache", "memcached");
        super::super::assert_columns_agree(&head, &[&row, &failed_row(&HIT_WORKLOADS[5])]);
    }

    #[test]
    fn workload_names_are_distinct_and_scenario_shaped() {
        for (i, w) in HIT_WORKLOADS.iter().enumerate() {
            assert_eq!(w.id, format!("f{}", i + 1));
            assert!(w.min <= w.max && w.min >= crate::proto::MIN_VALUE_SIZE);
        }
        assert_eq!(HIT_WORKLOADS.iter().filter(|w| w.scan).count(), 1);
    }
}
