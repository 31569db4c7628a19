//! `stats hotkeys` over TCP: the hottest keys of classic and meta requests,
//! binary keys shown escaped, `-o hot_keys=off`, and the report asked for
//! while other connections keep the server busy.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

#[allow(dead_code)]
mod launch;
use launch::{Server, ask};

/// The `STAT` lines of `stats hotkeys`, without the `STAT `.
fn hotkeys(server: &Server) -> Vec<String> {
    let mut conn = server.connect();
    let reply = ask(&mut conn, "stats hotkeys\r\n", "END\r\n");
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(str::to_string)
        .collect()
}

#[test]
fn classic_and_meta_requests_count_toward_the_hottest_key() {
    // Every request sampled, so the counts are exact here.
    let server = Server::start(&["-o", "hot_keys_sample=1,hot_keys_top=3"]);
    let mut c = server.connect();
    ask(&mut c, "set hot 0 0 5\r\nhello\r\n", "\r\n");
    ask(&mut c, "set warm 0 0 2\r\nhi\r\n", "\r\n");
    for _ in 0..10 {
        ask(&mut c, "get hot warm\r\n", "END\r\n");
    }
    for _ in 0..5 {
        ask(&mut c, "mg hot v\r\n", "hello\r\n");
    }
    ask(&mut c, "ma counter N0 J1\r\n", "\r\n");
    let lines = hotkeys(&server);
    // hot: 1 set + 10 gets + 5 mg = 16 requests, 15 hits of 5 bytes.
    assert_eq!(lines[0], "1 hot 16 0 75", "{lines:?}");
    assert_eq!(lines[1], "2 warm 11 0 20", "{lines:?}");
    assert_eq!(lines[2], "3 counter 1 0 0", "{lines:?}");
    assert_eq!(lines.len(), 3);
    let settings = ask(&mut c, "stats settings\r\n", "END\r\n");
    assert!(
        settings.contains(
            "STAT hot_keys on\r\nSTAT hot_keys_top 3\r\nSTAT hot_keys_window 60\r\nSTAT hot_keys_sample 1\r\nEND\r\n"
        ),
        "{settings}"
    );
}

#[test]
fn binary_and_long_keys_are_shown_escaped_on_one_line() {
    let server = Server::start(&["-o", "hot_keys_sample=1"]);
    let mut c = server.connect();
    // base64 of "a b\n\xff": a key only the meta protocol can send.
    for _ in 0..3 {
        ask(&mut c, "ms YSBiCv8= 1 b\r\nx\r\n", "\r\n");
    }
    let long = "k".repeat(250);
    ask(&mut c, &format!("set {long} 0 0 1\r\nx\r\n"), "\r\n");
    let lines = hotkeys(&server);
    assert_eq!(lines[0], "1 a%20b%0A%FF 3 0 0", "{lines:?}");
    assert_eq!(lines[1], format!("2 {long} 1 0 0"));
}

#[test]
fn off_reports_nothing() {
    let server = Server::start(&["-o", "hot_keys=off"]);
    let mut c = server.connect();
    ask(&mut c, "set k 0 0 1\r\nx\r\n", "\r\n");
    ask(&mut c, "get k\r\n", "END\r\n");
    assert!(hotkeys(&server).is_empty());
    let settings = ask(&mut c, "stats settings\r\n", "END\r\n");
    assert!(settings.contains("STAT hot_keys off\r\n"), "{settings}");
}

#[test]
fn the_report_under_load_is_answered_and_the_load_too() {
    let server = Server::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let mut conn = server.connect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut done = 0u64;
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let req = format!("set w{w}:{} 0 0 1\r\nx\r\nget w{w}:0\r\n", done % 100);
                    conn.write_all(req.as_bytes()).unwrap();
                    let mut got = Vec::new();
                    while !got.ends_with(b"END\r\n") {
                        let n = conn.read(&mut buf).unwrap();
                        assert!(n > 0, "closed under load");
                        got.extend_from_slice(&buf[..n]);
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    for _ in 0..50 {
        let lines = hotkeys(&server);
        assert!(lines.len() <= 10);
        for l in &lines {
            assert_eq!(l.split(' ').count(), 5, "{l}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
}
