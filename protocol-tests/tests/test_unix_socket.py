"""memcached's ``-s PATH`` (unix socket) and ``-a MASK`` (its permissions),
with the clients and Django pointed at the socket."""

from __future__ import annotations

import os
import stat
import subprocess

import pylibmc
import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient

from support import servers
from support.raw import RawConnection
from support.upstream import FAST_DELAY


@pytest.fixture(scope="module")
def sock_server_module(target):
    try:
        srv = servers.start_unix(target, mask="0700")
    except servers.ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture
def sock_server(sock_server_module):
    sock_server_module.flush()
    return sock_server_module


@pytest.mark.parametrize("mask", ["0700", "0770", "0777"])
def test_socket_file_and_mask(start_server, mask):
    srv = start_server(unix=True, mask=mask)
    mode = os.stat(srv.unix_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert oct(stat.S_IMODE(mode)) == oct(int(mask, 8))


def test_raw_session(sock_server):
    with RawConnection(sock_server.unix_path) as conn:
        conn.send(b"set k 3 0 5\r\nhello\r\nget k\r\nversion\r\n")
        assert conn.read_exactly(len(b"STORED\r\nVALUE k 3 5\r\nhello\r\nEND\r\n")) == (
            b"STORED\r\nVALUE k 3 5\r\nhello\r\nEND\r\n"
        )
        assert conn.read_line().startswith(b"VERSION ")


def test_pymemcache(sock_server):
    c = Client(sock_server.unix_path, connect_timeout=5, timeout=10, default_noreply=False)
    try:
        assert c.set("k", b"v") is True
        assert c.get("k") == b"v"
        assert c.add("k", b"x") is False
        assert c.incr("missing", 1) is None
        c.set("n", b"1")
        assert c.incr("n", 41) == 42
        value, cas = c.gets("k")
        assert c.cas("k", b"w", cas) is True
        assert c.get_many(["k", "n", "missing"]) == {"k": b"w", "n": b"42"}
        assert c.delete("k") is True
        assert c.stats()[b"curr_connections"] >= 1
    finally:
        c.close()
    pool = PooledClient(sock_server.unix_path, max_pool_size=4, connect_timeout=5, timeout=10)
    pool.set("pooled", b"yes")
    assert pool.get("pooled") == b"yes"
    pool.close()
    # the "unix:" spelling Django passes to pymemcache's HashClient
    hashed = HashClient([f"unix:{sock_server.unix_path}"], connect_timeout=5, timeout=10)
    assert hashed.get("pooled") == b"yes"
    hashed.close()


def test_pylibmc(sock_server):
    c = pylibmc.Client([sock_server.unix_path], binary=False, behaviors={"cas": True, "connect_timeout": 5000})
    try:
        assert c.set("k", "v") is True
        assert c.get("k") == "v"
        value, cas = c.gets("k")
        assert c.cas("k", "w", cas) is True
        assert c.set_multi({"a": 1, "b": 2}) == []
        assert c.get_multi(["a", "b", "k"]) == {"a": 1, "b": 2, "k": "w"}
        assert c.incr("a", 5) == 6
        assert c.touch("a", 100) is True
        assert c.delete("a") is True
    finally:
        c.disconnect_all()


def test_cli_tools(sock_server, tmp_path):
    servers = f"--servers={sock_server.unix_path}"
    f = tmp_path / "file.txt"
    f.write_bytes(b"over a socket")
    for argv in (["memccp", servers, str(f)], ["memcexist", servers, "file.txt"], ["memcping", servers]):
        assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0, argv
    out = subprocess.run(["memccat", servers, "file.txt"], capture_output=True, timeout=30).stdout
    assert out == b"over a socket\n"
    stats = subprocess.run(["memcstat", servers], capture_output=True, timeout=30).stdout.decode()
    assert "curr_items:" in stats


def test_django_over_the_socket(sock_server, settings, django_backend, upstream, db):
    """LOCATION "unix:PATH", as the Django docs spell it for pymemcache; the
    site's settings hand pylibmc the bare path it wants."""
    from django.core.cache import cache
    from django.test import Client as HttpClient

    from cachesite.settings import caches_for

    settings.CACHES = caches_for(django_backend, f"unix:{sock_server.unix_path}")
    expected_location = {
        "pymemcache": f"unix:{sock_server.unix_path}",
        "pylibmc": sock_server.unix_path,
        "pylibmc-binary": sock_server.unix_path,
    }
    assert settings.CACHES["default"]["LOCATION"] == expected_location[django_backend]
    settings.UPSTREAM_URL = upstream.url(FAST_DELAY)
    try:
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
        assert cache.get_or_set("g", 5) == 5
        cache.set("n", 1)
        assert cache.incr("n", 2) == 3
        assert cache.touch("n", 100) is True
        cache.set_many({"a": 1, "b": 2})
        assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        upstream.reset()
        client = HttpClient()
        assert client.get("/cached/").status_code == 200
        assert client.get("/cached/").status_code == 200
        assert upstream.calls == 1
        cache.clear()
        assert cache.get("k") is None
    finally:
        cache.close()
