#!/usr/bin/env python3
"""Writes the seed corpus: request streams taken from the memcached text
protocol (PROTOCOL.md's examples and edge cases) and binary packets (every
opcode, quiet forms, the lengths memcached refuses), each behind the 3
header bytes the targets read (configuration selector, then a 16-bit cut
seed). The connection target gets both; a binary stream starts with 0x80."""
import os
import struct


def pkt(op, key=b"", extras=b"", value=b"", opaque=0, cas=0, bodylen=None, magic=0x80):
    body = len(key) + len(extras) + len(value) if bodylen is None else bodylen
    return struct.pack(">BBHBBHIIQ", magic, op, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


def se(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def ie(delta=1, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


K251 = b"k" * 251
STREAMS = [
    b"set k 0 0 5\r\nhello\r\nget k\r\n",
    b"set k 5 100 3 noreply\r\nabc\r\ngets k\r\n",
    b"add k 0 0 1\r\na\r\nadd k 0 0 1\r\nb\r\nreplace x 0 0 1\r\nc\r\n",
    b"set k 0 0 1\r\na\r\nappend k 9 9 2\r\n>>\r\nprepend k 0 0 2\r\n<<\r\nget k\r\n",
    b"set k 0 0 1\r\na\r\ngets k\r\ncas k 0 0 1 1\r\nb\r\ncas k 0 0 1 0\r\nc\r\ncas nokey 0 0 1 5\r\nd\r\n",
    b"set n 0 0 3\r\n100\r\ndecr n 1\r\nget n\r\nincr n 18446744073709551615\r\nincr n 2\r\n",
    b"set n 0 0 2\r\n12\r\nincr n abc\r\nincr n -1\r\nincr nokey 1\r\nset t 0 0 3\r\nabc\r\nincr t 1\r\n",
    b"touch k 10\r\ntouch k -1\r\ntouch k noreply\r\ngat 10 a b c\r\ngats 0 k\r\ngat 10\r\n",
    b"delete k\r\ndelete k 0\r\ndelete k 10\r\ndelete k noreply\r\ndelete\r\n",
    b"flush_all\r\nflush_all 10\r\nflush_all noreply\r\nflush_all abc\r\nflush_all 0 0 0\r\n",
    b"version\r\nverbosity 1\r\nverbosity\r\nverbosity abc\r\nmn\r\nstats\r\nstats settings\r\nstats reset\r\nstats sizes\r\nstats bogus\r\n",
    b"   version   \r\nversion\r\r\n\r\n\n   \r\nVERSION\r\nset\tk 0 0 1\r\nget a\tb\r\n",
    b"set a\0b 0 0 1\r\nx\r\nget k\0junk\r\n",
    b"set k 0 0 3\r\nabcde\r\nget k\r\n",
    b"set k 0 0\r\nabc\r\nset k abc 0 1\r\nx\r\nset " + K251 + b" 0 0 1\r\nx\r\n",
    b"get " + K251 + b"\r\nget a " + K251 + b" b\r\n",
    b"set big 0 0 2000\r\n" + b"x" * 2000 + b"\r\nget big\r\n",
    b"set big 0 0 2000000000\r\n" + b"x" * 300,
    b"set k 4294967296 0 1\r\nx\r\nset k 0 99999999999 1\r\nx\r\nset k 0 0 4294967297\r\nx\r\n",
    b"set k 0 0 1\r\nx\r\nquit\r\nget k\r\n",
    b"shutdown\r\nshutdown graceful\r\nshutdown foo\r\n",
    b"cache_memlimit 7\r\ncache_memlimit 8\r\ncache_memlimit 2000000000\r\ncache_memlimit\r\n",
    b"GET / HTTP/1.1\r\n",
    b"\x80\x00\x00\x00",
    b"x" * 2100,
    b"get " + b"k " * 1500 + b"\r\n",
    b"set a 0 0 1 noreply\r\n1\r\nset b 0 0 1 noreply\r\n2\r\nget a b a\r\nmn\r\n",
    b"incr k 5 noreply\r\ndecr k 5 noreply\r\ntouch k 5 noreply\r\nverbosity 1 noreply\r\n",
    b"set k 0 0 5 NOREPLY\r\nhello\r\nset k 0 0 5 noreply x\r\nhello\r\n",
    b"bget k\r\nget foo noreply\r\ngets\r\nget \r\n",
    b"set k 0 -1 1\r\nx\r\nget k\r\nset k 0 2592001 1\r\nx\r\nget k\r\n",
    b"".join(b"set k%d 0 0 100\r\n%s\r\n" % (i, b"v" * 100) for i in range(60)) + b"get k0 k59\r\n",
]

BINARY = [
    pkt(0x01, b"k", se(5, 0), b"hello", opaque=1) + pkt(0x00, b"k", opaque=2) + pkt(0x0C, b"k") + pkt(0x0A),
    pkt(0x11, b"a", se(), b"1") + pkt(0x12, b"a", se(), b"2") + pkt(0x13, b"b", se(), b"3") + pkt(0x09, b"a") + pkt(0x0D, b"b") + pkt(0x0A),
    pkt(0x01, b"c", se(), b"x") + pkt(0x01, b"c", se(), b"y", cas=1) + pkt(0x02, b"c", se(), b"z", cas=99) + pkt(0x04, b"c", cas=5),
    pkt(0x05, b"n", ie(1, 10, 0)) + pkt(0x06, b"n", ie(100, 0, 0)) + pkt(0x15, b"m", ie(1, 0, 0xFFFFFFFF)) + pkt(0x16, b"n", ie()) + pkt(0x0A),
    pkt(0x0E, b"k", b"", b">>") + pkt(0x0F, b"k", b"", b"<<") + pkt(0x19, b"x", b"", b"1") + pkt(0x1A, b"k", b"", b"2"),
    pkt(0x1C, b"k", struct.pack(">I", 10)) + pkt(0x1D, b"k", struct.pack(">I", 10)) + pkt(0x1E, b"no", struct.pack(">I", 1)) + pkt(0x23, b"k", struct.pack(">I", 0)) + pkt(0x24, b"k", struct.pack(">I", 0)),
    pkt(0x08) + pkt(0x18, extras=struct.pack(">I", 10)) + pkt(0x0B) + pkt(0x1B, extras=struct.pack(">I", 1)) + pkt(0x0A),
    pkt(0x10) + pkt(0x10, b"settings") + pkt(0x10, b"items") + pkt(0x10, b"detail dump") + pkt(0x10, b"bogus") + pkt(0x10, b"reset"),
    pkt(0x00, b"ab", bodylen=1) + pkt(0x0A),
    pkt(0x00, b"k" * 251) + pkt(0x0A),
    pkt(0x00, b"k", b"ext") + pkt(0x0A),
    pkt(0x50, b"ab", b"xy", b"zz") + pkt(0x0A) + pkt(0x0A),
    pkt(0x0A) + pkt(0x0A, magic=0x81),
    pkt(0x01, b"big", se(), b"x" * 2000) + pkt(0x00, b"big"),
    pkt(0x01, b"huge", se(), bodylen=0x7FFFFFF0) + b"\0" * 200,
    pkt(0x01, b"neg", se(), bodylen=0xC0000000) + pkt(0x0A),
    pkt(0x20) + pkt(0x21, b"PLAIN", b"", b"\0user\0pass") + pkt(0x22, b"PLAIN", b"", b"x") + pkt(0x0A),
    pkt(0x07) + pkt(0x0A),
    pkt(0x17),
    pkt(0x10, b"items", bodylen=5 + 24) + pkt(0x0A),
    pkt(0x01, b"k", se(), b"v")[:30],
]

# The connection target's SASL mode (selector bit 7, a pwdb naming user with
# password pass): a valid PLAIN auth first, so that what follows is served;
# then the binary streams (those with SASL requests of their own only after
# a plain one: the replay test compares the rest with a plain connection),
# a bad password, and requests with no auth.
AUTH = pkt(0x21, b"PLAIN", b"", b"\0user\0pass")
SASL = [AUTH + s for s in BINARY if not s.startswith(pkt(0x20))] + [
    AUTH + pkt(0x20) + pkt(0x21, b"PLAIN", b"", b"\0user\0pass") + pkt(0x22, b"PLAIN", b"", b"x") + pkt(0x0A),
    pkt(0x21, b"PLAIN", b"", b"\0user\0wrong") + pkt(0x00, b"k") + pkt(0x0A),
    pkt(0x01, b"k", se(), b"v") + pkt(0x0A),
    pkt(0x0B) + pkt(0x20) + AUTH + pkt(0x01, b"k", se(), b"v") + pkt(0x00, b"k"),
]
SASL_SELECTORS = (0x80, 0x81, 0x82, 0x80 | 8, 0x80 | 64 | 1)

here = os.path.dirname(os.path.abspath(__file__))
for target, selectors, streams in (
    ("decoder", (0, 1, 2), STREAMS),
    ("binary_decoder", (0, 1, 2, 0x80, 0x81), BINARY),
    ("connection", (0, 1, 2, 3, 8, 20, 64 + 1), STREAMS + BINARY),
):
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    n = 0
    for i, s in enumerate(streams):
        sel = selectors[i % len(selectors)]
        cut = (i * 7919) & 0xFFFF
        with open(os.path.join(d, "%03d" % n), "wb") as f:
            f.write(bytes([sel, cut & 0xFF, cut >> 8]) + s)
        n += 1
    if target == "connection":
        for i, s in enumerate(SASL):
            sel = SASL_SELECTORS[i % len(SASL_SELECTORS)]
            cut = (i * 104729) & 0xFFFF
            with open(os.path.join(d, "%03d" % n), "wb") as f:
                f.write(bytes([sel, cut & 0xFF, cut >> 8]) + s)
            n += 1
