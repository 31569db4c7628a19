"""Start and stop a cache server (ferrocache or memcached) for the tests.

Both daemons take memcached's command line, so one launcher serves both:
TCP on 127.0.0.1 with a port picked at run time, or a unix socket (``-s``).
Readiness is polled with ``version`` under a bounded deadline (over TLS
when the server is started with ``tls_context``; in the binary protocol when
it serves nothing else, as under ``-S``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE_DIR = HERE.parent
REPO_ROOT = SUITE_DIR.parent

TARGETS = ("ferrocache", "memcached")
READY_TIMEOUT = float(os.environ.get("SERVER_READY_TIMEOUT", "20"))


class ServerStartError(RuntimeError):
    pass


def ferrocache_bin() -> str:
    return os.environ.get("FERROCACHE_BIN") or str(REPO_ROOT / "target" / "release" / "ferrocache")


def memcached_bin() -> str:
    return os.environ.get("MEMCACHED_BIN") or shutil.which("memcached") or "/usr/bin/memcached"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as_args(target: str) -> list[str]:
    # memcached refuses to run as root without -u; ferrocache takes the same
    # flag. Outside root the flag is harmless for memcached.
    # Tests may run several servers at once, so ferrocache serves no metrics
    # (its default metrics port would be taken by the first).
    if target == "ferrocache":
        return ["-u", "root", "--metrics-listen", "off"]
    return ["-u", "nobody"]


@dataclass
class Server:
    target: str
    port: int | None = None
    unix_path: str | None = None
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    # For a server started with -Z: the readiness probe and the raw helpers
    # speak TLS with this context.
    tls_context: ssl.SSLContext | None = None
    # Added to the environment of the process (SASL's files, for one).
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: str | None = None
    _sock_dir: str | None = None

    # -- addresses in the forms the clients want -------------------------
    @property
    def address(self):
        """Address tuple / path for socket.connect and pymemcache."""
        return self.unix_path if self.unix_path else (self.host, self.port)

    @property
    def hostport(self) -> str:
        """'host:port' for pylibmc, Django's LOCATION and the CLI tools."""
        if self.unix_path:
            return self.unix_path
        return f"{self.host}:{self.port}"

    @property
    def django_location(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else self.hostport

    def argv(self) -> list[str]:
        binary = ferrocache_bin() if self.target == "ferrocache" else memcached_bin()
        if self.unix_path:
            listen = ["-s", self.unix_path]
        else:
            listen = ["-p", str(self.port), "-l", self.host]
        return [binary, *listen, "-U", "0", *_run_as_args(self.target), *self.extra_args]

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "Server":
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}")
        argv = self.argv()
        if not (os.path.isfile(argv[0]) and os.access(argv[0], os.X_OK)):
            raise ServerStartError(f"{self.target} binary not found: {argv[0]}")
        fd, self.log_path = tempfile.mkstemp(prefix=f"{self.target}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _connect(self, timeout: float) -> socket.socket:
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.address)
            if self.tls_context is not None:
                s = self.tls_context.wrap_socket(s, server_hostname=self.host)
        except BaseException:
            s.close()
            raise
        return s

    @property
    def binary_only(self) -> bool:
        """Whether the server reads every connection as binary protocol."""
        args = self.extra_args
        explicit = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-B"]
        if explicit:
            return explicit[-1] == "binary"
        return "-S" in args and "-Y" not in args

    def _probe(self, s: socket.socket) -> bool:
        if self.binary_only:
            # Version: the one request SASL lets through unauthenticated.
            s.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x0B, 0, 0, 0, 0, 0, 0, 0))
            reply = b""
            while len(reply) < 24:
                chunk = s.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply[:2] == b"\x81\x0b" and reply[6:8] == b"\0\0"
        s.sendall(b"version\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
        # With -Y every command before authenticating gets
        # this reply, which also says the server is serving.
        return reply.startswith(b"VERSION ") or reply == b"CLIENT_ERROR unauthenticated\r\n"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.005
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.target} exited with code {self.proc.returncode} "
                    f"before serving: {' '.join(self.argv())}\n{self.log_text()}"
                )
            try:
                with self._connect(1.0) as s:
                    if self._probe(s):
                        return
                    last_error = ServerStartError("unexpected reply to version")
            except OSError as exc:
                last_error = exc
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        raise ServerStartError(
            f"{self.target} not ready within {READY_TIMEOUT}s ({last_error}): "
            f"{' '.join(self.argv())}\n{self.log_text()}"
        )

    def log_text(self) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)
            self.log_path = None
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None

    # -- tiny raw helpers used by fixtures ---------------------------------
    def command(self, line: bytes, timeout: float = 5.0) -> bytes:
        """Send one command line and return the first reply line."""
        with self._connect(timeout) as s:
            s.sendall(line + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply

    def flush(self) -> None:
        reply = self.command(b"flush_all")
        if reply != b"OK\r\n":
            raise AssertionError(f"flush_all answered {reply!r}")


def start_tcp(
    target: str,
    extra_args: list[str] | None = None,
    tls_context: ssl.SSLContext | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a server on a free loopback port, retrying if the port was taken."""
    last: Exception | None = None
    for _ in range(3):
        server = Server(
            target=target,
            port=free_port(),
            extra_args=list(extra_args or []),
            tls_context=tls_context,
            env=dict(env or {}),
        )
        try:
            return server.start()
        except ServerStartError as exc:
            last = exc
            if "binary not found" in str(exc):
                raise
    raise last  # type: ignore[misc]


def start_unix(target: str, mask: str = "0700", extra_args: list[str] | None = None) -> Server:
    """Start a server on a unix socket in a fresh directory.

    memcached drops to ``nobody`` before it binds, so the directory is made
    writable for everyone; the socket itself gets the ``-a`` mask.
    """
    sock_dir = tempfile.mkdtemp(prefix=f"{target}-sock-")
    os.chmod(sock_dir, 0o777)
    server = Server(
        target=target,
        unix_path=os.path.join(sock_dir, "cache.sock"),
        extra_args=["-a", mask, *(extra_args or [])],
    )
    server._sock_dir = sock_dir
    return server.start()
