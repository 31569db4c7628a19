"""twemproxy (nutcracker) in front of three nodes, with the pool settings of
deploy/twemproxy/nutcracker.yml (ketama on md5, auto-eject after 3
failures): the proxy must speak to the nodes like to memcached, spread keys
over them, and after ejecting a dead node lose only that node's keys."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from multinode import Cluster, curr_items, node_of, wait_until
from support import servers

DEPLOY_CONFIG = servers.REPO_ROOT / "deploy" / "twemproxy" / "nutcracker.yml"
NUTCRACKER = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
KEYS = [f"session:{i:05d}" for i in range(600)]


def proxy_config(listen_port: int, node_ports: list[int]) -> str:
    """The deploy config with only the addresses changed: the listen port
    and each node's port (names, weights and pool settings stay)."""
    text = DEPLOY_CONFIG.read_text()
    text, n = re.subn(r"listen: 127\.0\.0\.1:22121", f"listen: 127.0.0.1:{listen_port}", text)
    assert n == 1
    for i, port in enumerate(node_ports):
        text, n = re.subn(
            rf"- 127\.0\.0\.1:{11311 + i}:1 ferrocache-{i}", f"- 127.0.0.1:{port}:1 ferrocache-{i}", text
        )
        assert n == 1, f"server line {i} not found"
    return text


class Proxy:
    def __init__(self, nodes):
        self.dir = Path(tempfile.mkdtemp(prefix="nutcracker-"))
        self.port = servers.free_port()
        self.stats_port = servers.free_port()
        self.conf = self.dir / "nutcracker.yml"
        self.conf.write_text(proxy_config(self.port, [n.port for n in nodes]))
        self.log = self.dir / "nutcracker.log"
        self.proc = None

    def start(self) -> "Proxy":
        check = subprocess.run([NUTCRACKER, "-t", "-c", str(self.conf)], capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [NUTCRACKER, "-c", str(self.conf), "-s", str(self.stats_port), "-a", "127.0.0.1",
             "-i", "100", "-o", str(self.log), "-p", str(self.dir / "nutcracker.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, timeout=10, what="nutcracker to answer")
        return self

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"nutcracker exited:\n{self.log_text()}"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"get ready-probe\r\n")
                return s.recv(64) == b"END\r\n"
        except OSError:
            return False

    def stats(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=2) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def proxied(target):
    if not Path(NUTCRACKER).exists():
        pytest.skip("nutcracker is not installed (Debian package nutcracker)")
    cluster = Cluster(target).start()
    proxy = None
    try:
        proxy = Proxy(cluster.nodes).start()
        yield cluster, proxy
    finally:
        if proxy:
            proxy.stop()
        cluster.stop()


def test_generated_config_keeps_the_pool_settings():
    conf = proxy_config(40000, [40001, 40002, 40003])
    for line in ["hash: md5", "distribution: ketama", "auto_eject_hosts: true", "server_failure_limit: 3",
                 "server_retry_timeout: 30000", "timeout: 400", "preconnect: true", "server_connections: 1"]:
        assert line in conf
    assert "- 127.0.0.1:40003:1 ferrocache-2" in conf and "127.0.0.1:11311:1" not in conf


def safe_get(client, key):
    try:
        return client.get(key)
    except (MemcacheError, OSError) as exc:
        client.close()
        return exc


def test_twemproxy_pool(proxied):
    cluster, proxy = proxied
    client = Client(("127.0.0.1", proxy.port), connect_timeout=2, timeout=5, default_noreply=False)

    # the commands clients use, through the proxy
    assert client.set("greeting", b"hello") is True
    assert client.get("greeting") == b"hello"
    assert client.add("greeting", b"other") is False
    assert client.set("counter", b"41") is True
    assert client.incr("counter", 1) == 42
    assert client.decr("counter", 2) == 40
    assert client.delete("greeting") is True
    assert client.get("greeting") is None
    assert client.delete("greeting") is False

    for key in KEYS:
        assert client.set(key, key.encode()) is True
    assert client.get_many(KEYS) == {k: k.encode() for k in KEYS}  # split across nodes and merged
    counts = curr_items(cluster.nodes)
    print("items per node through twemproxy:", counts)
    assert sum(counts) == len(KEYS) + 1  # + "counter"
    for n in counts:
        assert 0.20 * len(KEYS) < n < 0.47 * len(KEYS), counts
    owner = {k: node_of(cluster.nodes, k) for k in KEYS}
    on_victim = {k for k in KEYS if owner[k] == 1}

    cluster.kill(1)
    # Until the proxy has seen 3 failures its requests to the node fail;
    # then the node is ejected and its keys map to the others: misses.
    errors = 0
    deadline = time.monotonic() + 10
    victim_keys = sorted(on_victim)
    while True:
        results = [safe_get(client, k) for k in victim_keys[:5]]
        errors += sum(isinstance(r, Exception) for r in results)
        if all(r is None for r in results):
            break
        assert time.monotonic() < deadline, f"node not ejected: {results}\n{proxy.log_text()}"
        time.sleep(0.05)
    print("errors before ejection:", errors)
    lost = {k for k in KEYS if safe_get(client, k) is None}
    print("keys lost after ejection:", len(lost), "of", len(KEYS))
    assert lost == on_victim
    assert set(client.get_many(KEYS)) == set(KEYS) - on_victim

    def ejected():
        stats = proxy.stats()
        return stats["ferrocache"]["server_ejects"] >= 1

    wait_until(ejected, timeout=5, what="nutcracker to report the ejection")
    # new writes go to the two survivors
    before = curr_items([cluster.nodes[0], cluster.nodes[2]])
    for key in victim_keys:
        assert client.set(key, b"rehomed") is True
    after = curr_items([cluster.nodes[0], cluster.nodes[2]])
    assert sum(after) - sum(before) == len(victim_keys)
    assert all(a > b for a, b in zip(after, before)), (before, after)
    assert client.get_many(victim_keys) == {k: b"rehomed" for k in victim_keys}
    client.close()
