#!/usr/bin/env bash
# bench_worker.sh — end-to-end delivery throughput of calllog-worker.
#
# Builds Release into build-bench/, starts a throwaway Redis and PostgreSQL
# (tests/lib/services.sh) and the mock RD Station (tests/mocks/rdstation_mock.py, its rate
# limit off), and for each row: preloads N `completed` call events straight onto the events
# stream (the fields the ingest writes, all from one seeded contact so the contact/deal
# look-up is cached after the first event), starts the worker(s), and times until every
# call is `delivered` in Postgres. Each row then checks the outcome: exactly N rows
# delivered and exactly N notes in the mock (no loss, no duplicate).
#
# Rows: WORKER_CONCURRENCY 1, 4, 8 and two processes x 4, first with the mock answering at
# once, then with 100 ms added to every RD answer (POST /_mock/latency) to show that
# concurrency overlaps slow answers. Baselines in the same run: the mock driven directly by
# a Python keep-alive loop (1 and 8 threads) POSTing notes — the mock's own ceiling.
# Then the round trips one call costs (issue 11): one worker at concurrency 1 delivers
# BENCH_ROUNDTRIP_EVENTS calls while Redis MONITOR and Postgres log_statement = all record
# every command and statement (tests/bench/roundtrips.py counts them per call), and the
# same call against its floors: its Postgres statements replayed by pgbench, as many Redis
# round trips timed by redis-benchmark, and one note POSTed to the mock.
#
#   tests/bench/bench_worker.sh                                  # ~2 min
#   BENCH_EVENTS=500 BENCH_SLOW_EVENTS=100 tests/bench/bench_worker.sh
#   BENCH_MOCK_NODELAY=0 tests/bench/bench_worker.sh   # the mock exactly as the tests run it
#   BENCH_WORKER_SHAPES="1 1,1 8" BENCH_SLOW_EVENTS=0 tests/bench/bench_worker.sh  # fewer rows
# Twilio REST enrichment is off (TWILIO_ENRICH=0): one RD request per call. Loopback
# only; not run by CI (tests/run.sh). Results: docs/performance.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
EVENTS=${BENCH_EVENTS:-2000}
SLOW_EVENTS=${BENCH_SLOW_EVENTS:-200}
SLOW_MS=${BENCH_SLOW_MS:-100}
ROW_TIMEOUT=${BENCH_ROW_TIMEOUT:-90}
BASELINE_SECONDS=${BENCH_BASELINE_SECONDS:-5}
SHAPES=${BENCH_WORKER_SHAPES:-1 1,1 4,1 8,2 4} # "processes concurrency", comma-separated
RT_EVENTS=${BENCH_ROUNDTRIP_EVENTS:-500}       # 0: no round-trip count and floors
FLOOR_SECONDS=${BENCH_FLOOR_SECONDS:-5}
FLOOR_OPS=${BENCH_FLOOR_OPS:-20000}
WORKER_BIN=${BENCH_WORKER_BIN:-$BUILD/bin/calllog-worker}
MOCK_NODELAY=${BENCH_MOCK_NODELAY:-1}

# shellcheck source=tests/bench/worker_lib.sh
. "$ROOT/tests/bench/worker_lib.sh"

WORK=$(mktemp -d /tmp/calllog-bench-worker.XXXXXX)

trap worker_bench_cleanup EXIT

worker_bench_setup

echo "== bench_worker ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "   command: tests/bench/bench_worker.sh  (BENCH_EVENTS=$EVENTS, BENCH_SLOW_EVENTS=$SLOW_EVENTS," \
    "BENCH_SLOW_MS=$SLOW_MS, BENCH_MOCK_NODELAY=$MOCK_NODELAY, BENCH_ROUNDTRIP_EVENTS=$RT_EVENTS)"
echo
echo "| scenario | workers x concurrency | RD latency ms | calls delivered | wall s | ledger s | calls/s | notes in RD |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
mock_row 1 0 >"$WORK/mock1"
cat "$WORK/mock1"
mock_row 8 0
IFS=, read -r -a shapes <<<"$SHAPES"
for shape in "${shapes[@]}"; do
    # shellcheck disable=SC2086 # "procs conc"
    worker_row $shape "$EVENTS" 0 >"$WORK/row"
    cat "$WORK/row"
    [ "$shape" != "1 1" ] || cp "$WORK/row" "$WORK/row-1x1"
done
if [ "$SLOW_EVENTS" -gt 0 ]; then
    mock_row 8 "$SLOW_MS"
    for shape in "${shapes[@]}"; do
        # shellcheck disable=SC2086
        worker_row $shape "$SLOW_EVENTS" "$SLOW_MS"
    done
fi
echo
echo "What one delivered call cost (CPU in ms of one core; Redis commands; Postgres WAL records and WAL fsyncs):"
echo
echo "| workers x concurrency | RD latency ms | worker CPU | mock CPU | Redis CPU | Postgres CPU | sum CPU | Redis cmds | WAL records | WAL fsyncs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
cat "$WORK/costs"
if [ "$RT_EVENTS" -gt 0 ]; then
    echo
    echo "Round trips per delivered call, one worker at concurrency 1, $RT_EVENTS calls (Redis MONITOR;" \
        "Postgres log_statement = all; commands inside a Lua script are not round trips):"
    echo
    echo "| system | command / statement | round trips | per call |"
    echo "|---|---|---:|---:|"
    roundtrip_row "$RT_EVENTS" 1
    echo
    echo "One call at concurrency 1 against its floors (the same statements and round trips, nothing else):"
    echo
    echo "| part | round trips per call | ms per call |"
    echo "|---|---:|---:|"
    # fields of a worker row: | scenario | shape | ms | done | wall | ledger | calls/s | notes |
    floor_rows "$(cat "$WORK/row-1x1" 2>/dev/null | awk -F'|' '{ printf "%.3f", ($8 > 0 ? 1000 / $8 : 0) }')" \
        "$(awk -F'|' '{ print $8 }' "$WORK/mock1")"
fi
