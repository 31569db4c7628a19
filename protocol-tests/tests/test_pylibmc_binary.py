"""pylibmc (libmemcached) in binary mode, ``binary=True``, as Django's
``PyLibMCCache`` documentation configures it: every operation goes over the
memcached binary protocol, and behaves as against memcached."""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor

import pylibmc
import pytest

from support.proxy import RecordingProxy
from support.raw import RawConnection

MiB = 1024 * 1024
TIMEOUTS = {"connect_timeout": 5000, "_poll_timeout": 10000}


def make_client(hostport: str, **behaviors) -> pylibmc.Client:
    return pylibmc.Client([hostport], binary=True, behaviors={**TIMEOUTS, **behaviors})


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


def test_binary_protocol_on_the_wire(proxy):
    c = make_client(proxy.hostport)
    assert c.set("wire", "v") is True
    assert c.get("wire") == "v"
    c.disconnect_all()
    sent = proxy.wait_for(b"wire")
    # A set request packet: magic 0x80, opcode 0x01, key length 4, 8 bytes of extras.
    assert sent[:2] == b"\x80\x01", sent[:24]
    assert struct.unpack(">HB", sent[2:5]) == (4, 8)


def test_set_get_delete(mc):
    assert mc.set("k", b"v") is True
    assert mc.get("k") == b"v"
    assert mc.get("missing") is None
    assert mc.delete("k") is True
    assert mc.delete("k") is False


def test_multi(mc):
    values = {f"key{i}": f"value{i}" for i in range(300)}
    assert mc.set_multi(values) == []
    assert mc.get_multi(list(values) + ["absent"]) == values
    assert mc.get_multi(["a", "b"], key_prefix="none_") == {}
    assert mc.set_multi({"a": 1, "b": 2}, key_prefix="p_") == []
    assert mc.get_multi(["a", "b"], key_prefix="p_") == {"a": 1, "b": 2}
    assert mc.delete_multi(["key1", "key2"]) is True
    assert mc.delete_multi(["key1", "key3"]) is False
    assert "key3" not in mc.get_multi(["key3"])


def test_add_replace_append_prepend(mc):
    assert mc.add("k", "1") is True
    assert mc.add("k", "2") is False
    assert mc.replace("k", "3") is True
    # In binary, a replace of a missing key is "not found", which pylibmc raises.
    with pytest.raises(pylibmc.NotFound):
        mc.replace("missing", "3")
    assert mc.append("k", "4") is True
    assert mc.prepend("k", "2") is True
    assert mc.get("k") == "234"
    assert mc.append("missing", "x") is False
    assert mc.prepend("missing", "x") is False


def test_incr_decr(mc):
    # libmemcached asks not to create a missing counter (expiration 0xffffffff).
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
    assert mc.get("k") == "v"


def test_flush_and_stats(mc, server):
    mc.set_multi({"a": "1", "b": "2"})
    mc.get("a")
    stats = mc.get_stats()
    assert len(stats) == 1
    name, values = stats[0]
    assert name.decode().startswith(server.hostport)
    assert int(values["curr_items"]) >= 2
    assert int(values["get_hits"]) >= 1
    assert values["version"]
    (_, items), = mc.get_stats("items")
    assert items is not None
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


def test_too_big_value_is_refused_by_the_server(mc, proxy):
    c = make_client(proxy.hostport)
    near = os.urandom(MiB - 1024)
    assert c.set("big", near) is True
    assert c.get("big") == near
    with pytest.raises(pylibmc.TooBig):
        c.set("big", os.urandom(MiB + 1))
    # it was sent, so it is the server that said no (and unlinked the old value)
    assert c.get("big") is None
    assert c.set("after", "ok") is True and c.get("after") == "ok"
    c.disconnect_all()


def test_noreply_uses_the_quiet_opcodes(server, proxy):
    fast = make_client(proxy.hostport, no_block=True, _noreply=True)
    for i in range(200):
        fast.set(f"nb{i}", i)
    fast.add("nb-added", "a")
    fast.replace("nb0", "replaced")
    fast.delete("nb1")
    # A get answers after everything sent before it on this connection has
    # run: without it the check below raced the last quiet writes, still on
    # their way through the proxy or queued behind the -R budget.
    assert fast.get("nb-added") == "a"
    fast.disconnect_all()
    # SETQ (0x11) packets went out.
    assert b"\x80\x11" in proxy.wait_for(b"nb199")
    check = make_client(server.hostport)
    got = check.get_multi([f"nb{i}" for i in range(200)] + ["nb-added"])
    assert got["nb0"] == "replaced" and "nb1" not in got and got["nb199"] == 199
    assert got["nb-added"] == "a" and len(got) == 200
    check.disconnect_all()


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


def test_binary_and_text_clients_share_the_store(server):
    binary = make_client(server.hostport)
    text = pylibmc.Client([server.hostport], binary=False, behaviors=TIMEOUTS)
    binary.set("shared", "from binary")
    assert text.get("shared") == "from binary"
    text.set("other", 7)
    assert binary.get("other") == 7
    binary.disconnect_all()
    text.disconnect_all()


def test_binary_only_server(start_server):
    srv = start_server(["-B", "binary"])
    c = make_client(srv.hostport)
    assert c.set("k", "v") is True and c.get("k") == "v"
    c.disconnect_all()
    # A text request is no binary header: the server closes the connection.
    with RawConnection(srv.address) as raw:
        raw.send(b"version\r\n" + b" " * 15)
        with pytest.raises(ConnectionError, match="closed"):
            raw.read_until(b"never", timeout=5)
