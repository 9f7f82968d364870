# shellcheck shell=bash
# worker_lib.sh — the worker benchmarks' shared pieces: the RD Station mock, the events
# preload, worker processes, CPU and work counters, and the rows built from them.
#
# Sourced by bench_worker.sh (its tables) and bench_issue11.sh (the issue-11 table), so both
# measure the worker the same way. It sources tests/lib/services.sh. The sourcing script
# sets ROOT, WORK, WORKER_BIN, MOCK_NODELAY, ROW_TIMEOUT and BASELINE_SECONDS (and BUILD for
# worker_bench_setup), and worker_bench_cleanup (or a function calling it) as its EXIT
# trap. Each row checks its outcome: exactly N rows delivered and exactly N distinct notes
# in the mock.

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

PREFIX=calllog # CALLLOG_KEY_PREFIX of the workers
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)

MOCK_PID=
WORKER_PIDS=()
WORKER_METRIC_PORTS=()

# Stops the workers, the mock and the services the script started; removes $WORK. For the
# script's EXIT trap.
worker_bench_cleanup() {
    stop_workers
    if [ -n "$MOCK_PID" ]; then
        kill -TERM "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
    fi
    services_stop
    rm -rf "$WORK"
}

# Prints an error, naming the script, and exits.
die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# redis-cli and psql against the benchmark's servers.
rcli() {
    redis-cli -h 127.0.0.1 -p "$CALLLOG_TEST_REDIS_PORT" "$@"
}
sql() {
    psql -qAt -v ON_ERROR_STOP=1 "$CALLLOG_TEST_DATABASE_URL" -c "$1"
}

# A control call to the mock: $1 method, $2 path, $3 JSON body (optional, or @file).
mock() {
    curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$RD$2"
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
    WORKER_METRIC_PORTS=()
}

# Starts the mock RD Station with the options $@ (default: its rate limit off) and waits for
# its port file. With
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
        "${@:---rate-limit=0}" --quiet 2>"$WORK/mock.log" &
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
    "$PY" "$ROOT/tests/bench/bench_events.py" preload "$1" "$PREFIX:events" |
        rcli --pipe >"$WORK/pipe.log"
    [ "$(rcli XLEN "$PREFIX:events")" = "$1" ] || die "preload: $(cat "$WORK/pipe.log")"
}

# Starts one worker process with $1 concurrency; $2 is its index (log file, consumer name).
# Optional: $3 the binary (WORKER_BIN), $4 RDSTATION_RATE_LIMIT_PER_MINUTE (100000: the
# limiter out of the way), $5 RDSTATION_RATE_BURST (1000), and WORKER_LOG_LEVEL (info).
# Remembers its pid and its metrics port (WORKER_METRIC_PORTS).
start_worker() {
    local port
    port=$(services_free_port)
    REDIS_URL=$CALLLOG_TEST_REDIS_URL DATABASE_URL=$CALLLOG_TEST_DATABASE_URL \
        CALLLOG_KEY_PREFIX=$PREFIX LOG_FORMAT=json LOG_LEVEL=${WORKER_LOG_LEVEL:-info} \
        METRICS_LISTEN="127.0.0.1:$port" WORKER_CONSUMER_NAME="bench-$2" \
        WORKER_CONCURRENCY="$1" RDSTATION_API=v1 RDSTATION_TOKEN=mock-v1-token \
        RDSTATION_USER_ID=u1 RDSTATION_API_BASE_URL="$RD/api/v1" \
        RDSTATION_RATE_LIMIT_PER_MINUTE="${4:-100000}" RDSTATION_RATE_BURST="${5:-1000}" \
        TWILIO_ENRICH=0 "${3:-$WORKER_BIN}" 2>>"$WORK/worker-$2.log" &
    WORKER_PIDS+=($!)
    WORKER_METRIC_PORTS+=("$port")
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
    done=$(wait_delivered "$n")
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

# Builds the worker (Release, $BUILD), starts Redis and PostgreSQL (services_start), runs
# the migrations, and starts the mock.
worker_bench_setup() {
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target calllog-worker calllog-ingest >/dev/null
    [ -x "$WORKER_BIN" ] || die "no worker at $WORKER_BIN"
    services_start >/dev/null || die "services did not start"
    local f
    for f in "$ROOT"/deploy/supabase/migrations/*.sql; do
        psql -q -v ON_ERROR_STOP=1 "$CALLLOG_TEST_DATABASE_URL" -f "$f" >/dev/null
    done
    start_mock
}

# Sets PostgreSQL's statement logging (for roundtrip_row): $1 `all` or `none`.
pg_log_statements() {
    sql "ALTER SYSTEM SET log_statement = '$1'" >/dev/null
    sql "ALTER SYSTEM SET log_line_prefix = '%a|'" >/dev/null
    sql "SELECT pg_reload_conf()" >/dev/null
}

# Waits up to ROW_TIMEOUT s until $1 calls are delivered; prints how many are. It asks
# every 0.1 s on one psql session: a psql (and a Postgres backend) started per poll took
# ~10 % of the 2 cores from the programs being measured.
wait_delivered() {
    local n=$1 done=0 deadline=$((SECONDS + ROW_TIMEOUT))
    coproc POLL { psql -qAt -v ON_ERROR_STOP=1 "$CALLLOG_TEST_DATABASE_URL"; }
    while [ "$SECONDS" -lt "$deadline" ]; do
        echo "SELECT count(*) FROM calllog.deliveries WHERE state = 'delivered';" >&"${POLL[1]}"
        read -r -t 10 done <&"${POLL[0]}" || break
        [ "$done" -ge "$n" ] && break
        sleep 0.1
    done
    eval "exec ${POLL[1]}>&-"
    wait "$POLL_PID" 2>/dev/null || true
    echo "$done"
}

# Counts the Redis commands (MONITOR) and Postgres statements (log_statement) one worker at
# concurrency $2 sends while it delivers $1 calls, and prints them per call
# (tests/bench/roundtrips.py). Sets RT_REDIS, RT_PG and RT_REDIS_WRITES (per call), and
# leaves the Postgres log of the row in $WORK/pg-row.log for floor_rows.
roundtrip_row() {
    local n=$1 conc=$2 pglog=$SERVICES_DIR/pg/postgres.log offset mon done totals
    reset_all 0 >/dev/null
    preload "$n"
    pg_log_statements all
    sleep 0.5
    offset=$(stat -c %s "$pglog")
    redis-cli -h 127.0.0.1 -p "$CALLLOG_TEST_REDIS_PORT" MONITOR >"$WORK/monitor.log" &
    mon=$!
    sleep 0.3
    start_worker "$conc" rt
    done=$(wait_delivered "$n")
    stop_workers
    kill "$mon" 2>/dev/null || true
    wait "$mon" 2>/dev/null || true
    tail -c +"$((offset + 1))" "$pglog" >"$WORK/pg-row.log"
    pg_log_statements none
    [ "$done" -eq "$n" ] || echo "bench_worker: round trips: only $done of $n delivered" >&2
    "$PY" "$ROOT/tests/bench/roundtrips.py" count "$done" "$WORK/monitor.log" "$WORK/pg-row.log" \
        >"$WORK/rt.rows"
    grep -v '^TOTALS' "$WORK/rt.rows"
    totals=$(grep '^TOTALS' "$WORK/rt.rows")
    read -r _ RT_REDIS RT_PG RT_REDIS_WRITES <<<"$totals"
}

# Microseconds per operation that redis-benchmark reports for `$@` (1 client, no pipeline).
redis_floor_us() {
    redis-benchmark -h 127.0.0.1 -p "$CALLLOG_TEST_REDIS_PORT" -c 1 -n "$FLOOR_OPS" -r 1000000 \
        --csv "$@" 2>/dev/null | tail -1 | awk -F'"' '{ if ($4 > 0) printf "%.1f", 1e6 / $4 }'
}

# The floors of one call at concurrency 1, after roundtrip_row: the same Postgres
# statements run by pgbench (one client, FLOOR_SECONDS), RT_REDIS Redis round trips timed
# by redis-benchmark (RT_REDIS_WRITES of them as a write, SET, which waits for the AOF
# fsync like the worker's writes; the rest as GET), and one note POSTed to the mock (its
# baseline row). $1 is the worker's own ms per call at 1 x 1, $2 the mock's notes/s with
# one client. Prints table rows.
floor_rows() {
    local ours=$1 mock_rate=$2 stmts tps pg_ms set_us get_us redis_ms mock_ms
    stmts=$("$PY" "$ROOT/tests/bench/roundtrips.py" pgbench "$WORK/pg-row.log" "$WORK/call.pgbench")
    tps=$(pgbench -n -c 1 -T "$FLOOR_SECONDS" -f "$WORK/call.pgbench" "$CALLLOG_TEST_DATABASE_URL" \
        2>"$WORK/pgbench.err" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -1)
    pg_ms=$(awk -v t="${tps:-0}" 'BEGIN { printf "%.3f", (t > 0 ? 1000 / t : 0) }')
    set_us=$(redis_floor_us SET floor:__rand_int__ x)
    get_us=$(redis_floor_us GET floor:__rand_int__)
    redis_ms=$(awk -v w="$RT_REDIS_WRITES" -v a="$RT_REDIS" -v s="$set_us" -v g="$get_us" \
        'BEGIN { printf "%.3f", (w * s + (a - w) * g) / 1000 }')
    mock_ms=$(awk -v r="$mock_rate" 'BEGIN { printf "%.3f", (r > 0 ? 1000 / r : 0) }')
    echo "| Postgres: the call's $stmts statements (pgbench, 1 client) | $(printf %.2f "$RT_PG") | $pg_ms |"
    echo "| Redis: $(printf %.2f "$RT_REDIS") round trips ($(printf %.2f "$RT_REDIS_WRITES") writes at ${set_us} µs, the rest at ${get_us} µs; redis-benchmark) | $(printf %.2f "$RT_REDIS") | $redis_ms |"
    echo "| RD mock: one note POST (python keep-alive client) | 1 | $mock_ms |"
    awk -v p="$pg_ms" -v r="$redis_ms" -v m="$mock_ms" -v o="$ours" 'BEGIN {
        f = p + r + m
        printf "| **floor: sum** | | **%.3f** |\n| **calllog-worker 1 x 1: ms per call** | | **%.3f** (%.1f× the floor) |\n", f, o, (f > 0 ? o / f : 0) }'
}
