"""pylibmc's own test suite, binary tests included, against each server.

The suite ships in pylibmc's source distribution, not in the installed
package: the sdist of the pinned version is downloaded from PyPI and its
``tests/`` run with the installed (Debian-libmemcached) pylibmc. Its
autoconf tests connect to port 11211 whatever ``MEMCACHED_PORT`` says, so
the server under test listens there; the suite runs before the smoke
starts, which use that port too.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tarfile
from importlib.metadata import version

import pytest

from support.servers import Server

PORT = 11211


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def pylibmc_tests(tmp_path_factory) -> str:
    """The unpacked sdist of the installed pylibmc version."""
    where = tmp_path_factory.mktemp("pylibmc-sdist")
    pinned = f"pylibmc=={version('pylibmc')}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--no-binary", ":all:", pinned, "-d", str(where)],
        check=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    (sdist,) = where.glob("pylibmc-*.tar.gz")
    with tarfile.open(sdist) as t:
        t.extractall(where, filter="data")
    (root,) = [p for p in where.iterdir() if p.is_dir()]
    return str(root)


def test_pylibmc_suite_passes(target, pylibmc_tests):
    if not port_free(PORT):
        if os.environ.get("CI"):
            pytest.fail(f"port {PORT} is taken; pylibmc's autoconf tests need it")
        pytest.skip(f"port {PORT} is taken; pylibmc's autoconf tests need it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTEST"))}
    server = Server(target=target, port=PORT).start()
    try:
        proc = subprocess.run(
            # Not this suite's Django plugin or settings: pylibmc's alone.
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django",
             "tests"],
            cwd=pylibmc_tests,
            env={**env, "MEMCACHED_HOST": "127.0.0.1", "MEMCACHED_PORT": str(PORT)},
            capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
        )
    finally:
        server.stop()
    out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    assert proc.returncode == 0, out[-4000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0, summary
    assert not re.search(r"failed|error", summary), summary
