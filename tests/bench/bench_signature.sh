#!/usr/bin/env bash
# bench_signature.sh — builds and runs bench_signature.c, then counts its instructions.
#
# The cost of verifying one Twilio callback (form_parse + signature_check_form) next to a
# bare OpenSSL HMAC-SHA1 of the same string, in ns/op (wall clock, noisy on shared
# machines) and in instructions/op from callgrind (repeatable to the instruction, which is
# why docs/performance.md quotes those). The C file is not part of the CMake build: this
# script builds the Release libraries in build-bench/ and links the benchmark against the
# static libcalllog_ingest_core.a / libcalllog_common.a with one compiler line.
#
#   tests/bench/bench_signature.sh              # ~30 s: timing table + callgrind table
#   BENCH_SIG_ITER=50000 tests/bench/bench_signature.sh
#   BENCH_SIG_CALLGRIND=0 tests/bench/bench_signature.sh   # skip valgrind
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
ITER=${BENCH_SIG_ITER:-200000}
CG_ITER=${BENCH_SIG_CG_ITER:-2000}
BIN=$BUILD/bench/bench_signature

# Configures and builds the Release static libraries the benchmark links against.
build_libs() {
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target calllog_ingest_core calllog_common >/dev/null
}

# Compiles bench_signature.c with the project's warnings and -O2 (as Release does).
build_bench() {
    mkdir -p "$BUILD/bench"
    # shellcheck disable=SC2046 # pkg-config prints several words on purpose
    cc -std=c11 -O2 -g -DNDEBUG -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 \
        -D_POSIX_C_SOURCE=200809L -D_XOPEN_SOURCE=700 -D_DEFAULT_SOURCE \
        -I"$ROOT" \
        "$ROOT/tests/bench/bench_signature.c" -o "$BIN" \
        "$BUILD/ingest/libcalllog_ingest_core.a" "$BUILD/common/libcalllog_common.a" \
        $(pkg-config --libs libcrypto jansson hiredis libcurl) -lcivetweb -lpthread -lm
}

# Prints instructions per iteration of case $1 under callgrind (collection toggled by the
# benchmark itself around its timed loops only, so start-up and warm-up are not counted).
callgrind_case() {
    local name=$1 out total
    out=$(mktemp /tmp/bench-cg.XXXXXX)
    valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out" \
        "$BIN" --only "$name" --iterations "$CG_ITER" --repeat 1 >/dev/null 2>&1
    total=$(awk '/^totals:/ {print $2}' "$out")
    rm -f "$out"
    awk -v t="$total" -v n="$CG_ITER" 'BEGIN { printf "%.0f", t / n }'
}

build_libs
build_bench
echo "== bench_signature ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "   command: tests/bench/bench_signature.sh  (BENCH_SIG_ITER=$ITER)"
echo
"$BIN" --iterations "$ITER" --repeat 7

if [ "${BENCH_SIG_CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null; then
    echo
    echo "callgrind: instructions per operation (Ir / $CG_ITER iterations, warm-up excluded)"
    echo
    echo "| case         | instructions/op |"
    echo "|--------------|-----------------|"
    for c in $("$BIN" --list); do
        printf '| %-12s | %15s |\n' "$c" "$(callgrind_case "$c")"
    done
fi
