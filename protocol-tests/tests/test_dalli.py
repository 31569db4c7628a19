"""Dalli 3 (Debian's ``ruby-dalli``), Ruby's memcached client, which speaks
the binary protocol, with SASL credentials against a server started with
``-S``.

The Ruby side is ``clients/ruby/dalli_sasl.rb``; it prints each step's
result as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support import sasl

SCRIPT = Path(__file__).resolve().parent.parent / "clients" / "ruby" / "dalli_sasl.rb"


def dalli(server, user: str, password: str, mode: str = "all") -> dict:
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby not found (Debian: ruby ruby-dalli)", pytrace=False)
    done = subprocess.run(
        [ruby, str(SCRIPT), server.hostport, user, password, mode],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_every_command_after_sasl_auth(sasl_server):
    r = dalli(sasl_server, sasl.USER, sasl.PASSWORD)
    assert r == {
        "set": True,
        "get": "alpha",
        "get_missing": None,
        "add_existing": False,
        "add_new": True,
        "replace": True,
        # Dalli 3.0 passes the binary reply's status through here.
        "replace_missing": 0,
        "append": True,
        "prepend": True,
        "get_appended": "start+alpha+end",
        "marshalled": True,
        "get_marshalled": {"x": [1, 2]},
        "incr_missing_initial": 10,
        "incr": 15,
        # Binary decrement stops at 0.
        "decr": 0,
        # No initial value: the "do not create" expiration, a miss.
        "incr_missing_no_initial": None,
        "get_multi": {"rb:a": "start+alpha+end", "rb:b": "BETA"},
        "cas": True,
        "get_cas": "BETA!",
        "set_cas_ok": True,
        "set_cas_stale": False,
        "get_after_cas": ["BETA!", "new"],
        "touch": True,
        "touch_missing": None,
        "gat": "start+alpha+end",
        "fetch": "computed",
        "fetch_again": "computed",
        "delete": True,
        "delete_missing": None,
        "big": True,
        "big_len": 500000,
        # One connection, one authentication.
        "stats_auth_cmds": 1,
        "version": True,
        "flush": True,
        "get_after_flush": None,
    }


@pytest.mark.parametrize(
    "user,password",
    [(sasl.USER, "wrong"), ("nobody", sasl.PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_refused(sasl_server, user, password):
    r = dalli(sasl_server, user, password, "refused")
    # 0x20: the binary protocol's "auth error" status.
    assert r == {"error": "Dalli::DalliError", "message": "Error authenticating: 0x20"}
