#!/bin/sh
# Re-records the reference transcripts of the differential corpus
# (tests/corpus/*.expected and tests/corpus/binary/*.expected) from a local
# memcached build, and marks each session by whether an older memcached
# (Debian's, run live by the tests) answers it the same way.
#
#   scripts/record-corpus.sh PATH-TO-MEMCACHED [PATH-TO-OLDER-MEMCACHED]
#
# or with FERROCACHE_RECORD_REFERENCE (and FERROCACHE_DIFF_REFERENCE) set.
# The older one defaults to `memcached` on $PATH or in /usr/bin.
#
# The recorded release is memcached 1.6.45, built from its public source
# at tag 1.6.45 (./autogen.sh && ./configure --enable-tls --enable-sasl
# --enable-sasl-pwdb && make, with Debian's libevent-dev, libssl-dev and
# libsasl2-dev, the build options of Debian's package, whose stats show the
# TLS settings). Review the change with `git diff tests/corpus` before
# committing it.
set -eu

if [ $# -ge 1 ]; then
    FERROCACHE_RECORD_REFERENCE=$1
fi
if [ $# -ge 2 ]; then
    FERROCACHE_DIFF_REFERENCE=$2
    export FERROCACHE_DIFF_REFERENCE
fi
if [ -z "${FERROCACHE_RECORD_REFERENCE:-}" ]; then
    echo "usage: $0 PATH-TO-MEMCACHED [PATH-TO-OLDER-MEMCACHED]" >&2
    exit 64
fi
case $FERROCACHE_RECORD_REFERENCE in
    /*) ;;
    *) FERROCACHE_RECORD_REFERENCE=$(pwd)/$FERROCACHE_RECORD_REFERENCE ;;
esac
export FERROCACHE_RECORD_REFERENCE

cd "$(dirname "$0")/.."
cargo test --test differential -- --ignored --exact record_reference_transcripts
# The recording must pass when the reference is tested against itself.
FERROCACHE_DIFF_SUBJECT=$FERROCACHE_RECORD_REFERENCE cargo test --test differential corpus_
git status --short tests/corpus
