"""Byte-exact transcripts of the text protocol.

Every expected reply below is what memcached sends; ferrocache is meant to be
byte-compatible, so the same transcripts must pass against it. Where memcached
1.6.45's rewritten text parser answers differently from Debian's 1.6.18, the
step gives both (``ByRelease``) and the server's ``version`` picks one.
"""

from __future__ import annotations

import re
import time

import pytest

from support.raw import ByRelease, RawConnection, protocol_release


class Like:
    """A reply matched by a regular expression, read up to ``end``."""

    def __init__(self, pattern: bytes, end: bytes = b"\r\n"):
        self.pattern = re.compile(pattern, re.S)
        self.end = end

    def __repr__(self):
        return f"Like({self.pattern.pattern!r})"


def run_transcript(conn: RawConnection, steps) -> None:
    release = None
    for request, expected in steps:
        if isinstance(expected, ByRelease):
            if release is None:
                release = protocol_release(conn)
            expected = expected.pick(release)
        conn.send(request)
        if isinstance(expected, Like):
            got = conn.read_until(expected.end)
            assert expected.pattern.fullmatch(got), f"{request!r} -> {got!r}, wanted {expected!r}"
        else:
            try:
                got = conn.read_exactly(len(expected)) if expected else b""
            except TimeoutError as exc:
                pytest.fail(f"{request!r}: {exc}; wanted {expected!r}")
            assert got == expected, f"{request!r} -> {got!r}, wanted {expected!r}"
    extra = conn.pending(0.05)
    assert extra == b"", f"unexpected trailing reply {extra!r}"


@pytest.fixture
def conn(server):
    c = RawConnection(server.address)
    yield c
    c.close()


BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"

TRANSCRIPTS = {
    "set-get": [
        (b"set foo 5 0 3\r\nbar\r\n", b"STORED\r\n"),
        (b"get foo\r\n", b"VALUE foo 5 3\r\nbar\r\nEND\r\n"),
        (b"get nope\r\n", b"END\r\n"),
    ],
    "multi-get-keeps-order-and-duplicates": [
        (b"set a 1 0 1\r\nA\r\n", b"STORED\r\n"),
        (b"set b 2 0 2\r\nBB\r\n", b"STORED\r\n"),
        (b"get a nope b a\r\n", b"VALUE a 1 1\r\nA\r\nVALUE b 2 2\r\nBB\r\nVALUE a 1 1\r\nA\r\nEND\r\n"),
        (b"get x y z\r\n", b"END\r\n"),
    ],
    "gets-cas": [
        (b"set foo 0 0 3\r\nbar\r\n", b"STORED\r\n"),
        (b"gets foo\r\n", Like(rb"VALUE foo 0 3 \d+\r\nbar\r\nEND\r\n", b"END\r\n")),
        (b"cas foo 0 0 3 999999999\r\nbaz\r\n", b"EXISTS\r\n"),
        (b"cas nope 0 0 3 1\r\nbaz\r\n", b"NOT_FOUND\r\n"),
    ],
    "add-replace": [
        (b"add k 0 0 1\r\n1\r\n", b"STORED\r\n"),
        (b"add k 0 0 1\r\n2\r\n", b"NOT_STORED\r\n"),
        (b"replace k 0 0 1\r\n3\r\n", b"STORED\r\n"),
        (b"replace nope 0 0 1\r\n3\r\n", b"NOT_STORED\r\n"),
        (b"get k nope\r\n", b"VALUE k 0 1\r\n3\r\nEND\r\n"),
    ],
    "append-prepend-keep-flags": [
        (b"append nope 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"prepend nope 0 0 1\r\nx\r\n", b"NOT_STORED\r\n"),
        (b"set k 7 0 3\r\nabc\r\n", b"STORED\r\n"),
        (b"append k 9 0 2\r\nde\r\n", b"STORED\r\n"),
        (b"prepend k 9 0 2\r\nzz\r\n", b"STORED\r\n"),
        (b"get k\r\n", b"VALUE k 7 7\r\nzzabcde\r\nEND\r\n"),
    ],
    "delete": [
        (b"set k 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"delete k\r\n", b"DELETED\r\n"),
        (b"delete k\r\n", b"NOT_FOUND\r\n"),
        (b"delete k 0\r\n", b"NOT_FOUND\r\n"),
        (b"set k 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (
            b"delete k 5\r\n",
            ByRelease(b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", b"DELETED\r\n"),
        ),
    ],
    "incr-decr": [
        (b"incr nope 1\r\n", b"NOT_FOUND\r\n"),
        (b"decr nope 1\r\n", b"NOT_FOUND\r\n"),
        (b"set n 0 0 2\r\n10\r\n", b"STORED\r\n"),
        (b"incr n 5\r\n", b"15\r\n"),
        (b"decr n 3\r\n", b"12\r\n"),
        (b"decr n 100\r\n", b"0\r\n"),
        (b"incr n 4294967296\r\n", b"4294967296\r\n"),
        (b"incr n abc\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"incr n -1\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"set s 0 0 1\r\na\r\n", b"STORED\r\n"),
        (b"incr s 1\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
    ],
    "incr-grows-the-value": [
        (b"set n 3 0 2\r\n99\r\n", b"STORED\r\n"),
        (b"incr n 1\r\n", b"100\r\n"),
        (b"get n\r\n", b"VALUE n 3 3\r\n100\r\nEND\r\n"),
    ],
    "touch": [
        (b"set k 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"touch k 100\r\n", b"TOUCHED\r\n"),
        (b"touch nope 100\r\n", b"NOT_FOUND\r\n"),
    ],
    "noreply-is-silent": [
        (b"set k 0 0 1 noreply\r\n1\r\n", b""),
        (b"add k 0 0 1 noreply\r\n2\r\n", b""),
        (b"add k2 0 0 1 noreply\r\n2\r\n", b""),
        (b"replace k 0 0 1 noreply\r\n3\r\n", b""),
        (b"append k 0 0 1 noreply\r\n4\r\n", b""),
        (b"prepend k 0 0 1 noreply\r\n5\r\n", b""),
        (b"incr k 1 noreply\r\n", b""),
        (b"decr k 2 noreply\r\n", b""),
        (b"touch k 100 noreply\r\n", b""),
        (b"delete k2 noreply\r\n", b""),
        (b"delete nope noreply\r\n", b""),
        (b"cas k 0 0 1 1 noreply\r\nx\r\n", b""),
        (b"get k k2\r\n", b"VALUE k 0 3\r\n533\r\nEND\r\n"),
        (b"flush_all noreply\r\n", b""),
        (b"get k\r\n", b"END\r\n"),
    ],
    "flush_all": [
        (b"set k 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"flush_all\r\n", b"OK\r\n"),
        (b"get k\r\n", b"END\r\n"),
        (b"flush_all 0\r\n", b"OK\r\n"),
        (b"flush_all abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n"),
    ],
    "binary-safe-values": [
        (b"set bin 0 0 6\r\n\r\n\x00\xff\r\n\r\n", b"STORED\r\n"),
        (b"get bin\r\n", b"VALUE bin 0 6\r\n\r\n\x00\xff\r\n\r\nEND\r\n"),
        (b"set empty 0 0 0\r\n\r\n", b"STORED\r\n"),
        (b"get empty\r\n", b"VALUE empty 0 0\r\n\r\nEND\r\n"),
    ],
    "flags-range": [
        (b"set f 4294967295 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"get f\r\n", b"VALUE f 4294967295 1\r\nx\r\nEND\r\n"),
    ],
    "negative-exptime-expires-at-once": [
        (b"set k 0 -1 1\r\nx\r\n", b"STORED\r\n"),
        (b"get k\r\n", b"END\r\n"),
    ],
    "version-verbosity": [
        (b"version\r\n", Like(rb"VERSION \S+\r\n")),
        (b"verbosity 1\r\n", b"OK\r\n"),
        (b"verbosity 0 noreply\r\n", b""),
        (b"version\r\n", Like(rb"VERSION \S+\r\n")),
    ],
    "unknown-commands": [
        (b"bogus\r\n", b"ERROR\r\n"),
        (b"\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"get\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"gets\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"incr\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"delete\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"touch k\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"set k 0 0\r\n", ByRelease(b"ERROR\r\n", BAD_FORMAT)),
        (b"version\r\n", Like(rb"VERSION \S+\r\n")),
    ],
    "bad-command-lines": [
        (b"set k 0 0 -1\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        # 1.6.45 swallows the data block of a line refused after its length
        (b"set k x 0 1\r\nv\r\n", ByRelease(BAD_FORMAT + b"ERROR\r\n", BAD_FORMAT)),
        (b"get k\r\n", b"END\r\n"),
    ],
    "key-of-250-bytes": [
        (b"set " + b"k" * 250 + b" 0 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"get " + b"k" * 250 + b"\r\n", b"VALUE " + b"k" * 250 + b" 0 1\r\nx\r\nEND\r\n"),
    ],
    "key-of-251-bytes-rejected": [
        # 1.6.45 ends the error line twice: an empty line follows
        (b"get " + b"k" * 251 + b"\r\n", ByRelease(BAD_FORMAT, BAD_FORMAT + b"\r\n")),
        (b"delete " + b"k" * 251 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"incr " + b"k" * 251 + b" 1\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"touch " + b"k" * 251 + b" 1\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"version\r\n", Like(rb"VERSION \S+\r\n")),
    ],
    "gat-gats": [
        (b"set k 4 0 2\r\nhi\r\n", b"STORED\r\n"),
        (b"gat 100 k nope\r\n", b"VALUE k 4 2\r\nhi\r\nEND\r\n"),
        (b"gats 100 k\r\n", Like(rb"VALUE k 4 2 \d+\r\nhi\r\nEND\r\n", b"END\r\n")),
        (b"gat 100 nope\r\n", b"END\r\n"),
        (b"gat -1 k\r\n", b"VALUE k 4 2\r\nhi\r\nEND\r\n"),
        (b"get k\r\n", b"END\r\n"),
    ],
    "pipelined": [
        (
            b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b\r\nincr a 9\r\ndelete b\r\nget a b\r\n",
            b"STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n10\r\nDELETED\r\n"
            b"VALUE a 0 2\r\n10\r\nEND\r\n",
        ),
    ],
}


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_transcript(conn, name):
    run_transcript(conn, TRANSCRIPTS[name])


def test_gets_unique_changes_on_every_write(conn):
    run_transcript(conn, [(b"set k 0 0 1\r\na\r\n", b"STORED\r\n")])
    conn.send(b"gets k\r\n")
    first = int(conn.read_until(b"END\r\n").split(b"\r\n")[0].split()[-1])
    conn.send(b"cas k 0 0 1 %d\r\nb\r\n" % first)
    assert conn.read_line() == b"STORED\r\n"
    conn.send(b"cas k 0 0 1 %d\r\nc\r\n" % first)
    assert conn.read_line() == b"EXISTS\r\n"
    conn.send(b"gets k\r\n")
    second = int(conn.read_until(b"END\r\n").split(b"\r\n")[0].split()[-1])
    assert second != first
    conn.send(b"append k 0 0 1\r\nz\r\n")
    assert conn.read_line() == b"STORED\r\n"
    conn.send(b"gets k\r\n")
    reply = conn.read_until(b"END\r\n")
    third = int(reply.split(b"\r\n")[0].split()[-1])
    assert third not in (first, second)
    assert reply.endswith(b"\r\nbz\r\nEND\r\n")


def test_incr_wraps_at_64_bits(start_server):
    # On a fresh server: memcached 1.6.18 scans past the end of a value of
    # 2**63 or more for a '-', so on reused memory it may call it non-numeric.
    fresh = start_server()
    with RawConnection(fresh.address) as conn:
        run_transcript(
            conn,
            [
                (b"set n 0 0 1\r\n0\r\n", b"STORED\r\n"),
                (b"incr n 18446744073709551615\r\n", b"18446744073709551615\r\n"),
                (b"incr n 1\r\n", b"0\r\n"),
                (b"set m 0 0 1\r\n5\r\n", b"STORED\r\n"),
                (b"incr m 18446744073709551615\r\n", b"4\r\n"),
            ],
        )


def test_quit_closes_the_connection(conn):
    conn.send(b"quit\r\n")
    assert conn.closed_by_peer(timeout=5)


def test_absolute_exptime(conn):
    """An exptime over 30 days is a unix timestamp (Django relies on it)."""
    now = int(time.time())
    run_transcript(
        conn,
        [
            (b"set past 0 %d 1\r\nx\r\n" % (now - 10), b"STORED\r\n"),
            (b"set future 0 %d 1\r\ny\r\n" % (now + 3600), b"STORED\r\n"),
            (b"get past future\r\n", b"VALUE future 0 1\r\ny\r\nEND\r\n"),
        ],
    )


@pytest.mark.slow
def test_relative_exptime_expires(conn):
    run_transcript(
        conn,
        [
            (b"set short 0 1 1\r\nx\r\n", b"STORED\r\n"),
            (b"set long 0 100 1\r\ny\r\n", b"STORED\r\n"),
            (b"set touched 0 1 1\r\nz\r\n", b"STORED\r\n"),
            (b"touch touched 100\r\n", b"TOUCHED\r\n"),
        ],
    )
    time.sleep(2.1)
    run_transcript(conn, [(b"get short long touched\r\n", b"VALUE long 0 1\r\ny\r\nVALUE touched 0 1\r\nz\r\nEND\r\n")])


def test_item_size_limit(conn):
    """-I defaults to 1 MiB: a value just under fits, one of 1 MiB or more
    does not, the error comes after the data is read, and the connection
    stays usable. As in memcached, a failed set drops the old value."""
    under = 1024 * 1024 - 1024
    conn.send(b"set big 0 0 %d\r\n" % under + b"u" * under + b"\r\n")
    assert conn.read_line() == b"STORED\r\n"
    conn.send(b"get big\r\n")
    reply = conn.read_until(b"END\r\n", timeout=10)
    assert reply == b"VALUE big 0 %d\r\n" % under + b"u" * under + b"\r\nEND\r\n"
    for size in (1024 * 1024, 1024 * 1024 + 1, 2 * 1024 * 1024):
        conn.send(b"set big 0 0 %d\r\n" % size + b"o" * size + b"\r\n")
        assert conn.read_line(timeout=10) == b"SERVER_ERROR object too large for cache\r\n", size
    run_transcript(conn, [(b"get big\r\n", b"END\r\n"), (b"set small 0 0 1\r\nx\r\n", b"STORED\r\n")])


def test_stats_core_fields(conn):
    run_transcript(
        conn,
        [
            (b"set k 0 0 1\r\nx\r\n", b"STORED\r\n"),
            (b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n"),
            (b"get nope\r\n", b"END\r\n"),
        ],
    )
    conn.send(b"stats\r\n")
    reply = conn.read_until(b"END\r\n")
    lines = reply.split(b"\r\n")
    assert lines[-2:] == [b"END", b""]
    stats = {}
    for line in lines[:-2]:
        parts = line.split(b" ", 2)
        assert parts[0] == b"STAT" and len(parts) == 3, line
        stats[parts[1].decode()] = parts[2].decode()
    for name in (
        "pid", "uptime", "time", "version", "curr_connections", "total_connections",
        "cmd_get", "cmd_set", "get_hits", "get_misses", "curr_items", "total_items",
        "bytes", "limit_maxbytes", "threads", "evictions",
    ):
        assert name in stats, f"missing stat {name}"
    assert int(stats["curr_items"]) >= 1  # memcached reclaims flushed items lazily
    assert int(stats["get_hits"]) >= 1 and int(stats["get_misses"]) >= 1
    assert abs(int(stats["time"]) - time.time()) < 5
    assert int(stats["limit_maxbytes"]) == 64 * 1024 * 1024


@pytest.mark.parametrize("group", ["settings", "items", "slabs", "sizes", "conns"])
def test_stats_groups(conn, group):
    """The stats groups monitoring tools (and memcstat's arguments) ask for."""
    run_transcript(conn, [(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")])
    conn.send(b"stats %s\r\n" % group.encode())
    reply = conn.read_line()
    assert reply.startswith(b"STAT "), reply
    reply += conn.read_until(b"END\r\n")
    assert re.fullmatch(rb"(STAT \S+ [^\r\n]*\r\n)+END\r\n", reply), reply[:300]


def test_stats_reset(conn):
    run_transcript(conn, [(b"get nope\r\n", b"END\r\n"), (b"stats reset\r\n", b"RESET\r\n")])
    conn.send(b"stats\r\n")
    assert b"\r\nSTAT get_misses 0\r\n" in conn.read_until(b"END\r\n")


class TestMemcachedQuirks:
    """Odd corners of memcached's parser that clients can run into."""

    def test_decr_shortening_a_number(self, conn):
        # memcached rewrites the value in place, padded with spaces, when no
        # one else holds the item, and stores a fresh shorter item otherwise.
        run_transcript(conn, [(b"set n 0 0 3\r\n100\r\n", b"STORED\r\n"), (b"decr n 1\r\n", b"99\r\n")])
        conn.send(b"get n\r\n")
        assert conn.read_until(b"END\r\n") in (
            b"VALUE n 0 3\r\n99 \r\nEND\r\n",
            b"VALUE n 0 2\r\n99\r\nEND\r\n",
        )
        run_transcript(conn, [(b"incr n 1\r\n", b"100\r\n"), (b"get n\r\n", b"VALUE n 0 3\r\n100\r\nEND\r\n")])

    def test_bad_data_chunk(self, conn):
        # Data longer than announced: the old value stays.
        run_transcript(
            conn,
            [
                (b"set k 0 0 3\r\nold\r\n", b"STORED\r\n"),
                (
                    b"set k 0 0 3\r\nnewer\r\n",
                    # then the stray "r\r\n", too short for a command in 1.6.45
                    ByRelease(b"CLIENT_ERROR bad data chunk\r\nERROR\r\n", b"CLIENT_ERROR bad data chunk\r\n" + BAD_FORMAT),
                ),
                (b"get k\r\n", b"VALUE k 0 3\r\nold\r\nEND\r\n"),
            ],
        )

    def test_bad_key_in_set_swallows_data_since_1_6_45(self, conn):
        run_transcript(
            conn,
            [
                (b"set " + b"k" * 251 + b" 0 0 3\r\nbar\r\n", ByRelease(BAD_FORMAT + b"ERROR\r\n", BAD_FORMAT)),
                (b"set k bad 0 3\r\nabc\r\n", ByRelease(BAD_FORMAT + b"ERROR\r\n", BAD_FORMAT)),
            ],
        )

    def test_commands_are_case_sensitive(self, conn):
        run_transcript(
            conn,
            [
                # "x" is then a line of its own, too short for a command in 1.6.45
                (b"SET k 0 0 1\r\nx\r\n", ByRelease(b"ERROR\r\nERROR\r\n", b"ERROR\r\n" + BAD_FORMAT)),
                (b"GET k\r\n", b"ERROR\r\n"),
            ],
        )

    def test_leading_spaces_in_numbers(self, conn):
        run_transcript(
            conn,
            [
                (b"set n 0 0 2\r\n 5\r\n", b"STORED\r\n"),
                (b"incr n 1\r\n", b"6\r\n"),
            ],
        )
