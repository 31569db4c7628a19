"""Fixtures: the cache server under test, the slow upstream and Django.

The server is chosen with ``--target`` (or the PROTOCOL_TARGET environment
variable): ``ferrocache`` (default), ``memcached``, or ``both`` to run every
server test once against each and show they behave the same.
"""

from __future__ import annotations

import os

import pytest

from support import sasl, servers
from support.upstream import UpstreamStub


def pytest_addoption(parser):
    parser.addoption(
        "--target",
        default=os.environ.get("PROTOCOL_TARGET", "ferrocache"),
        choices=["ferrocache", "memcached", "both"],
        help="cache server to test (default: ferrocache, or $PROTOCOL_TARGET)",
    )


def selected_targets(config) -> list[str]:
    target = config.getoption("--target")
    return list(servers.TARGETS) if target == "both" else [target]


def pytest_report_header(config):
    lines = [f"cache targets: {', '.join(selected_targets(config))}"]
    if "ferrocache" in selected_targets(config):
        lines.append(f"ferrocache binary: {servers.ferrocache_bin()}")
    if "memcached" in selected_targets(config):
        lines.append(f"memcached binary: {servers.memcached_bin()}")
    return lines


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", selected_targets(metafunc.config), scope="session")


def _start_or_fail(start, *args, **kwargs):
    try:
        return start(*args, **kwargs)
    except servers.ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def server_session(target):
    """One long-lived server per target, on a free loopback port."""
    srv = _start_or_fail(servers.start_tcp, target)
    yield srv
    srv.stop()


@pytest.fixture
def server(server_session):
    """The shared server, emptied before the test."""
    if not server_session.alive():
        pytest.fail(f"{server_session.target} died:\n{server_session.log_text()}", pytrace=False)
    server_session.flush()
    return server_session


@pytest.fixture
def start_server(target):
    """Start extra servers of the selected target with their own flags:
    ``start_server(["-m", "8"])`` or ``start_server(unix=True)``; a -Z server
    also needs ``tls_context`` for the readiness probe."""
    started = []

    def start(extra_args=None, unix=False, mask="0700", tls_context=None, env=None):
        if unix:
            srv = _start_or_fail(servers.start_unix, target, mask=mask, extra_args=extra_args)
        else:
            srv = _start_or_fail(
                servers.start_tcp,
                target,
                extra_args=extra_args,
                tls_context=tls_context,
                env=env,
            )
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def upstream():
    stub = UpstreamStub().start()
    yield stub
    stub.stop()


@pytest.fixture(scope="session")
def sasl_credentials():
    """The one SASL user (``sasl.USER``/``sasl.PASSWORD``) in each server's form."""
    creds = sasl.Credentials.create()
    yield creds
    creds.remove()


@pytest.fixture
def sasl_server(start_server, target, sasl_credentials):
    """A fresh server of the selected target with ``-S``: binary protocol
    only, every connection authenticating with SASL PLAIN first."""
    return start_server(["-S"], env=sasl_credentials.env(target))
