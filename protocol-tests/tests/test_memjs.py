"""memjs (npm, pinned by ``clients/memjs/package-lock.json``), Node's
memcached client, which speaks only the binary protocol and authenticates
with SASL PLAIN, against a server started with ``-S``.

The Node side is ``clients/memjs/memjs_sasl.js``; it prints each step's
result as JSON. The first run installs the locked packages with ``npm ci``
(Debian: ``nodejs npm``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support import sasl

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "memjs"
SCRIPT = CLIENT_DIR / "memjs_sasl.js"


def _locked_version() -> str:
    lock = json.loads((CLIENT_DIR / "package-lock.json").read_text())
    return lock["packages"]["node_modules/memjs"]["version"]


@pytest.fixture(scope="session")
def node():
    node = shutil.which("node") or shutil.which("nodejs")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm not found (Debian: nodejs npm)", pytrace=False)
    installed = CLIENT_DIR / "node_modules" / "memjs" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != _locked_version():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENT_DIR,
            check=True,
            timeout=300,
        )
    return node


def memjs(node, server, user: str, password: str, mode: str = "all") -> dict:
    done = subprocess.run(
        [node, str(SCRIPT), server.hostport, user, password, mode],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_every_command_after_sasl_auth(node, sasl_server):
    r = memjs(node, sasl_server, sasl.USER, sasl.PASSWORD)
    assert r == {
        "set": True,
        "get": "alpha",
        "get_missing": None,
        "add_existing": False,
        "add_new": True,
        "replace": True,
        "replace_missing": False,
        "append": True,
        "prepend": True,
        # memjs 1.3.2 sends its prepend with append's opcode (0x0e), so
        # memcached appends too.
        "get_appended": "alpha+endstart+",
        "increment_missing": 10,
        "increment": 15,
        # Binary decrement stops at 0.
        "decrement": 0,
        "touch": True,
        "touch_missing": False,
        "delete": True,
        "delete_missing": False,
        "big": True,
        "big_len": 500000,
        # One connection, one authentication.
        "stats_auth_cmds": 1,
        "flush": True,
        "get_after_flush": None,
    }


@pytest.mark.parametrize(
    "user,password",
    [(sasl.USER, "wrong"), ("nobody", sasl.PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_refused(node, sasl_server, user, password):
    r = memjs(node, sasl_server, user, password, "refused")
    # memjs's words for an "auth error" status to its SASL auth.
    assert r == {"error": "Memcached server authentication failed!"}
