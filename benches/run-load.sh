#!/usr/bin/env bash
# Load benchmark: ferrocache against Debian's memcached, side by side.
#
#   benches/run-load.sh                   # all scenarios, about 10 minutes
#   benches/run-load.sh --both-memcached  # memcached on both sides: the noise level
#   benches/run-load.sh --scenarios a,d --rounds 5 --duration 5
#   benches/run-load.sh --scenarios e,f   # memory and hit ratio only, about 5 minutes
#
# Builds ferrocache and the load generator in release mode, then runs
# `loadgen bench` (see `target/release/loadgen bench --help` for every
# option). The markdown report goes to stdout and to
# target/load-report.md; progress goes to stderr. Exits non-zero if any
# server reply was wrong. Needs memcached (apt-get install memcached) and
# taskset (util-linux). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/memcached ]]; then
    echo "run-load.sh: /usr/bin/memcached not found: apt-get install memcached" >&2
    exit 2
fi
cargo build --release --bin ferrocache --bin loadgen >&2
exec target/release/loadgen bench \
    --ferrocache target/release/ferrocache \
    --memcached /usr/bin/memcached \
    --out target/load-report.md \
    --command "benches/run-load.sh${*:+ $*}" \
    "$@"
