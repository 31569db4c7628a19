"""A raw text-protocol connection, for byte-exact checks of the replies."""

from __future__ import annotations

import socket
import time


class RawConnection:
    def __init__(self, address, timeout: float = 5.0):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        if family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            raise ConnectionError(f"server closed the connection; unread: {self.buffer!r}")
        self.buffer += chunk
        return True

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buffer) < n:
            if not self._fill(deadline):
                raise TimeoutError(f"wanted {n} bytes, got {len(self.buffer)}: {self.buffer[:300]!r}")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buffer:
            if not self._fill(deadline):
                raise TimeoutError(f"no {marker!r} in {self.buffer[:300]!r}")
        end = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def read_line(self, timeout: float | None = None) -> bytes:
        return self.read_until(b"\r\n", timeout)

    def pending(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within ``wait`` seconds (used to prove silence)."""
        deadline = time.monotonic() + wait
        try:
            while self._fill(deadline):
                pass
        except ConnectionError:
            pass
        data, self.buffer = self.buffer, b""
        return data

    def closed_by_peer(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                if not self._fill(deadline):
                    return False
        except (ConnectionError, OSError):
            return True

    def transact(self, request: bytes, expected: bytes) -> bytes:
        """Send ``request`` and read exactly as many bytes as ``expected``."""
        self.send(request)
        got = self.read_exactly(len(expected))
        return got


def protocol_release(conn: RawConnection) -> tuple[int, int, int]:
    """The memcached release whose protocol the server speaks, from the
    leading ``major.minor.patch`` of its ``version`` reply (ferrocache's
    leads with the release it follows)."""
    conn.send(b"version\r\n")
    line = conn.read_line()
    number = line.split()[1].split(b"-")[0]
    major, minor, patch = (int(part) for part in number.split(b".")[:3])
    return (major, minor, patch)


class ByRelease:
    """An expected reply that memcached changed: ``before`` up to 1.6.18,
    ``since`` from 1.6.45 on (its rewritten text parser)."""

    def __init__(self, before: bytes, since: bytes):
        self.before = before
        self.since = since

    def pick(self, release: tuple[int, int, int]) -> bytes:
        return self.since if release >= (1, 6, 45) else self.before

    def __repr__(self):
        return f"ByRelease({self.before!r}, {self.since!r})"

