//! memcached's slab, LRU and crawler tuning options (`-o name=value`),
//! read as memcached 1.6.45 reads them, with its defaults.
//!
//! ferrocache has no slab classes, no segmented LRU and no crawler thread,
//! so these settings tune nothing here. They are kept because `stats
//! settings` shows them (seeding what the admin commands `slabs automove`,
//! `lru tune`, `lru_crawler sleep`... change at run time): a command line
//! written for memcached then reports what memcached would, and a value
//! memcached refuses stops the start with memcached's message. Knows
//! nothing of the wire or the store.

use crate::protocol::number::{safe_strtol, safe_strtoul};

/// memcached's slab page: chunks are split from 1 MiB pages.
const SLAB_PAGE_SIZE: usize = 1024 * 1024;

/// The settings of memcached's allocator and LRU threads.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub maxconns_fast: bool,
    pub hashpower_init: i32,
    pub slab_reassign: bool,
    pub slab_automove: u8,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
    pub slab_automove_freeratio: f64,
    /// `-o slab_chunk_max` (in bytes), when given.
    pub slab_chunk_max: Option<usize>,
    /// `no_chunked_items` / `no_modern`: chunks as large as a page.
    pub unchunked: bool,
    /// memcached's crawler and LRU maintainer threads (`-o [no_]lru_crawler`,
    /// `-o [no_]lru_maintainer`): `stats` shows their lines only when on.
    pub lru_crawler: bool,
    pub lru_maintainer: bool,
    pub lru_crawler_sleep: u32,
    pub lru_crawler_tocrawl: u32,
    pub tail_repair_time: i32,
    pub lru_segmented: bool,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub temp_lru: bool,
    pub temporary_ttl: i32,
    /// Bytes (the option is in kilobytes).
    pub worker_logbuf_size: u32,
    /// Bytes (the option is in megabytes).
    pub read_buf_mem_limit: u32,
}

impl Default for Tuning {
    /// memcached 1.6.45's defaults, as its `stats settings` shows them.
    fn default() -> Self {
        Tuning {
            maxconns_fast: true,
            hashpower_init: 0,
            slab_reassign: true,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 10,
            slab_automove_freeratio: 0.01,
            slab_chunk_max: None,
            unchunked: false,
            lru_crawler: true,
            lru_maintainer: true,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            tail_repair_time: 0,
            lru_segmented: true,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temp_lru: false,
            temporary_ttl: 61,
            worker_logbuf_size: 64 * 1024,
            read_buf_mem_limit: 0,
        }
    }
}

impl Tuning {
    /// Applies one `-o` option if it is one of these: `Ok(true)`; `Ok(false)`
    /// for any other name. Options apply in order, so a later one wins
    /// (`no_modern,lru_crawler` keeps the crawler).
    ///
    /// # Errors
    /// memcached's message for a value it refuses.
    pub fn apply(&mut self, name: &str, value: Option<&str>) -> Result<bool, String> {
        let need = |what: &str| value.ok_or_else(|| format!("Missing {what}"));
        match name {
            "maxconns_fast" => self.maxconns_fast = true,
            "no_maxconns_fast" => self.maxconns_fast = false,
            "hashpower" => {
                let n = atoi(need("numeric argument for hashpower")?);
                if n < 12 {
                    return Err(format!("Initial hashtable multiplier of {n} is too low"));
                }
                if n > 32 {
                    return Err(format!(
                        "Initial hashtable multiplier of {n} is too high\n\
                         Choose a value based on \"STAT hash_power_level\" from a running instance"
                    ));
                }
                self.hashpower_init = n;
            }
            // memcached's hash table growth thread; nothing shows it.
            "no_hashexpand" => {}
            "slab_reassign" => self.slab_reassign = true,
            "no_slab_reassign" => self.slab_reassign = false,
            "slab_automove" => {
                let n = value.map_or(1, atoi);
                if !(0..=2).contains(&n) {
                    return Err("slab_automove must be between 0 and 2".into());
                }
                self.slab_automove = n as u8;
            }
            "no_slab_automove" => self.slab_automove = 0,
            "slab_automove_ratio" => {
                let r = atof(need("slab_automove_ratio argument")?);
                if r <= 0.0 || r > 1.0 {
                    return Err("slab_automove_ratio must be > 0 and < 1".into());
                }
                self.slab_automove_ratio = r;
            }
            "slab_automove_window" => {
                let n = atoi(need("slab_automove_window argument")?);
                if !(3..=1800).contains(&n) {
                    return Err("slab_automove_window must be > 2 and < 1800".into());
                }
                self.slab_automove_window = n as u32;
            }
            "slab_automove_freeratio" => {
                self.slab_automove_freeratio = need("slab_automove_freeratio argument")?
                    .parse::<f64>()
                    .ok()
                    .filter(|v| !v.is_nan())
                    .ok_or("could not parse argument to slab_automove_freeratio")?;
            }
            "slab_chunk_max" => {
                let kb = safe_strtol(need("slab_chunk_max argument")?.as_bytes())
                    .ok_or("could not parse argument to slab_chunk_max")?;
                if kb <= 0 {
                    return Err("slab_chunk_max must be >= 0".into());
                }
                if kb > 1024 {
                    return Err("slab_chunk_max must be specified in kilobytes.".into());
                }
                self.slab_chunk_max = Some(kb as usize * 1024);
            }
            "no_chunked_items" => self.unchunked = true,
            "lru_crawler" => self.lru_crawler = true,
            "no_lru_crawler" => self.lru_crawler = false,
            "lru_maintainer" => {
                self.lru_maintainer = true;
                self.lru_segmented = true;
            }
            "no_lru_maintainer" => {
                self.lru_maintainer = false;
                self.lru_segmented = false;
            }
            "lru_crawler_sleep" => {
                let n = atoi(need("lru_crawler_sleep value")?);
                if !(0..=1_000_000).contains(&n) {
                    return Err("LRU crawler sleep must be between 0 and 1 second".into());
                }
                self.lru_crawler_sleep = n as u32;
            }
            "lru_crawler_tocrawl" => {
                self.lru_crawler_tocrawl =
                    safe_strtoul(need("lru_crawler_tocrawl value")?.as_bytes())
                        .ok_or("lru_crawler_tocrawl takes a numeric 32bit value")?;
            }
            "tail_repair_time" => {
                let n = atoi(need("numeric argument for tail_repair_time")?);
                if n < 10 {
                    return Err("Cannot set tail_repair_time to less than 10 seconds".into());
                }
                self.tail_repair_time = n;
            }
            "hot_lru_pct" | "warm_lru_pct" => {
                let n = atoi(need(&format!("{name} argument"))?);
                if !(1..80).contains(&n) {
                    return Err(format!("{name} must be > 1 and < 80"));
                }
                if name == "hot_lru_pct" {
                    self.hot_lru_pct = n as u32;
                } else {
                    self.warm_lru_pct = n as u32;
                }
            }
            "hot_max_factor" | "warm_max_factor" => {
                let f = atof(need(&format!("{name} argument"))?);
                if f <= 0.0 {
                    return Err(format!("{name} must be > 0"));
                }
                if name == "hot_max_factor" {
                    self.hot_max_factor = f;
                } else {
                    self.warm_max_factor = f;
                }
            }
            "temporary_ttl" => {
                self.temporary_ttl = atoi(need("temporary_ttl argument")?);
                self.temp_lru = true;
            }
            "worker_logbuf_size" => {
                let kb = safe_strtoul(need("worker_logbuf_size argument")?.as_bytes())
                    .ok_or("could not parse argument to worker_logbuf_size")?;
                self.worker_logbuf_size = kb.wrapping_mul(1024);
            }
            "read_buf_mem_limit" => {
                let mb = safe_strtoul(need("read_buf_mem_limit argument")?.as_bytes())
                    .ok_or("could not parse argument to read_buf_mem_limit")?;
                self.read_buf_mem_limit = mb.wrapping_mul(1024 * 1024);
            }
            // memcached's defaults are already the modern ones.
            "modern" => {}
            "no_modern" => {
                self.unchunked = true;
                self.slab_reassign = false;
                self.slab_automove = 0;
                self.maxconns_fast = false;
                self.lru_segmented = false;
                self.lru_crawler = false;
                self.lru_maintainer = false;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The checks memcached makes once every option is read.
    ///
    /// # Errors
    /// memcached's message.
    pub fn check(&self) -> Result<(), String> {
        if self.hot_lru_pct + self.warm_lru_pct > 80 {
            return Err("hot_lru_pct + warm_lru_pct cannot be more than 80% combined".into());
        }
        if self.temp_lru && !self.lru_maintainer {
            return Err("temporary_ttl requires lru_maintainer to be enabled".into());
        }
        Ok(())
    }

    /// `slab_chunk_max` as memcached derives it for this `-I`. Given
    /// explicitly, it must fit `-I` and a page as memcached requires; the
    /// default follows memcached's (half a page), kept within `-I` where
    /// ferrocache takes an `-I` below it that memcached refuses.
    ///
    /// # Errors
    /// memcached's message when an explicit value does not fit.
    pub fn slab_chunk_max(&self, item_size_max: usize) -> Result<usize, String> {
        let Some(chunk) = self.slab_chunk_max else {
            let chunk = if self.unchunked && item_size_max <= SLAB_PAGE_SIZE {
                SLAB_PAGE_SIZE
            } else {
                SLAB_PAGE_SIZE / 2
            };
            return Ok(chunk.min(item_size_max));
        };
        if chunk > item_size_max {
            return Err(format!(
                "slab_chunk_max (bytes: {chunk}) cannot be larger than -I (item_size_max {item_size_max})"
            ));
        }
        if !item_size_max.is_multiple_of(chunk) {
            return Err(format!(
                "-I (item_size_max: {item_size_max}) must be evenly divisible by slab_chunk_max (bytes: {chunk})"
            ));
        }
        if !SLAB_PAGE_SIZE.is_multiple_of(chunk) {
            return Err(format!(
                "slab_chunk_max (bytes: {chunk}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)"
            ));
        }
        Ok(chunk)
    }
}

/// The number C's `strtod` reads at the start of `s`: white space, a sign,
/// digits with an optional fraction and exponent; junk after it is ignored.
fn leading_number(s: &str, fraction: bool) -> &str {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut end = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    end = digits(end);
    if fraction {
        if b.get(end) == Some(&b'.') {
            end = digits(end + 1);
        }
        if matches!(b.get(end), Some(b'e' | b'E')) {
            let mut e = end + 1;
            if matches!(b.get(e), Some(b'+' | b'-')) {
                e += 1;
            }
            if b.get(e).is_some_and(u8::is_ascii_digit) {
                end = digits(e);
            }
        }
    }
    &s[..end]
}

/// C's `atoi`: the leading integer, 0 for none; out of range saturates as
/// `strtol` does, then keeps the low 32 bits as the `int` conversion does.
fn atoi(s: &str) -> i32 {
    let n = leading_number(s, false);
    match n.parse::<i64>() {
        Ok(v) => v as i32,
        Err(_) if n.starts_with('-') && n.len() > 1 => i64::MIN as i32,
        Err(_) if n.trim_start_matches('+').is_empty() => 0,
        Err(_) => i64::MAX as i32,
    }
}

/// C's `atof`: the leading number, 0 for none.
fn atof(s: &str) -> f64 {
    leading_number(s, true).parse().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o` options as (name, value) pairs.
    type Opts<'a> = &'a [(&'a str, Option<&'a str>)];

    fn tuned(opts: Opts<'_>) -> Result<Tuning, String> {
        let mut t = Tuning::default();
        for (name, value) in opts {
            assert!(t.apply(name, *value)?, "{name} not taken");
        }
        t.check()?;
        Ok(t)
    }

    #[test]
    fn c_number_readers_take_the_leading_number() {
        assert_eq!(atoi("42"), 42);
        assert_eq!(atoi("  -7x"), -7);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("+"), 0);
        assert_eq!(atoi("4294967301"), 5);
        assert_eq!(atof("0.5x"), 0.5);
        assert_eq!(atof("1e1"), 10.0);
        assert_eq!(atof("1e"), 1.0);
        assert_eq!(atof("x"), 0.0);
    }

    #[test]
    fn options_set_what_stats_settings_shows() {
        let t = tuned(&[
            ("slab_automove", Some("2")),
            ("slab_automove_ratio", Some("0.5")),
            ("slab_automove_window", Some("30")),
            ("lru_crawler_sleep", Some("50")),
            ("lru_crawler_tocrawl", Some("7")),
            ("hot_lru_pct", Some("10")),
            ("warm_lru_pct", Some("30")),
            ("hot_max_factor", Some("0.5")),
            ("warm_max_factor", Some("1.5")),
            ("temporary_ttl", Some("30")),
            ("tail_repair_time", Some("10")),
            ("hashpower", Some("20")),
            ("no_slab_reassign", None),
            ("no_maxconns_fast", None),
            ("worker_logbuf_size", Some("32")),
            ("read_buf_mem_limit", Some("2")),
        ])
        .unwrap();
        assert_eq!(t.slab_automove, 2);
        assert_eq!(t.slab_automove_ratio, 0.5);
        assert_eq!(t.slab_automove_window, 30);
        assert_eq!((t.lru_crawler_sleep, t.lru_crawler_tocrawl), (50, 7));
        assert_eq!((t.hot_lru_pct, t.warm_lru_pct), (10, 30));
        assert_eq!((t.hot_max_factor, t.warm_max_factor), (0.5, 1.5));
        assert!(t.temp_lru);
        assert_eq!(t.temporary_ttl, 30);
        assert_eq!((t.tail_repair_time, t.hashpower_init), (10, 20));
        assert!(!t.slab_reassign && !t.maxconns_fast);
        assert_eq!(t.worker_logbuf_size, 32 * 1024);
        assert_eq!(t.read_buf_mem_limit, 2 * 1024 * 1024);
        // A bare slab_automove is 1.
        let t = tuned(&[("no_slab_automove", None), ("slab_automove", None)]).unwrap();
        assert_eq!(t.slab_automove, 1);
    }

    #[test]
    fn later_options_win_and_no_modern_turns_the_modern_ones_off() {
        let t = tuned(&[("no_modern", None), ("lru_crawler", None)]).unwrap();
        assert!(t.lru_crawler && !t.lru_maintainer && !t.lru_segmented);
        assert!(!t.slab_reassign && !t.maxconns_fast);
        assert_eq!(t.slab_automove, 0);
        assert_eq!(t.slab_chunk_max(1024 * 1024), Ok(1024 * 1024));
        // Above a page, memcached goes back to half a page.
        assert_eq!(t.slab_chunk_max(2 * 1024 * 1024), Ok(512 * 1024));
        let t = tuned(&[("no_lru_maintainer", None), ("lru_maintainer", None)]).unwrap();
        assert!(t.lru_maintainer && t.lru_segmented);
    }

    #[test]
    fn values_memcached_refuses_are_refused_with_its_message() {
        let bad: &[(Opts<'_>, &str)] = &[
            (
                &[("slab_automove", Some("3"))],
                "slab_automove must be between 0 and 2",
            ),
            (
                &[("slab_automove_ratio", Some("0"))],
                "slab_automove_ratio must be > 0",
            ),
            (
                &[("slab_automove_window", Some("2"))],
                "slab_automove_window must be",
            ),
            (
                &[("lru_crawler_sleep", Some("1000001"))],
                "LRU crawler sleep",
            ),
            (
                &[("lru_crawler_tocrawl", Some("x"))],
                "lru_crawler_tocrawl takes",
            ),
            (
                &[("lru_crawler_tocrawl", None)],
                "Missing lru_crawler_tocrawl value",
            ),
            (&[("hot_lru_pct", Some("80"))], "hot_lru_pct must be"),
            (&[("warm_lru_pct", Some("abc"))], "warm_lru_pct must be"),
            (
                &[("hot_max_factor", Some("0"))],
                "hot_max_factor must be > 0",
            ),
            (&[("tail_repair_time", Some("9"))], "less than 10 seconds"),
            (&[("hashpower", Some("11"))], "is too low"),
            (&[("hashpower", Some("33"))], "is too high"),
            (
                &[("slab_chunk_max", Some("2048"))],
                "specified in kilobytes",
            ),
            (&[("slab_chunk_max", Some("0"))], "must be >= 0"),
            (
                &[("hot_lru_pct", Some("50")), ("warm_lru_pct", Some("40"))],
                "cannot be more than 80%",
            ),
            (
                &[("no_lru_maintainer", None), ("temporary_ttl", Some("5"))],
                "requires lru_maintainer",
            ),
        ];
        for (opts, want) in bad {
            let got = tuned(opts).unwrap_err();
            assert!(got.contains(want), "{opts:?}: {got}");
        }
        let mut t = Tuning::default();
        assert_eq!(t.apply("hash_algorithm", Some("murmur3")), Ok(false));
    }

    #[test]
    fn explicit_slab_chunk_max_must_fit_item_size_max_and_the_page() {
        let t = tuned(&[("slab_chunk_max", Some("16"))]).unwrap();
        assert_eq!(t.slab_chunk_max(1024 * 1024), Ok(16 * 1024));
        assert!(
            t.slab_chunk_max(8 * 1024)
                .unwrap_err()
                .contains("cannot be larger")
        );
        assert!(
            t.slab_chunk_max(40 * 1024)
                .unwrap_err()
                .contains("evenly divisible")
        );
        let t = tuned(&[("slab_chunk_max", Some("3"))]).unwrap();
        assert!(
            t.slab_chunk_max(3 * 1024)
                .unwrap_err()
                .contains("slab_page_size")
        );
        // The default stays within a small -I, which memcached refuses.
        assert_eq!(Tuning::default().slab_chunk_max(1024), Ok(1024));
    }
}
