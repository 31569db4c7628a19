//! Integration tests of the ferrocache binary over TCP: tables of exchanges
//! with the exact reply bytes, pipelining, noreply, large multi-gets and
//! values, and connections that must not disturb each other.
//!
//! Each test starts its own server (see `launch`), so they run in parallel.
//! `FERROCACHE_INTEGRATION_BIN` runs them against another binary instead,
//! such as memcached, to check the expectations themselves.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
mod launch;

use common::{Client, escape};
use launch::{IO_TIMEOUT, Launch, Server, ServerSpec};
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;

/// A ferrocache started with `flags`, and a client on its first connection.
fn start(flags: &[&str]) -> (Server, Client) {
    let spec = match std::env::var_os("FERROCACHE_INTEGRATION_BIN") {
        Some(bin) => ServerSpec::from_path(bin.into()),
        None => ServerSpec::ferrocache(),
    };
    let (server, conn) = Launch::new(&spec).args(flags).start_with_conn();
    (server, Client::new(conn))
}

/// Runs a table of exchanges in order on one connection.
fn run_table(client: &mut Client, table: &[(&[u8], &[u8])]) {
    for (request, reply) in table {
        client.exchange(request, reply);
    }
}

#[test]
fn basic_exchanges_have_exact_replies() {
    let (_server, mut c) = start(&[]);
    run_table(
        &mut c,
        &[
            (b"set k 5 0 5\r\nhello\r\n", b"STORED\r\n"),
            (b"get k\r\n", b"VALUE k 5 5\r\nhello\r\nEND\r\n"),
            (b"add k 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
            (b"replace nokey 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
            (b"append k 0 0 3\r\n!!!\r\n", b"STORED\r\n"),
            (b"prepend k 0 0 2\r\n<<\r\n", b"STORED\r\n"),
            (b"get k nokey\r\n", b"VALUE k 5 10\r\n<<hello!!!\r\nEND\r\n"),
            (b"cas nokey 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n"),
            (b"cas k 0 0 1 0\r\nx\r\n", b"EXISTS\r\n"),
            (b"set n 0 0 3\r\n100\r\n", b"STORED\r\n"),
            (b"decr n 1\r\n", b"99\r\n"),
            (b"get n\r\n", b"VALUE n 0 3\r\n99 \r\nEND\r\n"),
            (b"incr n 18446744073709551615\r\n", b"98\r\n"),
            (
                b"incr k 1\r\n",
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (b"incr nokey 1\r\n", b"NOT_FOUND\r\n"),
            (b"touch k 100\r\n", b"TOUCHED\r\n"),
            (b"touch nokey 100\r\n", b"NOT_FOUND\r\n"),
            (b"gat 100 k\r\n", b"VALUE k 5 10\r\n<<hello!!!\r\nEND\r\n"),
            (b"delete k\r\n", b"DELETED\r\n"),
            (b"delete k\r\n", b"NOT_FOUND\r\n"),
            // What follows the key is ignored.
            (b"delete k 10\r\n", b"NOT_FOUND\r\n"),
            (b"get\r\n", b"CLIENT_ERROR bad command line format\r\n"),
            (b"bogus\r\n", b"ERROR\r\n"),
            (b"GET k\r\n", b"ERROR\r\n"),
            (
                b"set k 0 0 1\r\nabc\r\n",
                b"CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n",
            ),
            (
                b"set k 0 0 x\r\n",
                b"CLIENT_ERROR bad command line format\r\n",
            ),
            (b"flush_all\r\n", b"OK\r\n"),
            (b"get n\r\n", b"END\r\n"),
            (b"verbosity 1\r\n", b"OK\r\n"),
            (b"shutdown\r\n", b"SERVER_ERROR: shutdown not enabled\r\n"),
            (
                b"cache_memlimit 7\r\n",
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
            ),
            (b"mn\r\n", b"MN\r\n"),
        ],
    );
}

#[test]
fn flags_of_every_width_come_back_through_every_rewrite() {
    // Stored in 0, 1, 2 or 4 bytes by size: each edge, kept by append,
    // touch (which writes the item again with an expiry) and incr.
    let (_server, mut c) = start(&[]);
    for flags in [0u32, 1, 255, 256, 65_535, 65_536, u32::MAX] {
        let value = |v: &str| format!("VALUE k {flags} {}\r\n{v}\r\nEND\r\n", v.len());
        let set = format!("set k {flags} 0 2\r\n10\r\n");
        run_table(
            &mut c,
            &[
                (set.as_bytes(), b"STORED\r\n"),
                (b"get k\r\n", value("10").as_bytes()),
                (b"append k 0 0 1\r\n0\r\n", b"STORED\r\n"),
                (b"touch k 1000\r\n", b"TOUCHED\r\n"),
                (b"incr k 1\r\n", b"101\r\n"),
                (b"get k\r\n", value("101").as_bytes()),
                (
                    b"mg k f v\r\n",
                    format!("VA 3 f{flags}\r\n101\r\n").as_bytes(),
                ),
            ],
        );
    }
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let (_server, mut c) = start(&[]);
    c.exchange(
        b"set a 1 0 1\r\nA\r\nget a\r\nbogus\r\nadd a 0 0 1\r\nx\r\nset n 0 0 1\r\n9\r\n\
          incr n 1\r\nget a n nokey\r\ndelete a\r\nget a\r\nset big 0 0 2000000\r\n",
        b"STORED\r\nVALUE a 1 1\r\nA\r\nEND\r\nERROR\r\nNOT_STORED\r\nSTORED\r\n10\r\n\
          VALUE a 1 1\r\nA\r\nVALUE n 0 2\r\n10\r\nEND\r\nDELETED\r\nEND\r\n",
    );
    // The rejected value is swallowed, then its error is sent.
    let mut rest = vec![b'x'; 2_000_000];
    rest.extend_from_slice(b"\r\nget n\r\n");
    c.exchange(
        &rest,
        b"SERVER_ERROR object too large for cache\r\nVALUE n 0 2\r\n10\r\nEND\r\n",
    );
}

#[test]
fn many_pipelined_commands_in_one_write_are_answered_in_order() {
    let (_server, mut c) = start(&[]);
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000 {
        request.extend_from_slice(
            format!(
                "set k{i} {i} 0 {}\r\nv{i}\r\nget k{i}\r\n",
                format!("v{i}").len()
            )
            .as_bytes(),
        );
        expected.extend_from_slice(
            format!(
                "STORED\r\nVALUE k{i} {i} {}\r\nv{i}\r\nEND\r\n",
                format!("v{i}").len()
            )
            .as_bytes(),
        );
        if i % 100 == 0 {
            request.extend_from_slice(b"bogus\r\n");
            expected.extend_from_slice(b"ERROR\r\n");
        }
    }
    c.exchange(&request, &expected);
}

#[test]
fn noreply_commands_send_nothing_but_leftover_lines_still_error() {
    let (_server, mut c) = start(&[]);
    c.exchange(
        b"set k 0 0 1 noreply\r\na\r\nadd k 0 0 1 noreply\r\nb\r\nreplace k 0 0 1 noreply\r\nc\r\n\
          append k 0 0 1 noreply\r\nd\r\nprepend k 0 0 1 noreply\r\ne\r\nset n 0 0 1 noreply\r\n5\r\n\
          incr n 2 noreply\r\ndecr n 1 noreply\r\ntouch k 100 noreply\r\ndelete nokey noreply\r\n\
          incr k 1 noreply\r\ndelete k 10 noreply\r\nset k 0 0 1 noreply\r\nxyz\r\nflush_all 100 noreply\r\n\
          verbosity 1 noreply\r\nget k n\r\n",
        // Only the leftover `\r\n` of the bad data chunk gets an error;
        // `delete k 10 noreply` deletes k (what follows the key is ignored).
        b"CLIENT_ERROR bad command line format\r\nVALUE n 0 1\r\n6\r\nEND\r\n",
    );
    c.exchange(b"mn\r\n", b"MN\r\n");
}

#[test]
fn multi_get_of_500_keys_returns_every_hit_in_order() {
    let (_server, mut c) = start(&[]);
    let mut sets = Vec::new();
    for i in 0..500 {
        sets.extend_from_slice(
            format!(
                "set key:{i} {i} 0 {}\r\nvalue-{i}\r\n",
                format!("value-{i}").len()
            )
            .as_bytes(),
        );
    }
    sets.extend_from_slice(b"mn\r\n");
    let mut stored = b"STORED\r\n".repeat(500);
    stored.extend_from_slice(b"MN\r\n");
    c.exchange(&sets, &stored);

    let mut get = b"get".to_vec();
    let mut expected = Vec::new();
    for i in 0..500 {
        get.extend_from_slice(format!(" key:{i} missing:{i}").as_bytes());
        let value = format!("value-{i}");
        expected.extend_from_slice(
            format!("VALUE key:{i} {i} {}\r\n{value}\r\n", value.len()).as_bytes(),
        );
    }
    get.extend_from_slice(b"\r\n");
    expected.extend_from_slice(b"END\r\n");
    c.exchange(&get, &expected);
}

#[test]
fn value_just_under_the_item_size_limit_round_trips_and_one_more_byte_is_refused() {
    let (_server, mut c) = start(&[]);
    // value + key + 59 bytes of item overhead must fit in 1 MiB.
    let largest = 1_048_576 - 1 - 59;
    let value: Vec<u8> = (0..largest).map(|i| b'a' + (i % 26) as u8).collect();
    let mut request = format!("set k 0 0 {largest}\r\n").into_bytes();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n");
    c.exchange(&request, b"STORED\r\n");

    let mut expected = format!("VALUE k 0 {largest}\r\n").into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\nEND\r\n");
    c.exchange(b"get k\r\n", &expected);

    let mut request = format!("set j 0 0 {}\r\n", largest + 1).into_bytes();
    request.extend_from_slice(&vec![b'x'; largest + 1]);
    request.extend_from_slice(b"\r\nget j\r\n");
    c.exchange(
        &request,
        b"SERVER_ERROR object too large for cache\r\nEND\r\n",
    );
}

#[test]
fn item_size_limit_follows_minus_i() {
    let (_server, mut c) = start(&["-I", "2m"]);
    let n = 1_500_000;
    let mut request = format!("set k 0 0 {n}\r\n").into_bytes();
    request.extend_from_slice(&vec![b'v'; n]);
    request.extend_from_slice(b"\r\n");
    c.exchange(&request, b"STORED\r\n");
    let mut expected = format!("VALUE k 0 {n}\r\n").into_bytes();
    expected.extend_from_slice(&vec![b'v'; n]);
    expected.extend_from_slice(b"\r\nEND\r\n");
    c.exchange(b"get k\r\n", &expected);
}

#[test]
fn fifty_concurrent_connections_keep_their_values_intact() {
    let (server, _first) = start(&[]);
    let server = Arc::new(server);
    let start_together = Arc::new(Barrier::new(50));
    let workers: Vec<_> = (0..50)
        .map(|t| {
            let server = Arc::clone(&server);
            let start_together = Arc::clone(&start_together);
            thread::spawn(move || {
                let mut c = Client::new(server.connect());
                start_together.wait();
                for i in 0..100 {
                    let key = format!("t{t}:k{i}");
                    let value = format!("{t}-{i}-{}", "x".repeat((t * 7 + i) % 300));
                    c.exchange(
                        format!("set {key} {t} 0 {}\r\n{value}\r\n", value.len()).as_bytes(),
                        b"STORED\r\n",
                    );
                }
                for i in 0..100 {
                    let key = format!("t{t}:k{i}");
                    let value = format!("{t}-{i}-{}", "x".repeat((t * 7 + i) % 300));
                    c.exchange(
                        format!("get {key}\r\n").as_bytes(),
                        format!("VALUE {key} {t} {}\r\n{value}\r\nEND\r\n", value.len()).as_bytes(),
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
}

#[test]
fn garbage_on_one_connection_does_not_disturb_another() {
    let (server, mut good) = start(&[]);
    good.exchange(b"set keep 7 0 4\r\ndata\r\n", b"STORED\r\n");

    let mut bad = server.connect();
    // Deterministic junk: no valid command can form from these bytes.
    let mut x: u32 = 12345;
    let mut junk = Vec::new();
    for i in 0..20_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let b = 0x80 | (x >> 16) as u8;
        junk.push(b);
        if i % 97 == 0 {
            junk.extend_from_slice(b" \t\0\r\n");
        }
    }
    junk.extend_from_slice(b"\r\nset keep 0 0 1\r\n");
    // The server may answer with errors or close this connection; either is fine.
    let _ = bad.write_all(&junk);
    let _ = bad.flush();

    good.exchange(b"get keep\r\n", b"VALUE keep 7 4\r\ndata\r\nEND\r\n");
    good.exchange(
        b"set other 0 0 2\r\nok\r\nget other\r\n",
        b"STORED\r\nVALUE other 0 2\r\nok\r\nEND\r\n",
    );
    drop(bad);
    good.exchange(b"get keep\r\n", b"VALUE keep 7 4\r\ndata\r\nEND\r\n");
}

#[test]
fn unterminated_10kb_line_closes_that_connection_only() {
    let (server, mut good) = start(&[]);
    good.exchange(b"set keep 0 0 4\r\ndata\r\n", b"STORED\r\n");

    let mut bad = Client::new(server.connect());
    bad.send(&vec![b'x'; 10 * 1024]);
    let (closed, got) = bad.closed_within(IO_TIMEOUT);
    assert!(
        closed,
        "the connection stayed open; it sent {}",
        escape(&got)
    );
    assert!(got.is_empty(), "it sent {} before closing", escape(&got));

    good.exchange(b"get keep\r\n", b"VALUE keep 0 4\r\ndata\r\nEND\r\n");
    let mut again = Client::new(server.connect());
    again.exchange(b"get keep\r\n", b"VALUE keep 0 4\r\ndata\r\nEND\r\n");
}

#[test]
fn quit_flushes_earlier_replies_then_closes() {
    let (_server, mut c) = start(&[]);
    c.send(b"set k 0 0 1\r\nv\r\nget k\r\nquit\r\nget k\r\n");
    let (closed, got) = c.closed_within(IO_TIMEOUT);
    assert!(closed, "still open after quit");
    assert_eq!(
        escape(&got),
        escape(b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n")
    );
}

#[test]
fn one_byte_at_a_time_gets_the_same_replies() {
    let (_server, mut c) = start(&[]);
    let request = b"set k 3 0 5\r\nhello\r\nget k nokey\r\nbogus\r\nincr k 1\r\n";
    for b in request {
        c.send(std::slice::from_ref(b));
    }
    let expected: &[u8] = b"STORED\r\nVALUE k 3 5\r\nhello\r\nEND\r\nERROR\r\n\
        CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    let got = c.read_exact_len(expected.len());
    assert_eq!(escape(&got), escape(expected));
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let (_server, mut c) = start(&[]);
    c.send(b"set k 0 0 1\r\nv\r\nget k\r\n");
    c.shutdown_write();
    let (closed, got) = c.closed_within(IO_TIMEOUT);
    assert!(closed, "still open after the client's FIN");
    assert_eq!(
        escape(&got),
        escape(b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n")
    );
}
