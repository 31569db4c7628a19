//! `/metrics` against the built binary: scraped during a small load, its
//! counters must agree with what `stats` reports for the same moment.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(dead_code)]
mod launch;
use launch::{Launch, Server};

/// The daemon with two worker threads, serving `/metrics` too.
fn start() -> Server {
    Launch::ferrocache().args(["-t", "2"]).metrics().start()
}

/// Sends `req` and reads until the reply ends with `end`.
fn exchange(s: &mut TcpStream, req: &[u8], end: &[u8]) -> Vec<u8> {
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !out.ends_with(end) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn stats(addr: SocketAddr) -> HashMap<String, String> {
    let mut s = TcpStream::connect(addr).unwrap();
    let text = String::from_utf8(exchange(&mut s, b"stats\r\n", b"END\r\n")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("STAT ")?.splitn(2, ' ');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"));
    body.to_string()
}

/// The value of one series, e.g. `memcached_commands_total{command="get",status="hit"}`.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
}

fn load(addr: SocketAddr, worker: usize, rounds: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    for i in 0..rounds {
        let key = format!("w{worker}:k{}", i % 50);
        let set = format!("set {key} 0 0 5\r\nhello\r\n");
        assert_eq!(exchange(&mut s, set.as_bytes(), b"\r\n"), b"STORED\r\n");
        let get = format!("get {key} w{worker}:missing\r\n");
        exchange(&mut s, get.as_bytes(), b"END\r\n");
        if i % 10 == 0 {
            let del = format!("delete w{worker}:k{}\r\n", (i + 25) % 50);
            exchange(&mut s, del.as_bytes(), b"\r\n");
        }
    }
}

#[test]
fn scrape_during_load_agrees_with_stats() {
    let d = start();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let addr = d.addr;
            std::thread::spawn(move || load(addr, w, 300))
        })
        .collect();

    // Scrapes while the load runs must succeed and count up.
    let mut last = 0.0;
    for _ in 0..3 {
        let body = scrape(d.metrics_addr());
        assert_eq!(sample(&body, "memcached_up"), 1.0);
        let sets = sample(
            &body,
            r#"memcached_commands_total{command="set",status="hit"}"#,
        );
        assert!(sets >= last);
        last = sets;
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in workers {
        w.join().unwrap();
    }

    let st = stats(d.addr);
    let body = scrape(d.metrics_addr());
    let n = |k: &str| st[k].parse::<f64>().unwrap();
    let pairs = [
        (
            r#"memcached_commands_total{command="get",status="hit"}"#,
            "get_hits",
        ),
        (
            r#"memcached_commands_total{command="get",status="miss"}"#,
            "get_misses",
        ),
        (
            r#"memcached_commands_total{command="set",status="hit"}"#,
            "cmd_set",
        ),
        (
            r#"memcached_commands_total{command="delete",status="hit"}"#,
            "delete_hits",
        ),
        (
            r#"memcached_commands_total{command="delete",status="miss"}"#,
            "delete_misses",
        ),
        ("memcached_current_items", "curr_items"),
        ("memcached_items_total", "total_items"),
        ("memcached_current_bytes", "bytes"),
        ("memcached_limit_bytes", "limit_maxbytes"),
        ("memcached_items_evicted_total", "evictions"),
        ("memcached_connections_total", "total_connections"),
        ("memcached_max_connections", "max_connections"),
    ];
    for (series, stat) in pairs {
        assert_eq!(sample(&body, series), n(stat), "{series} vs stats {stat}");
    }
    assert_eq!(n("cmd_set"), 900.0);
    assert_eq!(n("get_hits") + n("get_misses"), 1800.0);
    assert_eq!(
        sample(
            &body,
            &format!(r#"memcached_version{{version="{}"}}"#, st["version"])
        ),
        1.0
    );

    // Every get request was timed once (a request, not a key).
    let gets = sample(
        &body,
        r#"ferrocache_command_duration_seconds_count{command="get"}"#,
    );
    assert_eq!(gets, 900.0);
    assert_eq!(
        sample(
            &body,
            r#"ferrocache_command_duration_seconds_bucket{command="get",le="+Inf"}"#
        ),
        gets
    );

    // When promtool is installed, the exposition must lint clean.
    if let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn other_paths_are_404_and_help_documents_the_flags() {
    let d = start();
    let mut s = TcpStream::connect(d.metrics_addr()).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--metrics-listen <ADDR>"));
    assert!(help.contains("--no-metrics"));
}

#[test]
fn a_taken_default_metrics_address_does_not_stop_the_start() {
    // Hold the default address, unless something else already does: either
    // way the daemon finds it taken.
    let _held = std::net::TcpListener::bind("127.0.0.1:9150");
    let port = launch::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-u", "root"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        if let Ok(c) = TcpStream::connect(addr) {
            break c;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited instead of serving without metrics"
        );
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(5));
    };
    let reply = exchange(&mut conn, b"version\r\n", b"\r\n");
    assert!(reply.starts_with(b"VERSION "));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serving without metrics"), "{err}");
}

#[test]
fn a_taken_metrics_address_given_explicitly_stops_the_start() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = Launch::ferrocache()
        .args(["--metrics-listen", &addr])
        .run_to_exit();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to listen for metrics"), "{err}");
}

/// Reads from `s` until `n` replies ending in `END` have come.
fn read_ends(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while out.windows(5).filter(|w| w == b"END\r\n").count() < n {
        let got = s.read(&mut buf).unwrap();
        assert!(got > 0, "connection closed early");
        out.extend_from_slice(&buf[..got]);
    }
    out
}

fn stat_of(reply: &[u8], name: &str) -> u64 {
    let text = String::from_utf8_lossy(reply);
    let prefix = format!("STAT {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// One worker serves many connections at once (the io_uring driver gathers
/// their counts per loop turn): every request is counted exactly once, and
/// a `stats` sees everything answered before it and its own connection's
/// earlier requests, and nothing not yet sent.
#[test]
fn requests_of_many_connections_on_one_worker_are_each_counted_once() {
    const CONNS: usize = 8;
    const ROUNDS: usize = 40;
    // Ready once it accepts: a probe request would add to `bytes_read`.
    let (d, first) = Launch::ferrocache()
        .args(["-t", "1"])
        .metrics()
        .ready_on_accept()
        .start_with_conn();
    let mut conns = vec![first];
    conns.extend((1..CONNS).map(|_| d.connect()));
    let set = b"set k 0 0 1\r\nx\r\n";
    assert_eq!(exchange(&mut conns[0], set, b"\r\n"), b"STORED\r\n");
    let mut bytes_sent = set.len() as u64;
    // Keys asked for (`cmd_get`), keys found, and get requests (what the
    // histogram counts).
    let (mut keys, mut hits, mut requests) = (0u64, 0u64, 0u64);
    for round in 0..ROUNDS {
        // Every connection's requests are written before any reply is
        // read, so a turn of the worker finds several of them.
        let asker = (round % 4 == 0).then_some(round % CONNS);
        let keys_answered = keys;
        let mut plan = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            // (request, keys, hits, get requests, replies ending in END)
            let p: (&[u8], u64, u64, u64, usize) = if asker == Some(i) {
                (b"get k\r\nget k\r\nstats\r\n", 2, 2, 2, 3)
            } else if i % 2 == 0 {
                (b"get k\r\n", 1, 1, 1, 1)
            } else {
                (b"get nope k\r\n", 2, 1, 1, 1)
            };
            c.write_all(p.0).unwrap();
            bytes_sent += p.0.len() as u64;
            plan.push(p);
        }
        let keys_sent = keys + plan.iter().map(|p| p.1).sum::<u64>();
        for (i, c) in conns.iter_mut().enumerate() {
            let (_, k, h, r, ends) = plan[i];
            let reply = read_ends(c, ends);
            let value = &b"VALUE k 0 1\r\nx\r\nEND\r\n"[..];
            if asker == Some(i) {
                assert!(reply.starts_with(&[value, value].concat()));
                let seen = stat_of(&reply, "cmd_get");
                assert!(
                    seen >= keys_answered + 2 && seen <= keys_sent,
                    "round {round}: stats saw {seen} gets; {keys_answered} were answered \
                     before, 2 were its own, {keys_sent} were sent"
                );
            } else {
                assert_eq!(reply, value);
            }
            (keys, hits, requests) = (keys + k, hits + h, requests + r);
        }
    }
    // /metrics reads the shared counts as they are, without a `stats`
    // adding in what its worker holds: everything answered is there.
    let body = scrape(d.metrics_addr());
    let series = |s: &str| sample(&body, s) as u64;
    assert_eq!(
        series(r#"memcached_commands_total{command="get",status="hit"}"#),
        hits
    );
    assert_eq!(
        series(r#"memcached_commands_total{command="get",status="miss"}"#),
        keys - hits
    );
    // The histogram counts each get request once.
    assert_eq!(
        series(r#"ferrocache_command_duration_seconds_count{command="get"}"#),
        requests
    );
    let mut fresh = d.connect();
    let reply = exchange(&mut fresh, b"stats\r\n", b"END\r\n");
    bytes_sent += b"stats\r\n".len() as u64;
    assert_eq!(stat_of(&reply, "cmd_get"), keys);
    assert_eq!(stat_of(&reply, "get_hits"), hits);
    assert_eq!(stat_of(&reply, "get_misses"), keys - hits);
    assert_eq!(stat_of(&reply, "cmd_set"), 1);
    assert_eq!(stat_of(&reply, "bytes_read"), bytes_sent);
}
