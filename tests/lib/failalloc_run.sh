#!/usr/bin/env bash
# failalloc_run.sh — the allocation-failure sweep: every unit suite run again and again
# with its Nth allocation failing, so that an unchecked malloc (or strdup, json_*, curl_*)
# result is found here and not by a production worker under memory pressure.
#
# For each criterion suite in BUILD_DIR/tests/ and each N of a fixed ladder (1 2 3 … 1024)
# the suite runs with tests/lib/failalloc.c preloaded and CALLLOG_FAILALLOC=N: in every
# test process the Nth allocation made by the test's own code (fixtures, body, the product
# code they call) returns NULL. A test that then fails its assertions is expected: that is
# an allocation failure handled. What fails the sweep is a crash (SIGSEGV, SIGBUS, SIGILL,
# SIGFPE, an abort() that criterion did not raise, e.g. an assert() in product code), a
# sanitizer report, or a hang (a test timing out, or the suite outliving the timeout).
# A suite's ladder stops early once no test reached N allocations (nothing left to fail)
# or its time budget is spent, so the whole sweep stays within a few minutes on 2 cores.
#
# Usage: bash tests/lib/failalloc_run.sh [BUILD_DIR [SUITE...]]
#   BUILD_DIR  a Release tree (default build; the shim cannot run under ASan)
#   SUITE      test_* names to sweep (default every suite in BUILD_DIR/tests/)
# Environment: CALLLOG_FAILALLOC_SECONDS (budget per suite, default 6),
#   CALLLOG_FAILALLOC_TIMEOUT (seconds one run may take before it is a hang, default 60),
#   CALLLOG_FAILALLOC_STEPS (the ladder of N, space-separated), CALLLOG_FAILALLOC_FILTER
#   (a criterion --filter pattern, to sweep some tests deeper), and what the suites need
#   (CALLLOG_TEST_REDIS_URL, CALLLOG_TEST_DATABASE_URL: tests/lib/services.sh).
# Exit status 0 when no run crashed or hung; the problems are listed otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
SHIM=$BUILD_DIR/tests/lib/libfailalloc.so
BUDGET=${CALLLOG_FAILALLOC_SECONDS:-6}
TIMEOUT=${CALLLOG_FAILALLOC_TIMEOUT:-60}
FILTER=${CALLLOG_FAILALLOC_FILTER:-}
STEPS=${CALLLOG_FAILALLOC_STEPS:-"1 2 3 4 5 6 7 8 10 12 14 16 20 24 28 32 40 48 56 64 80 96 112 128 160 192 224 256 320 384 448 512 640 768 896 1024"}
WORK=$(mktemp -d /tmp/calllog-failalloc.XXXXXX)
PROBLEMS=()

# Milliseconds since the epoch.
now_ms() {
    date +%s%3N
}

# Runs suite $1 once with N=$2; its output goes to $WORK/log, the shim's report to
# $WORK/report. Prints the problem ("crash …", "hang …", "sanitizer …") or nothing.
run_once() {
    local exe=$1 n=$2 rc=0
    : >"$WORK/report"
    CALLLOG_FAILALLOC=$n CALLLOG_FAILALLOC_REPORT=$WORK/report LD_PRELOAD=$SHIM \
        timeout -k 5 "$TIMEOUT" "$exe" --jobs 2 ${FILTER:+--filter "$FILTER"} >"$WORK/log" 2>&1 ||
        rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "hang: the suite ran past ${TIMEOUT}s"
    elif grep -q 'Timed out' "$WORK/log"; then
        echo "hang: $(grep -m1 'Timed out' "$WORK/log")"
    elif grep -q '^crash ' "$WORK/report"; then
        echo "crash: $(grep '^crash ' "$WORK/report" | sed 's/^crash //' | tr '\n' ';')"
    elif grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$WORK/log"; then
        echo "sanitizer: $(grep -m1 -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$WORK/log")"
    fi
}

# Prints the crash backtraces of the last run with the suite's own frames named
# (addr2line on "boxfort-worker(+0x…)": the worker is the suite's executable).
backtraces() {
    local exe=$1 line off
    grep -E '^(/|boxfort-worker)[^ ]*\(' "$WORK/log" | while read -r line; do
        off=$(printf '%s' "$line" | sed -n 's/^boxfort-worker(+\(0x[0-9a-f]*\)).*/\1/p')
        if [ -n "$off" ]; then
            printf '%s  %s\n' "$line" "$(addr2line -f -s -e "$exe" "$off" | head -n 1)"
        else
            printf '%s\n' "$line"
        fi
    done
}

# Records a problem of suite $1 ($4 its executable) at N=$2 and shows what the run printed.
report_problem() {
    local name=$1 n=$2 what=$3 exe=$4
    PROBLEMS+=("$name N=$n $what")
    echo "  PROBLEM $name N=$n: $what"
    { grep -v -E '^\{|^(/|boxfort-worker)[^ ]*\(' "$WORK/log" || true; } | tail -n 12 |
        sed 's/^/    | /'
    backtraces "$exe" >"$WORK/bt" || true
    head -n 40 "$WORK/bt" | sed 's/^/    # /'
}

# Sweeps one suite along the ladder within its budget; prints one summary line.
sweep_suite() {
    local exe=$1 name start last=0 runs=0 n t0 problem reached top=0
    name=$(basename "$exe")
    start=$(now_ms)
    for n in $STEPS; do
        if [ $runs -gt 0 ] && [ $(($(now_ms) - start + last)) -gt $((BUDGET * 1000)) ]; then
            break
        fi
        t0=$(now_ms)
        problem=$(run_once "$exe" "$n")
        last=$(($(now_ms) - t0))
        runs=$((runs + 1))
        top=$n
        [ -z "$problem" ] || report_problem "$name" "$n" "$problem" "$exe"
        reached=$(grep -c '^failed ' "$WORK/report" || true)
        if [ "$reached" -eq 0 ]; then
            echo "$name: N=1..$n, $runs runs, $(($(now_ms) - start)) ms (no test makes $n allocations)"
            return 0
        fi
    done
    local why="budget spent"
    [ "$top" != "${STEPS##* }" ] || why="ladder done"
    echo "$name: N=1..$top, $runs runs, $(($(now_ms) - start)) ms ($why)"
}

main() {
    if [ ! -f "$SHIM" ]; then
        echo "failalloc_run: $SHIM is missing (build a Release tree first)" >&2
        exit 2
    fi
    local suites=() exe name
    if [ $# -gt 0 ]; then
        for name in "$@"; do suites+=("$BUILD_DIR/tests/$name"); done
    else
        for exe in "$BUILD_DIR"/tests/test_*; do
            [ -f "$exe" ] && [ -x "$exe" ] && suites+=("$exe")
        done
    fi
    local t0
    t0=$(date +%s)
    for exe in "${suites[@]}"; do
        sweep_suite "$exe"
    done
    rm -rf "$WORK"
    echo "failalloc: ${#suites[@]} suites in $(($(date +%s) - t0)) s, ${#PROBLEMS[@]} problems"
    if [ ${#PROBLEMS[@]} -gt 0 ]; then
        printf '  %s\n' "${PROBLEMS[@]}"
        exit 1
    fi
}

main "$@"
