#!/usr/bin/env bash
# bench_recordings.sh — what a note's recording link costs calllog-ingest (issue 12): a
# BENCH_MEDIA_MIB (64) MiB recording streamed through the ingest next to the same bytes
# fetched straight from the Twilio mock (the floor), the ingest's peak RSS before and
# after (streaming must not buffer), the 302 of a redirecting account, and webhook
# latency with every RECORDINGS_MAX_CONCURRENT slot held by a slow listener next to an
# idle ingest (media must not take webhook threads).
#
#   tests/bench/bench_recordings.sh                           # ~30 s
#   BENCH_BIN_DIR=/tmp/x/build/bin tests/bench/bench_recordings.sh
# Builds Release into build-bench/ unless BENCH_BIN_DIR is given; starts a throwaway
# Redis (tests/lib/services.sh). Loopback only; not run by CI. Results:
# docs/performance.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

WORK=$(mktemp -d /tmp/calllog-bench-rec.XXXXXX)

# Stops Redis and removes the work directory.
cleanup() {
    services_redis_stop "$WORK/redis" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${BENCH_BIN_DIR:-}" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target calllog-ingest >/dev/null
    BENCH_BIN_DIR=$BUILD/bin
fi
port=$(services_free_port)
services_redis_start "$WORK/redis" "$port" >/dev/null
BENCH_BIN_DIR=$BENCH_BIN_DIR BENCH_REDIS_URL=redis://127.0.0.1:$port/0 \
    /usr/bin/python3 "$ROOT/tests/bench/bench_recordings.py"
