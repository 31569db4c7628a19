"""pylibmc (libmemcached, Django's PyLibMCCache) in text mode, unchanged."""

from __future__ import annotations

import os
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pylibmc
import pytest

from support.proxy import RecordingProxy
from support.raw import RawConnection

MiB = 1024 * 1024
TIMEOUTS = {"connect_timeout": 5000, "_poll_timeout": 10000}


def make_client(hostport: str, **behaviors) -> pylibmc.Client:
    return pylibmc.Client([hostport], binary=False, behaviors={**TIMEOUTS, **behaviors})


@pytest.fixture
def mc(server):
    c = make_client(server.hostport, cas=True)
    yield c
    c.disconnect_all()


@pytest.fixture
def proxy(server):
    p = RecordingProxy(server.address).start()
    yield p
    p.stop()


def test_text_protocol_on_the_wire(proxy):
    c = make_client(proxy.hostport)
    c.set("wire", "v")
    assert c.get("wire") == "v"
    c.disconnect_all()
    sent = proxy.wait_for(b"get wire\r\n")
    assert re.match(rb"set wire \d+ 0 1\r\nv\r\nget wire\r\n", sent), sent


def test_set_get_delete(mc):
    assert mc.set("k", b"v") is True
    assert mc.get("k") == b"v"
    assert mc.get("missing") is None
    assert mc.delete("k") is True
    assert mc.delete("k") is False


def test_multi(mc):
    values = {f"key{i}": f"value{i}" for i in range(300)}
    assert mc.set_multi(values) == []
    got = mc.get_multi(list(values) + ["absent"])
    assert got == values
    assert mc.get_multi(["a", "b"], key_prefix="none_") == {}
    assert mc.set_multi({"a": 1, "b": 2}, key_prefix="p_") == []
    assert mc.get_multi(["a", "b"], key_prefix="p_") == {"a": 1, "b": 2}
    assert mc.delete_multi(["key1", "key2"]) is True
    assert mc.delete_multi(["key1", "key3"]) is False  # key1 was already gone
    assert "key3" not in mc.get_multi(["key3"])


def test_add_replace_append_prepend(mc):
    assert mc.add("k", "1") is True
    assert mc.add("k", "2") is False
    assert mc.replace("k", "3") is True
    assert mc.replace("missing", "3") is False
    assert mc.append("k", "4") is True
    assert mc.prepend("k", "2") is True
    assert mc.get("k") == "234"
    assert mc.append("missing", "x") is False
    assert mc.prepend("missing", "x") is False


def test_incr_decr(mc):
    with pytest.raises(pylibmc.NotFound):
        mc.incr("missing")
    with pytest.raises(pylibmc.NotFound):
        mc.decr("missing")
    mc.set("n", 10)
    assert mc.incr("n") == 11
    assert mc.incr("n", 9) == 20
    assert mc.decr("n", 25) == 0
    assert mc.get("n") == 0
    mc.set("s", "text")
    with pytest.raises(pylibmc.Error):
        mc.incr("s")


def test_cas(mc):
    mc.set("k", "v1")
    value, cas = mc.gets("k")
    assert value == "v1" and cas > 0
    assert mc.cas("k", "v2", cas) is True
    assert mc.cas("k", "v3", cas) is False
    assert mc.get("k") == "v2"
    assert mc.gets("missing") == (None, None)


def test_touch(mc):
    mc.set("k", "v", time=100)
    assert mc.touch("k", 200) is True
    assert mc.touch("missing", 200) is False


@pytest.mark.slow
def test_expiry(mc):
    mc.set("short", "v", time=1)
    mc.set("long", "v", time=100)
    mc.set("touched", "v", time=1)
    mc.touch("touched", 100)
    time.sleep(2.1)
    assert mc.get_multi(["short", "long", "touched"]) == {"long": "v", "touched": "v"}


def test_flush_and_stats(mc, server):
    mc.set_multi({"a": "1", "b": "2"})
    mc.get("a")
    stats = mc.get_stats()
    assert len(stats) == 1
    name, values = stats[0]
    assert name.decode().startswith(server.hostport)
    assert int(values["curr_items"]) >= 2  # memcached reclaims flushed items lazily
    assert int(values["get_hits"]) >= 1
    assert values["version"]
    assert mc.flush_all() is True
    assert mc.get_multi(["a", "b"]) == {}


def test_python_values(mc):
    values = {"int": 42, "long": 2**40, "str": "text", "bytes": b"raw", "bool": True,
              "dict": {"a": [1, 2, (3,)]}, "unicode": "значение"}
    for key, value in values.items():
        assert mc.set(key, value)
    assert mc.get_multi(list(values)) == values
    assert mc.incr("int", 1) == 43


def test_binary_values(mc):
    blob = bytes(range(256)) * 64 + b"\r\nEND\r\n\x00"
    mc.set("blob", blob)
    assert mc.get("blob") == blob
    mc.set("empty", b"")
    assert mc.get("empty") == b""


def test_keys(mc):
    assert mc.set("k" * 250, "v") is True
    assert mc.get("k" * 250) == "v"
    with pytest.raises(ValueError, match="too long"):
        mc.set("k" * 251, "v")
    with pytest.raises(ValueError, match="too long"):
        mc.get("k" * 251)


def test_too_big_value_is_refused_by_the_server(mc, proxy):
    c = make_client(proxy.hostport)
    near = os.urandom(MiB - 1024)
    assert c.set("big", near) is True
    assert c.get("big") == near
    with pytest.raises(pylibmc.TooBig):
        c.set("big", os.urandom(MiB + 1))
    # it was sent, so it is the server that said no
    assert re.search(rb"set big \d+ 0 1048577\r\n", proxy.wait_for(re.compile(rb"set big \d+ 0 1048577\r\n")))
    assert c.get("big") is None
    assert c.set("after", "ok") is True and c.get("after") == "ok"
    c.disconnect_all()


def test_compression_of_large_values(mc, server):
    text = (b"The quick brown fox jumps over the lazy dog. " * 50000)[: 2 * MiB]
    assert mc.set("compressed", text, min_compress_len=1024) is True
    assert mc.get("compressed") == text
    # on the server it is stored zlib-compressed, well under the item limit
    with RawConnection(server.address) as raw:
        raw.send(b"get compressed\r\n")
        header = raw.read_line()
        _, key, flags, length = header.split()
        assert int(flags) & 8, header  # pylibmc's zlib flag
        stored = raw.read_exactly(int(length))
        assert raw.read_until(b"END\r\n") == b"\r\nEND\r\n"
    assert int(length) < MiB
    assert zlib.decompress(stored) == text
    # a small value stays uncompressed
    mc.set("small", b"x" * 100, min_compress_len=1024)
    assert mc.get("small") == b"x" * 100


def test_noreply_and_no_block(server, proxy):
    fast = make_client(proxy.hostport, no_block=True, _noreply=True)
    for i in range(200):
        fast.set(f"nb{i}", i)
    fast.add("nb-added", "a")
    fast.replace("nb0", "replaced")
    fast.delete("nb1")
    fast.disconnect_all()  # flushes anything still buffered
    wanted = re.compile(rb"set nb199 \d+ 0 3 noreply\r\n199\r\n.*delete nb1 noreply\r\n", re.S)
    assert wanted.search(proxy.wait_for(wanted)), proxy.sent[-300:]
    check = make_client(server.hostport)
    # The proxy has seen the bytes, not the server run them: they go on
    # another connection, which another worker may serve later than this
    # one. Once its last command (the delete) has run, all before it have.
    deadline = time.monotonic() + 5
    while check.get("nb1") is not None:
        assert time.monotonic() < deadline, "the noreply delete never ran"
        time.sleep(0.01)
    got = check.get_multi([f"nb{i}" for i in range(200)] + ["nb-added"])
    assert got["nb0"] == "replaced" and "nb1" not in got and got["nb199"] == 199
    assert got["nb-added"] == "a" and len(got) == 200
    blocking = make_client(server.hostport, no_block=True)
    for i in range(50):
        assert blocking.set(f"b{i}", i) is True
    assert blocking.get("b49") == 49
    check.disconnect_all()
    blocking.disconnect_all()


def test_client_pool_under_threads(server):
    master = make_client(server.hostport)
    master.set("counter", 0)
    threads, rounds = 8, 100
    pool = pylibmc.ClientPool(master, threads)

    def worker(n):
        for i in range(rounds):
            with pool.reserve(block=True) as c:
                c.set(f"t{n}-{i}", n * i)
                assert c.get(f"t{n}-{i}") == n * i
                c.incr("counter")

    with ThreadPoolExecutor(max_workers=threads) as ex:
        list(ex.map(worker, range(threads)))
    assert master.get("counter") == threads * rounds
    master.disconnect_all()
