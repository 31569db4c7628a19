//! The binary protocol through a whole session: the executor's outcomes
//! spelled as response packets (status, CAS, opaque, quiet rules), the
//! counters they bump, and how a connection picks its protocol.

use std::sync::Arc;

use bytes::BytesMut;
use clap::Parser;

use crate::config::Cli;
use crate::protocol::binary::opcode::*;
use crate::server::Shared;
use crate::server::session::{Next, Session};
use crate::store::{Clock, Store};

/// A session on a one-shard server (CAS values count up from 1, as
/// memcached's do) with a manual clock, started with `args`.
fn session(args: &[&str]) -> Session {
    let mut argv = vec!["ferrocache"];
    argv.extend_from_slice(args);
    let mut config = Cli::try_parse_from(argv).unwrap().validate().unwrap();
    config.store.shards = 1;
    let store = Store::new(config.store.clone(), Clock::manual(1_700_000_000));
    Session::new(Arc::new(Shared::new(config, store, 1)), 1)
}

fn request(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&((key.len() + extras.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    for part in [extras, key, value] {
        p.extend_from_slice(part);
    }
    p
}

fn get(op: u8, key: &[u8]) -> Vec<u8> {
    request(op, key, b"", b"", 0, 0)
}

fn set(op: u8, key: &[u8], value: &[u8], flags: u32, cas: u64) -> Vec<u8> {
    let extras = [flags.to_be_bytes(), 0u32.to_be_bytes()].concat();
    request(op, key, &extras, value, 0, cas)
}

fn incr(op: u8, key: &[u8], delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let extras = [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat();
    request(op, key, &extras, b"", 0, 0)
}

/// One response, decoded: opcode, status, extras, key, value, opaque, cas.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    opcode: u8,
    status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    opaque: u32,
    cas: u64,
}

fn responses(mut b: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert_eq!(b[0], 0x81, "magic");
        let keylen = u16::from_be_bytes([b[2], b[3]]) as usize;
        let extlen = b[4] as usize;
        let bodylen = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        let body = &b[24..24 + bodylen];
        out.push(Response {
            opcode: b[1],
            status: u16::from_be_bytes([b[6], b[7]]),
            extras: body[..extlen].to_vec(),
            key: body[extlen..extlen + keylen].to_vec(),
            value: body[extlen + keylen..].to_vec(),
            opaque: u32::from_be_bytes(b[12..16].try_into().unwrap()),
            cas: u64::from_be_bytes(b[16..24].try_into().unwrap()),
        });
        b = &b[24 + bodylen..];
    }
    out
}

/// Sends `input` as one read and returns the bytes replied.
fn exchange(s: &mut Session, input: &[u8]) -> Vec<u8> {
    let mut rbuf = BytesMut::from(input);
    let mut wbuf = BytesMut::new();
    while let Next::Write | Next::Yield = s.process(&mut rbuf, &mut wbuf) {}
    wbuf.to_vec()
}

fn ok(opcode: u8, cas: u64) -> Response {
    Response {
        opcode,
        status: 0,
        extras: vec![],
        key: vec![],
        value: vec![],
        opaque: 0,
        cas,
    }
}

fn error(opcode: u8, status: u16, text: &str) -> Response {
    Response {
        status,
        value: text.as_bytes().to_vec(),
        ..ok(opcode, 0)
    }
}

fn hit(opcode: u8, flags: u32, key: &[u8], value: &[u8], cas: u64) -> Response {
    Response {
        extras: flags.to_be_bytes().to_vec(),
        key: key.to_vec(),
        value: value.to_vec(),
        ..ok(opcode, cas)
    }
}

#[test]
fn writes_and_gets_answer_with_cas_and_memcacheds_statuses() {
    let mut s = session(&[]);
    let input = [
        set(SET, b"k", b"v1", 7, 0),
        get(GET, b"k"),
        get(GETK, b"k"),
        set(ADD, b"k", b"x", 0, 0),
        set(REPLACE, b"nokey", b"x", 0, 0),
        set(SET, b"k", b"x", 0, 99),
        request(APPEND, b"nokey", b"", b"x", 0, 0),
        request(APPEND, b"k", b"", b"2", 0, 0),
        get(GET, b"nokey"),
        get(GETK, b"nokey"),
        request(DELETE, b"k", b"", b"", 0, 99),
        get(DELETE, b"k"),
        get(DELETE, b"k"),
    ]
    .concat();
    let mut got = responses(&exchange(&mut s, &input));
    // The append's new CAS: ours also counts ids the failed writes drew.
    assert!(got[7].cas > 1);
    got[7].cas = 2;
    assert_eq!(
        got,
        vec![
            ok(SET, 1),
            hit(GET, 7, b"", b"v1", 1),
            hit(GETK, 7, b"k", b"v1", 1),
            error(ADD, 2, "Data exists for key."),
            error(REPLACE, 1, "Not found"),
            error(SET, 2, "Data exists for key."),
            error(APPEND, 5, "Not stored."),
            ok(APPEND, 2),
            error(GET, 1, "Not found"),
            // The key, once, instead of the text.
            Response {
                key: b"nokey".to_vec(),
                ..error(GETK, 1, "")
            },
            error(DELETE, 2, "Data exists for key."),
            ok(DELETE, 0),
            error(DELETE, 1, "Not found"),
        ]
    );
    assert_eq!(s.stats.cmd_get, 4);
    assert_eq!(s.stats.get_hits, 2);
    assert_eq!(s.stats.get_misses, 2);
    assert_eq!(s.stats.cmd_set, 6);
    assert_eq!(s.stats.delete_hits, 1);
    assert_eq!(s.stats.delete_misses, 1);
}

#[test]
fn quiet_opcodes_answer_only_errors_and_hits() {
    let mut s = session(&[]);
    let input = [
        set(SETQ, b"k", b"v", 0, 0),
        set(ADDQ, b"k", b"v", 0, 0),
        get(GETQ, b"nokey"),
        get(GETKQ, b"k"),
        get(DELETEQ, b"nokey"),
        incr(INCREMENTQ, b"n", 1, 5, 0),
        request(FLUSHQ, b"", b"", b"", 0, 0),
        get(NOOP, b""),
    ]
    .concat();
    let got = responses(&exchange(&mut s, &input));
    assert_eq!(
        got,
        vec![
            error(ADDQ, 2, "Data exists for key."),
            hit(GETKQ, 0, b"k", b"v", 1),
            error(DELETEQ, 1, "Not found"),
            ok(NOOP, 0),
        ]
    );
}

#[test]
fn a_noop_sends_what_is_owed_before_the_next_request() {
    let mut s = session(&[]);
    let mut rbuf = BytesMut::from(&[get(NOOP, b""), get(VERSION, b"")].concat()[..]);
    let mut wbuf = BytesMut::new();
    assert_eq!(s.process(&mut rbuf, &mut wbuf), Next::Write);
    assert_eq!(responses(&wbuf), vec![ok(NOOP, 0)]);
    wbuf.clear();
    assert_eq!(s.process(&mut rbuf, &mut wbuf), Next::Read);
    assert_eq!(responses(&wbuf)[0].opcode, VERSION);
}

#[test]
fn counters_are_created_with_their_initial_value_unless_told_not_to() {
    let mut s = session(&[]);
    let input = [
        incr(INCREMENT, b"n", 3, 10, 0),
        incr(INCREMENT, b"n", 3, 10, 0),
        incr(DECREMENT, b"n", 100, 10, 0),
        incr(INCREMENT, b"m", 1, 0, 0xffff_ffff),
        set(SET, b"t", b"text", 0, 0),
        incr(INCREMENT, b"t", 1, 0, 0),
    ]
    .concat();
    let mut got = responses(&exchange(&mut s, &input));
    // Each new version's CAS is newer than the last; which numbers they
    // are is the store's choice, so the nth one reads as n below.
    let (mut last, mut nth) = (0, 0);
    for r in got.iter_mut().filter(|r| r.cas != 0) {
        assert!(r.cas > last, "CAS {} after {last}", r.cas);
        (last, nth) = (r.cas, nth + 1);
        r.cas = nth;
    }
    let counter = |v: u64, cas| Response {
        value: v.to_be_bytes().to_vec(),
        ..ok(INCREMENT, cas)
    };
    assert_eq!(
        got,
        vec![
            counter(10, 1),
            counter(13, 2),
            Response {
                opcode: DECREMENT,
                ..counter(0, 3)
            },
            error(INCREMENT, 1, "Not found"),
            ok(SET, 4),
            error(
                INCREMENT,
                6,
                "Non-numeric server-side value for incr or decr"
            ),
        ]
    );
    // Creating is neither a hit nor a miss; only "no auto-create" misses.
    assert_eq!((s.stats.incr_hits, s.stats.incr_misses), (1, 1));
    assert_eq!(s.stats.decr_hits, 1);
}

#[test]
fn touch_returns_the_flags_and_gat_the_value() {
    let mut s = session(&[]);
    let exp = 100u32.to_be_bytes();
    let input = [
        set(SET, b"k", b"v", 3, 0),
        request(TOUCH, b"k", &exp, b"", 0, 0),
        request(GATK, b"k", &exp, b"", 0, 0),
        request(GATQ, b"nokey", &exp, b"", 0, 0),
        request(TOUCH, b"nokey", &exp, b"", 0, 0),
    ]
    .concat();
    let got = responses(&exchange(&mut s, &input));
    assert_eq!(
        got,
        vec![
            ok(SET, 1),
            hit(TOUCH, 3, b"", b"", 1),
            hit(GATK, 3, b"k", b"v", 1),
            error(TOUCH, 1, "Not found"),
        ]
    );
    assert_eq!(s.stats.cmd_touch, 4);
    assert_eq!((s.stats.touch_hits, s.stats.touch_misses), (2, 2));
}

#[test]
fn stat_groups_are_listings_of_packets_ending_empty() {
    let mut s = session(&[]);
    let input = [
        request(STAT, b"settings", b"", b"", 9, 0),
        request(STAT, b"detail on", b"", b"", 9, 0),
        request(STAT, b"conns", b"", b"", 9, 0),
        request(STAT, b"sizes_enable", b"", b"", 9, 0),
        request(STAT, b"detail", b"", b"", 9, 0),
    ]
    .concat();
    let got = responses(&exchange(&mut s, &input));
    let settings: Vec<_> = got.iter().take_while(|r| !r.key.is_empty()).collect();
    assert!(settings.iter().any(|r| r.key == b"binding_protocol"
        && r.value == b"auto-negotiate"
        && r.opcode == STAT
        && r.opaque == 9));
    let rest = &got[settings.len()..];
    assert_eq!(
        rest[0],
        Response {
            opaque: 9,
            ..ok(STAT, 0)
        }
    );
    // `detail on` is only the end packet; `conns` is not served in binary,
    // nor `sizes_enable` (memcached 1.6.45, which has dropped it). A bare
    // `detail` is not found: memcached reads whatever follows the key in its
    // buffer as the subcommand, so only the answer it gives when that is not
    // " dump", " on" or " off" can be matched.
    assert_eq!(
        rest[1],
        Response {
            opaque: 9,
            ..ok(STAT, 0)
        }
    );
    assert_eq!(
        rest[2],
        Response {
            opaque: 9,
            ..error(STAT, 1, "Not found")
        }
    );
    assert_eq!(rest[3], rest[2]);
    assert_eq!(rest[4], rest[2]);
    assert_eq!(rest.len(), 5);
}

#[test]
fn the_first_byte_picks_the_protocol_under_auto_only() {
    let mut text = session(&[]);
    assert_eq!(exchange(&mut text, b"version\r\n")[..8], b"VERSION "[..]);
    // On a text connection the packet is a line: 0x80, then the Noop
    // opcode 0x0a ends it. memcached 1.6.45 finds no command in so short a
    // line.
    assert_eq!(
        exchange(&mut text, &get(NOOP, b""))[..],
        b"CLIENT_ERROR bad command line format\r\n"[..]
    );

    let mut binary = session(&[]);
    assert_eq!(
        responses(&exchange(&mut binary, &get(NOOP, b""))),
        vec![ok(NOOP, 0)]
    );

    let mut ascii = session(&["-B", "ascii"]);
    assert_eq!(
        exchange(&mut ascii, b"\x80\r\n"),
        b"CLIENT_ERROR bad command line format\r\n"
    );

    // Binary only: a text line is waited on until it fills a header, then
    // its magic closes the connection.
    let mut only_binary = session(&["-B", "binary"]);
    let mut rbuf = BytesMut::from(&b"version\r\n"[..]);
    let mut wbuf = BytesMut::new();
    assert_eq!(only_binary.process(&mut rbuf, &mut wbuf), Next::Read);
    rbuf.extend_from_slice(&[b' '; 20]);
    assert!(matches!(
        only_binary.process(&mut rbuf, &mut wbuf),
        Next::End(crate::server::Flow::Abort)
    ));
}

#[test]
fn a_refused_length_answers_then_closes_after_what_was_owed() {
    let mut s = session(&[]);
    let mut rbuf = BytesMut::from(
        &[
            get(VERSION, b""),
            request(GET, b"k", b"", b"", 0, 0)[..24].to_vec(),
            vec![b'k'; 0],
        ]
        .concat()[..],
    );
    // A Get whose body is shorter than its key.
    rbuf[24 + 11] = 0;
    rbuf.extend_from_slice(b"k");
    let mut wbuf = BytesMut::new();
    assert!(matches!(
        s.process(&mut rbuf, &mut wbuf),
        Next::End(crate::server::Flow::Close)
    ));
    let got = responses(&wbuf);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], error(GET, 0x81, "Unknown command"));
}

#[test]
fn without_cas_a_cas_in_a_write_is_ignored() {
    // memcached keeps the request's CAS in the new item, which under -C
    // holds none: the write is a plain one.
    let mut s = session(&["-C"]);
    let input = [
        set(SET, b"k", b"a", 0, 0),
        set(SET, b"k", b"b", 0, 77),
        set(ADD, b"n", b"c", 0, 77),
        request(APPEND, b"k", b"", b"!", 0, 77),
    ]
    .concat();
    let got = responses(&exchange(&mut s, &input));
    assert_eq!(got, vec![ok(SET, 0), ok(SET, 0), ok(ADD, 0), ok(APPEND, 0)]);
}
