//! SASL (`-S`) through a whole session, without sockets: the decoder's
//! refusal of unauthenticated requests, kept in step with the connection's
//! SASL state after every request, even within one read.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use clap::Parser;

use super::Flow;
use crate::config::Cli;
use crate::sasl::Pwdb;
use crate::server::Shared;
use crate::server::session::{Next, Session};
use crate::store::{Clock, Store};

/// A session of a `-S` server whose password file holds `user:pass`.
fn session() -> Session {
    let mut config = Cli::try_parse_from(["ferrocache", "-t", "1", "-B", "binary"])
        .unwrap()
        .validate()
        .unwrap();
    config.sasl = Some(Arc::new(Pwdb::parse(Path::new("pwdb"), b"user:pass\n")));
    let store = Store::new(config.store.clone(), Clock::manual(1_700_000_000));
    Session::new(Arc::new(Shared::new(config, store, 1)), 1)
}

fn packet(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&((key.len() + extras.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    for part in [extras, key, value] {
        p.extend_from_slice(part);
    }
    p
}

/// A response's opcode, status and body (after extras and key).
type Response = (u8, u16, Vec<u8>);

/// Each response in `b`.
fn responses(mut b: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let bodylen = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        let keylen = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let skip = 24 + usize::from(b[4]) + keylen;
        out.push((
            b[1],
            u16::from_be_bytes([b[6], b[7]]),
            b[skip..24 + bodylen].to_vec(),
        ));
        b = &b[24 + bodylen..];
    }
    out
}

/// Runs `input` as one read: the responses, and whether the session ended.
fn run(s: &mut Session, input: &[u8]) -> (Vec<Response>, Option<Flow>) {
    let mut rbuf = BytesMut::from(input);
    let mut wbuf = BytesMut::new();
    loop {
        match s.process(&mut rbuf, &mut wbuf) {
            Next::Write | Next::Yield => continue,
            Next::Read => return (responses(&wbuf), None),
            Next::End(flow) => return (responses(&wbuf), Some(flow)),
        }
    }
}

fn auth(data: &[u8]) -> Vec<u8> {
    packet(0x21, b"PLAIN", b"", data)
}

const GET: u8 = 0x00;
const SET: u8 = 0x01;

fn ok(op: u8, body: &[u8]) -> Response {
    (op, 0, body.to_vec())
}

fn auth_error(op: u8) -> Response {
    (op, 0x20, b"Auth failure.".to_vec())
}

#[test]
fn requests_in_the_same_read_as_the_auth_see_its_outcome() {
    let mut s = session();
    let input = [
        auth(b"\0user\0pass"),
        packet(SET, b"k", &[0; 8], b"v"),
        packet(GET, b"k", b"", b""),
    ]
    .concat();
    let (r, end) = run(&mut s, &input);
    assert_eq!(end, None);
    assert_eq!(r[0], ok(0x21, b"Authenticated"));
    assert_eq!(r[1], ok(SET, b""));
    assert_eq!(r[2], ok(GET, b"v"));
    assert_eq!((s.stats.auth_cmds, s.stats.auth_errors), (1, 0));
}

#[test]
fn a_refused_auth_leaves_the_next_request_refused_and_closing() {
    let mut s = session();
    let input = [auth(b"\0user\0nope"), packet(GET, b"k", b"", b"")].concat();
    let (r, end) = run(&mut s, &input);
    assert_eq!(r, vec![auth_error(0x21), auth_error(GET)]);
    assert_eq!(end, Some(Flow::Close));
    assert_eq!((s.stats.auth_cmds, s.stats.auth_errors), (1, 1));
}

#[test]
fn a_list_request_takes_the_authentication_away() {
    let mut s = session();
    let (r, _) = run(&mut s, &auth(b"\0user\0pass"));
    assert_eq!(r, vec![ok(0x21, b"Authenticated")]);
    let (r, end) = run(
        &mut s,
        &[packet(0x20, b"", b"", b""), packet(0x0a, b"", b"", b"")].concat(),
    );
    assert_eq!(r, vec![ok(0x20, b"PLAIN"), auth_error(0x0a)]);
    assert_eq!(end, Some(Flow::Close));
}

#[test]
fn an_unauthenticated_write_is_refused_before_its_value_arrives() {
    let mut s = session();
    // A set declaring a value far over -I: no "too large", no swallowing.
    // (Over 1 GiB it would be refused "invalid arguments" first, as
    // memcached checks that before authentication.)
    let mut set = packet(SET, b"k", &[0; 8], b"");
    set[8..12].copy_from_slice(&(9u32 + (1 << 29)).to_be_bytes());
    let (r, end) = run(&mut s, &set);
    assert_eq!(r, vec![auth_error(SET)]);
    assert_eq!(end, Some(Flow::Close));
}
