"""libmemcached-tools (Debian names: memcstat, memccp, memccat, ...) and
memccapable, libmemcached's own protocol conformance checker."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from support.raw import RawConnection, protocol_release

TOOL_TIMEOUT = 60

# What `memccapable -a` runs; every one passes against memcached 1.6.18.
# memcached 1.6.45 dropped delete's legacy hold time (`delete k 10` now
# deletes), which memccapable's delete tests expect refused: they fail
# against memcached 1.6.45 itself, and so against ferrocache, which follows it.
FAILING_SINCE_1_6_45 = {"ascii delete", "ascii delete noreply"}
MEMCCAPABLE_ASCII_TESTS = [
    "ascii version", "ascii quit", "ascii verbosity", "ascii set", "ascii set noreply",
    "ascii get", "ascii gets", "ascii mget", "ascii flush", "ascii flush noreply",
    "ascii add", "ascii add noreply", "ascii replace", "ascii replace noreply",
    "ascii cas", "ascii cas noreply", "ascii delete", "ascii delete noreply",
    "ascii incr", "ascii incr noreply", "ascii decr", "ascii decr noreply",
    "ascii append", "ascii append noreply", "ascii prepend", "ascii prepend noreply",
    "ascii stat",
]

# What `memccapable -b` runs (the binary protocol); every one passes against
# memcached 1.6.18.
MEMCCAPABLE_BINARY_TESTS = [
    "binary noop", "binary quit", "binary quitq", "binary set", "binary setq",
    "binary flush", "binary flushq", "binary add", "binary addq", "binary replace",
    "binary replaceq", "binary delete", "binary deleteq", "binary get", "binary getq",
    "binary getk", "binary getkq", "binary incr", "binary incrq", "binary decr",
    "binary decrq", "binary version", "binary append", "binary appendq",
    "binary prepend", "binary prependq", "binary stat",
]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's libmemcached-tools", pytrace=False)
    return path


def run(name: str, *args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [tool(name), *args], capture_output=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, (name, args, proc)
    return proc


@pytest.fixture
def servers_arg(server):
    return f"--servers={server.hostport}"


@pytest.fixture
def files(tmp_path):
    text = tmp_path / "hello.txt"
    text.write_bytes(b"hello, world\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 40 + b"\r\n\x00")
    return text, blob


def test_memcp_memcat(servers_arg, files, tmp_path):
    text, blob = files
    run("memccp", servers_arg, str(text), str(blob))
    # memcat ends every value it prints with a newline
    assert run("memccat", servers_arg, "hello.txt").stdout == text.read_bytes() + b"\n"
    assert run("memccat", servers_arg, "blob.bin").stdout == blob.read_bytes() + b"\n"
    out = tmp_path / "copy.bin"
    run("memccat", servers_arg, f"--file={out}", "blob.bin")
    assert out.read_bytes() == blob.read_bytes()
    missing = run("memccat", servers_arg, "missing", check_rc=None)
    assert missing.returncode != 0 and missing.stdout == b""


def test_memcp_flags_expire_and_modes(servers_arg, files):
    text, blob = files
    run("memccp", servers_arg, "--flags=7", "--expire=600", str(text))
    shown = run("memccat", servers_arg, "--flags", "--verbose", "hello.txt").stdout.decode()
    assert "key: hello.txt" in shown and "flags: 7" in shown and "value: hello, world" in shown
    # --add refuses an existing key, --replace a missing one
    assert run("memccp", servers_arg, "--add", str(text), check_rc=None).returncode != 0
    assert run("memccp", servers_arg, "--replace", str(blob), check_rc=None).returncode != 0
    run("memccp", servers_arg, "--add", str(blob))
    run("memccp", servers_arg, "--replace", str(text))


def test_memexist_memtouch_memrm(servers_arg, files):
    text, _ = files
    run("memccp", servers_arg, str(text))
    run("memcexist", servers_arg, "hello.txt")
    run("memcexist", servers_arg, "missing", check_rc=1)
    run("memctouch", servers_arg, "--expire=600", "hello.txt")
    run("memctouch", servers_arg, "--expire=600", "missing", check_rc=1)
    run("memcrm", servers_arg, "hello.txt")
    run("memcrm", servers_arg, "hello.txt", check_rc=1)
    run("memcexist", servers_arg, "hello.txt", check_rc=1)


def test_memflush(servers_arg, files):
    text, blob = files
    run("memccp", servers_arg, str(text), str(blob))
    run("memcflush", servers_arg)
    run("memcexist", servers_arg, "hello.txt", check_rc=1)
    run("memcexist", servers_arg, "blob.bin", check_rc=1)


def test_memstat(servers_arg, server, target):
    out = run("memcstat", servers_arg).stdout.decode()
    assert out.startswith(f"Server: {server.host} ({server.port})\n")
    stats = dict(re.findall(r"^\t(\w+): (.*)$", out, re.M))
    for name in ("pid", "uptime", "time", "version", "curr_items", "total_items", "curr_connections",
                 "get_hits", "get_misses", "limit_maxbytes"):
        assert name in stats, name
    version = run("memcstat", servers_arg, "--server-version").stderr.decode()  # sic: stderr
    # libmemcached prints the major.minor.micro it parsed from "version"
    numeric = re.match(r"\d+\.\d+\.\d+", stats["version"]).group(0)
    assert version == f"{server.hostport} {numeric}\n"
    if target == "memcached":
        assert stats["version"] == "1.6.18"


def test_memping(servers_arg):
    run("memcping", servers_arg)
    assert run("memcping", "--servers=127.0.0.1:1", check_rc=None).returncode != 0


def test_memdump(servers_arg, files):
    text, blob = files
    run("memccp", servers_arg, str(text), str(blob))
    # memcached lists an item once its LRU maintainer has settled it; poll
    deadline = time.monotonic() + 15
    while True:
        keys = set(run("memcdump", servers_arg).stdout.decode().split())
        if keys == {"hello.txt", "blob.bin"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert keys == {"hello.txt", "blob.bin"}


def test_memslap(servers_arg):
    out = run("memcslap", servers_arg, "--concurrency=4", "--execute-number=200",
              "--initial-load=100", "--flush").stdout.decode()
    assert "Time to set             800 keys by    4 threads" in out
    out = run("memcslap", servers_arg, "--concurrency=4", "--execute-number=200", "--test=get").stdout.decode()
    assert "Time to get             800 keys by    4 threads" in out


def test_memaslap(server):
    out = run("memcaslap", f"--servers={server.hostport}", "--execute_number=2000", "--threads=1",
              "--concurrency=4").stdout.decode()
    counts = dict(re.findall(r"^(cmd_get|cmd_set|get_misses): (\d+)$", out, re.M))
    assert int(counts["cmd_get"]) + int(counts["cmd_set"]) == 2000, out
    assert int(counts["get_misses"]) == 0, out


@pytest.fixture(scope="session")
def memccapable_ascii(server_session):
    proc = subprocess.run(
        [tool("memccapable"), "-h", server_session.host, "-p", str(server_session.port), "-a", "-t", "10"],
        capture_output=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout.decode("utf-8", "replace")
    # Each test's name is padded to a column on stdout and followed there by
    # `[pass]`; a failure's `[FAIL]` goes to stderr instead.
    results = {
        m[1]: "pass" if m[2] else "FAIL"
        for m in re.finditer(r"(ascii(?: [a-z]+)+) {2,}(\[pass\]\n)?", out)
    }
    out += proc.stderr.decode("utf-8", "replace")
    with RawConnection(server_session.address) as conn:
        release = protocol_release(conn)
    failing = FAILING_SINCE_1_6_45 if release >= (1, 6, 45) else set()
    return proc, out, results, failing


def test_memcapable_ascii_runs_every_test(memccapable_ascii):
    proc, out, results, failing = memccapable_ascii
    assert sorted(results) == sorted(MEMCCAPABLE_ASCII_TESTS), out
    if failing:
        assert f"{len(failing)} of {len(MEMCCAPABLE_ASCII_TESTS)} tests failed" in out, out
    else:
        assert proc.returncode == 0 and "All tests passed" in out, out + proc.stderr.decode()


@pytest.mark.parametrize("name", MEMCCAPABLE_ASCII_TESTS)
def test_memcapable_ascii(memccapable_ascii, name):
    _, out, results, failing = memccapable_ascii
    want = "FAIL" if name in failing else "pass"
    assert results.get(name) == want, f"{name}: {results.get(name)}\n{out}"


@pytest.fixture(scope="session")
def memccapable_binary(server_session):
    proc = subprocess.run(
        [tool("memccapable"), "-h", server_session.host, "-p", str(server_session.port), "-b", "-t", "10"],
        capture_output=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout.decode("utf-8", "replace")
    results = dict(re.findall(r"^(binary [\w ]+?)\s+\[(\w+)\]$", out, re.M))
    return proc, out, results


def test_memcapable_binary_runs_every_test(memccapable_binary):
    proc, out, results = memccapable_binary
    assert sorted(results) == sorted(MEMCCAPABLE_BINARY_TESTS), out
    assert len(results) == 27
    assert proc.returncode == 0 and "All tests passed" in out, out + proc.stderr.decode()


@pytest.mark.parametrize("name", MEMCCAPABLE_BINARY_TESTS)
def test_memcapable_binary(memccapable_binary, name):
    _, out, results = memccapable_binary
    assert results.get(name) == "pass", f"{name}: {results.get(name)}\n{out}"
