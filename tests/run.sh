#!/usr/bin/env bash
# run.sh — the project's one test command: `bash tests/run.sh` (CI runs exactly this).
#
# It installs the Debian packages, builds a Release tree (build/) and an ASan+UBSan tree
# (build-asan/), starts a throwaway Redis, PostgreSQL and PgBouncer (tests/lib/services.sh),
# runs every criterion suite of both trees, the allocation-failure sweep over the Release
# suites (unit:failalloc: tests/lib/failalloc_run.sh, each suite with its Nth allocation
# failing, CALLLOG_FAILALLOC=N, for a ladder of N; a crash or hang fails it), the HTTP
# mocks' self-test and the end-to-end tests against both trees' programs (the ASan run in
# the background alongside the Release ones, on a database of its own), the worker's
# end-to-end tests once more against
# the Release programs with the ledger behind PgBouncer in transaction mode (Supabase's
# pooler; Release only, to keep CI time down) and the fault scenarios (ingest down 60 s,
# Redis SIGKILLed, workers SIGKILLed: tests/e2e/test_faults.py, in parallel), then builds
# the libFuzzer targets with clang (build-fuzz/) and runs each for a while. A failing suite does not stop the run; the
# last line is `N passed, N failed` counting suites, and the exit status is non-zero
# when any failed.
#
# Usage: bash tests/run.sh [--quick] [--only unit|e2e|fuzz]
#   --quick   skip the sanitizer build and the fuzzers
#   --only    run one kind of suite (with the builds and services it needs)
# Environment: CALLLOG_BUILD_DIR, CALLLOG_ASAN_BUILD_DIR, CALLLOG_FUZZ_BUILD_DIR (build
# trees, default build, build-asan, build-fuzz), CALLLOG_FUZZ_SECONDS (default 20),
# CALLLOG_FAILALLOC_SECONDS (the sweep's time budget per suite, default 6; the sweep sets
# CALLLOG_FAILALLOC itself: set it by hand with LD_PRELOAD=build/tests/lib/libfailalloc.so
# to fail the Nth allocation of one suite's tests).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PY=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
BUILD_DIR=${CALLLOG_BUILD_DIR:-build}
ASAN_DIR=${CALLLOG_ASAN_BUILD_DIR:-build-asan}
FUZZ_DIR=${CALLLOG_FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${CALLLOG_FUZZ_SECONDS:-20}

QUICK=0
ONLY=
PASSED=0
FAILED=0
FAILED_NAMES=()
RUN_START=$(date +%s)

# Prints the usage text.
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# Reads the command line into QUICK and ONLY.
parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 ;;
        --only)
            [ $# -ge 2 ] || { echo "run.sh: --only needs unit, e2e or fuzz" >&2; exit 2; }
            ONLY=$2
            shift
            ;;
        --only=*) ONLY=${1#--only=} ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
        esac
        shift
    done
    case $ONLY in
    '' | unit | e2e | fuzz) ;;
    *) echo "run.sh: --only takes unit, e2e or fuzz, not '$ONLY'" >&2; exit 2 ;;
    esac
}

# 1 when suites of kind $1 (unit, e2e, fuzz) are part of this run.
wants() {
    [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]
}

# Runs one suite: `suite NAME command...`. Counts it passed or failed, never stops.
suite() {
    local name=$1 start rc
    shift
    echo
    echo "=== $name"
    start=$(date +%s)
    set +e
    "$@"
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        PASSED=$((PASSED + 1))
        echo "--- PASS $name ($(($(date +%s) - start)) s)"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        echo "--- FAIL $name (exit $rc, $(($(date +%s) - start)) s)"
    fi
    return 0
}

# Configures and builds tree $1 with extra cmake arguments; output goes to $1/build.log
# and its tail is shown when a step fails.
build_tree() {
    local dir=$1
    shift
    mkdir -p "$dir"
    if ! cmake -S . -B "$dir" "$@" >"$dir/build.log" 2>&1 ||
        ! cmake --build "$dir" -j "$JOBS" >>"$dir/build.log" 2>&1; then
        tail -n 60 "$dir/build.log"
        return 1
    fi
    echo "built $dir (log: $dir/build.log)"
}

# Sets LSAN_WORKS to 1 when LeakSanitizer can run here (it cannot under some ptrace
# sandboxes): a tiny program that leaks must be reported.
probe_lsan() {
    local tmp
    tmp=$(mktemp -d)
    printf '#include <stdlib.h>\nvoid *volatile keep;\nint main(void) { keep = malloc(33); keep = 0; return 0; }\n' >"$tmp/leak.c"
    local out=
    LSAN_WORKS=0
    if cc -fsanitize=address -g "$tmp/leak.c" -o "$tmp/leak" 2>/dev/null; then
        out=$(ASAN_OPTIONS=detect_leaks=1 "$tmp/leak" 2>&1 || true)
    fi
    case $out in
    *'LeakSanitizer: detected memory leaks'*) LSAN_WORKS=1 ;;
    esac
    rm -rf "$tmp"
    if [ "$LSAN_WORKS" -eq 1 ]; then
        echo "LeakSanitizer works here: sanitizer runs use detect_leaks=1"
    else
        echo "NOTE: LeakSanitizer does not work in this environment; sanitizer runs use detect_leaks=0 (ASan and UBSan still run)"
    fi
}

# Runs a command (or shell function) with the sanitizer options of the ASan+UBSan runs.
sanitized() {
    (
        export ASAN_OPTIONS="detect_leaks=$LSAN_WORKS:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
        "$@"
    )
}

# Runs every criterion executable in tree $1/tests/ as its own suite; with a third
# argument `sanitized`, under the sanitizer options.
run_unit_suites() {
    local dir=$1 label=$2 wrap=${3:-} exe found=0
    for exe in "$dir"/tests/test_*; do
        [ -f "$exe" ] && [ -x "$exe" ] || continue
        found=1
        # shellcheck disable=SC2086  # $wrap is empty or one word
        suite "unit:$label:$(basename "$exe")" $wrap timeout 900 "$exe" --jobs "$JOBS"
    done
    if [ $found -eq 0 ]; then
        echo "NOTE: no criterion suites in $dir/tests/"
    fi
}

# Runs pytest on the given paths; "no tests collected" (exit 5) is a failure too.
run_pytest() {
    timeout 1200 "$PY" -m pytest -q -p no:cacheprovider -rfEs "$@"
}

# Runs the end-to-end tests against the programs of tree $1.
run_e2e() {
    CALLLOG_BIN_DIR="$ROOT/$1/bin" run_pytest tests/e2e --ignore=tests/e2e/test_faults.py
}

# Runs the fault scenarios of tests/e2e/test_faults.py against the programs of tree $1,
# all at once (each takes about a minute of wall time, mostly waiting), each in its own
# pytest process and database (their fixtures drop and recreate the schema). Every
# scenario's output goes to $1/faults-<scenario>.log; its FAULT line is shown.
run_faults() {
    local dir=$1 name pids=() names=() rc=0 i
    for name in ingest_down redis_sigkill worker_sigkill; do
        services_pg_createdb "$CALLLOG_TEST_PG_PORT" "calllog_fault_$name" || return 1
        CALLLOG_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$CALLLOG_TEST_PG_PORT/calllog_fault_$name" \
            CALLLOG_BIN_DIR="$ROOT/$dir/bin" \
            run_pytest -s tests/e2e/test_faults.py -k "test_$name" >"$dir/faults-$name.log" 2>&1 &
        pids+=($!)
        names+=("$name")
    done
    for i in "${!pids[@]}"; do
        if wait "${pids[$i]}"; then
            grep -h '^FAULT ' "$dir/faults-${names[$i]}.log" || true
        else
            rc=1
            echo "fault scenario ${names[$i]} failed; its output:"
            tail -n 80 "$dir/faults-${names[$i]}.log"
        fi
    done
    return $rc
}

# Runs the worker's end-to-end tests against the programs of tree $1 with the ledger
# reached through PgBouncer in transaction mode (as through Supabase's pooler).
run_e2e_pgbouncer() {
    if [ -z "${CALLLOG_TEST_PGBOUNCER_URL:-}" ]; then
        echo "run.sh: CALLLOG_TEST_PGBOUNCER_URL is not set (did services_start fail?)"
        return 1
    fi
    CALLLOG_TEST_DATABASE_URL=$CALLLOG_TEST_PGBOUNCER_URL CALLLOG_BIN_DIR="$ROOT/$1/bin" \
        run_pytest tests/e2e/test_worker.py
}

# Builds the fuzz tree with clang and runs each target for FUZZ_SECONDS seconds.
run_fuzzers() {
    suite "build:fuzz" build_tree "$FUZZ_DIR" -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=Debug -DCALLLOG_FUZZ=ON -DCALLLOG_TESTS=OFF
    ! suite_failed "build:fuzz" || return 0
    local exe found=0
    for exe in "$FUZZ_DIR"/fuzz/fuzz_*; do
        [ -f "$exe" ] && [ -x "$exe" ] || continue
        found=1
        suite "fuzz:$(basename "$exe")" run_one_fuzzer "$exe"
    done
    if [ $found -eq 0 ]; then
        echo "NOTE: no fuzz targets in $FUZZ_DIR/fuzz/"
    fi
}

# Runs one libFuzzer target: new inputs go to a scratch corpus (the committed corpus in
# tests/fuzz/corpus/<name> is read, never written), crashes to $FUZZ_DIR/artifacts/.
run_one_fuzzer() {
    local exe=$1 name seed scratch dict args rc
    name=$(basename "$exe")
    seed=tests/fuzz/corpus/${name#fuzz_}
    scratch=$(mktemp -d)
    mkdir -p "$FUZZ_DIR/artifacts"
    args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$FUZZ_DIR/artifacts/$name-")
    dict=tests/fuzz/${name#fuzz_}.dict
    [ -f "$dict" ] && args+=(-dict="$dict")
    [ -d "$seed" ] || seed=
    rc=0
    "$exe" "${args[@]}" "$scratch" ${seed:+"$seed"} >"$FUZZ_DIR/$name.log" 2>&1 || rc=$?
    rm -rf "$scratch"
    grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$FUZZ_DIR/$name.log" || true
    if [ $rc -ne 0 ]; then
        tail -n 60 "$FUZZ_DIR/$name.log"
    fi
    return $rc
}

# Starts `command...` in the background with its output in a file, for suite_join_bg:
# the ASan end-to-end run overlaps the Release ones (both mostly wait on the programs
# they drive), on a database of its own.
suite_start_bg() {
    BG_NAME=$1
    shift
    BG_LOG=$(mktemp /tmp/calllog-suite.XXXXXX)
    BG_START=$(date +%s)
    (
        set +e
        "$@" >"$BG_LOG" 2>&1
        echo $? >"$BG_LOG.rc"
    ) &
    BG_PID=$!
}

# Prints the background suite's output and returns its exit status.
bg_result() {
    wait "$BG_PID" 2>/dev/null || true
    echo "(ran in the background for $(($(date +%s) - BG_START)) s; its output:)"
    cat "$BG_LOG"
    local rc
    rc=$(cat "$BG_LOG.rc" 2>/dev/null || echo 1)
    rm -f "$BG_LOG" "$BG_LOG.rc"
    return "$rc"
}

# Waits for the background suite and counts it like any other.
suite_join_bg() {
    [ -n "${BG_PID:-}" ] || return 0
    suite "$BG_NAME" bg_result
    BG_PID=
}

# 1 when suite NAME failed in this run.
suite_failed() {
    printf '%s\n' "${FAILED_NAMES[@]-}" | grep -qx "$1"
}

main() {
    parse_args "$@"
    local asan=1
    [ $QUICK -eq 0 ] || asan=0

    echo "=== dependencies"
    if ! bash deploy/install-deps.sh; then
        echo "run.sh: could not install the Debian packages; nothing was tested"
        echo "0 passed, 1 failed"
        exit 1
    fi

    if wants unit || wants e2e; then
        suite "build:release" build_tree "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
        if [ $asan -eq 1 ]; then
            probe_lsan
            suite "build:asan" build_tree "$ASAN_DIR" -DCMAKE_BUILD_TYPE=Debug \
                -DCALLLOG_SANITIZE=ON
        fi

        # shellcheck source=tests/lib/services.sh
        . tests/lib/services.sh
        trap services_stop EXIT
        trap 'exit 130' INT TERM
        suite "services" services_start

        if wants unit; then
            suite_failed "build:release" || run_unit_suites "$BUILD_DIR" release
            suite_failed "build:release" ||
                suite "unit:failalloc" bash tests/lib/failalloc_run.sh "$BUILD_DIR"
            if [ $asan -eq 1 ] && ! suite_failed "build:asan"; then
                run_unit_suites "$ASAN_DIR" asan sanitized
            fi
        fi
        if wants e2e; then
            if [ -f tests/mocks/test_mocks.py ]; then
                suite "mocks:self-test" run_pytest tests/mocks/test_mocks.py
            else
                echo "NOTE: tests/mocks/test_mocks.py is absent; mocks self-test skipped"
            fi
            if [ $asan -eq 1 ] && ! suite_failed "build:asan" &&
                services_pg_createdb "$CALLLOG_TEST_PG_PORT" calllog_test_asan; then
                CALLLOG_TEST_DATABASE_URL=${CALLLOG_TEST_DATABASE_URL%/*}/calllog_test_asan \
                    suite_start_bg "e2e:asan" sanitized run_e2e "$ASAN_DIR"
            fi
            if ! suite_failed "build:release"; then
                suite "e2e:release" run_e2e "$BUILD_DIR"
                suite "e2e:release:pgbouncer" run_e2e_pgbouncer "$BUILD_DIR"
                suite "faults:release" run_faults "$BUILD_DIR"
            fi
            suite_join_bg
        fi
        services_stop
    fi

    if [ $QUICK -eq 0 ] && wants fuzz; then
        run_fuzzers
    fi

    echo
    echo "=== summary ($(($(date +%s) - RUN_START)) s)"
    if [ $FAILED -gt 0 ]; then
        printf 'failed: %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed"
    [ $FAILED -eq 0 ]
}

main "$@"
