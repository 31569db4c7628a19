"""memcached's ascii authentication (``-Y authfile``) through pymemcache.

pymemcache has no helper for it: the credentials go as the data of an
ordinary ``set``, whose key is ignored. Run with ``--target both`` to see
memcached answer the same.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

from support.raw import RawConnection


@pytest.fixture
def authfile():
    # memcached may read it after becoming nobody: a world-readable file in
    # a world-traversable directory.
    fd, path = tempfile.mkstemp(prefix="ferrocache-auth-", dir="/tmp")
    with os.fdopen(fd, "w") as f:
        f.write("alice:secret\nbob:hunter2\n")
    os.chmod(path, 0o644)
    yield path
    os.unlink(path)


@pytest.fixture
def auth_server(start_server, authfile):
    return start_server(["-Y", authfile])


def client(srv) -> Client:
    return Client(srv.address, connect_timeout=5, timeout=5)


def login(c: Client, user: str, password: str) -> bool:
    """The ascii authentication: a set of ``<user> <password>``."""
    return c.set("auth", f"{user} {password}", noreply=False)


def test_unauthenticated_commands_are_refused(auth_server):
    c = client(auth_server)
    with pytest.raises(MemcacheClientError, match="unauthenticated"):
        c.get("k")
    with pytest.raises(MemcacheClientError, match="unauthenticated"):
        c.version()
    c.close()


def test_a_set_of_the_credentials_logs_in(auth_server):
    c = client(auth_server)
    assert login(c, "bob", "hunter2") is True
    assert c.set("k", b"v", noreply=False) is True
    assert c.get("k") == b"v"
    # The credentials were not stored under their key.
    assert c.get("auth") is None
    assert c.version()
    c.close()


def test_a_wrong_password_is_refused_and_counted(auth_server):
    c = client(auth_server)
    with pytest.raises(MemcacheClientError, match="authentication failure"):
        login(c, "alice", "wrong")
    # The connection may try again.
    assert login(c, "alice", "secret") is True
    stats = c.stats()
    assert int(stats[b"auth_cmds"]) == 2
    assert int(stats[b"auth_errors"]) == 1
    settings = c.stats("settings")
    assert settings[b"auth_enabled_ascii"] == auth_server.extra_args[1].encode()
    c.close()


def test_each_connection_logs_in_on_its_own(auth_server):
    first = client(auth_server)
    assert login(first, "alice", "secret")
    second = RawConnection(auth_server.address)
    second.send(b"get k\r\n")
    assert second.read_line() == b"CLIENT_ERROR unauthenticated\r\n"
    second.close()
    first.close()
