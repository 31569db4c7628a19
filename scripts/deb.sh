#!/usr/bin/env bash
# Builds the Debian package, then checks it the way an operator uses it.
#
#   scripts/deb.sh           build target/debian/ferrocache_*.deb, then check it (as root)
#   scripts/deb.sh --build   only build it
#
# The checks install the package on this machine and remove it again:
# - lintian finds no error or warning (deploy/debian/lintian-overrides,
#   shipped in the package, explains each one it overrides);
# - after dpkg -i: the binary runs, the ferrocache user exists, the unit and
#   the conffile are in place, and systemd-analyze verify accepts the unit;
# - the installed binary, started as the installed unit starts it, serves,
#   and so does an unchanged copy of Debian's default /etc/memcached.conf
#   (scripts/smoke.py); the installed one saves its warm-restart snapshot
#   in /var/lib/ferrocache, which the package creates for its user;
# - dpkg -r keeps the conffile and the snapshot; dpkg -P then leaves
#   nothing of the package behind but the ferrocache user, which Debian
#   policy keeps.
#
# cargo-deb is installed at a pinned version if it is missing. Needs dpkg,
# lintian, systemd (for systemd-analyze) and memcached's package (for its
# default configuration file and its memcache user).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if [[ "$(cargo deb --version 2>/dev/null)" != *"$CARGO_DEB_VERSION"* ]]; then
    echo "deb.sh: cargo install cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi

cargo build --release --package ferrocache --bin ferrocache
cargo run --quiet --example man -- target/man/ferrocache.1
rm -rf target/debian
# --strip: the release profile keeps line tables for profiling; the
# package ships the binary without them, as Debian policy asks.
cargo deb --no-build --strip --package ferrocache --output target/debian/
deb=$(ls target/debian/ferrocache_*.deb)
echo "deb.sh: built $deb"
[[ "${1:-}" == "--build" ]] && exit 0

fail() { echo "deb.sh: FAILED: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || fail "the checks install the package: run as root"

echo "deb.sh: lintian"
lintian --fail-on error,warning "$deb"

if dpkg -s ferrocache >/dev/null 2>&1; then
    dpkg -P ferrocache >/dev/null
fi
echo "deb.sh: dpkg -i"
dpkg -i "$deb"
/usr/bin/ferrocache --version | grep -q "^ferrocache " || fail "the installed binary does not run"
getent passwd ferrocache >/dev/null || fail "no ferrocache user after install"
unit=$(dpkg -L ferrocache | grep '/systemd/system/ferrocache.service$') || fail "no unit installed"
dpkg-query -W -f='${Conffiles}\n' ferrocache | grep -q '^ */etc/ferrocache.conf ' \
    || fail "/etc/ferrocache.conf is not a conffile"
zcat /usr/share/man/man1/ferrocache.1.gz | grep -qF 'config\-file' || fail "no man page"
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
# The warm restart: the configuration's -e file is in a directory the unit's
# user owns (the unit's StateDirectory=, made by postinst too).
grep -qx -- '-e /var/lib/ferrocache/cache' /etc/ferrocache.conf || fail "no -e in /etc/ferrocache.conf"
grep -qx 'StateDirectory=ferrocache' "$unit" || fail "no StateDirectory= in the unit"
[[ $(stat -c %U /var/lib/ferrocache 2>/dev/null) == ferrocache ]] \
    || fail "/var/lib/ferrocache is missing or not owned by ferrocache"

echo "deb.sh: the installed binary, started as the unit starts it"
python3 scripts/smoke.py installed memcached-conf

echo "deb.sh: dpkg -r, dpkg -P"
dpkg -r ferrocache >/dev/null
[[ -e /usr/bin/ferrocache ]] && fail "dpkg -r left /usr/bin/ferrocache"
[[ -e /etc/ferrocache.conf ]] || fail "dpkg -r removed the conffile (policy keeps it until purge)"
[[ -d /var/lib/ferrocache ]] || fail "dpkg -r removed the snapshot directory (purge removes it)"
dpkg -P ferrocache >/dev/null
left=$(ls -d /etc/ferrocache.conf /var/lib/ferrocache /usr/share/doc/ferrocache /usr/share/man/man1/ferrocache.1.gz "$unit" 2>/dev/null || true)
[[ -z "$left" ]] || fail "dpkg -P left: $left"
getent passwd ferrocache >/dev/null || fail "dpkg -P removed the ferrocache user (policy keeps it)"
echo "deb.sh: all checks passed"
