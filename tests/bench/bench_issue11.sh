#!/usr/bin/env bash
# bench_issue11.sh — issue 11's whole table in one run, each figure next to its baseline.
#
# Issue 11 asks for one command that prints its table with every ratio measured against
# its baseline in the same run. This is it. It builds Release into build-bench/ and
# tests/bench/bare_civetweb.c, starts a throwaway Redis (AOF, appendfsync always) and
# PostgreSQL (tests/lib/services.sh) and the RD Station mock (answering at once, its rate
# limit off), and measures, one phase after another, each bounded in time:
#
#   ingest      wrk POSTs the signed 26-parameter `completed` callback (signed_callback.py)
#               for BENCH_DURATION s to bare_civetweb (do-nothing handler), calllog-ingest
#               and Express + twilio.webhook() + ioredis XADD (tests/bench/express/, npm
#               ci'd into BENCH_NPM_DIR): the same load, the same signature, the same
#               Redis; each row checks that the stream grew by the requests answered
#   worker      calls/s end to end (worker_lib.sh worker_row) for BENCH_WORKER_SHAPES,
#               against the mock alone with 8 keep-alive clients; then the round trips
#               per call (roundtrip_row: Redis MONITOR, Postgres log_statement)
#   latency     hangup-to-note: BENCH_LATENCY_RATE calls/s for BENCH_LATENCY_SECONDS onto
#               the stream (received_at stamped as each is added, like the ingest does)
#               with one worker at its default concurrency (4); from received_at to the
#               ledger's finished_at (the delivery recorded, right after RD answered)
#   idle        an idle ingest and an idle worker side by side for BENCH_IDLE_SECONDS:
#               CPU from /proc/PID/stat, peak VmRSS, Redis commands/s they cause
#   quota       tests/bench/bench_quota.sh with the issue's two scenarios (its own
#               services, the mock's sliding-window limit on)
#
#   tests/bench/bench_issue11.sh                               # ~9 min
#   BENCH_IDLE_SECONDS=10 BENCH_QUOTA=0 tests/bench/bench_issue11.sh   # ~4 min, no quota
#   BENCH_WORKER_BIN_BEFORE=/tmp/old/build-bench/bin/calllog-worker tests/bench/bench_issue11.sh
#   BENCH_PHASES=ingest BENCH_QUOTA=0 tests/bench/bench_issue11.sh   # ~1.5 min, the ingest rows
#
# With BENCH_WORKER_BIN_BEFORE, the worker rows (calls/s, round trips, latency) run for that
# build too, labelled `before`. Loopback only; not run by CI. Results: docs/performance.md,
# section "Issue 11 in one table".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
WORKER_BIN=${BENCH_WORKER_BIN:-$BUILD/bin/calllog-worker}
INGEST_BIN=${BENCH_INGEST_BIN:-$BUILD/bin/calllog-ingest}
BEFORE_BIN=${BENCH_WORKER_BIN_BEFORE:-}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
INGEST_THREADS=${BENCH_INGEST_THREADS:-64}
EVENTS=${BENCH_EVENTS:-2000}
SHAPES=${BENCH_WORKER_SHAPES:-1 4,1 8,2 4}
RT_EVENTS=${BENCH_ROUNDTRIP_EVENTS:-300}
LAT_RATE=${BENCH_LATENCY_RATE:-20}
LAT_SECONDS=${BENCH_LATENCY_SECONDS:-30}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-60}
QUOTA=${BENCH_QUOTA:-1}
PHASES=" ${BENCH_PHASES:-ingest worker latency idle} "
NPM_DIR=${BENCH_NPM_DIR:-$BUILD/npm}
ROW_TIMEOUT=${BENCH_ROW_TIMEOUT:-90}
BASELINE_SECONDS=${BENCH_BASELINE_SECONDS:-5}
MOCK_NODELAY=1 # worker_lib.sh: see bench_worker.sh
TOKEN=8f14e45fceea167a5a36dedd4bea2543
PUBLIC=https://calllog.example.com

# shellcheck source=tests/bench/worker_lib.sh
. "$ROOT/tests/bench/worker_lib.sh"

WORK=$(mktemp -d /tmp/calllog-bench-issue11.XXXXXX)
SERVER_PIDS=()
declare -A CALLS RT LAT # by build label: best calls/s, round trips per call, "p50 p99"

# Stops what this script started: the servers under test, then worker_lib.sh's.
cleanup() {
    stop_servers
    worker_bench_cleanup
}
trap cleanup EXIT

# SIGTERMs the HTTP servers started by start_server and waits for them.
stop_servers() {
    local p
    for p in "${SERVER_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    SERVER_PIDS=()
}

# Starts `command...` in the background (its log: $WORK/server.log) and waits until
# http://127.0.0.1:$PORT/healthz answers; remembers its pid in SERVER_PID.
start_server() {
    "$@" 2>>"$WORK/server.log" >&2 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0
        sleep 0.1
    done
    die "$1 did not answer on port $PORT: $(tail -5 "$WORK/server.log")"
}

# Starts calllog-ingest on PORT against the benchmark's Redis, its stream under prefix
# `ingest` (no worker reads it).
start_ingest() {
    REDIS_URL=$CALLLOG_TEST_REDIS_URL CALLLOG_KEY_PREFIX=ingest PUBLIC_BASE_URL=$PUBLIC \
        TWILIO_AUTH_TOKEN=$TOKEN INGEST_LISTEN="127.0.0.1:$PORT" \
        METRICS_LISTEN="127.0.0.1:$(services_free_port)" INGEST_SPOOL_DIR="$WORK/spool" \
        INGEST_THREADS=$INGEST_THREADS LOG_FORMAT=json LOG_LEVEL=info \
        start_server "$INGEST_BIN"
}

# Builds the bare civetweb handler and installs the Express app's packages (npm ci, pinned
# by tests/bench/express/package-lock.json; Debian's nodejs and npm when missing).
build_baselines() {
    cc -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        "$ROOT/tests/bench/bare_civetweb.c" -o "$WORK/bare_civetweb" -lcivetweb -lpthread
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
    fi
    mkdir -p "$NPM_DIR"
    cp "$ROOT"/tests/bench/express/{package.json,package-lock.json,app.js} "$NPM_DIR/"
    (cd "$NPM_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
        die "npm ci failed in $NPM_DIR"
}

# One wrk row against the server on PORT: $1 name, $2 the stream the server appends to
# ("" for none). Prints the row and sets LAST_RPS.
wrk_row() {
    local name=$1 stream=$2 before=0 after=0 line requests secs p50 p99 errors
    [ -z "$stream" ] || before=$(rcli XLEN "$stream")
    line=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" \
        "http://127.0.0.1:$PORT/twilio/log-call" | grep '^BENCH ') || die "wrk failed for $name"
    read -r _ requests secs p50 p99 errors <<<"$line"
    [ -z "$stream" ] || after=$(rcli XLEN "$stream")
    LAST_RPS=$(awk -v n="$requests" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    printf '| %s | %d | %s | %s | %s | %d | %s |\n' "$name" "$requests" "$LAST_RPS" "$p50" "$p99" \
        "$errors" "${stream:+$((after - before))}"
    [ "$errors" -eq 0 ] || echo "bench_issue11: $name: $errors errors (non-2xx answers included)" >&2
    if [ -n "$stream" ] && [ $((requests - (after - before))) -gt "$CONNECTIONS" ]; then
        echo "bench_issue11: $name: $requests answered but the stream grew by $((after - before))" >&2
    fi
}

# The ingest phase: bare civetweb, calllog-ingest and Express under the same wrk load.
ingest_phase() {
    "$PY" "$ROOT/tests/bench/signed_callback.py" "$WORK" "$TOKEN" "$PUBLIC/twilio/log-call"
    PORT=$(services_free_port)
    echo "| server | requests | requests/s | p50 ms | p99 ms | errors | stream entries added |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    start_server "$WORK/bare_civetweb" "$PORT" "$INGEST_THREADS"
    wrk_row "bare civetweb (do-nothing handler, civetweb's header API)" ""
    BARE_RPS=$LAST_RPS
    stop_servers
    start_server "$WORK/bare_civetweb" "$PORT" "$INGEST_THREADS" one-write
    wrk_row "bare civetweb (do-nothing handler, the answer in one write)" ""
    BARE1_RPS=$LAST_RPS
    stop_servers
    start_ingest
    wrk_row "calllog-ingest" "ingest:events"
    INGEST_RPS=$LAST_RPS
    rcli CONFIG SET appendfsync everysec >/dev/null
    wrk_row "calllog-ingest, Redis appendfsync everysec" "ingest:events"
    INGEST_EVERYSEC_RPS=$LAST_RPS
    rcli CONFIG SET appendfsync always >/dev/null
    stop_servers
    PORT=$PORT REDIS_URL=$CALLLOG_TEST_REDIS_URL STREAM=express:events TWILIO_AUTH_TOKEN=$TOKEN \
        WEBHOOK_URL="$PUBLIC/twilio/log-call" start_server node "$NPM_DIR/app.js"
    wrk_row "Express + twilio.webhook() + ioredis" "express:events"
    EXPRESS_RPS=$LAST_RPS
    stop_servers
}

# The worker rows: for each of SHAPES, one row per build (interleaved, so that a change in
# the machine's load hits both builds alike). Sets CALLS[label] to each build's best calls/s.
worker_phase() {
    local shape b label rate
    IFS=, read -r -a shapes <<<"$SHAPES"
    for shape in "${shapes[@]}"; do
        for b in "$@"; do
            label=${b%%:*}
            # shellcheck disable=SC2086 # "procs conc"
            WORKER_BIN=${b#*:} worker_row $shape "$EVENTS" 0 >"$WORK/row"
            sed "s/^| calllog-worker |/| calllog-worker ($label) |/" "$WORK/row"
            rate=$(awk -F'|' '{ print $8 + 0 }' "$WORK/row")
            CALLS[$label]=$(awk -v a="${CALLS[$label]:-0}" -v b="$rate" 'BEGIN { print (b > a ? b : a) }')
        done
    done
}

# Round trips per call of build $1 (label) with binary $2; prints the rows.
roundtrip_phase() {
    WORKER_BIN=$2 roundtrip_row "$RT_EVENTS" 1 >"$WORK/rt"
    sed "s/^| \(Redis\|Postgres\) |/| \1 ($1) |/" "$WORK/rt"
    RT[$1]=$(printf '%.2f Redis + %.2f Postgres' "$RT_REDIS" "$RT_PG")
}

# Hangup-to-note of build $1 (label) with binary $2 at LAT_RATE calls/s: prints a row and
# sets LAT[label] to "p50 p99".
latency_phase() {
    local label=$1 bin=$2 n done stats
    reset_all 0 >/dev/null
    WORKER_BIN=$bin start_worker 4 lat
    sleep 1 # the worker's start-up is not part of any call's latency
    n=$("$PY" "$ROOT/tests/bench/bench_events.py" paced "$LAT_RATE" "$LAT_SECONDS" \
        "$CALLLOG_TEST_REDIS_URL" "$PREFIX:events")
    done=$(wait_delivered "$n")
    stop_workers
    stats=$(sql "SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                 round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                 round(max(ms)::numeric, 1)
                 FROM (SELECT extract(epoch FROM finished_at
                              - (event->>'received_at')::timestamptz) * 1000 AS ms
                       FROM calllog.deliveries WHERE state = 'delivered') s" | tr '|' ' ')
    read -r done p50 p99 max <<<"$stats"
    echo "| calllog-worker ($label) 1 x 4 | $LAT_RATE | $n | $done | $p50 | $p99 | $max |"
    [ "$done" -eq "$n" ] || echo "bench_issue11: latency ($label): $done of $n delivered" >&2
    LAT[$label]="$p50 $p99"
}

# CPU ticks and VmRSS (KiB) of process $1: "ticks rss".
proc_sample() {
    echo "$(cpu_ticks "$1") $(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0)"
}

# An idle ingest and an idle worker for IDLE_SECONDS: CPU %, peak RSS, Redis commands/s.
idle_phase() {
    local ingest worker t0i t0w t1i t1w rssi=0 rssw=0 cmd0 cmd1 s r
    reset_all 0 >/dev/null
    PORT=$(services_free_port)
    start_ingest
    ingest=$SERVER_PID
    start_worker 4 idle
    worker=${WORKER_PIDS[-1]}
    sleep 2 # start-up done
    read -r t0i _ <<<"$(proc_sample "$ingest")"
    read -r t0w _ <<<"$(proc_sample "$worker")"
    cmd0=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
    for ((s = 0; s < IDLE_SECONDS; s += 5)); do
        sleep $((IDLE_SECONDS - s < 5 ? IDLE_SECONDS - s : 5))
        read -r _ r <<<"$(proc_sample "$ingest")"
        rssi=$((r > rssi ? r : rssi))
        read -r _ r <<<"$(proc_sample "$worker")"
        rssw=$((r > rssw ? r : rssw))
    done
    cmd1=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
    read -r t1i _ <<<"$(proc_sample "$ingest")"
    read -r t1w _ <<<"$(proc_sample "$worker")"
    stop_workers
    stop_servers
    IDLE_ROW=$(awk -v i=$((t1i - t0i)) -v w=$((t1w - t0w)) -v hz="$HZ" -v s="$IDLE_SECONDS" \
        -v ri="$rssi" -v rw="$rssw" -v c=$((cmd1 - cmd0)) 'BEGIN {
        printf "%.2f %% / %.2f %%; %.1f / %.1f MiB; %.1f Redis commands/s", 100 * i / hz / s,
            100 * w / hz / s, ri / 1024, rw / 1024, c / s }')
    echo "| ingest (INGEST_THREADS=$INGEST_THREADS) and worker (concurrency 4), idle ${IDLE_SECONDS} s | $IDLE_ROW |"
}

# The quota phase: bench_quota.sh's two scenarios; sets QUOTA_<label> to
# "requests/note share-of-limit 429s" for many and repeat.
quota_phase() {
    BENCH_BUILD_DIR=$BUILD BENCH_WORKER_BIN=$WORKER_BIN BENCH_WORKER_BIN_BEFORE=$BEFORE_BIN \
        BENCH_QUOTA_SCENARIOS=${BENCH_QUOTA_SCENARIOS:-many:60:3 repeat:20:10} \
        timeout 900 "$ROOT/tests/bench/bench_quota.sh" >"$WORK/quota.out" ||
        echo "bench_issue11: bench_quota.sh failed or timed out" >&2
    sed -n '/^| scenario | build | limit/,/^$/p' "$WORK/quota.out"
    # fields: | scenario | build | limit | cxc | notes | req | req/note | 429 | busiest | n/min | share | ...
    QUOTA_many=$(awk -F'|' '$2 ~ /many/ && $3 ~ /after/ { gsub(/ /, ""); print $8, $12, $9 }' "$WORK/quota.out")
    QUOTA_repeat=$(awk -F'|' '$2 ~ /repeat/ && $3 ~ /after/ { gsub(/ /, ""); print $8, $12, $9 }' "$WORK/quota.out")
    [ -n "$QUOTA_many" ] || QUOTA_many="- - -"
    [ -n "$QUOTA_repeat" ] || QUOTA_repeat="- - -"
}

# Prints one summary row: figure, measured, baseline, ratio or goal met, goal, before.
summary_row() {
    printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}

# A summary row for requests/s $2 against the baseline's $3: $1 the figure, $4 the ratio's
# printf format, $5 the goal as an awk condition on the ratio `a`, $6 the goal, $7 before.
ratio_row() {
    local r
    r=$(awk -v a="$2" -v b="$3" 'BEGIN { print a / b }')
    # shellcheck disable=SC2059 # the format is the caller's
    summary_row "$1" "$2/s" "$3/s" "$(printf "$4" "$r")×" "$6 ($(judge "$5" "$r"))" "$7"
}

# Prints "met" or "not met" for `awk condition` $1 with value a = $2 ("not measured" when
# $2 is none).
judge() {
    case $2 in '' | - | '?') echo "not measured" && return ;; esac
    awk -v a="$2" "BEGIN { print (($1) ? \"met\" : \"**not met**\") }"
}

main() {
    command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
    [ -z "$BEFORE_BIN" ] || [ -x "$BEFORE_BIN" ] || die "no worker at $BEFORE_BIN"
    worker_bench_setup
    build_baselines
    local builds=(after:"$WORKER_BIN") b
    [ -z "$BEFORE_BIN" ] || builds=(before:"$BEFORE_BIN" after:"$WORKER_BIN")
    echo "== bench_issue11 ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F))"
    echo "   command: tests/bench/bench_issue11.sh  (BENCH_DURATION=$DURATION, BENCH_CONNECTIONS=$CONNECTIONS," \
        "BENCH_INGEST_THREADS=$INGEST_THREADS, BENCH_EVENTS=$EVENTS, BENCH_WORKER_SHAPES=\"$SHAPES\"," \
        "BENCH_LATENCY_RATE=$LAT_RATE, BENCH_LATENCY_SECONDS=$LAT_SECONDS, BENCH_IDLE_SECONDS=$IDLE_SECONDS," \
        "BENCH_QUOTA=$QUOTA${BEFORE_BIN:+, BENCH_WORKER_BIN_BEFORE=$BEFORE_BIN})"
    echo
    if phase ingest; then
        echo "Ingest: wrk -t2 -c$CONNECTIONS, ${DURATION} s per row, the signed completed callback; Redis AOF appendfsync always:"
        echo
        ingest_phase
    fi
    phase worker && worker_section "${builds[@]}"
    phase latency && latency_section "${builds[@]}"
    if phase idle; then
        echo
        echo "Idle (CPU % of one core from /proc/PID/stat; peak VmRSS; Redis commands/s both cause):"
        echo
        echo "| processes | ingest / worker |"
        echo "|---|---|"
        idle_phase
    fi
    services_stop
    QUOTA_many="- - -" QUOTA_repeat="- - -"
    if [ "$QUOTA" = 1 ]; then
        echo
        echo "RD Station quota (tests/bench/bench_quota.sh; the mock's sliding 60 s window on):"
        echo
        quota_phase
    fi
    summary_table
}

# 0 when phase $1 is among BENCH_PHASES.
phase() {
    [[ $PHASES == *" $1 "* ]]
}

# The worker's calls/s and round trips per call, for each build in "$@" (label:binary).
worker_section() {
    local b
    echo
    echo "Worker end to end, RD answering at once ($EVENTS calls per row):"
    echo
    echo "| scenario | workers x concurrency | RD latency ms | calls delivered | wall s | ledger s | calls/s | notes in RD |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    mock_row 8 0 >"$WORK/mock8"
    cat "$WORK/mock8"
    MOCK8=$(awk -F'|' '{ print $8 + 0 }' "$WORK/mock8")
    worker_phase "$@"
    echo
    echo "Round trips per delivered call (one worker at concurrency 1, $RT_EVENTS calls; Redis MONITOR, Postgres log_statement = all):"
    echo
    echo "| system | command / statement | round trips | per call |"
    echo "|---|---|---:|---:|"
    for b in "$@"; do
        roundtrip_phase "${b%%:*}" "${b#*:}"
    done
}

# Hangup-to-note latency for each build in "$@" (label:binary).
latency_section() {
    local b
    echo
    echo "Hangup-to-note: from the event's received_at (stamped when added to the stream) to the ledger's finished_at:"
    echo
    echo "| worker | calls/s offered | calls | delivered | p50 ms | p99 ms | max ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for b in "$@"; do
        latency_phase "${b%%:*}" "${b#*:}"
    done
}

# The issue's table: every figure measured above next to its goal.
summary_table() {
    local qm qr p50 p99 before_calls=""
    read -r -a qm <<<"$QUOTA_many"
    read -r -a qr <<<"$QUOTA_repeat"
    [ -z "$BEFORE_BIN" ] || before_calls=" (this run's before: ${CALLS[before]:-?}/s; ${RT[before]:-?})"
    echo
    echo "Issue 11 in one table (baselines measured in this run; \"before\" is the issue's figure):"
    echo
    echo "| figure | measured | baseline (same run) | ratio | goal | before |"
    echo "|---|---|---|---|---|---|"
    if phase ingest; then
        ratio_row "ingest webhooks/s vs a do-nothing civetweb handler (header API)" "$INGEST_RPS" \
            "$BARE_RPS" %.2f 'a >= 0.5' "≥ 0.5×" "0.23× (19.9 k vs 85 k/s)"
        ratio_row "the same vs the handler answering in one write" "$INGEST_RPS" "$BARE1_RPS" %.2f \
            'a >= 0.5' "≥ 0.5×" "-"
        ratio_row "the same with Redis appendfsync everysec, vs the header-API handler" \
            "$INGEST_EVERYSEC_RPS" "$BARE_RPS" %.2f 'a >= 0.5' "≥ 0.5×" "-"
        ratio_row "ingest vs Express + twilio.webhook() + ioredis XADD" "$INGEST_RPS" "$EXPRESS_RPS" \
            %.1f 'a >= 6' "≥ 6×" "3.4×"
    fi
    summary_row "RD requests per note: 60 callers × 3 calls" "${qm[0]}" "1.00 (the limit itself)" "-" \
        "≤ 1.05 ($(judge 'a <= 1.05' "${qm[0]}"))" "1.67"
    summary_row "RD requests per note: 20 callers × 10 calls" "${qr[0]}" "1.00" "-" \
        "≤ 1.02 ($(judge 'a <= 1.02' "${qr[0]}"))" "1.20"
    summary_row "notes/min as a share of the RD limit (backlog): 60 × 3 / 20 × 10; 429s" \
        "${qm[1]} / ${qr[1]}; ${qm[2]} + ${qr[2]}" "100 %" "-" "≥ 95 %, zero 429" "60 % (84 %)"
    if phase worker; then
        summary_row "worker calls/s end to end, RD answering at once (best of $SHAPES)" \
            "${CALLS[after]:-?}/s$before_calls" "mock alone, 8 clients: $MOCK8/s" \
            "$(awk -v a="${CALLS[after]:-0}" -v b="$MOCK8" 'BEGIN { printf "%.2f× the mock", a / b }')" \
            "≥ 3 000 ($(judge 'a >= 3000' "${CALLS[after]:-0}"))" "590–730"
        summary_row "round trips per call (Redis + Postgres), concurrency 1" "${RT[after]:-?}" \
            "${RT[before]:-(BENCH_WORKER_BIN_BEFORE)}" "-" "only those the design needs" "4 + 3 (this bench, before)"
    fi
    read -r p50 p99 <<<"${LAT[after]:-? ?}"
    summary_row "hangup-to-note at $LAT_RATE calls/s, RD answering at once" "p50 $p50 ms, p99 $p99 ms" \
        "${LAT[before]:+before: ${LAT[before]} ms}" "-" "p99 ≤ 50 ms ($(judge 'a <= 50' "$p99"))" \
        "p50 4.3 ms, p99 9.3 ms"
    summary_row "idle CPU; RSS ingest / worker" "${IDLE_ROW:-not measured}" "-" "-" "keep it" "0.0 %; 4.6 / 11.6 MB"
}

main "$@"
