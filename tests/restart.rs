//! Warm restart (`-e PATH`) across real process restarts over TCP: what a
//! client stored comes back byte for byte, every graceful stop saves, a
//! file that must not load starts the cache empty and says why in one log
//! line, and SIGKILL while saving leaves the previous file or none.
//!
//! Expiry during the downtime needs a clock that moves without waiting:
//! the store's snapshot tests inject one (`src/store/snapshot/tests.rs`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod launch;
use launch::{Launch, Server, ask};

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGUSR1: i32 = 10;
const SIGTERM: i32 = 15;

/// A directory of its own for one test's snapshot, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("ferrocache-restart-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// ferrocache with `-e path` and fixed `-t` (the shard count follows it).
fn start(path: &Path, args: &[&str]) -> Server {
    let mut all = vec!["-t", "2", "-e", path.to_str().unwrap()];
    all.extend_from_slice(args);
    Launch::ferrocache().args(all).start()
}

/// Stops a server with `sig` and waits for it to exit 0; returns its log.
fn stop(mut server: Server, sig: i32) -> String {
    server.signal(sig);
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("exits after saving");
    let log = server.stderr_tail();
    assert!(status.success(), "{status}: {log}");
    log
}

/// The `STAT name value` lines of a stats command as (name, value).
fn stats(server: &Server, cmd: &str) -> Vec<(String, String)> {
    let mut c = server.connect();
    ask(&mut c, &format!("{cmd}\r\n"), "END\r\n")
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stat(server: &Server, cmd: &str, name: &str) -> String {
    stats(server, cmd)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {cmd}"))
        .1
}

/// Sends a batch and reads up to the `mn` that closes it.
fn batch(server: &Server, requests: &[u8]) -> Vec<u8> {
    let mut c = server.connect();
    let mut send = requests.to_vec();
    send.extend_from_slice(b"mn\r\n");
    let writer = {
        let mut w = c.try_clone().unwrap();
        thread::spawn(move || w.write_all(&send).unwrap())
    };
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !got.ends_with(b"MN\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    writer.join().unwrap();
    got.truncate(got.len() - 4);
    got
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| b'a' + ((i * 7 + j) % 26) as u8).collect()
}

/// Items of many sizes, flags and TTLs: the sets, and the keys.
fn items() -> (Vec<u8>, Vec<String>) {
    let sizes = [
        0, 1, 10, 100, 1000, 4000, 4100, 20_000, 70_000, 500_000, 1_000_000,
    ];
    let mut sets = Vec::new();
    let mut keys = Vec::new();
    for i in 0..600 {
        let key = format!("item:{i}");
        let len = sizes[i % sizes.len()];
        let flags = [0u32, 1, 300, 65_535, 0xdead_beef, u32::MAX][i % 6];
        let exptime = [0i64, 3600, 2_000_000][i % 3];
        sets.extend_from_slice(format!("set {key} {flags} {exptime} {len} noreply\r\n").as_bytes());
        sets.extend_from_slice(&value(i, len));
        sets.extend_from_slice(b"\r\n");
        keys.push(key);
    }
    (sets, keys)
}

fn gets(server: &Server, keys: &[String]) -> Vec<u8> {
    let mut req = Vec::new();
    for k in keys {
        req.extend_from_slice(format!("gets {k}\r\n").as_bytes());
    }
    batch(server, &req)
}

/// The remaining TTL of each key, from `mg <key> t`.
fn ttls(server: &Server, keys: &[String]) -> Vec<i64> {
    let mut req = Vec::new();
    for k in keys {
        req.extend_from_slice(format!("mg {k} t\r\n").as_bytes());
    }
    String::from_utf8(batch(server, &req))
        .unwrap()
        .lines()
        .map(|l| {
            let t = l.strip_prefix("HD t").unwrap_or_else(|| panic!("{l}"));
            t.parse().unwrap()
        })
        .collect()
}

#[test]
fn items_of_many_sizes_flags_ttls_and_cas_come_back_after_a_restart() {
    let dir = Dir::new("round-trip");
    let path = dir.file("cache");
    let server = start(&path, &["-m", "128"]);
    assert_eq!(stat(&server, "stats", "warm_start"), "0");
    let (sets, keys) = items();
    assert_eq!(batch(&server, &sets), b"");
    let before = gets(&server, &keys);
    let ttl_before = ttls(&server, &keys);
    assert_eq!(
        stat(&server, "stats settings", "memory_file"),
        path.to_str().unwrap()
    );
    let log = stop(server, SIGTERM);
    assert!(log.contains("saved the snapshot"), "{log}");
    assert!(path.exists());

    let server = start(&path, &["-m", "128"]);
    // Byte for byte: values, flags, CAS values.
    assert_eq!(gets(&server, &keys), before);
    for (after, before) in ttls(&server, &keys).iter().zip(&ttl_before) {
        if *before == -1 {
            assert_eq!(*after, -1);
        } else {
            // The same deadline: less left by the time the restart took.
            assert!(
                *after <= *before && *after >= before - 30,
                "{after} {before}"
            );
        }
    }
    assert_eq!(stat(&server, "stats", "warm_start"), "1");
    assert_eq!(stat(&server, "stats", "warm_start_items"), "600");
    assert_eq!(stat(&server, "stats", "curr_items"), "600");
    assert!(
        stat(&server, "stats", "warm_start_seconds")
            .parse::<f64>()
            .unwrap()
            < 30.0
    );
    // Loaded, the file is gone: a crash now must not bring it back.
    assert!(!path.exists());

    // The CAS values came back with the counters: an old one still
    // matches its item, and new writes never reuse one.
    let text = String::from_utf8(before.clone()).unwrap();
    let first = text.lines().next().unwrap();
    let cas: u64 = first.rsplit(' ').next().unwrap().parse().unwrap();
    let mut c = server.connect();
    assert_eq!(
        ask(&mut c, &format!("cas item:0 0 0 1 {cas}\r\nx\r\n"), "\r\n"),
        "STORED\r\n"
    );
    let old: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("VALUE "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let mut news = Vec::new();
    for i in 0..50 {
        ask(&mut c, &format!("set new:{i} 0 0 1\r\nv\r\n"), "\r\n");
        let reply = ask(&mut c, &format!("gets new:{i}\r\n"), "END\r\n");
        let line = reply.lines().next().unwrap();
        news.push(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap());
    }
    assert!(news.iter().all(|n| !old.contains(n)), "a CAS value reused");
    drop(c);
    stop(server, SIGTERM);
}

#[test]
fn every_graceful_stop_saves() {
    let dir = Dir::new("stops");
    let path = dir.file("cache");
    let stops: [(&str, Option<i32>); 5] = [
        ("SIGTERM", Some(SIGTERM)),
        ("SIGINT", Some(SIGINT)),
        ("SIGUSR1", Some(SIGUSR1)),
        ("shutdown", None),
        ("shutdown graceful", None),
    ];
    for (round, (name, sig)) in stops.iter().enumerate() {
        let server = start(&path, &["-m", "16", "-A"]);
        let mut c = server.connect();
        if round > 0 {
            let prev = format!("VALUE k{} 0 1\r\n{}\r\nEND\r\n", round - 1, round - 1);
            assert_eq!(
                ask(&mut c, &format!("get k{}\r\n", round - 1), "END\r\n"),
                prev,
                "{name}"
            );
        }
        ask(
            &mut c,
            &format!("set k{round} 0 0 1\r\n{round}\r\n"),
            "\r\n",
        );
        let mut server = server;
        match sig {
            Some(sig) => {
                drop(c);
                stop(server, *sig);
            }
            None => {
                c.write_all(format!("{name}\r\n").as_bytes()).unwrap();
                drop(c);
                let status = server.wait_exit(Duration::from_secs(60)).expect("exits");
                assert!(status.success(), "{name}: {}", server.stderr_tail());
                assert!(
                    server.stderr_tail().contains("saved the snapshot"),
                    "{name}"
                );
            }
        }
        assert!(path.exists(), "{name} saved");
    }
}

/// Starts on `file`'s contents with `args`, checks the cache is empty,
/// and returns the one log line about the snapshot.
fn refused_with(dir: &Dir, file: &[u8], args: &[&str]) -> String {
    let path = dir.file("bad");
    fs::write(&path, file).unwrap();
    let server = start(&path, args);
    assert_eq!(stat(&server, "stats", "curr_items"), "0");
    assert_eq!(stat(&server, "stats", "warm_start"), "0");
    let mut c = server.connect();
    assert_eq!(ask(&mut c, "get k0\r\n", "END\r\n"), "END\r\n");
    drop(c);
    let log = stop(server, SIGTERM);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("snapshot to load") || l.contains("not loading the snapshot"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    lines[0].to_string()
}

#[test]
fn a_bad_file_starts_the_cache_empty_and_says_why() {
    let dir = Dir::new("bad");
    // A good snapshot to spoil.
    let path = dir.file("good");
    let server = start(&path, &["-m", "16"]);
    for i in 0..100 {
        let mut c = server.connect();
        ask(
            &mut c,
            &format!("set k{i} 0 0 3000\r\n{}\r\n", "x".repeat(3000)),
            "\r\n",
        );
    }
    stop(server, SIGTERM);
    let good = fs::read(&path).unwrap();

    let missing = dir.file("never-written");
    let server = start(&missing, &["-m", "16"]);
    assert_eq!(stat(&server, "stats", "warm_start"), "0");
    let log = stop(server, SIGTERM);
    assert!(log.contains("no snapshot to load: starting empty"), "{log}");

    let line = refused_with(&dir, b"", &["-m", "16"]);
    assert!(line.contains("the file is empty"), "{line}");
    let line = refused_with(&dir, &good[..good.len() / 2], &["-m", "16"]);
    assert!(line.contains("the file is truncated"), "{line}");
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x10;
    let line = refused_with(&dir, &flipped, &["-m", "16"]);
    assert!(line.contains("checksum mismatch"), "{line}");
    let line = refused_with(&dir, &good, &["-m", "32"]);
    assert!(
        line.contains("saved with -m 16, started with -m 32"),
        "{line}"
    );
    // An older format (version 1: a CAS in every item; 2: a deadline in
    // every record) or a newer one.
    for version in [1u32, 2, 5] {
        let mut other = good.clone();
        other[8..12].copy_from_slice(&version.to_le_bytes());
        let line = refused_with(&dir, &other, &["-m", "16"]);
        assert!(
            line.contains(&format!("format version {version}")),
            "{line}"
        );
    }
    // Still good after all that: it loads.
    fs::write(&path, &good).unwrap();
    let server = start(&path, &["-m", "16"]);
    assert_eq!(stat(&server, "stats", "curr_items"), "100");
    stop(server, SIGTERM);
}

#[test]
fn sigkill_while_saving_leaves_the_previous_file_or_a_whole_new_one() {
    let dir = Dir::new("kill");
    let path = dir.file("cache");
    // The previous file: a snapshot this server will not load (other -m),
    // so it is still there when the server saves over it.
    let server = start(&path, &["-m", "16"]);
    let mut c = server.connect();
    ask(&mut c, "set old 0 0 1\r\no\r\n", "\r\n");
    drop(c);
    stop(server, SIGTERM);
    let previous = fs::read(&path).unwrap();

    let server = start(&path, &["-m", "64"]);
    let mut sets = Vec::new();
    for i in 0..40_000 {
        sets.extend_from_slice(format!("set k{i} 0 0 1000 noreply\r\n").as_bytes());
        sets.extend_from_slice(&value(i, 1000));
        sets.extend_from_slice(b"\r\n");
    }
    assert_eq!(batch(&server, &sets), b"");
    let items: u64 = stat(&server, "stats", "curr_items").parse().unwrap();
    let mut server = server;
    server.signal(SIGTERM);
    let tmp = dir.file("cache.tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tmp.exists() && server.exit_status().is_none() {
        assert!(Instant::now() < deadline, "no save started");
        thread::sleep(Duration::from_micros(200));
    }
    // Not reaped yet, so the pid is still ours even if it has just exited.
    if server.exit_status().is_none() {
        server.signal(SIGKILL);
    }
    server.wait_exit(Duration::from_secs(30)).expect("killed");

    eprintln!("killed mid-save: {}", tmp.exists());
    let now = fs::read(&path).unwrap();
    let server = start(&path, &["-m", "64"]);
    // The next start clears what the killed save left.
    assert!(!tmp.exists());
    if now == previous {
        assert_eq!(stat(&server, "stats", "curr_items"), "0");
        let log = stop(server, SIGTERM);
        assert!(log.contains("saved with -m 16"), "{log}");
    } else {
        // The rename happened: the new file is whole.
        assert_eq!(stat(&server, "stats", "curr_items"), items.to_string());
        stop(server, SIGTERM);
    }
}

/// memcached's t/restart.t, its assertions that do not depend on slab
/// internals or on sleeping through the downtime: values from 2 bytes to
/// 1 MiB under `-I 2m`, 2^17 items stored and deleted again, large items
/// with one deleted, a long TTL kept. (Its check that an empty metadata
/// file stops the start differs on purpose: ferrocache starts empty.)
#[test]
fn memcached_restart_t_without_slab_internals() {
    let dir = Dir::new("restart-t");
    let path = dir.file("mc_restart");
    let args = ["-m", "128", "-I", "2m"];
    let server = start(&path, &args);
    assert_eq!(
        stat(&server, "stats settings", "memory_file"),
        path.to_str().unwrap()
    );
    let mut req = Vec::new();
    let mut size = 2;
    let mut cnt = 0;
    while size <= 1 << 20 {
        req.extend_from_slice(format!("set foo{cnt} 0 0 {size} noreply\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'x', size));
        req.extend_from_slice(b"\r\n");
        size *= 2;
        cnt += 1;
    }
    for i in 0..1 << 17 {
        req.extend_from_slice(format!("set z{i} 0 0 0 noreply\r\n\r\n").as_bytes());
    }
    for i in 0..1 << 17 {
        req.extend_from_slice(format!("delete z{i} noreply\r\n").as_bytes());
    }
    let chunked: Vec<usize> = (768_000..=769_024).step_by(50).collect();
    for (i, len) in chunked.iter().enumerate() {
        req.extend_from_slice(format!("set chunk{i} 0 0 {len} noreply\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'x', *len));
        req.extend_from_slice(b"\r\n");
    }
    let deleted = chunked.len() - 1;
    req.extend_from_slice(format!("delete chunk{deleted} noreply\r\n").as_bytes());
    req.extend_from_slice(b"set low2 0 200 2 noreply\r\nmo\r\n");
    assert_eq!(batch(&server, &req), b"");
    stop(server, SIGUSR1);

    let server = start(&path, &args);
    let mut c = server.connect();
    assert_eq!(
        ask(&mut c, "get low2\r\n", "END\r\n"),
        "VALUE low2 0 2\r\nmo\r\nEND\r\n"
    );
    let mut size = 2;
    let mut cnt = 0;
    while size < 1_000_000 {
        let want = format!("VALUE foo{cnt} 0 {size}\r\n{}\r\nEND\r\n", "x".repeat(size));
        assert_eq!(ask(&mut c, &format!("get foo{cnt}\r\n"), "END\r\n"), want);
        size *= 2;
        cnt += 1;
    }
    for (i, len) in chunked.iter().enumerate() {
        let got = ask(&mut c, &format!("get chunk{i}\r\n"), "END\r\n");
        if i == deleted {
            assert_eq!(got, "END\r\n");
        } else {
            assert_eq!(
                got,
                format!("VALUE chunk{i} 0 {len}\r\n{}\r\nEND\r\n", "x".repeat(*len))
            );
        }
    }
    assert_eq!(ask(&mut c, "get z5\r\n", "END\r\n"), "END\r\n");
    drop(c);
    stop(server, SIGTERM);
}

/// `/metrics` says how the start went, as `stats` does.
#[test]
fn metrics_report_the_warm_start() {
    let dir = Dir::new("metrics");
    let path = dir.file("cache");
    let scrape = |server: &Server| {
        let mut s = std::net::TcpStream::connect(server.metrics_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let value = |name: &str| -> f64 {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {body}"))
        };
        (
            value("ferrocache_warm_start"),
            value("ferrocache_warm_start_items"),
            value("ferrocache_warm_start_duration_seconds"),
        )
    };
    let args = |p: &Path| ["-t", "2", "-e", p.to_str().unwrap()].map(str::to_string);
    let server = Launch::ferrocache().args(args(&path)).metrics().start();
    assert_eq!(scrape(&server), (0.0, 0.0, 0.0));
    let mut c = server.connect();
    for i in 0..7 {
        ask(&mut c, &format!("set k{i} 0 0 1\r\nv\r\n"), "\r\n");
    }
    drop(c);
    stop(server, SIGTERM);
    let server = Launch::ferrocache().args(args(&path)).metrics().start();
    let (warm, items, seconds) = scrape(&server);
    assert_eq!((warm, items), (1.0, 7.0));
    assert!(seconds > 0.0 && seconds < 30.0, "{seconds}");
    stop(server, SIGTERM);
}

/// A path whose directory is missing: the start warns and serves, the stop
/// says the save failed and exits 1.
#[test]
fn an_unwritable_path_is_reported_at_start_and_at_stop() {
    let dir = Dir::new("unwritable");
    let path = dir.file("missing").join("cache");
    let server = start(&path, &["-m", "16"]);
    let mut c = server.connect();
    ask(&mut c, "set k 0 0 1\r\nv\r\n", "STORED\r\n");
    drop(c);
    let mut server = server;
    server.signal(SIGTERM);
    let status = server.wait_exit(Duration::from_secs(60)).expect("exits");
    let log = server.stderr_tail();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("the snapshot cannot be saved there"), "{log}");
    assert!(log.contains("could not save the snapshot to"), "{log}");
}
