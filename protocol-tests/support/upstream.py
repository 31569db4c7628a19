"""A stand-in for httpbin's ``/delay/<seconds>`` endpoint.

The Django site calls it as its "slow external API". It answers after the
requested delay and counts every call, so the tests can tell a cached page
(no call) from a rendered one (one call). Run it alone for the measurement:

    python -m support.upstream --port 8081
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_DELAY_PATH = re.compile(r"^/delay/(\d+(?:\.\d+)?)/?$")
MAX_DELAY = 10.0
FAST_DELAY = 0.2  # what most tests ask for; the tutorial's 2 s is kept for timing checks


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep the stub quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server naming
        path = self.path.split("?", 1)[0]
        if path == "/calls":
            self._reply(200, {"calls": self.server.stub.calls})
            return
        match = _DELAY_PATH.match(path)
        if not match:
            self._reply(404, {"error": "not found"})
            return
        delay = min(float(match.group(1)), MAX_DELAY)
        self.server.stub._record(path)
        time.sleep(delay)
        self._reply(200, {"url": path, "delay": delay})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: "UpstreamStub"


class UpstreamStub:
    """The slow upstream, served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._httpd = _Server((host, port), _Handler)
        self._httpd.stub = self
        self._lock = threading.Lock()
        self._calls = 0
        self.paths: list[str] = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, delay: float = 2) -> str:
        return f"http://127.0.0.1:{self.port}/delay/{delay:g}"

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def _record(self, path: str) -> None:
        with self._lock:
            self._calls += 1
            self.paths.append(path)

    def reset(self) -> None:
        with self._lock:
            self._calls = 0
            self.paths.clear()

    def start(self) -> "UpstreamStub":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    stub = UpstreamStub(port=args.port)
    print(f"upstream stub on http://127.0.0.1:{stub.port}/delay/N", flush=True)
    try:
        stub._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
