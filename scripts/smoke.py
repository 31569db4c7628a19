#!/usr/bin/env python3
"""Start ferrocache the ways the project tells people to, and check each serves.

The commands are read from where they are written, so they cannot drift:
- README.md: the first ```sh block under "## Run it", run as written with a
  shell (and the Makefile's `run` recipe must be that same command);
- deploy/docker/Dockerfile: ENTRYPOINT + CMD, as the image's user (uid 10001);
- deploy/systemd/ferrocache.service: ExecStart, with the unit's Environment=
  defaults and deploy/systemd/ferrocache.default substituted, as an
  unprivileged user (the unit's DynamicUser).

The image and the unit keep a warm-restart snapshot (-e) in
/var/lib/ferrocache, which the container's volume and the unit's
StateDirectory= provide; here a fresh directory owned by the run's user
stands in for it, and the snapshot must be there after the stop.

Each must answer `version`, a `set` and its `get` on 127.0.0.1:11211 and
serve /metrics on 127.0.0.1:9150, then exit 0 on SIGTERM. The units are
Type=notify, so their commands are started with NOTIFY_SOCKET naming a
socket of ours, as systemd does, and must send READY=1 once they serve and
STOPPING=1 on SIGTERM. Started as root,
the README's command must not keep running as root.

With the Debian package installed (scripts/deb.sh), two more:
- installed: the installed unit's ExecStart, as written, reading the
  installed /etc/ferrocache.conf, as the unit's User= (`ferrocache`); the
  configuration's -e snapshot must be saved in the package's
  /var/lib/ferrocache at the stop;
- memcached-conf: /usr/bin/ferrocache --config-file on an unchanged copy of
  Debian's default /etc/memcached.conf (from the memcached package); it must
  end up running as `memcache`.

Usage: scripts/smoke.py [readme|docker|systemd|installed|memcached-conf ...]
(default: the first three)
It uses the fixed default ports on purpose: they are what the commands say.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "ferrocache")
PORT, METRICS_PORT = 11211, 9150
# `cargo run --release` may have to build the daemon first.
START_TIMEOUT = 900
STOP_TIMEOUT = 15


def read(rel):
    with open(os.path.join(REPO, rel)) as f:
        return f.read()


def readme_command():
    text = read("README.md")
    section = text.split("\n## Run it\n", 1)[1]
    m = re.search(r"```sh\n(.*?)\n```", section, re.S)
    lines = [l for l in m.group(1).splitlines() if l.strip()]
    if len(lines) != 1:
        sys.exit(f"smoke: README's run block should be one command, got {lines!r}")
    return lines[0]


def makefile_run_recipe():
    text = read("Makefile")
    m = re.search(r"^run:.*\n\t(.+)$", text, re.M)
    return m.group(1).strip()


def docker_args():
    text = read("deploy/docker/Dockerfile")
    import json

    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M).groups()
    if entry[0] != "/usr/local/bin/ferrocache":
        sys.exit(f"smoke: unexpected ENTRYPOINT binary {entry[0]}")
    return [BIN] + entry[1:] + cmd, user


def systemd_args():
    unit = read("deploy/systemd/ferrocache.service")
    env = {}
    for m in re.finditer(r"^Environment=(.*)$", unit, re.M):
        for kv in shlex.split(m.group(1)):
            k, _, v = kv.partition("=")
            env[k] = v
    for line in read("deploy/systemd/ferrocache.default").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            env[k] = v
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    args = []
    for word in exec_start.split():
        # systemd: ${VAR} is one argument, $VAR splits on whitespace.
        if m := re.fullmatch(r"\$\{(\w+)\}", word):
            args.append(env[m.group(1)])
        elif m := re.fullmatch(r"\$(\w+)", word):
            args.extend(env[m.group(1)].split())
        else:
            args.append(re.sub(r"\$\{(\w+)\}", lambda v: env[v.group(1)], word))
    if args[0] != "/usr/local/bin/ferrocache":
        sys.exit(f"smoke: unexpected ExecStart binary {args[0]}")
    return [BIN] + args[1:]


STATE_DIR = "/var/lib/ferrocache/"


def with_state_dir(args, uid, gid):
    """args with the state directory replaced by a fresh one owned by
    uid:gid, as a volume or StateDirectory= provides it; and the -e file."""
    import tempfile

    import atexit
    import shutil

    d = tempfile.mkdtemp(prefix="ferrocache-smoke-state-")
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    if os.geteuid() == 0:
        os.chown(d, int(uid), int(gid))
    out = [a.replace(STATE_DIR, d + "/", 1) if a.startswith(STATE_DIR) else a for a in args]
    snapshot = next((out[i + 1] for i, a in enumerate(out[:-1]) if a == "-e"), None)
    return out, snapshot


def installed_unit():
    """The installed unit's ExecStart, its User= and the -e file of the
    installed configuration."""
    for unit in ("/lib/systemd/system/ferrocache.service", "/usr/lib/systemd/system/ferrocache.service"):
        if os.path.exists(unit):
            with open(unit) as f:
                text = f.read()
            args = shlex.split(re.search(r"^ExecStart=(.*)$", text, re.M).group(1))
            user = re.search(r"^User=(.*)$", text, re.M).group(1)
            with open("/etc/ferrocache.conf") as f:
                m = re.search(r"^-e\s+(\S+)", f.read(), re.M)
            return args, user, m and m.group(1)
    sys.exit("smoke: the package's unit is not installed")


def as_user(args, uid, gid):
    """Run args as uid:gid when we are root (CI); as ourselves otherwise."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] + args


def port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_listening(proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_busy(PORT):
            return True
        time.sleep(0.2)
    return False


def ask(sock, request, until):
    sock.sendall(request)
    reply = b""
    while not reply.endswith(until):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {reply!r}")
        reply += chunk
    return reply


def check_serves():
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
        version = ask(s, b"version\r\n", b"\r\n")
        assert version.startswith(b"VERSION "), version
        stored = ask(s, b"set smoke 5 0 5\r\nhello\r\n", b"\r\n")
        assert stored == b"STORED\r\n", stored
        got = ask(s, b"get smoke\r\n", b"END\r\n")
        assert got == b"VALUE smoke 5 5\r\nhello\r\nEND\r\n", got
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "\nmemcached_up 1" in "\n" + body, "no memcached_up 1 in /metrics"
    m = re.search(r'^memcached_commands_total\{command="set",status="hit"\} (\d+)', body, re.M)
    assert m and int(m.group(1)) >= 1, "the set is not counted in /metrics"
    return version.decode().strip()


def euid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    raise AssertionError("no Uid line")


def notify_socket():
    """A datagram socket standing in for systemd's, and its NOTIFY_SOCKET
    value: an abstract name, which any user may send to."""
    name = f"ferrocache-smoke-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(0.2)
    return sock, "@" + name


def expect_notify(sock, state, proc, timeout):
    """The next notification, which must hold `state`; waits while the
    process runs, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = sock.recv(4096).decode()
            break
        except socket.timeout:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"no {state} notification (exit {proc.poll()})") from None
    assert state in got.split("\n"), f"notified {got!r}, not {state}"


def run(name, popen_args, shell=False, not_root=False, user=None, snapshot=None, notify=False):
    print(f"smoke: {name}: {popen_args if shell else shlex.join(popen_args)}", flush=True)
    for p in (PORT, METRICS_PORT):
        if port_busy(p):
            sys.exit(f"smoke: port {p} is already in use; stop what holds it first")
    log = open(os.path.join(REPO, "target", f"smoke-{name}.log"), "w+")
    # exec: the shell becomes the command (and `cargo run` execs the daemon),
    # so the pid we signal is the daemon's, as with a service manager.
    cmd = f"exec {popen_args}" if shell else popen_args
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    listener = None
    if notify:
        listener, env["NOTIFY_SOCKET"] = notify_socket()
    proc = subprocess.Popen(
        cmd, shell=shell, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True, env=env,
    )
    try:
        if listener is not None:
            expect_notify(listener, "READY=1", proc, START_TIMEOUT)
            # Ready means serving: no waiting for the port.
            assert port_busy(PORT), "READY=1 before listening"
        elif not wait_listening(proc, time.monotonic() + START_TIMEOUT):
            raise AssertionError(f"not listening on {PORT} (exit {proc.poll()})")
        version = check_serves()
        if not_root:
            assert euid_of(proc.pid) != 0, "the daemon kept running as root"
        if user is not None:
            import pwd

            want = pwd.getpwnam(user).pw_uid
            assert euid_of(proc.pid) == want, f"not running as {user}"
        proc.send_signal(signal.SIGTERM)
        if listener is not None:
            expect_notify(listener, "STOPPING=1", proc, STOP_TIMEOUT)
        code = proc.wait(timeout=STOP_TIMEOUT)
        assert code == 0, f"exit code {code} after SIGTERM"
        if snapshot is not None:
            assert os.path.getsize(snapshot) > 0, f"no snapshot saved at {snapshot}"
        told = ", READY=1 and STOPPING=1" if notify else ""
        print(f"smoke: {name}: ok ({version}, exit 0 on SIGTERM{told})", flush=True)
        return True
    except (AssertionError, OSError, subprocess.TimeoutExpired) as e:
        print(f"smoke: {name}: FAILED: {e}", flush=True)
        log.seek(0)
        sys.stdout.write("".join(log.readlines()[-20:]))
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if listener is not None:
            listener.close()


def main():
    wanted = sys.argv[1:] or ["readme", "docker", "systemd"]
    ok = True
    if "readme" in wanted:
        command = readme_command()
        recipe = makefile_run_recipe()
        if recipe != command:
            print(f"smoke: Makefile's run ({recipe!r}) differs from the README's ({command!r})")
            ok = False
        ok &= run("readme", command, shell=True, not_root=True)
    if "docker" in wanted or "systemd" in wanted:
        if not os.path.exists(BIN):
            subprocess.run(
                ["cargo", "build", "--release", "--package", "ferrocache", "--bin", "ferrocache"],
                cwd=REPO, check=True,
            )
    if "docker" in wanted:
        args, (uid, gid) = docker_args()
        args, snapshot = with_state_dir(args, uid, gid)
        ok &= run("docker", as_user(args, uid, gid), snapshot=snapshot)
    if "systemd" in wanted:
        args, snapshot = with_state_dir(systemd_args(), 65534, 65534)
        ok &= run("systemd", as_user(args, 65534, 65534), snapshot=snapshot, notify=True)
    if "installed" in wanted:
        import pwd

        args, user, snapshot = installed_unit()
        pw = pwd.getpwnam(user)
        if snapshot and os.path.exists(snapshot):
            os.remove(snapshot)
        ok &= run(
            "installed", as_user(args, pw.pw_uid, pw.pw_gid), user=user, snapshot=snapshot,
            notify=True,
        )
    if "memcached-conf" in wanted:
        import shutil
        import tempfile

        default = "/usr/share/memcached/memcached.conf.default"
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "memcached.conf")
            shutil.copyfile(default, copy)
            args = ["/usr/bin/ferrocache", "--config-file", copy]
            ok &= run("memcached-conf", args, user="memcache")
    print(f"smoke: {'all passed' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
