//! `watch` over real TCP: memcached's log lines for each stream, a slow
//! watcher losing lines and being told so, the watcher limit, and the
//! `log_*` stats. Deterministic refusals are in `corpus/watch.txt`.
//!
//! A watcher is registered before its `OK` is sent, so every event after
//! the `OK` reaches it; reads are bounded by the launcher's timeouts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod launch;
use launch::{Server, ask};

/// A connection that became a watcher of `streams`.
struct Watch(BufReader<TcpStream>);

impl Watch {
    fn new(srv: &Server, streams: &str) -> Watch {
        let mut conn = srv.connect();
        let ok = ask(&mut conn, &format!("watch {streams}\r\n"), "\r\n");
        assert_eq!(ok, "OK\r\n");
        Watch(BufReader::new(conn))
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.0.read_line(&mut line).expect("a log line in time");
        assert!(n > 0, "watcher closed");
        assert!(line.ends_with('\n'), "cut line {line:?}");
        line
    }

    /// The next line after `ts=<secs>.<usecs> gid=<n> `, checking those.
    fn event(&mut self) -> String {
        let line = self.line();
        let mut parts = line.trim_end_matches('\n').splitn(3, ' ');
        let ts = parts.next().unwrap();
        let gid = parts.next().unwrap();
        let (secs, usecs) = ts.strip_prefix("ts=").unwrap().split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok() && usecs.parse::<u32>().unwrap() < 1_000_000);
        assert!(
            gid.strip_prefix("gid=").unwrap().parse::<u64>().is_ok(),
            "{line}"
        );
        parts.next().expect("an event").to_string()
    }
}

impl Watch {
    /// The next event of the client at `port` (the launcher's own probe
    /// connection may come and go meanwhile).
    fn of(&mut self, port: u16) -> String {
        let rport = format!(" rport={port} ");
        loop {
            let event = self.event();
            if event.contains(&rport) {
                return event;
            }
        }
    }
}

fn stat(conn: &mut TcpStream, name: &str) -> u64 {
    let stats = ask(conn, "stats\r\n", "END\r\n");
    let prefix = format!("STAT {name} ");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in stats"))
        .parse()
        .unwrap()
}

#[test]
fn fetches_and_stores_are_logged_in_memcacheds_format() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "fetchers mutations");
    let mut c = srv.connect();
    let fd = {
        let conns = ask(&mut c, "stats conns\r\n", "END\r\n");
        // Ours is the one whose peer address is our end.
        let addr = format!(":addr tcp:{}", c.local_addr().unwrap());
        let line = conns
            .lines()
            .find(|l| l.ends_with(&addr))
            .unwrap_or_else(|| panic!("our own connection in {conns}"));
        line.trim_start_matches("STAT ")
            .split(':')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        ask(&mut c, "set a%20b 5 100 4\r\nvbar\r\n", "\r\n"),
        "STORED\r\n"
    );
    assert_eq!(
        ask(&mut c, "get a%20b nokey\r\n", "END\r\n"),
        "VALUE a%20b 5 4\r\nvbar\r\nEND\r\n"
    );
    assert_eq!(
        ask(&mut c, "add a%20b 0 0 1\r\nx\r\n", "\r\n"),
        "NOT_STORED\r\n"
    );
    let want = [
        format!("type=item_get key=a%2520b status=not_found clsid=0 cfd={fd} size=0"),
        format!(
            "type=item_store key=a%2520b status=stored cmd=set ttl=100 clsid=1 cfd={fd} size=4"
        ),
        format!("type=item_get key=a%2520b status=found clsid=1 cfd={fd} size=4"),
        format!("type=item_get key=nokey status=not_found clsid=0 cfd={fd} size=0"),
        format!("type=item_get key=a%2520b status=found clsid=1 cfd={fd} size=4"),
        format!(
            "type=item_store key=a%2520b status=not_stored cmd=add ttl=0 clsid=1 cfd={fd} size=1"
        ),
    ];
    for want in want {
        assert_eq!(w.event(), want);
    }
}

#[test]
fn the_longest_key_is_uri_encoded_whole() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "mutations");
    let mut c = srv.connect();
    let key = "#".repeat(250);
    let set = format!("set {key} 0 0 9\r\nmemcached\r\n");
    assert_eq!(ask(&mut c, &set, "\r\n"), "STORED\r\n");
    let event = w.event();
    let key_field = event.split(' ').nth(1).unwrap();
    assert_eq!(key_field, format!("key={}", "%23".repeat(250)));
}

#[test]
fn deletions_are_logged_but_not_invalidations() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "deletions");
    let mut c = srv.connect();
    let asks = [
        ("set vfoo 0 0 4\r\nvbar\r\n", "STORED\r\n"),
        ("md non-existing-key\r\n", "NF\r\n"),
        ("delete vfoo\r\n", "DELETED\r\n"),
        ("set vfoo 0 0 4\r\nvbar\r\n", "STORED\r\n"),
        ("md vfoo\r\n", "HD\r\n"),
        ("set vfoo 0 0 4\r\nvbar\r\n", "STORED\r\n"),
        ("md vfoo I\r\n", "HD\r\n"),
        ("delete vfoo\r\n", "DELETED\r\n"),
    ];
    for (req, reply) in asks {
        assert_eq!(ask(&mut c, req, "\r\n"), reply, "{req}");
    }
    assert_eq!(w.event(), "type=deleted key=vfoo cmd=delete clsid=1 size=4");
    assert_eq!(w.event(), "type=deleted key=vfoo cmd=md clsid=1 size=4");
    // The invalidation (md I) logged nothing; the delete after it did.
    assert_eq!(w.event(), "type=deleted key=vfoo cmd=delete clsid=1 size=4");
}

#[test]
fn connection_events_say_why_a_connection_closed() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "connevents");
    let mut c = srv.connect();
    let port = c.local_addr().unwrap().port();
    ask(&mut c, "version\r\n", "\r\n");
    c.write_all(b"quit\r\n").unwrap();
    let tcp = format!("rip=127.0.0.1 rport={port} transport=tcp");
    assert!(w.of(port).starts_with(&format!("type=conn_new {tcp} cfd=")));
    let close = w.of(port);
    assert!(
        close.starts_with(&format!("type=conn_close {tcp} reason=normal cfd=")),
        "{close}"
    );
    let mut bad = srv.connect();
    let port = bad.local_addr().unwrap().port();
    bad.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(w.of(port).starts_with("type=conn_new "));
    let close = w.of(port);
    assert!(close.contains(" reason=error cfd="), "{close}");
}

#[test]
fn evictions_are_logged_with_the_evicted_item() {
    let srv = Server::start(&["-m", "8"]);
    let mut c = srv.connect();
    let mut w = Watch::new(&srv, "evictions");
    let value = "B".repeat(11000);
    // Twice the memory limit, never read: some of it must be evicted.
    let mut batch = String::new();
    for i in 0..1600 {
        batch.push_str(&format!("set n,foo{i} 0 0 11000 noreply\r\n{value}\r\n"));
        if i % 100 == 99 {
            c.write_all(batch.as_bytes()).unwrap();
            batch.clear();
        }
    }
    ask(&mut c, "mn\r\n", "MN\r\n");
    assert!(stat(&mut c, "evictions") > 0);
    let event = w.event();
    let fields: Vec<_> = event.split(' ').collect();
    assert_eq!(fields[0], "type=eviction");
    assert!(fields[1].starts_with("key=n%2Cfoo"), "{event}");
    assert_eq!(&fields[2..4], ["fetch=no", "ttl=-1"], "{event}");
    assert!(fields[4].starts_with("la="), "{event}");
    assert_eq!(&fields[6..], ["size=11000"], "{event}");
}

#[test]
fn a_slow_watcher_loses_lines_and_is_told_how_many() {
    let srv = Server::start(&["-o", "watcher_logbuf_size=8"]);
    let mut w = Watch::new(&srv, "fetchers");
    let mut c = srv.connect();
    let spacer = "X".repeat(180);
    // Far more log than the socket buffers and the 8 KiB queue hold, while
    // the watcher reads nothing.
    for round in 0..80 {
        let mut batch = String::new();
        for i in 0..1000 {
            batch.push_str(&format!("get foo{round}_{i}{spacer}\r\n"));
        }
        batch.push_str("mn\r\n");
        c.write_all(batch.as_bytes()).unwrap();
        let mut replies = 0;
        let mut reader = BufReader::new(&mut c);
        while replies < 1001 {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            replies += 1;
        }
    }
    assert!(stat(&mut c, "log_watcher_skipped") > 0);
    // Reading frees room; the next line that fits is preceded by the count.
    // New events keep coming so that one does.
    let mut seen = 0;
    let skipped = loop {
        let line = w.line();
        if let Some(n) = line.strip_prefix("skipped=") {
            break n.trim_end().parse::<u64>().expect("a count");
        }
        seen += 1;
        assert!(seen < 200_000, "no skipped= line");
        if seen % 100 == 0 {
            ask(&mut c, "get foo\r\n", "END\r\n");
        }
    };
    assert!(skipped > 0);
    assert!(w.event().starts_with("type=item_get "));
}

#[test]
fn watchers_are_counted_and_limited_to_twenty() {
    let srv = Server::start(&[]);
    let mut c = srv.connect();
    let watchers: Vec<_> = (0..20).map(|_| Watch::new(&srv, "fetchers")).collect();
    assert_eq!(stat(&mut c, "log_watchers"), 20);
    let mut one_more = srv.connect();
    assert_eq!(
        ask(&mut one_more, "watch\r\n", "\r\n"),
        "WATCHER_TOO_MANY log watcher limit reached\r\n"
    );
    // The refused connection still serves requests.
    assert_eq!(ask(&mut one_more, "mn\r\n", "\r\n"), "MN\r\n");
    drop(watchers);
    // The server notices the closes when it next reads them: poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(&mut c, "log_watchers") != 0 {
        assert!(Instant::now() < deadline, "watchers still counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ask(&mut one_more, "watch\r\n", "\r\n"), "OK\r\n");
}

#[test]
fn a_watcher_ignores_what_its_client_sends() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "fetchers");
    w.0.get_mut().write_all(b"get x\r\nversion\r\n").unwrap();
    let mut c = srv.connect();
    ask(&mut c, "get y\r\n", "END\r\n");
    // Only y's lookup: the watcher's own requests were not run.
    assert!(w.event().starts_with("type=item_get key=y "));
}

#[test]
fn a_counter_made_by_ma_is_logged_as_memcached_adds_it() {
    let srv = Server::start(&[]);
    let mut w = Watch::new(&srv, "fetchers mutations");
    let mut c = srv.connect();
    assert_eq!(ask(&mut c, "ma cnt N0 J7\r\n", "\r\n"), "HD\r\n");
    let events: Vec<_> = (0..3).map(|_| w.event()).collect();
    let fields = |e: &str| e.split(" cfd=").next().unwrap().to_string();
    assert_eq!(
        events.iter().map(|e| fields(e)).collect::<Vec<_>>(),
        [
            "type=item_get key=cnt status=not_found clsid=0",
            "type=item_get key=cnt status=not_found clsid=0",
            "type=item_store key=cnt status=stored cmd=add ttl=0 clsid=1",
        ]
    );
    assert!(events[2].ends_with(" size=1"), "{}", events[2]);
}
