#!/usr/bin/env bash
# bench_ingest_cpu.sh — instructions per accepted webhook of calllog-ingest, next to the
# bare civetweb handler, counted by callgrind (so the figures do not move with the load
# of a shared machine, unlike requests/s).
#
# Builds Release into build-bench/ and tests/bench/bare_civetweb.c (the floor: civetweb
# with the ingest's options, a handler that reads the body and answers 204), starts a
# throwaway Redis (tests/lib/services.sh), and for each program runs it under
# `valgrind --tool=callgrind` while wrk sends the realistic signed 26-parameter
# `completed` callback of bench_ingest.sh for BENCH_CG_SECONDS. Instructions are counted
# for the whole process (start-up included, a few million: under 1 % of a row) and
# divided by the requests wrk saw answered. A second table counts the system calls per
# request the same way under `strace -f -c` (when strace is installed). Rows:
#
#   bare civetweb       the do-nothing handler: civetweb's own cost per request
#   calllog-ingest      the build under test (BENCH_INGEST_BIN, default this tree's)
#   baseline ingest     another build, when BENCH_BASELINE_BIN names one (before/after)
#
#   tests/bench/bench_ingest_cpu.sh                                    # ~1 min
#   BENCH_BASELINE_BIN=/tmp/old/build/bin/calllog-ingest tests/bench/bench_ingest_cpu.sh
# Loopback only; not run by CI (tests/run.sh). Results: docs/performance.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
SECONDS_PER_ROW=${BENCH_CG_SECONDS:-15}
INGEST_BIN=${BENCH_INGEST_BIN:-$BUILD/bin/calllog-ingest}
BASELINE_BIN=${BENCH_BASELINE_BIN:-}
TOKEN=8f14e45fceea167a5a36dedd4bea2543
PUBLIC=https://calllog.example.com

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

WORK=$(mktemp -d /tmp/calllog-bench-cpu.XXXXXX)
REDIS_DIR=$WORK/redis
PROG_PID=

# Stops the program under callgrind and Redis, and removes the work directory.
cleanup() {
    if [ -n "$PROG_PID" ]; then
        kill -TERM "$PROG_PID" 2>/dev/null || true
        wait "$PROG_PID" 2>/dev/null || true
    fi
    services_redis_stop "$REDIS_DIR"
    rm -rf "$WORK"
}
trap cleanup EXIT

# Prints an error and exits.
die() {
    echo "bench_ingest_cpu: $*" >&2
    exit 1
}

# Builds the ingest (Release) and the bare handler.
build() {
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target calllog-ingest >/dev/null
    cc -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        "$ROOT/tests/bench/bare_civetweb.c" -o "$WORK/bare_civetweb" -lcivetweb -lpthread
}

# Writes the signed callback and the wrk script (the load of bench_ingest.sh).
write_load() {
    /usr/bin/python3 "$ROOT/tests/bench/signed_callback.py" "$WORK" "$TOKEN" "$PUBLIC/twilio/log-call"
}

# Starts `command...` under callgrind (its output file: $WORK/cg.out), or with MODE=strace
# under `strace -f -c` (its summary: $WORK/st.out), and waits until port $PORT answers.
start_under_callgrind() {
    rm -f "$WORK/cg.out" "$WORK/st.out"
    if [ "${MODE:-callgrind}" = strace ]; then
        strace -f -c -o "$WORK/st.out" "$@" 2>"$WORK/prog.log" &
    else
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$@" 2>"$WORK/prog.log" &
    fi
    PROG_PID=$!
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0
        sleep 0.1
    done
    cat "$WORK/prog.log" >&2
    die "$1 did not answer under callgrind"
}

# Starts an ingest binary $1 under callgrind against the benchmark's Redis.
start_ingest() {
    rm -rf "$WORK/spool"
    REDIS_URL="redis://127.0.0.1:$RPORT/0" CALLLOG_KEY_PREFIX=bench PUBLIC_BASE_URL=$PUBLIC \
        TWILIO_AUTH_TOKEN=$TOKEN INGEST_LISTEN="127.0.0.1:$PORT" \
        METRICS_LISTEN="127.0.0.1:$MPORT" INGEST_SPOOL_DIR="$WORK/spool" INGEST_THREADS=4 \
        LOG_FORMAT=json LOG_LEVEL=info start_under_callgrind "$1"
}

# Loads the running program for SECONDS_PER_ROW, stops it, and prints its table row
# ($1 name, $2 the bare row's instructions per request or 0 for "this is the floor").
measure_row() {
    local name=$1 floor=$2 line requests errors total per
    line=$(wrk -t1 -c4 -d"${SECONDS_PER_ROW}s" -s "$WORK/post.lua" \
        "http://127.0.0.1:$PORT/twilio/log-call" | grep '^BENCH ') || die "wrk failed for $name"
    if [ "${MODE:-callgrind}" = strace ]; then
        pkill -TERM -P "$PROG_PID" || true # the traced program: strace ends with it
    else
        kill -TERM "$PROG_PID"
    fi
    wait "$PROG_PID" || true
    PROG_PID=
    read -r _ requests _ _ _ errors <<<"$line"
    [ "$requests" -gt 0 ] || die "$name answered nothing"
    if [ "${MODE:-callgrind}" = strace ]; then
        syscall_row "$name" "$requests" "$errors"
        return
    fi
    total=$(awk '/^totals:/ {print $2}' "$WORK/cg.out")
    per=$((total / requests))
    printf '| %s | %d | %d | %d | %s |\n' "$name" "$requests" "$errors" "$per" \
        "$(awk -v p="$per" -v f="$floor" 'BEGIN { if (f > 0) printf "%.1f×", p / f; else print "1×" }')"
    LAST_PER=$per
}

# Prints the system-call row of a program stopped after `strace -c`: $1 name, $2 requests,
# $3 errors. Start-up and the stop are included (a few dozen calls: noise at this scale).
syscall_row() {
    awk -v name="$1" -v n="$2" -v e="$3" '
        $NF == "total" { total = $4; next }
        /^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ { calls[$NF] = $4 }
        END {
            split("futex sendto write read poll recvfrom newfstatat getrandom", shown, " ")
            detail = ""
            for (i = 1; i in shown; i++)
                detail = detail sprintf("%s %.2f, ", shown[i], calls[shown[i]] / n)
            printf "| %s | %d | %d | %.2f | %s |\n", name, n, e, total / n, substr(detail, 1, length(detail) - 2)
        }' "$WORK/st.out"
}

# The rows of one table: the bare handler, the baseline build when given, this build.
rows() {
    start_under_callgrind "$WORK/bare_civetweb" "$PORT" 4
    measure_row "bare civetweb (floor)" 0
    local floor=$LAST_PER
    if [ -n "$BASELINE_BIN" ]; then
        start_ingest "$BASELINE_BIN"
        measure_row "baseline ingest" "$floor"
    fi
    start_ingest "$INGEST_BIN"
    measure_row "calllog-ingest" "$floor"
}

main() {
    command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
    command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
    build
    write_load
    RPORT=$(services_free_port)
    PORT=$(services_free_port)
    MPORT=$(services_free_port)
    services_redis_start "$REDIS_DIR" "$RPORT" >/dev/null || die "Redis did not start"
    echo "== bench_ingest_cpu ($(nproc) cores; ${SECONDS_PER_ROW} s per row, wrk -t1 -c4)"
    echo "   command: tests/bench/bench_ingest_cpu.sh${BASELINE_BIN:+ (BENCH_BASELINE_BIN=$BASELINE_BIN)}"
    echo
    echo "| program | requests | errors | instructions/request | vs bare |"
    echo "|---|---:|---:|---:|---:|"
    rows
    if command -v strace >/dev/null; then
        echo
        echo "System calls per request (strace -f -c, the same load; the kernel's share, which callgrind does not count):"
        echo
        echo "| program | requests | errors | system calls/request | of which, per request |"
        echo "|---|---:|---:|---:|---|"
        MODE=strace rows
    fi
}

main "$@"
