"""A recording TCP proxy: shows what a client library really sends."""

from __future__ import annotations

import selectors
import socket
import threading
import time


class RecordingProxy:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self._sent = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sent(self) -> bytes:
        """Everything clients sent, all connections concatenated."""
        with self._lock:
            return bytes(self._sent)

    def wait_for(self, pattern, timeout: float = 5.0) -> bytes:
        """Wait until the bytes sent so far match ``pattern`` (a compiled
        regex or a bytes substring); return them."""
        deadline = time.monotonic() + timeout
        while True:
            sent = self.sent
            found = pattern.search(sent) if hasattr(pattern, "search") else pattern in sent
            if found or time.monotonic() > deadline:
                return sent
            time.sleep(0.01)

    def start(self) -> "RecordingProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(timeout=2)

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            t = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self._threads.append(t)
            t.start()

    def _pipe(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream, timeout=5)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    src, dst = key.fileobj, key.data
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is client:
                        with self._lock:
                            self._sent += data
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            sel.close()
            client.close()
            server.close()
