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
#
#   tests/bench/bench_worker.sh                                  # ~2 min
#   BENCH_EVENTS=500 BENCH_SLOW_EVENTS=100 tests/bench/bench_worker.sh
#   BENCH_MOCK_NODELAY=0 tests/bench/bench_worker.sh   # the mock exactly as the tests run it
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
WORKER_BIN=${BENCH_WORKER_BIN:-$BUILD/bin/calllog-worker}
MOCK_NODELAY=${BENCH_MOCK_NODELAY:-1}
PREFIX=calllog
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

WORK=$(mktemp -d /tmp/calllog-bench-worker.XXXXXX)
MOCK_PID=
WORKER_PIDS=()

# Stops the workers, the mock and the services this script started; removes $WORK.
cleanup() {
    stop_workers
    if [ -n "$MOCK_PID" ]; then
        kill -TERM "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
    fi
    services_stop
    rm -rf "$WORK"
}
trap cleanup EXIT

# Prints an error and exits.
die() {
    echo "bench_worker: $*" >&2
    exit 1
}

# redis-cli and psql against the benchmark's servers.
rcli() {
    redis-cli -h 127.0.0.1 -p "$CALLLOG_TEST_REDIS_PORT" "$@"
}
sql() {
    psql -qAt -v ON_ERROR_STOP=1 "$CALLLOG_TEST_DATABASE_URL" -c "$1"
}

# A control call to the mock: $1 method, $2 path, $3 JSON body (optional).
mock() {
    curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$RD$2"
}

# SIGTERMs the running workers and waits for them (they drain within their timeout).
stop_workers() {
    local p
    for p in "${WORKER_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${WORKER_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    WORKER_PIDS=()
}

# Starts the mock RD Station with its rate limit off and waits for its port file. With
# MOCK_NODELAY=1 its sockets get TCP_NODELAY (socketserver's own switch, flipped before the
# mock is loaded): http.server writes headers and body in two send()s, and with Nagle on,
# every keep-alive answer then waits ~40 ms for the client's delayed ACK — a stall of the
# mock, not of RD Station or of the worker.
start_mock() {
    "$PY" -c 'import os, runpy, socketserver, sys
socketserver.StreamRequestHandler.disable_nagle_algorithm = sys.argv[1] == "1"
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")' "$MOCK_NODELAY" \
        "$ROOT/tests/mocks/rdstation_mock.py" --port 0 --port-file "$WORK/rd.port" \
        --rate-limit 0 --quiet 2>"$WORK/mock.log" &
    MOCK_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$WORK/rd.port" ] && break
        sleep 0.1
    done
    [ -s "$WORK/rd.port" ] || die "the RD Station mock did not start: $(cat "$WORK/mock.log")"
    RD=http://127.0.0.1:$(cat "$WORK/rd.port")
}

# Empties Redis, the ledger and the mock, seeds the one contact with an open deal, and
# sets the mock's added latency to $1 ms. Prints the deal id.
reset_all() {
    rcli FLUSHALL >/dev/null
    sql "TRUNCATE calllog.deliveries"
    mock POST /_mock/reset >/dev/null
    mock POST /_mock/latency "{\"ms\":$1,\"jitter_ms\":0}" >/dev/null
    mock POST /_mock/contacts '{"name":"Maria Souza","phones":["(11) 97173-0783"],
        "deals":[{"name":"old","status":"won","updated_at":"2026-11-01T00:00:00Z"},
                 {"name":"Open deal","status":"ongoing","updated_at":"2026-11-20T00:00:00Z"}]}' |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["deal_ids"][1])'
}

# XADDs $1 completed-call events (distinct CallSids, the ingest's fields) in one pipe.
preload() {
    "$PY" - "$1" "$PREFIX:events" <<'PY' | rcli --pipe >"$WORK/pipe.log"
import json, sys
n, key = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
def resp(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    out.write(b"".join(parts))
for i in range(n):
    sid = "CA%032x" % (0xbe7c400000 + i)
    rid = "%016x" % (0xb0000000 + i)
    received = "2026-11-24T19:02:36.%03dZ" % (i % 1000)
    ev = {"v": 1, "call_sid": sid, "account_sid": "AC0123456789abcdef0123456789abcdef",
          "from": "+5511971730783", "to": "+551130001000", "direction": "inbound",
          "status": "completed", "duration": "155",
          "timestamp": "Tue, 24 Nov 2026 19:02:35 +0000", "sequence_number": "3",
          "callback_source": "call-progress-events", "api_version": "2010-04-01",
          "geo": {"from_city": "SAO PAULO", "from_state": "SP", "from_country": "BR",
                  "to_city": "SAO PAULO", "to_state": "SP", "to_country": "BR"},
          "received_at": received, "request_id": rid}
    resp("XADD", key, "*", "call_sid", sid, "status", "completed", "attempt", "0",
         "request_id", rid, "received_at", received,
         "event", json.dumps(ev, separators=(",", ":")))
PY
    [ "$(rcli XLEN "$PREFIX:events")" = "$1" ] || die "preload: $(cat "$WORK/pipe.log")"
}

# Starts one worker process with $1 concurrency; $2 is its index (metrics port, name).
start_worker() {
    local port
    port=$(services_free_port)
    REDIS_URL=$CALLLOG_TEST_REDIS_URL DATABASE_URL=$CALLLOG_TEST_DATABASE_URL \
        CALLLOG_KEY_PREFIX=$PREFIX LOG_FORMAT=json LOG_LEVEL=info \
        METRICS_LISTEN="127.0.0.1:$port" WORKER_CONSUMER_NAME="bench-$2" \
        WORKER_CONCURRENCY="$1" RDSTATION_API=v1 RDSTATION_TOKEN=mock-v1-token \
        RDSTATION_USER_ID=u1 RDSTATION_API_BASE_URL="$RD/api/v1" \
        RDSTATION_RATE_LIMIT_PER_MINUTE=100000 RDSTATION_RATE_BURST=1000 TWILIO_ENRICH=0 \
        "$WORKER_BIN" 2>>"$WORK/worker-$2.log" &
    WORKER_PIDS+=($!)
}

# CPU time (user + system) a process has used so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# CPU ticks of the whole PostgreSQL cluster: the postmaster and all its children.
pg_ticks() {
    local pm total=0 p
    pm=$(head -1 "$SERVICES_DIR/pg/data/postmaster.pid")
    for p in $pm $(pgrep -P "$pm"); do
        total=$((total + $(cpu_ticks "$p")))
    done
    echo "$total"
}

# CPU ticks of Redis and of PostgreSQL: "redis pg". Read while the workers still run:
# the backends serving them take their CPU time with them when they exit.
server_ticks() {
    echo "$(cpu_ticks "$(cat "$SERVICES_DIR/redis/redis.pid")") $(pg_ticks)"
}

# Work counters: "redis-commands wal-records wal-fsyncs".
work_counters() {
    echo "$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')" \
        "$(sql "SELECT wal_records || ' ' || wal_sync FROM pg_stat_wal")"
}

# One row: $1 processes, $2 concurrency each, $3 events, $4 added RD latency in ms.
# Times from the workers' start until all $3 calls are delivered in Postgres, and adds a
# line to $WORK/costs with what each call cost the worker, the mock, Redis and Postgres.
worker_row() {
    local procs=$1 conc=$2 n=$3 ms=$4 t0 t1 done=0 notes secs window i p wcpu=0 mcpu
    local cpu0 cpu1 work0 work1
    reset_all "$ms" >/dev/null
    preload "$n"
    sleep 1 # let the preload's AOF fsyncs and stats settle
    cpu0=$(server_ticks)
    work0=$(work_counters)
    mcpu=$(cpu_ticks "$MOCK_PID")
    t0=$(date +%s.%N)
    for i in $(seq 1 "$procs"); do
        start_worker "$conc" "$i"
    done
    local deadline=$((SECONDS + ROW_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        done=$(sql "SELECT count(*) FROM calllog.deliveries WHERE state = 'delivered'")
        [ "$done" -ge "$n" ] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    for p in "${WORKER_PIDS[@]}"; do
        wcpu=$((wcpu + $(cpu_ticks "$p")))
    done
    mcpu=$(($(cpu_ticks "$MOCK_PID") - mcpu))
    cpu1=$(server_ticks)
    stop_workers
    sleep 0.6 # backends flush their statistics when they exit
    work1=$(work_counters)
    window=$(sql "SELECT round(extract(epoch FROM max(finished_at) - min(created_at))::numeric, 2)
                  FROM calllog.deliveries WHERE state = 'delivered'")
    notes=$(mock GET /_mock/notes | "$PY" -c 'import json, sys
notes = json.load(sys.stdin)["notes"]
print(len(notes), len({n["text"] for n in notes}))')
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    printf '| calllog-worker | %d x %d | %d | %d | %s | %s | %.0f | %s |\n' \
        "$procs" "$conc" "$ms" "$done" "$secs" "${window:-0}" \
        "$(awk -v n="$done" -v s="${window:-0}" 'BEGIN {print (s > 0 ? n / s : 0)}')" \
        "${notes% *}"
    # fields: 1 procs 2 conc 3 ms 4 done 5 wcpu 6 mcpu 7-8 cpu0 9-10 cpu1 11-13 work0 14-16 work1
    echo "$procs $conc $ms $done $wcpu $mcpu $cpu0 $cpu1 $work0 $work1" | awk -v hz="$HZ" '{
        n = $4; if (n == 0) n = 1
        ms = 1000 / hz / n
        w = $5 * ms; m = $6 * ms; r = ($9 - $7) * ms; p = ($10 - $8) * ms
        printf "| %d x %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f |\n",
            $1, $2, $3, w, m, r, p, w + m + r + p, ($14 - $11) / n, ($15 - $12) / n,
            ($16 - $13) / n }' >>"$WORK/costs"
    [ "$done" -eq "$n" ] || echo "bench_worker: only $done of $n delivered in ${ROW_TIMEOUT}s" >&2
    [ "$notes" = "$n $n" ] || echo "bench_worker: the mock holds '$notes' (total, distinct) notes for $n calls" >&2
}

# Baseline row: $1 Python threads POST notes straight to the mock for BASELINE_SECONDS.
mock_row() {
    local threads=$1 ms=$2 deal
    deal=$(reset_all "$ms")
    "$PY" - "$RD" "$deal" "$threads" "$BASELINE_SECONDS" "$ms" <<'PY'
import http.client, json, sys, threading, time, urllib.parse
base, deal, threads, seconds, ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlsplit(base)
counts, errors = [0] * threads, [0] * threads
stop = time.monotonic() + seconds
def loop(i):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    while time.monotonic() < stop:
        body = json.dumps({"activity": {"deal_id": deal, "user_id": "u1",
                                        "text": "Ligação recebida de +5511971730783 (%d-%d)" % (i, counts[i])}})
        c.request("POST", "/api/v1/activities?token=mock-v1-token", body.encode(),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status == 200:
            counts[i] += 1
        else:
            errors[i] += 1
t0 = time.monotonic()
ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
secs = time.monotonic() - t0
print("| mock alone (python client) | %d thread%s | %d | %d | %.2f | %.2f | %.0f | %d |" % (
    threads, "s" if threads > 1 else "", ms, sum(counts), secs, secs, sum(counts) / secs, sum(counts)))
if sum(errors):
    print("bench_worker: %d mock requests failed" % sum(errors), file=sys.stderr)
PY
}

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target calllog-worker >/dev/null
services_start >/dev/null || die "services did not start"
for f in "$ROOT"/deploy/supabase/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 "$CALLLOG_TEST_DATABASE_URL" -f "$f" >/dev/null
done
start_mock

echo "== bench_worker ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "   command: tests/bench/bench_worker.sh  (BENCH_EVENTS=$EVENTS, BENCH_SLOW_EVENTS=$SLOW_EVENTS," \
    "BENCH_SLOW_MS=$SLOW_MS, BENCH_MOCK_NODELAY=$MOCK_NODELAY)"
echo
echo "| scenario | workers x concurrency | RD latency ms | calls delivered | wall s | ledger s | calls/s | notes in RD |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
mock_row 1 0
mock_row 8 0
for shape in "1 1" "1 4" "1 8" "2 4"; do
    # shellcheck disable=SC2086 # "procs conc"
    worker_row $shape "$EVENTS" 0
done
mock_row 8 "$SLOW_MS"
for shape in "1 1" "1 4" "1 8" "2 4"; do
    # shellcheck disable=SC2086
    worker_row $shape "$SLOW_EVENTS" "$SLOW_MS"
done
echo
echo "What one delivered call cost (CPU in ms of one core; Redis commands; Postgres WAL records and WAL fsyncs):"
echo
echo "| workers x concurrency | RD latency ms | worker CPU | mock CPU | Redis CPU | Postgres CPU | sum CPU | Redis cmds | WAL records | WAL fsyncs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
cat "$WORK/costs"
