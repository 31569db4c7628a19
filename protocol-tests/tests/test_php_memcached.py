"""php-memcached (Debian's ``php-memcached``) over the binary protocol with
SASL: ``OPT_BINARY_PROTOCOL`` and ``setSaslAuthData``, against a server
started with ``-S``.

The PHP side is ``clients/php/binary_sasl.php``; it prints each step's
result and libmemcached's result code as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support import sasl

SCRIPT = Path(__file__).resolve().parent.parent / "clients" / "php" / "binary_sasl.php"

# libmemcached's result codes, as php-memcached reports them.
SUCCESS = 0
DATA_EXISTS = 12
NOTFOUND = 16
AUTH_FAILURE = 41


def php(server, user: str, password: str, mode: str = "all") -> dict:
    binary = shutil.which("php")
    if binary is None:
        pytest.fail("php not found (Debian: php-cli php-memcached)", pytrace=False)
    done = subprocess.run(
        [binary, "-d", "memcached.use_sasl=1", str(SCRIPT), server.host, str(server.port), user, password, mode],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def test_every_command_after_sasl_auth(sasl_server):
    r = php(sasl_server, sasl.USER, sasl.PASSWORD)
    assert r["set"] == [True, SUCCESS]
    assert r["get"] == ["alpha", SUCCESS]
    assert r["get_missing"] == [False, NOTFOUND]
    # The binary protocol says "exists" where text says NOT_STORED.
    assert r["add_existing"] == [False, DATA_EXISTS]
    assert r["add_new"] == [True, SUCCESS]
    assert r["replace"] == [True, SUCCESS]
    assert r["replace_missing"] == [False, NOTFOUND]
    assert r["append"] == [True, SUCCESS]
    assert r["prepend"] == [True, SUCCESS]
    assert r["get_appended"] == ["start+alpha+end", SUCCESS]
    assert r["increment"] == [15, SUCCESS]
    # Binary decrement stops at 0.
    assert r["decrement"] == [0, SUCCESS]
    assert r["increment_missing_initial"] == [7, SUCCESS]
    assert r["increment_again"] == [8, SUCCESS]
    assert r["get_array"] == [{"x": 1, "y": [2, 3]}, SUCCESS]
    assert r["get_multi"] == [{"php:a": "start+alpha+end", "php:b": "BETA"}, SUCCESS]
    assert r["set_multi"] == [True, SUCCESS]
    assert r["get_multi_after"] == [{"php:m1": "one", "php:m2": "two"}, SUCCESS]
    assert r["get_extended"] == ["BETA", SUCCESS]
    assert r["cas_ok"] == [True, SUCCESS]
    assert r["cas_stale"] == [False, DATA_EXISTS]
    assert r["get_cas"] == ["cas1", SUCCESS]
    assert r["touch"] == [True, SUCCESS]
    assert r["delete"] == [True, SUCCESS]
    assert r["delete_missing"] == [False, NOTFOUND]
    assert r["big"] == [True, SUCCESS]
    assert r["big_len"] == [500000, SUCCESS]
    # One connection, one authentication.
    assert r["stats_auth_cmds"] == [1, SUCCESS]
    assert r["version"] == [True, SUCCESS]
    assert r["flush"] == [True, SUCCESS]
    assert r["get_after_flush"] == [False, NOTFOUND]


@pytest.mark.parametrize(
    "user,password",
    [(sasl.USER, "wrong"), ("nobody", sasl.PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_refused(sasl_server, user, password):
    r = php(sasl_server, user, password, "refused")
    assert r["set"] == [False, AUTH_FAILURE, "AUTHENTICATION FAILURE"]
    # libmemcached then takes the server out of service for a while.
    assert r["get"][0] is False
    assert r["get"][1] != SUCCESS
