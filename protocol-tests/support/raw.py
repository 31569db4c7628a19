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
