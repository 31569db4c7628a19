//! `stats` sub-commands through a session, against a store on a manual
//! clock.

use std::sync::Arc;

use clap::Parser;

use crate::config::Cli;
use crate::item_rules::StoreMode;
use crate::server::Shared;
use crate::server::session::Session;
use crate::store::{Clock, Store, StoreRequest};

const UNIX: i64 = 1_700_000_000;

fn shared() -> Arc<Shared> {
    shared_with(&[])
}

fn shared_with(flags: &[&str]) -> Arc<Shared> {
    let config = Cli::try_parse_from(["ferrocache", "-t", "1"].iter().chain(flags))
        .unwrap()
        .validate()
        .unwrap();
    let store = Store::new(config.store.clone(), Clock::manual(UNIX));
    Arc::new(Shared::new(config, store, 1))
}

/// `stats <args>` on a new connection.
fn run(shared: &Arc<Shared>, args: &str) -> String {
    let line = format!("stats {args}");
    Session::new(shared.clone(), 1).exchange(format!("{}\r\n", line.trim_end()).as_bytes())
}

fn set(shared: &Shared, key: &[u8], flags: u32, deadline: u32, value: &[u8]) {
    let now = shared.store.clock().now();
    let req = StoreRequest::new(StoreMode::Set, key, flags, deadline, value);
    let (r, _) = shared.store.store(req, now);
    assert_eq!(r, crate::store::StoreResult::Stored);
}

#[test]
fn empty_cache_lists_no_class() {
    let s = shared();
    assert_eq!(run(&s, "items"), "END\r\n");
    assert_eq!(
        run(&s, "slabs"),
        "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n"
    );
}

#[test]
fn items_and_slabs_show_one_class() {
    let s = shared();
    set(&s, b"a", 0, 0, b"x");
    set(&s, b"b", 0, 0, b"yy");
    let items = run(&s, "items");
    assert!(items.starts_with("STAT items:1:number 2\r\nSTAT items:1:number_hot 0\r\n"));
    assert!(items.contains("STAT items:1:number_cold 2\r\n"));
    assert!(items.ends_with("STAT items:1:hits_to_temp 0\r\nEND\r\n"));
    assert_eq!(items.lines().count(), 29);
    let slabs = run(&s, "slabs");
    assert!(slabs.contains("STAT 1:used_chunks 2\r\n"));
    assert!(slabs.contains("STAT active_slabs 1\r\n"));
    assert_eq!(slabs.matches("STAT 1:").count(), 15);
}

#[test]
fn sizes_are_off_unless_track_sizes() {
    let s = shared();
    set(&s, b"bar", 0, 0, b"x");
    assert_eq!(run(&s, "sizes"), "STAT sizes_status disabled\r\nEND\r\n");
    // memcached 1.6.45 dropped the runtime switches.
    assert_eq!(run(&s, "sizes_enable"), "ERROR\r\n");
    let s = shared_with(&["-o", "track_sizes"]);
    set(&s, b"bar", 0, 0, b"x");
    set(&s, b"foo:1", 5, 0, b"abc");
    // memcached puts these two at 64 and 96 (sizes 63 and 71).
    assert_eq!(run(&s, "sizes"), "STAT 64 1\r\nSTAT 96 1\r\nEND\r\n");
}

#[test]
fn detail_usage_and_dump() {
    let s = shared();
    assert_eq!(
        run(&s, "detail"),
        "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
    );
    assert_eq!(run(&s, "detail dump"), "END\r\n");
    assert_eq!(run(&s, "detail on"), "OK\r\n");
    s.detail.record_get(b"foo:1", true);
    assert_eq!(
        run(&s, "detail dump"),
        "PREFIX foo get 1 hit 1 set 0 del 0\r\nEND\r\n"
    );
    assert_eq!(run(&s, "detail off"), "OK\r\n");
    assert!(!s.detail.enabled());
}

#[test]
fn cachedump_replies_as_memcached() {
    let s = shared();
    let now = s.store.clock().now();
    set(&s, b"foo:1", 5, now + 100, b"abc");
    let exp = UNIX + 100;
    assert_eq!(
        run(&s, "cachedump 1 0"),
        format!("ITEM foo:1 [3 b; {exp} s]\r\nEND\r\n")
    );
    assert_eq!(run(&s, "cachedump 2 0"), "END\r\n");
    assert_eq!(run(&s, "cachedump 1"), "CLIENT_ERROR bad command line\r\n");
    assert_eq!(
        run(&s, "cachedump x 0"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        run(&s, "cachedump 64 0"),
        "CLIENT_ERROR Illegal slab id\r\n"
    );
}

#[test]
fn metadump_lines_end_in_a_bare_newline() {
    let s = shared();
    set(&s, b"a:b c", 0, 0, b"x");
    let text = Session::new(s.clone(), 1).exchange(b"lru_crawler metadump all\r\n");
    let la = UNIX;
    assert!(
        text.starts_with(&format!("OK\r\nkey=a%3Ab%20c exp=-1 la={la} cas=")),
        "{text}"
    );
    assert!(
        text.ends_with(" fetch=no cls=1 size=65 flags=0 \nEND\r\n"),
        "{text}"
    );
}

#[test]
fn conns_lists_listeners_and_connections_by_fd() {
    let s = shared();
    *s.listening.lock().unwrap() = vec![(7, "tcp:127.0.0.1:11211".into())];
    let now = s.store.clock().now();
    s.conns.register(
        1,
        crate::stats::ConnInfo::new(
            9,
            "tcp:127.0.0.1:5555".into(),
            "tcp:127.0.0.1:11211".into(),
            now,
        ),
    );
    let text = run(&s, "conns");
    assert!(text.starts_with("STAT 7:addr tcp:127.0.0.1:11211\r\nSTAT 7:state conn_listening\r\n"));
    assert!(text.contains(
        "STAT 9:addr tcp:127.0.0.1:5555\r\nSTAT 9:listen_addr tcp:127.0.0.1:11211\r\nSTAT 9:state conn_waiting\r\nSTAT 9:secs_since_last_cmd 0\r\n"
    ));
    assert!(text.ends_with("END\r\n"));
}

#[test]
fn hash_lines_show_the_indexes() {
    let stat = |s: &Arc<Shared>, name: &str| -> u64 {
        let all = run(s, "");
        let prefix = format!("STAT {name} ");
        let line = all.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].parse().unwrap()
    };
    let s = shared();
    assert_eq!(stat(&s, "hash_bytes"), 0);
    for i in 0..1000 {
        set(&s, format!("k{i}").as_bytes(), 0, 0, b"v");
    }
    let buckets = s.store.stats().hash_buckets;
    assert!(buckets >= 1000);
    assert_eq!(stat(&s, "hash_power_level"), u64::from(buckets.ilog2()));
    assert_eq!(stat(&s, "hash_bytes"), s.store.stats().hash_bytes);
    assert!(stat(&s, "hash_bytes") > 0);
    assert_eq!(stat(&s, "hash_is_expanding"), 0);
}
