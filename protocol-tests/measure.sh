#!/usr/bin/env bash
# The tutorial's `ab -n 100 -c 10` measurement, with ferrocache and then
# memcached as the cache of the site under gunicorn. Not part of run.sh.
#
#   protocol-tests/measure.sh                          # both servers
#   protocol-tests/measure.sh --targets memcached      # memcached only
#   protocol-tests/measure.sh --help
# Needs apache2-utils (ab) besides the packages run.sh needs.
set -euo pipefail
exec </dev/null

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# shellcheck source=scripts/ensure-venv.sh
source "$here/scripts/ensure-venv.sh"

targets="ferrocache,memcached"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --targets=*) targets="${args[$i]#--targets=}" ;;
        --targets) targets="${args[$((i + 1))]:-$targets}" ;;
    esac
done
if [[ "$targets" == *ferrocache* && -z "${FERROCACHE_BIN:-}" ]]; then
    (cd "$repo" && cargo build --release)
    export FERROCACHE_BIN="$repo/target/release/ferrocache"
fi

cd "$here"
exec "$venv/bin/python" measure.py "$@"
