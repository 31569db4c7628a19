"""pymemcache, the client behind Django's PyMemcacheCache, unchanged."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pymemcache import serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
)

MiB = 1024 * 1024


def make_client(server, **kwargs) -> Client:
    kwargs.setdefault("connect_timeout", 5)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("default_noreply", False)
    return Client(server.address, **kwargs)


@pytest.fixture
def client(server):
    c = make_client(server)
    yield c
    c.close()


def test_set_get(client):
    assert client.set("k", b"v") is True
    assert client.get("k") == b"v"
    assert client.get("missing") is None
    assert client.get("missing", default=b"d") == b"d"


def test_set_many_get_many(client):
    values = {f"key{i}": f"value{i}".encode() for i in range(100)}
    assert client.set_many(values) == []
    got = client.get_many(list(values) + ["absent1", "absent2"])
    assert got == values
    assert client.get_many([]) == {}


def test_gets_and_cas(client):
    assert client.gets("missing") == (None, None)
    client.set("k", b"v1")
    value, cas = client.gets("k")
    assert value == b"v1" and cas.isdigit()
    assert client.cas("k", b"v2", cas) is True
    assert client.cas("k", b"v3", cas) is False  # EXISTS: someone changed it
    assert client.get("k") == b"v2"
    assert client.cas("missing", b"x", cas) is None  # NOT_FOUND
    many = client.gets_many(["k", "missing"])
    assert list(many) == ["k"] and many["k"][0] == b"v2" and many["k"][1] != cas


def test_add_replace(client):
    assert client.add("k", b"1") is True
    assert client.add("k", b"2") is False
    assert client.replace("k", b"3") is True
    assert client.replace("missing", b"3") is False
    assert client.get("k") == b"3"
    assert client.get("missing") is None


def test_append_prepend(client):
    assert client.append("missing", b"x") is False
    assert client.prepend("missing", b"x") is False
    client.set("k", b"middle", flags=5)
    assert client.append("k", b">") is True
    assert client.prepend("k", b"<") is True
    assert client.get("k") == b"<middle>"
    assert client.raw_command("get k", "END\r\n").startswith(b"VALUE k 5 8")


def test_incr_decr(client):
    assert client.incr("missing", 1) is None
    assert client.decr("missing", 1) is None
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0  # never below zero
    assert client.incr("n", 2**62) == 2**62
    client.set("s", b"text")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        client.incr("s", 1)


def test_touch(client):
    client.set("k", b"v", expire=100)
    assert client.touch("k", 200) is True
    assert client.touch("missing", 200) is False


def test_delete(client):
    client.set("k", b"v")
    assert client.delete("k") is True
    assert client.delete("k") is False
    client.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert client.delete_many(["a", "b", "missing"]) is True
    assert client.get_many(["a", "b", "c"]) == {"c": b"3"}


def test_flush_all(client):
    client.set_many({"a": b"1", "b": b"2"})
    assert client.flush_all() is True
    assert client.get_many(["a", "b"]) == {}


def test_stats_and_version(client, target):
    client.set("k", b"v")
    client.get("k")
    client.get("missing")
    stats = client.stats()
    for name in (b"pid", b"uptime", b"curr_items", b"total_items", b"get_hits", b"get_misses",
                 b"cmd_get", b"cmd_set", b"curr_connections", b"limit_maxbytes", b"bytes"):
        assert name in stats, name
    assert stats[b"curr_items"] >= 1  # memcached reclaims flushed items lazily
    assert stats[b"get_hits"] >= 1 and stats[b"get_misses"] >= 1
    assert isinstance(stats[b"version"], bytes) and stats[b"version"]
    version = client.version()
    assert version == stats[b"version"]
    if target == "memcached":
        assert version == b"1.6.18"


@pytest.mark.slow
def test_expiry(client):
    client.set("short", b"v", expire=1)
    client.set("long", b"v", expire=100)
    client.set("touched", b"v", expire=1)
    client.touch("touched", 100)
    time.sleep(2.1)
    assert client.get_many(["short", "long", "touched"]) == {"long": b"v", "touched": b"v"}


def test_values_near_the_item_size_limit(client):
    near = bytes(range(256)) * ((MiB - 1024) // 256)
    assert client.set("big", near) is True
    assert client.get("big") == near
    for size in (MiB, MiB + 1):
        with pytest.raises(MemcacheServerError, match="object too large for cache"):
            client.set("big", b"x" * size)
    # the connection is still in step with the server
    assert client.get("big") is None
    assert client.set("after", b"ok") is True and client.get("after") == b"ok"


def test_binary_values(client):
    blob = bytes(range(256)) * 64 + b"\r\nEND\r\n\x00"
    client.set("blob", blob)
    assert client.get("blob") == blob
    client.set("empty", b"")
    assert client.get("empty") == b""
    assert client.get_many(["blob", "empty"]) == {"blob": blob, "empty": b""}


def test_key_length_limit(client):
    ok = "k" * 250
    assert client.set(ok, b"v") is True
    assert client.get(ok) == b"v"
    # pymemcache refuses a 251-byte key before sending it ...
    with pytest.raises(MemcacheIllegalInputError, match="Key is too long"):
        client.set("k" * 251, b"v")
    with pytest.raises(MemcacheIllegalInputError):
        client.get("k" * 251)
    # ... and the server refuses it too when it is sent anyway.
    with pytest.raises(MemcacheClientError, match="bad command line format"):
        client.raw_command(b"get " + b"k" * 251)
    # memcached 1.6.45 follows that error line with an empty line, which
    # pymemcache does not read: start on a fresh connection.
    client.close()
    assert client.get(ok) == b"v"


def test_unicode_keys(server):
    c = make_client(server, allow_unicode_keys=True)
    try:
        key = "ключ-κλειδί-鍵"
        assert c.set(key, "значение".encode()) is True
        assert c.get(key) == "значение".encode()
        assert c.get_many([key]) == {key: "значение".encode()}
    finally:
        c.close()


def test_pickle_serde_round_trip(server):
    c = make_client(server, serde=serde.pickle_serde)
    try:
        values = {"int": 42, "str": "text", "bytes": b"raw", "dict": {"a": [1, 2, (3,)]}, "none": None}
        for key, value in values.items():
            c.set(key, value)
        got = c.get_many(list(values))
        assert got == {k: v for k, v in values.items() if v is not None} | {"none": None}
        assert c.get("int") == 42 and c.incr("int", 1) == 43 and c.get("int") == 43
    finally:
        c.close()


def test_noreply(client, server):
    assert client.set("k", b"1", noreply=True) is True
    assert client.add("k2", b"2", noreply=True) is True
    assert client.replace("k2", b"3", noreply=True) is True
    assert client.append("k", b"0", noreply=True) is True
    assert client.prepend("k", b"1", noreply=True) is True
    assert client.incr("k", 1, noreply=True) is None
    assert client.decr("k", 2, noreply=True) is None
    assert client.touch("k", 100, noreply=True) is True
    assert client.set_many({"a": b"1", "b": b"2"}, noreply=True) == []
    assert client.delete("a", noreply=True) is True
    assert client.delete_many(["b", "missing"], noreply=True) is True
    # replies were suppressed, so the next reply belongs to this get
    assert client.get_many(["k", "k2", "a", "b"]) == {"k": b"109", "k2": b"3"}
    assert client.flush_all(noreply=True) is True
    assert client.get("k") is None
    quiet = make_client(server, default_noreply=True)
    try:
        for i in range(200):
            quiet.set(f"q{i}", b"%d" % i)
        assert quiet.get("q199") == b"199"
    finally:
        quiet.close()


def test_quit_and_reconnect(client):
    client.set("k", b"v")
    client.quit()
    assert client.get("k") == b"v"


def test_many_clients_on_one_server(server):
    clients = [make_client(server) for _ in range(64)]
    try:
        for i, c in enumerate(clients):
            assert c.set(f"client{i}", b"%d" % i) is True
        for i, c in enumerate(clients):
            assert c.get(f"client{(i + 1) % len(clients)}") == b"%d" % ((i + 1) % len(clients))
        stats = clients[0].stats()
        assert stats[b"curr_connections"] >= len(clients)
    finally:
        for c in clients:
            c.close()


def test_pooled_client_under_threads(server):
    threads, rounds = 16, 100
    pool = PooledClient(server.address, max_pool_size=threads, connect_timeout=5, timeout=10, default_noreply=False)
    pool.set("counter", b"0")
    errors = []

    def worker(n):
        try:
            for i in range(rounds):
                key = f"t{n}-{i}"
                assert pool.set(key, b"%d" % (n * i))
                assert pool.get(key) == b"%d" % (n * i)
                assert pool.incr("counter", 1) is not None
            got = pool.get_many([f"t{n}-{i}" for i in range(rounds)])
            assert len(got) == rounds
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=threads) as ex:
        list(ex.map(worker, range(threads)))
    assert errors == []
    assert pool.get("counter") == b"%d" % (threads * rounds)
    pool.close()


def test_concurrent_cas_loses_no_update(server):
    """Optimistic locking from several connections: every increment lands."""
    per_thread, n_threads = 25, 6
    seed = make_client(server)
    seed.set("ledger", b"0")
    seed.close()
    barrier = threading.Barrier(n_threads)

    def worker(_):
        c = make_client(server)
        try:
            barrier.wait(timeout=10)
            done = 0
            while done < per_thread:
                value, cas = c.gets("ledger")
                if c.cas("ledger", b"%d" % (int(value) + 1), cas):
                    done += 1
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=n_threads) as ex:
        list(ex.map(worker, range(n_threads)))
    c = make_client(server)
    assert c.get("ledger") == b"%d" % (per_thread * n_threads)
    c.close()
