#!/usr/bin/env python3
"""Soak test: mixed load with faults against one ferrocache process, then a
check that every key written (and not deleted since) reads back intact.

Not part of CI: it runs for minutes. Usage:

    cargo build --release
    scripts/soak.py --duration 180            # at most 600 seconds

It starts the server on a free loopback port with a large -m (nothing is
evicted) and no TTLs, so any key that does not read back is a lost key and
the run fails. Faults injected while the load runs:

- mid-command drops: a connection sends part of a command line, or a full
  line and part of its data block, and is closed (or reset) there; the key
  it names must keep its old value;
- dribbled writes: a request sent a few bytes at a time;
- killed clients: whole client processes are SIGKILLed at random moments,
  possibly between sending a request and reading its reply.

Each client process journals its writes to a file before and after each
one (`P` sent, `A` acknowledged), so a killed client's last request is
known to be in doubt: either the old or the new value is then accepted.
"""

import argparse
import hashlib
import multiprocessing as mp
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

KEYS_PER_CLIENT = 1500


def value_for(key, ver):
    """The value written to `key` at version `ver`; recomputed when checking."""
    h = hashlib.blake2b(f"{key}/{ver}".encode(), digest_size=8).digest()
    n = int.from_bytes(h, "little")
    size = n % 3000 if n % 50 else n % 120_000
    head = f"{key}/{ver}/".encode()
    body = (h * (size // 8 + 1))[: max(0, size - len(head))]
    return (head + body)[:size] if size >= len(head) else head[:size]


class Conn:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get_many(self, keys):
        self.send(b"get " + b" ".join(k.encode() for k in keys) + b"\r\n")
        found = {}
        while True:
            line = self.line()
            if line == b"END":
                return found
            parts = line.split(b" ")
            if parts[0] != b"VALUE" or len(parts) != 4:
                raise AssertionError(f"bad reply line {line[:80]!r}")
            data = self.exact(int(parts[3]) + 2)
            if data[-2:] != b"\r\n":
                raise AssertionError("value not followed by CRLF")
            found[parts[1].decode()] = data[:-2]

    def close(self, reset=False):
        if reset:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()


def client(cid, port, journal_path, end, seed):
    """One client process: random sets, gets and deletes on its own keys,
    with faults of its own making, journalling every write."""
    rng = random.Random(seed)
    fd = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    counts = {"ops": 0, "mid_command_drops": 0, "dribbled": 0, "mismatch": 0}

    def journal(text):
        os.write(fd, (text + "\n").encode())

    keys = [f"c{cid}:{i}" for i in range(KEYS_PER_CLIENT)]
    version = {}  # key -> acknowledged version, None if deleted
    conn = Conn(port)
    # A deadline rather than a shared Event: a client killed while it held
    # the Event's lock would leave every other one blocked on it.
    while time.time() < end:
        key = rng.choice(keys)
        r = rng.random()
        if r < 0.45:
            ver = rng.getrandbits(40)
            val = value_for(key, ver)
            journal(f"P {key} {ver}")
            req = f"set {key} 0 0 {len(val)}\r\n".encode() + val + b"\r\n"
            if rng.random() < 0.03:
                counts["dribbled"] += 1
                for i in range(0, len(req), 7):
                    conn.send(req[i : i + 7])
            else:
                conn.send(req)
            line = conn.line()
            if line != b"STORED":
                raise AssertionError(f"set {key}: {line!r}")
            journal(f"A {key} {ver}")
            version[key] = ver
        elif r < 0.55:
            # A pipelined batch, fenced by mn.
            batch = rng.sample(keys, 20)
            vers = [rng.getrandbits(40) for _ in batch]
            req = b""
            for k, v in zip(batch, vers):
                journal(f"P {k} {v}")
                val = value_for(k, v)
                req += f"set {k} 0 0 {len(val)} noreply\r\n".encode() + val + b"\r\n"
            conn.send(req + b"mn\r\n")
            if conn.line() != b"MN":
                raise AssertionError("batch fence")
            for k, v in zip(batch, vers):
                journal(f"A {k} {v}")
                version[k] = v
        elif r < 0.85:
            batch = rng.sample(keys, 10)
            found = conn.get_many(batch)
            for k in batch:
                want = version.get(k)
                got = found.get(k)
                if want is None:
                    ok = got is None
                else:
                    ok = got == value_for(k, want)
                if not ok:
                    counts["mismatch"] += 1
                    print(f"client {cid}: {k} read {got!r:.60} want version {want}", file=sys.stderr)
        elif r < 0.93:
            journal(f"P {key} del")
            conn.send(f"delete {key}\r\n".encode())
            line = conn.line()
            if line not in (b"DELETED", b"NOT_FOUND"):
                raise AssertionError(f"delete {key}: {line!r}")
            journal(f"A {key} del")
            version[key] = None
        else:
            # A request cut off mid-way on a connection of its own: the key
            # must keep its current value.
            counts["mid_command_drops"] += 1
            c = Conn(port)
            poison = b"POISON" * 50
            cut = rng.choice(
                [
                    f"set {key} 0 0 {len(poison)}".encode(),
                    f"set {key} 0 0 {len(poison)}\r\n".encode() + poison[:100],
                    f"set {key} 0 0 {len(poison)}\r\n".encode() + poison,
                    f"set {key} 0 0 {len(poison)}\r\n".encode() + poison + b"\r",
                    f"append {key} 0 0 {len(poison)}\r\n".encode() + poison[:7],
                ]
            )
            c.send(cut)
            c.close(reset=rng.random() < 0.5)
        counts["ops"] += 1
    conn.close()
    os.close(fd)
    with open(journal_path + ".counts", "w") as f:
        f.write(repr(counts))


def parse_journal(path, expect):
    """Folds one journal into `expect`: key -> (acked version or None,
    set of versions in doubt). Returns how many writes it acknowledges."""
    acks = 0
    with open(path) as f:
        lines = f.read().split("\n")
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] not in ("P", "A"):
            continue  # the last line of a killed client may be cut short
        kind, key, ver = parts
        ver = None if ver == "del" else int(ver)
        acked, doubt = expect.get(key, (None, set()))
        if kind == "P":
            doubt = doubt | {ver}
        else:
            acked, doubt = ver, set()
            acks += 1
        expect[key] = (acked, doubt)
    return acks


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=180, help="seconds of load (at most 600)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kill-every", type=float, default=4.0, help="seconds between client kills")
    ap.add_argument("--binary", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--sabotage",
        type=int,
        default=0,
        help="delete this many acknowledged keys behind the clients' backs before the check, to see that it notices",
    )
    args = ap.parse_args()
    duration = min(args.duration, 600)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = args.binary
    if binary is None:
        for p in ("target/release/ferrocache", "target/debug/ferrocache"):
            if os.path.exists(os.path.join(root, p)):
                binary = os.path.join(root, p)
                break
    if binary is None:
        sys.exit("build ferrocache first (cargo build --release)")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-m", "2048", "-c", "4096"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.05)

    rng = random.Random(args.seed)
    workdir = tempfile.mkdtemp(prefix="ferrocache-soak-")
    procs = {}
    next_id = 0
    kills = 0
    peak_rss = 0

    def spawn():
        nonlocal next_id
        cid = next_id
        next_id += 1
        path = os.path.join(workdir, f"client{cid}.journal")
        p = mp.Process(target=client, args=(cid, port, path, end, rng.getrandbits(32)), daemon=True)
        p.start()
        procs[cid] = (p, path)

    start = time.time()
    end = start + duration
    for _ in range(args.clients):
        spawn()
    next_kill = start + args.kill_every
    print(f"soak: {duration}s, {args.clients} clients, server pid {server.pid} on port {port}", flush=True)
    while time.time() < end - 1:
        time.sleep(0.2)
        peak_rss = max(peak_rss, rss_kib(server.pid))
        if server.poll() is not None:
            sys.exit(f"server died with {server.returncode}")
        for cid, (p, _) in list(procs.items()):
            if not p.is_alive() and p.exitcode not in (0, -signal.SIGKILL):
                sys.exit(f"client {cid} failed with exit code {p.exitcode}")
        if time.time() >= next_kill:
            live = [cid for cid, (p, _) in procs.items() if p.is_alive()]
            victim = rng.choice(live)
            os.kill(procs[victim][0].pid, signal.SIGKILL)
            procs[victim][0].join()
            kills += 1
            spawn()
            next_kill = time.time() + rng.uniform(0.5, 2 * args.kill_every)
    for cid, (p, _) in procs.items():
        p.join(60)
        if p.exitcode not in (0, -signal.SIGKILL):
            sys.exit(f"client {cid} ended with {p.exitcode}")

    # Fold the journals and read every key back.
    expect = {}
    totals = {"ops": 0, "mid_command_drops": 0, "dribbled": 0, "mismatch": 0}
    acked_writes = 0
    for cid, (_, path) in sorted(procs.items()):
        if os.path.exists(path):
            acked_writes += parse_journal(path, expect)
        if os.path.exists(path + ".counts"):
            with open(path + ".counts") as f:
                for k, v in eval(f.read()).items():
                    totals[k] += v
    check = Conn(port)
    keys = sorted(expect)
    victims = [k for k in keys if expect[k][0] is not None and not expect[k][1]][: args.sabotage]
    for k in victims:
        check.send(f"delete {k}\r\n".encode())
        check.line()
    checked = lost = wrong = in_doubt = present = 0
    for i in range(0, len(keys), 100):
        batch = keys[i : i + 100]
        found = check.get_many(batch)
        for k in batch:
            acked, doubt = expect[k]
            got = found.get(k)
            allowed = {acked} | doubt
            ok = any((got is None) if v is None else (got == value_for(k, v)) for v in allowed)
            checked += 1
            in_doubt += bool(doubt)
            present += got is not None
            if not ok:
                if got is None:
                    lost += 1
                else:
                    wrong += 1
                print(f"{k}: read {got!r:.60}, want version {acked} (in doubt {doubt})", file=sys.stderr)
    check.send(b"stats\r\n")
    stats = {}
    while True:
        line = check.line()
        if line == b"END":
            break
        _, name, value = line.decode().split(" ", 2)
        stats[name] = value
    check.close()
    server.send_signal(signal.SIGTERM)
    code = server.wait(30)

    print(f"operations: {totals['ops']} by clients that ran to the end; {acked_writes} acknowledged writes and deletes by all {len(procs)} clients")
    print(f"faults: {kills} clients killed, {totals['mid_command_drops']} mid-command drops, {totals['dribbled']} dribbled writes")
    print(f"in-run read mismatches: {totals['mismatch']}")
    print(f"keys checked: {checked} ({present} present, {in_doubt} with a write in doubt)")
    print(f"keys lost: {lost}, keys with a wrong value: {wrong}")
    print(f"server: evictions {stats.get('evictions')}, curr_items {stats.get('curr_items')}, total_connections {stats.get('total_connections')}, peak RSS {peak_rss} KiB, exit {code}")
    if lost or wrong or totals["mismatch"] or stats.get("evictions") != "0" or code != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
