"""Three cache nodes on free ports, with a node that can be killed and
brought back on the same port, for the client-side and proxy sharding tests."""

from __future__ import annotations

import time

from pymemcache.client.base import Client

from support import servers

NODES = 3


def node_stats(node: servers.Server) -> dict[str, int]:
    """Numeric ``stats`` of one node, read directly (not through a pool)."""
    client = Client(node.address, connect_timeout=2, timeout=5)
    try:
        return {k.decode(): v for k, v in client.stats().items() if isinstance(v, int)}
    finally:
        client.close()


def curr_items(nodes: list[servers.Server]) -> list[int]:
    return [node_stats(n)["curr_items"] for n in nodes]


def node_of(nodes: list[servers.Server], key: str) -> int:
    """Which node holds ``key``, asked of each node directly."""
    holders = []
    for i, node in enumerate(nodes):
        if not node.alive():
            continue
        client = Client(node.address, connect_timeout=2, timeout=5)
        try:
            if client.get(key) is not None:
                holders.append(i)
        finally:
            client.close()
    assert len(holders) <= 1, f"{key} is on nodes {holders}"
    return holders[0] if holders else -1


class Cluster:
    def __init__(self, target: str):
        self.target = target
        self.nodes: list[servers.Server] = []

    def start(self) -> "Cluster":
        for _ in range(NODES):
            self.nodes.append(servers.start_tcp(self.target))
        return self

    def kill(self, i: int) -> None:
        """SIGKILL: the node vanishes with its items, as on a crash."""
        proc = self.nodes[i].proc
        proc.kill()
        proc.wait(timeout=5)

    def restart(self, i: int) -> servers.Server:
        """Start a fresh (empty) node on the killed node's port."""
        old = self.nodes[i]
        old.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                node = servers.Server(target=self.target, port=old.port).start()
                break
            except servers.ServerStartError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.nodes[i] = node
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [n.address for n in self.nodes]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
