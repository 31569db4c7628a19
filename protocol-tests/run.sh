#!/usr/bin/env bash
# The one entry point of the protocol suite.
#
#   protocol-tests/run.sh [pytest args...]
#
# Creates (or reuses) protocol-tests/.venv from requirements.txt, builds the
# daemon with `cargo build --release` unless FERROCACHE_BIN names a binary or
# only memcached is tested, then runs pytest with the given arguments, e.g.
#   run.sh                       # against target/release/ferrocache
#   run.sh --target memcached    # against the system memcached
#   run.sh --target both -k pymemcache
# Debian packages it expects: see README.md.
set -euo pipefail
exec </dev/null

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# shellcheck source=scripts/ensure-venv.sh
source "$here/scripts/ensure-venv.sh"

# --- which servers are wanted ------------------------------------------------
target="${PROTOCOL_TARGET:-ferrocache}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --target=*) target="${args[$i]#--target=}" ;;
        --target) target="${args[$((i + 1))]:-$target}" ;;
    esac
done

# --- the daemon ---------------------------------------------------------------
if [[ "$target" != "memcached" && -z "${FERROCACHE_BIN:-}" ]]; then
    echo "run.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release --package ferrocache --bin ferrocache)
    export FERROCACHE_BIN="$repo/target/release/ferrocache"
fi

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
