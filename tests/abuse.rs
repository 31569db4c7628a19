//! Abuse over real TCP: the built binary on a free loopback port, fed
//! input that a well-behaved client never sends, checked from outside
//! (replies, closes, exit status, and resident memory from /proc).
//!
//! Every wait is bounded: readiness is polled, and reads and writes carry
//! timeouts, so a regression fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod launch;
use launch::{IO_TIMEOUT, Server};

impl Server {
    /// A quick request on a fresh connection: the server still serves others.
    fn healthy(&self) {
        let mut c = self.connect();
        let key = format!("health{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        send(
            &mut c,
            format!("set {key} 0 0 2\r\nok\r\nget {key}\r\n").as_bytes(),
        );
        let want = format!("STORED\r\nVALUE {key} 0 2\r\nok\r\nEND\r\n");
        assert_eq!(read_exactly(&mut c, want.len()), want.as_bytes());
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn send(c: &mut TcpStream, bytes: &[u8]) {
    c.write_all(bytes).expect("write");
}

fn read_exactly(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("read {n} bytes: {e}"));
    buf
}

/// Reads until `suffix` ends what was read.
fn read_until(c: &mut TcpStream, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while !out.ends_with(suffix) {
        let n = c.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed early after {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// True once the peer has closed: a read gives end of file or a reset.
/// Whatever arrives before the close is returned.
fn read_to_close(c: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, false);
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

const TOO_MANY: &[u8] = b"ERROR Too many open connections\r\n";

#[test]
fn connections_over_the_limit_are_refused_and_the_rest_unharmed() {
    let srv = Server::start(&["-c", "4"]);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect_served(&srv)).collect();
    for _ in 0..3 {
        let mut extra = srv.connect();
        let (got, closed) = read_to_close(&mut extra);
        assert_eq!(got, TOO_MANY);
        assert!(closed, "the refused connection is closed");
    }
    // Those already in are untouched.
    for (i, c) in held.iter_mut().enumerate() {
        send(
            c,
            format!("set held{i} 0 0 1\r\n{i}\r\nget held{i}\r\n").as_bytes(),
        );
        let want = format!("STORED\r\nVALUE held{i} 0 1\r\n{i}\r\nEND\r\n");
        assert_eq!(read_exactly(c, want.len()), want.as_bytes());
    }
    // A freed place is given to the next client (the server notices the
    // close asynchronously, so poll for it).
    drop(held.pop());
    held.push(connect_served(&srv));
}

/// A connection the server serves. Under a `-c` limit a place freed by a
/// close is given back once the server has seen the close, so retry until then.
fn connect_served(srv: &Server) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = srv.connect();
        send(&mut c, b"version\r\n");
        let mut first = [0u8; 8];
        c.read_exact(&mut first).expect("a reply");
        if &first == b"VERSION " {
            read_until(&mut c, b"\r\n");
            return c;
        }
        assert_eq!(&first, &TOO_MANY[..8]);
        assert!(Instant::now() < deadline, "no place was freed");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_connections_are_closed_but_not_mid_data_block() {
    let srv = Server::start(&["-o", "idle_timeout=1"]);
    let mut idle = srv.connect();
    let mut mid = srv.connect();
    send(&mut mid, b"set slow 0 0 10\r\nabc");
    let start = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let (got, closed) = read_to_close(&mut idle);
    let waited = start.elapsed();
    assert!(
        closed && got.is_empty(),
        "idle kick: {got:?}, closed {closed}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "kicked too early: {waited:?}"
    );
    // The other connection sat in its data block at least as long; it is
    // still open, and its request completes.
    let until = Duration::from_millis(2500).saturating_sub(start.elapsed());
    mid.set_read_timeout(Some(until.max(Duration::from_millis(1))))
        .unwrap();
    let (got, closed) = read_to_close(&mut mid);
    assert!(!closed && got.is_empty(), "mid-block connection was closed");
    mid.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    send(&mut mid, b"defghij\r\nget slow\r\n");
    let want = b"STORED\r\nVALUE slow 0 10\r\nabcdefghij\r\nEND\r\n";
    assert_eq!(read_exactly(&mut mid, want.len()), want);
}

#[test]
fn a_line_that_never_ends_is_cut_off() {
    let srv = Server::start(&[]);
    // An ordinary command line: closed past 2048 bytes.
    let mut c = srv.connect();
    let _ = c.write_all(&[b'x'; 3000]);
    let (got, closed) = read_to_close(&mut c);
    assert!(closed && got.is_empty(), "got {got:?}");
    // A get line may be long, but not without end.
    let mut c = srv.connect();
    let chunk = "k123456789 ".repeat(10_000).into_bytes();
    let mut sent = 0usize;
    let _ = c.write_all(b"get ");
    while sent < 16 << 20 {
        if c.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (_, closed) = read_to_close(&mut c);
    assert!(closed, "a {sent}-byte get line was still open");
    assert!(sent < 16 << 20, "the server took {sent} bytes of one line");
    srv.healthy();
}

#[test]
fn a_huge_declared_length_is_not_allocated() {
    let srv = Server::start(&["-m", "16"]);
    let before = srv.rss_kib();
    let mut c = srv.connect();
    send(&mut c, b"set huge 0 0 2000000000\r\n");
    // Feed 64 MiB of it: swallowed as it arrives, never held.
    let block = vec![b'z'; 1 << 20];
    let mut peak = 0;
    for i in 0..64 {
        send(&mut c, &block);
        if i % 8 == 0 {
            peak = peak.max(srv.rss_kib());
            srv.healthy();
        }
    }
    peak = peak.max(srv.rss_kib());
    assert!(
        peak < before + 24 * 1024,
        "RSS went from {before} KiB to {peak} KiB"
    );
    // Blocks near the item limit, declared on many connections and never
    // sent, do not add up either.
    let mut waiting = Vec::new();
    for i in 0..200 {
        let mut w = srv.connect();
        send(&mut w, format!("set wait{i} 0 0 1048000\r\nabc").as_bytes());
        waiting.push(w);
    }
    srv.healthy();
    let after = srv.rss_kib();
    eprintln!(
        "huge declared length: RSS {before} KiB before, {peak} KiB peak while 64 MiB was swallowed, {after} KiB with 200 pending blocks"
    );
    assert!(
        after < before + 48 * 1024,
        "RSS went from {before} KiB to {after} KiB with 200 pending blocks"
    );
}

/// A binary request header.
fn binary_header(opcode: u8, keylen: u16, extlen: u8, bodylen: u32) -> Vec<u8> {
    let mut h = vec![0x80, opcode];
    h.extend_from_slice(&keylen.to_be_bytes());
    h.extend_from_slice(&[extlen, 0, 0, 0]);
    h.extend_from_slice(&bodylen.to_be_bytes());
    h.extend_from_slice(&[0; 12]);
    h
}

#[test]
fn a_huge_declared_binary_body_is_not_allocated() {
    let srv = Server::start(&["-m", "16"]);
    let before = srv.rss_kib();
    let mut c = srv.connect();
    // A Set of key "k" declaring a 1 GB value: over -I, so memcached
    // answers "too large" once the body has been swallowed (over 1 GiB it
    // would refuse it at once and close).
    let body = 1_000_000_000u32;
    let mut set = binary_header(0x01, 1, 8, body);
    set.extend_from_slice(&[0; 8]);
    set.push(b'k');
    send(&mut c, &set);
    let block = vec![b'z'; 1 << 20];
    let mut peak = 0;
    for i in 0..64 {
        send(&mut c, &block);
        if i % 8 == 0 {
            peak = peak.max(srv.rss_kib());
            srv.healthy();
        }
    }
    peak = peak.max(srv.rss_kib());
    assert!(
        peak < before + 24 * 1024,
        "RSS went from {before} KiB to {peak} KiB"
    );
    // Many connections each sending half a header, or a header declaring a
    // value near the limit, then stalling: each costs its read buffer.
    let mut waiting = Vec::new();
    for i in 0..200 {
        let mut w = srv.connect();
        if i % 2 == 0 {
            send(&mut w, &binary_header(0x00, 1, 0, 1)[..12]);
        } else {
            let mut near = binary_header(0x01, 1, 8, 9 + 1_048_000);
            near.extend_from_slice(&[0; 8]);
            near.extend_from_slice(b"kabc");
            send(&mut w, &near);
        }
        waiting.push(w);
    }
    srv.healthy();
    let after = srv.rss_kib();
    eprintln!(
        "huge declared binary body: RSS {before} KiB before, {peak} KiB peak while 64 MiB was swallowed, {after} KiB with 200 stalled binary connections"
    );
    assert!(
        after < before + 48 * 1024,
        "RSS went from {before} KiB to {after} KiB with 200 stalled binary connections"
    );
    // A fresh binary connection is still answered.
    let mut fresh = srv.connect();
    send(&mut fresh, &binary_header(0x0a, 0, 0, 0));
    let reply = read_exactly(&mut fresh, 24);
    assert_eq!(&reply[..2], b"\x81\x0a");
}

#[test]
fn a_client_that_never_reads_does_not_grow_the_server() {
    let srv = Server::start(&["-m", "64"]);
    let mut c = srv.connect();
    let value = vec![b'v'; 500_000];
    send(&mut c, b"set big 0 0 500000\r\n");
    send(&mut c, &value);
    send(&mut c, b"\r\n");
    assert_eq!(read_exactly(&mut c, 8), b"STORED\r\n");
    let before = srv.rss_kib();
    // Thousands of gets, each answered by half a megabyte, never read: the
    // server must stop reading this client once its replies back up.
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let batch = "get big\r\n".repeat(1000).into_bytes();
    let mut sent = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        match c.write(&batch) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let gets = sent / 9;
    let rss = srv.rss_kib();
    srv.healthy();
    eprintln!(
        "unread gets: {gets} gets sent and blocked, RSS {before} KiB before, {rss} KiB after"
    );
    assert!(
        rss < before + 32 * 1024,
        "{gets} unread gets took RSS from {before} KiB to {rss} KiB"
    );
    // Had it answered them all into memory, that would be gets * 500 KB.
    assert!(
        gets > 1000,
        "only {gets} gets were accepted before blocking"
    );
}

#[test]
fn an_adversarial_mix_stays_within_the_memory_limit() {
    const LIMIT_MIB: u64 = 16;
    let srv = Arc::new(Server::start(&["-m", "16", "-c", "2048"]));
    let base = srv.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    // Values just under the item limit, all new keys.
    for w in 0..3 {
        let (srv, stop) = (srv.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut c = srv.connect();
            let value = vec![b'h'; 1_000_000];
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                send(
                    &mut c,
                    format!("set huge{w}:{i} 0 0 {}\r\n", value.len()).as_bytes(),
                );
                send(&mut c, &value);
                send(&mut c, b"\r\n");
                assert_eq!(read_exactly(&mut c, 8), b"STORED\r\n");
                i += 1;
            }
        }));
    }
    // Floods of tiny keys, pipelined with noreply.
    for w in 0..3 {
        let (srv, stop) = (srv.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut c = srv.connect();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                for _ in 0..500 {
                    batch.extend_from_slice(
                        format!("set t{w}:{i} 0 0 1 noreply\r\nx\r\n").as_bytes(),
                    );
                    i += 1;
                }
                batch.extend_from_slice(b"mn\r\n");
                send(&mut c, &batch);
                assert_eq!(read_exactly(&mut c, 4), b"MN\r\n");
            }
        }));
    }
    // Many connections, each with a large block declared and never sent.
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut c = srv.connect();
        send(&mut c, format!("set pending{i} 0 0 1000000\r\n").as_bytes());
        idle.push(c);
    }
    // A client pipelining gets of a large value and never reading.
    let mut greedy = srv.connect();
    send(&mut greedy, b"set g 0 0 200000\r\n");
    send(&mut greedy, &vec![b'g'; 200_000]);
    send(&mut greedy, b"\r\n");
    assert_eq!(read_exactly(&mut greedy, 8), b"STORED\r\n");
    greedy
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = greedy.write_all(&"get g\r\n".repeat(20_000).into_bytes());

    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        peak = peak.max(srv.rss_kib());
        thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a load worker failed");
    }
    peak = peak.max(srv.rss_kib());
    srv.healthy();
    let mut c = srv.connect();
    send(&mut c, b"stats\r\n");
    let stats = String::from_utf8(read_until(&mut c, b"END\r\n")).unwrap();
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("stat {name}"))
    };
    assert!(stat("bytes") <= LIMIT_MIB << 20);
    assert!(stat("evictions") > 0, "the mix did not fill the cache");
    eprintln!(
        "adversarial mix: RSS {base} KiB at start, peak {peak} KiB, -m {LIMIT_MIB} MiB, {} evictions",
        stat("evictions")
    );
    // The items may take all of -m; the rest is the runtime, 300 connection
    // buffers and allocator slack.
    let bound = base + (LIMIT_MIB << 10) + 40 * 1024;
    assert!(peak < bound, "peak RSS {peak} KiB over {bound} KiB");
}

#[test]
fn sigterm_finishes_replies_in_flight_then_exits_cleanly() {
    let mut srv = Server::start(&[]);
    let mut c = srv.connect();
    let value = vec![b'q'; 400_000];
    send(&mut c, b"set q 0 0 400000\r\n");
    send(&mut c, &value);
    send(&mut c, b"\r\n");
    assert_eq!(read_exactly(&mut c, 8), b"STORED\r\n");
    // 8 MB of replies owed, not yet read: the server is mid-write.
    send(&mut c, &"get q\r\n".repeat(20).into_bytes());
    let mut first = [0u8; 1];
    c.read_exact(&mut first).expect("replies started");
    srv.signal(15);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the owed replies, then a close");
    let mut got = first.to_vec();
    got.extend_from_slice(&rest);
    let one = [&b"VALUE q 0 400000\r\n"[..], &value, b"\r\nEND\r\n"].concat();
    assert_eq!(got.len(), one.len() * 20, "replies cut short");
    assert!(got.chunks(one.len()).all(|r| r == one.as_slice()));
    let st = srv
        .wait_exit(Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn sigterm_stops_accepting() {
    let mut srv = Server::start(&[]);
    let mut held = srv.connect();
    send(&mut held, b"version\r\n");
    read_until(&mut held, b"\r\n");
    srv.signal(15);
    // The held connection is closed by the drain; new ones are not served.
    let (_, closed) = read_to_close(&mut held);
    assert!(closed);
    if let Ok(mut c) = TcpStream::connect(srv.addr) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(b"version\r\n");
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "served after SIGTERM: {:?}", &buf[..n]);
    }
    let st = srv.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn shutdown_command_needs_dash_a_and_then_exits() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    send(&mut c, b"shutdown\r\n");
    assert_eq!(
        read_until(&mut c, b"\r\n"),
        b"SERVER_ERROR: shutdown not enabled\r\n"
    );
    drop(srv);

    let mut srv = Server::start(&["-A"]);
    let mut c = srv.connect();
    send(&mut c, b"shutdown\r\n");
    let (got, closed) = read_to_close(&mut c);
    assert!(closed && got.is_empty(), "got {got:?}");
    let st = srv
        .wait_exit(Duration::from_secs(10))
        .expect("exited on shutdown");
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn a_disconnect_mid_request_stores_nothing() {
    let srv = Server::start(&[]);
    for partial in [
        &b"set cut 0 0 10\r\nabc"[..],
        b"set cut 0 0 3\r\nabc",
        b"set cut 0 0 3\r\nabc\r",
        b"set cut 0 0",
    ] {
        let mut c = srv.connect();
        send(&mut c, partial);
        c.shutdown(Shutdown::Both).unwrap();
        drop(c);
    }
    // A complete request followed by an immediate close is run.
    let mut c = srv.connect();
    send(&mut c, b"set whole 0 0 1 noreply\r\n1\r\n");
    drop(c);
    let mut c = srv.connect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        send(&mut c, b"get cut whole\r\n");
        let got = read_until(&mut c, b"END\r\n");
        assert!(!got.starts_with(b"VALUE cut"), "a partial block was stored");
        if got == b"VALUE whole 0 1\r\n1\r\nEND\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the complete request was not run"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_does_not_wait_forever_for_a_client_that_never_reads() {
    let mut srv = Server::start(&[]);
    let mut c = srv.connect();
    send(&mut c, b"set w 0 0 500000\r\n");
    send(&mut c, &vec![b'w'; 500_000]);
    send(&mut c, b"\r\n");
    assert_eq!(read_exactly(&mut c, 8), b"STORED\r\n");
    // Far more replies than the socket buffers hold, never read: the
    // server is stuck writing to this client.
    c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = c.write_all(&"get w\r\n".repeat(5000).into_bytes());
    let start = Instant::now();
    srv.signal(15);
    let st = srv
        .wait_exit(Duration::from_secs(20))
        .expect("exited despite a client that never reads");
    assert!(st.success(), "exit status {st:?}");
    eprintln!("stuck client: exited {:?} after SIGTERM", start.elapsed());
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_after_the_idle_timeout() {
    let srv = Server::start(&["-o", "idle_timeout=1", "-I", "2m", "-m", "64"]);
    let mut c = srv.connect();
    let value = "v".repeat(1024 * 1024);
    let set = format!("set big 0 0 {}\r\n{value}\r\n", value.len());
    c.write_all(set.as_bytes()).unwrap();
    let mut stored = [0u8; 8];
    std::io::Read::read_exact(&mut c, &mut stored).unwrap();
    assert_eq!(&stored, b"STORED\r\n");
    // Pipeline gets of the 1 MiB value and never read: the server's writes
    // stop making progress once the socket buffers are full.
    let start = Instant::now();
    let gets = "get big\r\n".repeat(100);
    let failed = loop {
        if let Err(e) = c.write_all(gets.as_bytes()) {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "still accepting requests from a client that reads nothing"
        );
    };
    assert!(
        matches!(
            failed.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "the server should have closed: {failed}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "kicked too early: {waited:?}"
    );
    let mut other = srv.connect();
    let stats = launch::ask(&mut other, "stats\r\n", "END\r\n");
    assert!(stats.contains("STAT idle_kicks 1\r\n"), "{stats}");
}

#[test]
fn requests_left_by_the_r_budget_still_run_when_the_client_has_closed() {
    // A client pipelines more than -R requests and closes at once: the
    // server yields after -R of them, sees the end of input, and must still
    // run the rest before it closes.
    let srv = Server::start(&["-R", "2"]);
    for round in 0..20 {
        let mut c = srv.connect();
        let mut batch = Vec::new();
        for i in 0..50 {
            batch.extend_from_slice(format!("set r{round}k{i} 0 0 1 noreply\r\nx\r\n").as_bytes());
        }
        batch.extend_from_slice(format!("delete r{round}k0 noreply\r\n").as_bytes());
        send(&mut c, &batch);
        c.shutdown(Shutdown::Write).unwrap();
        let (_, closed) = read_to_close(&mut c);
        assert!(closed);
        let mut check = srv.connect();
        send(
            &mut check,
            format!("get r{round}k0 r{round}k49\r\n").as_bytes(),
        );
        assert_eq!(
            read_until(&mut check, b"END\r\n"),
            format!("VALUE r{round}k49 0 1\r\nx\r\nEND\r\n").as_bytes(),
            "round {round}: the requests after the -R budget were dropped"
        );
    }
}

/// A `stats` line's number.
fn stat_of(srv: &Server, c: &mut TcpStream, name: &str) -> u64 {
    send(c, b"stats\r\n");
    let mut stats = Vec::new();
    let mut buf = [0u8; 4096];
    while !stats.ends_with(b"END\r\n") {
        match c.read(&mut buf) {
            Ok(n) if n > 0 => stats.extend_from_slice(&buf[..n]),
            r => panic!(
                "stats: {r:?} after {} bytes\n{}",
                stats.len(),
                srv.stderr_tail()
            ),
        }
    }
    let stats = String::from_utf8(stats).unwrap();
    let prefix = format!("STAT {name} ");
    let line = stats.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {name} in {stats}"))[prefix.len()..]
        .parse()
        .unwrap()
}

/// The server's user + system CPU seconds so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let mut fields = rest.split_whitespace();
    let user: u64 = fields.nth(11).unwrap().parse().unwrap();
    let system: u64 = fields.next().unwrap().parse().unwrap();
    (user + system) as f64 / 100.0
}

#[test]
fn out_of_file_descriptors_it_waits_and_serves_on() {
    // 64 open files, which the server cannot raise: enough for -c 64 (a
    // lower limit stops the start, as memcached's does), but after its own
    // (listener, stdio, rings or epoll, wake-ups) about 55 connections fit,
    // so accepting runs out of descriptors before -c refuses anyone.
    let (mut srv, mut first) = launch::Launch::ferrocache()
        .fd_limit(64)
        .args(["-c", "64", "-t", "2"])
        .start_with_conn();
    // The limit leaves nothing beyond -c.
    assert_eq!(stat_of(&srv, &mut first, "reserved_fds"), 0);
    // The kernel completes these connections; the server cannot take them all.
    let mut waiting: Vec<TcpStream> = (0..80).map(|_| srv.connect()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat_of(&srv, &mut first, "accepting_conns") == 1 {
        assert!(Instant::now() < deadline, "{}", srv.stderr_tail());
        thread::yield_now();
    }
    assert!(stat_of(&srv, &mut first, "listen_disabled_num") >= 1);
    // Paused, not retrying at once: a spinning accept would take a core.
    let before = cpu_seconds(srv.pid());
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(100));
    }
    let spent = cpu_seconds(srv.pid()) - before;
    assert!(
        spent < 0.3,
        "{spent:.2} s of CPU in a second out of descriptors"
    );
    let warnings = srv.stderr_tail().matches("accept failed").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings:\n{}",
        srv.stderr_tail()
    );
    // Connections already served are served on.
    send(&mut first, b"set k 0 0 1\r\nv\r\nget k\r\n");
    let want = b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n";
    let mut got = vec![0; want.len()];
    if let Err(e) = first.read_exact(&mut got) {
        panic!("{e}: {:?}\n{}", srv.exit_status(), srv.stderr_tail());
    }
    assert_eq!(got, want);
    // Descriptors freed, the waiting connections are taken and served.
    waiting.drain(..40);
    for c in waiting.iter_mut().rev().take(5) {
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        send(c, b"version\r\n");
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).expect("served once a descriptor is free");
        assert!(buf[..n].starts_with(b"VERSION "), "{:?}", &buf[..n]);
    }
    // Each accept loop looks every 10 ms whether it may go on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat_of(&srv, &mut first, "accepting_conns") == 0 {
        assert!(Instant::now() < deadline, "{}", srv.stderr_tail());
        thread::yield_now();
    }
    assert!(stat_of(&srv, &mut first, "time_in_listen_disabled_us") >= 1_000_000);
}
