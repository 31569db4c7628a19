"""The tutorial's measurement: requests per second of the uncached and the
cached view, with ferrocache and then memcached as the cache.

The site runs under gunicorn (4 workers) against the stub upstream that
answers after 2 s, and ApacheBench drives it like the tutorial's
``ab -n 100 -c 10``. The uncached view can do at most 4 workers / 2 s = 2
requests per second, so it gets fewer requests by default (--uncached-requests).

Run it through measure.sh, which prepares the venv and builds the daemon.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from support import servers
from support.upstream import UpstreamStub

HERE = Path(__file__).resolve().parent
SITE = HERE / "djangosite"
VENV_BIN = Path(sys.executable).parent


def ab(url: str, requests: int, concurrency: int) -> dict:
    concurrency = min(concurrency, requests)  # ab refuses more
    argv = ["ab", "-q", "-s", "60", "-n", str(requests), "-c", str(concurrency), url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out}\n{proc.stderr}")
    rps = float(re.search(r"^Requests per second:\s+([\d.]+)", out, re.M).group(1))
    failed = int(re.search(r"^Failed requests:\s+(\d+)", out, re.M).group(1))
    non2xx = re.search(r"^Non-2xx responses:\s+(\d+)", out, re.M)
    mean_ms = float(re.search(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)", out, re.M).group(1))
    return {"rps": rps, "failed": failed + (int(non2xx.group(1)) if non2xx else 0), "mean_ms": mean_ms,
            "requests": requests, "concurrency": concurrency}


def wait_http(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                if r.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} not answering within {deadline_s}s: {last}")


def measure_with(target: str, args, upstream: UpstreamStub, workdir: Path) -> dict:
    cache = servers.start_tcp(target)
    db = workdir / f"{target}.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cachesite.settings",
        "CACHE_BACKEND": args.backend,
        "CACHE_LOCATION": cache.hostport,
        "UPSTREAM_URL": upstream.url(args.delay),
        "DJANGO_DB_PATH": str(db),
        "CACHE_TTL": str(args.ttl),
    }
    gunicorn = None
    try:
        manage = [str(VENV_BIN / "python"), "manage.py"]
        for cmd in (["migrate", "--noinput", "-v", "0"], ["seedproducts", "--count", "10"]):
            subprocess.run(manage + cmd, cwd=SITE, env=env, check=True, timeout=120,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        port = servers.free_port()
        gunicorn = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "cachesite.wsgi:application", "--workers", str(args.workers),
             "--bind", f"127.0.0.1:{port}", "--timeout", "60", "--log-level", "warning", "--preload"],
            cwd=SITE, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/cached/", 60)  # also fills the cache, as a first visit would
        ab(f"{base}/cached/", 4 * args.workers, args.workers)  # every worker connects to the cache
        calls_before = upstream.calls
        result = {
            "uncached": ab(f"{base}/", args.uncached_requests, args.concurrency),
            "cached": ab(f"{base}/cached/", args.requests, args.concurrency),
        }
        result["upstream_calls"] = upstream.calls - calls_before
        result["version"] = cache.command(b"version").decode().strip().removeprefix("VERSION ")
        return result
    finally:
        if gunicorn is not None:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            try:
                gunicorn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(gunicorn.pid, signal.SIGKILL)
                gunicorn.wait()
        cache.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ferrocache,memcached",
                        help="comma-separated cache servers, in order (default: ferrocache,memcached)")
    parser.add_argument("--backend", choices=["pymemcache", "pylibmc"], default="pymemcache",
                        help="Django cache backend (default: pymemcache, i.e. PyMemcacheCache)")
    parser.add_argument("--requests", type=int, default=100, help="ab -n for the cached view (100)")
    parser.add_argument("--uncached-requests", type=int, default=20,
                        help="ab -n for the uncached view (20: it manages only ~2 requests/s)")
    parser.add_argument("--concurrency", type=int, default=10, help="ab -c (10)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (4)")
    parser.add_argument("--delay", type=float, default=2, help="upstream delay in seconds (2)")
    parser.add_argument("--ttl", type=int, default=60 * 15, help="CACHE_TTL (the tutorial's 15 minutes)")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        print("measure: ab not found (Debian package apache2-utils)", file=sys.stderr)
        return 2

    upstream = UpstreamStub().start()
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="measure-") as tmp:
            for target in args.targets.split(","):
                print(f"measuring with {target} ...", file=sys.stderr, flush=True)
                results[target] = measure_with(target, args, upstream, Path(tmp))
    finally:
        upstream.stop()

    print()
    print(f"Django {args.backend} backend, gunicorn {args.workers} workers, upstream delay {args.delay:g} s, "
          f"ab -c {args.concurrency}; uncached view: -n {args.uncached_requests}, cached view: -n {args.requests}")
    header = f"{'':<28}" + "".join(f"{t:>22}" for t in results)
    print(header)
    for view in ("uncached", "cached"):
        row = f"{view + ' view (req/s)':<28}"
        row += "".join(f"{results[t][view]['rps']:>22.2f}" for t in results)
        print(row)
    for view in ("uncached", "cached"):
        row = f"{view + ' mean (ms/req)':<28}"
        row += "".join(f"{results[t][view]['mean_ms']:>22.1f}" for t in results)
        print(row)
    print(f"{'failed requests':<28}" + "".join(
        f"{results[t]['uncached']['failed'] + results[t]['cached']['failed']:>22}" for t in results))
    print(f"{'server version':<28}" + "".join(f"{results[t]['version']:>22}" for t in results))
    bad = [t for t in results if results[t]["uncached"]["failed"] or results[t]["cached"]["failed"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
