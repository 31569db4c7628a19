"""A person typing into ``telnet``/``nc``: bare ``\\n`` line endings, one
keystroke-sized piece at a time, and replies that always end in ``\\r\\n``.

memcached accepts a bare ``\\n`` at the end of a command line. The data block
of a storage command is a byte count, so its terminator must be ``\\r\\n``.
"""

from __future__ import annotations

import time

import pytest

from support.raw import RawConnection


def type_slowly(conn: RawConnection, text: bytes, piece: int = 3) -> None:
    for i in range(0, len(text), piece):
        conn.send(text[i : i + piece])
        time.sleep(0.002)


@pytest.fixture
def conn(server):
    c = RawConnection(server.address)
    yield c
    c.close()


def test_typed_session(conn):
    session = [
        (b"version\n", None),
        (b"set greeting 0 0 5\nhello\r\n", b"STORED\r\n"),
        (b"get greeting\n", b"VALUE greeting 0 5\r\nhello\r\nEND\r\n"),
        (b"append greeting 0 0 6\n world\r\n", b"STORED\r\n"),
        (b"get greeting nope\n", b"VALUE greeting 0 11\r\nhello world\r\nEND\r\n"),
        (b"set counter 0 0 1\n7\r\n", b"STORED\r\n"),
        (b"incr counter 35\n", b"42\r\n"),
        (b"decr counter 2\n", b"40\r\n"),
        (b"touch counter 60\n", b"TOUCHED\r\n"),
        (b"delete greeting\n", b"DELETED\r\n"),
        (b"delete greeting\n", b"NOT_FOUND\r\n"),
        (b"add counter 0 0 1\nx\r\n", b"NOT_STORED\r\n"),
        (b"nonsense\n", b"ERROR\r\n"),
        (b"verbosity 1\n", b"OK\r\n"),
        (b"flush_all\n", b"OK\r\n"),
        (b"get counter\n", b"END\r\n"),
    ]
    for typed, expected in session:
        type_slowly(conn, typed)
        if expected is None:
            line = conn.read_line()
            assert line.startswith(b"VERSION ") and line.endswith(b"\r\n")
        else:
            assert conn.read_exactly(len(expected)) == expected, typed
    assert conn.pending(0.05) == b""


def test_gets_and_cas_typed(conn):
    type_slowly(conn, b"set k 0 0 2\nv1\r\ngets k\n")
    assert conn.read_line() == b"STORED\r\n"
    header = conn.read_line()
    assert header.startswith(b"VALUE k 0 2 ")
    assert conn.read_until(b"END\r\n") == b"v1\r\nEND\r\n"
    unique = int(header.split()[-1])
    type_slowly(conn, b"cas k 0 0 2 %d\nv2\r\n" % unique)
    assert conn.read_line() == b"STORED\r\n"
    type_slowly(conn, b"cas k 0 0 2 %d\nv3\r\n" % unique)
    assert conn.read_line() == b"EXISTS\r\n"


def test_stats_typed(conn):
    type_slowly(conn, b"stats\n")
    reply = conn.read_until(b"END\r\n")
    assert reply.startswith(b"STAT pid ")
    assert b"\r\nSTAT curr_connections " in reply


def test_data_block_with_bare_newline_waits_for_its_bytes(conn):
    # "bar\n" is 4 of the 5 bytes the server expects (3 + "\r\n"), so it
    # keeps waiting; the next line's first byte completes a bad chunk.
    type_slowly(conn, b"set k 0 0 3\nbar\n")
    assert conn.pending(0.3) == b""
    type_slowly(conn, b"get k\n")
    assert conn.read_exactly(len(b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")) == (
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    )
    type_slowly(conn, b"get k\n")
    assert conn.read_exactly(5) == b"END\r\n"


def test_quit_typed(conn):
    type_slowly(conn, b"quit\n")
    assert conn.closed_by_peer(timeout=5)
