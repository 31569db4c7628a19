"""TLS (``-Z -o ssl_chain_cert=...,ssl_key=...``) through pymemcache's
``tls_context``, with a self-signed certificate made by the ``openssl``
command. Run with ``--target both`` to see memcached serve the same.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile

import pytest
from pymemcache.client.base import Client


@pytest.fixture(scope="module")
def certs():
    # memcached reads them after becoming nobody: world-readable files in a
    # world-traversable directory.
    d = tempfile.mkdtemp(prefix="ferrocache-tls-", dir="/tmp")
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    os.chmod(key, 0o644)
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_server(start_server, certs):
    cert, key = certs
    context = ssl.create_default_context(cafile=cert)
    srv = start_server(
        ["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"], tls_context=context
    )
    return srv, context


def test_pymemcache_over_tls(tls_server, certs):
    srv, context = tls_server
    c = Client(srv.address, tls_context=context, connect_timeout=5, timeout=5)
    assert c.set("k", b"v" * 100_000, noreply=False) is True
    assert c.get("k") == b"v" * 100_000
    settings = c.stats("settings")
    assert settings[b"ssl_enabled"] in (True, b"yes")
    assert settings[b"ssl_chain_cert"] == certs[0].encode()
    assert settings[b"ssl_key"] == certs[1].encode()
    c.close()


def test_an_untrusted_client_cannot_connect(tls_server):
    srv, _ = tls_server
    context = ssl.create_default_context()  # the system CAs only
    c = Client(srv.address, tls_context=context, connect_timeout=5, timeout=5)
    with pytest.raises(ssl.SSLError):
        c.get("k")
    c.close()
