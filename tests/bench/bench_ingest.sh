#!/usr/bin/env bash
# bench_ingest.sh — webhook throughput and latency of calllog-ingest, next to its floors.
#
# Builds Release into build-bench/, starts a throwaway Redis (tests/lib/services.sh, AOF
# on) and calllog-ingest on loopback, and drives it with wrk for a bounded time per row.
# The load is a realistic signed Twilio `completed` status callback (26 parameters, the
# signature computed once here: the URL and body never change). Rows, all in one run:
#
#   healthz             GET /healthz on the same ingest: civetweb's HTTP floor
#   post fsync=everysec POST /twilio/log-call, Redis appendfsync everysec
#   post fsync=always   the same with appendfsync always (what services.sh and the
#                       shipped Redis config use; every XADD reply waits for fsync)
#   redis XADD ...      redis-benchmark XADD of the very entry the ingest wrote: Redis floor
#   post redis down     Redis stopped: every event is fdatasync'ed to the spool
# then the spool's replay into Redis once it is back, how long one GET /healthz waits while
# INGEST_THREADS connections sit idle (slow clients), and the ingest's RSS along the way.
# Each row checks durability: stream entries (or spool records) added must equal the
# requests answered 204.
#
#   tests/bench/bench_ingest.sh                      # ~2 min
#   BENCH_DURATION=5 BENCH_CONNECTIONS="16" tests/bench/bench_ingest.sh
#   BENCH_INGEST_BIN=/path/to/other/calllog-ingest tests/bench/bench_ingest.sh
# Loopback only; not run by CI (tests/run.sh). Results: docs/performance.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16 64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
INGEST_THREADS=${BENCH_INGEST_THREADS:-16}
INGEST_BIN=${BENCH_INGEST_BIN:-$BUILD/bin/calllog-ingest} # to compare a patched build
TOKEN=8f14e45fceea167a5a36dedd4bea2543
PUBLIC=https://calllog.example.com
PREFIX=calllog
HZ=$(getconf CLK_TCK)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

WORK=$(mktemp -d /tmp/calllog-bench-ingest.XXXXXX)
INGEST_PID=
REDIS_DIR=$WORK/redis

# Stops the ingest and Redis this script started and removes the work directory.
cleanup() {
    if [ -n "$INGEST_PID" ]; then
        kill -TERM "$INGEST_PID" 2>/dev/null || true
        wait "$INGEST_PID" 2>/dev/null || true
    fi
    services_redis_stop "$REDIS_DIR"
    rm -rf "$WORK"
}
trap cleanup EXIT

# Prints an error and exits.
die() {
    echo "bench_ingest: $*" >&2
    exit 1
}

# redis-cli against the benchmark's Redis.
rcli() {
    redis-cli -h 127.0.0.1 -p "$RPORT" "$@"
}

# VmRSS and VmHWM of the ingest, in MiB.
ingest_rss() {
    awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%.1f MiB (peak %.1f MiB)", r/1024, h/1024}' \
        "/proc/$INGEST_PID/status"
}

# Spool records not yet replayed, from GET /readyz.
spool_depth() {
    curl -s "http://127.0.0.1:$IPORT/readyz" | sed -n 's/.*"spool_depth":\([0-9]*\).*/\1/p'
}

# Writes the request body, its signature and the wrk scripts into $WORK.
write_load() {
    /usr/bin/python3 "$ROOT/tests/bench/signed_callback.py" "$WORK" "$TOKEN" "$PUBLIC/twilio/log-call"
}

# Starts calllog-ingest on loopback and waits for /healthz.
start_ingest() {
    REDIS_URL="redis://127.0.0.1:$RPORT/0" CALLLOG_KEY_PREFIX=$PREFIX PUBLIC_BASE_URL=$PUBLIC \
        TWILIO_AUTH_TOKEN=$TOKEN INGEST_LISTEN="127.0.0.1:$IPORT" \
        METRICS_LISTEN="127.0.0.1:$MPORT" INGEST_SPOOL_DIR="$WORK/spool" \
        INGEST_THREADS=$INGEST_THREADS LOG_FORMAT=json LOG_LEVEL=info \
        "$INGEST_BIN" 2>"$WORK/ingest.log" &
    INGEST_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$IPORT/healthz" >/dev/null && return 0
        sleep 0.1
    done
    cat "$WORK/ingest.log" >&2
    die "calllog-ingest did not answer /healthz"
}

# Sends one signed callback with curl; the answer must be 204.
post_once() {
    curl -s -o /dev/null -w '%{http_code}' -X POST \
        -H 'Content-Type: application/x-www-form-urlencoded' \
        -H "X-Twilio-Signature: $(cat "$WORK/signature")" \
        --data-binary @"$WORK/body" "http://127.0.0.1:$IPORT/twilio/log-call"
}

# Prints the table header.
table_header() {
    echo "| scenario | connections | requests/s | p50 ms | p99 ms | errors | stalled conns | durable | ingest CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
}

# Counts the client connections the ingest has sent nothing to for over half a second,
# sampled mid-run from the kernel's TCP info (`lastsnd`) on the server's side. wrk's figures
# only cover answered requests, so a connection civetweb never picks up (more keep-alive
# connections than INGEST_THREADS) is invisible there; this makes it visible.
stalled_conns() {
    sleep "$(awk -v d="$DURATION" 'BEGIN {print (d / 2 > 1 ? d / 2 : 1)}')"
    ss -tinH state established "( sport = :$IPORT )" |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^lastsnd:/ && substr($i, 9) + 0 > 500) n++ }
             END { print n + 0 }'
}

# CPU time (user + system) the ingest has used so far, in clock ticks.
ingest_ticks() {
    awk '{print $14 + $15}' "/proc/$INGEST_PID/stat"
}

# Runs wrk for one row: $1 scenario name, $2 connections, $3 lua script, $4 path,
# $5 how to count durable events ("stream", "spool" or "-").
wrk_row() {
    local name=$1 conns=$2 script=$3 path=$4 durable=$5 before after line cpu
    before=$(count_durable "$durable")
    cpu=$(ingest_ticks)
    stalled_conns >"$WORK/stalled" &
    local sampler=$!
    line=$(wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" --timeout 5s -s "$script" \
        "http://127.0.0.1:$IPORT$path" | grep '^BENCH ') || die "wrk failed for $name"
    wait "$sampler" || echo "?" >"$WORK/stalled"
    cpu=$(($(ingest_ticks) - cpu))
    after=$(count_durable "$durable")
    # shellcheck disable=SC2086 # split the BENCH line into its fields
    set -- $line
    local added=-
    [ "$durable" = - ] || added=$((after - before))
    printf '| %s | %d | %.0f | %.2f | %.2f | %d | %s | %s | %.0f |\n' "$name" "$conns" \
        "$(awk -v n="$2" -v d="$3" 'BEGIN {print n / d}')" "$4" "$5" "$6" "$(cat "$WORK/stalled")" \
        "$added" "$(awk -v t="$cpu" -v n="$2" -v hz="$HZ" 'BEGIN {print (n ? 1e6 * t / hz / n : 0)}')"
    # wrk does not count the requests in flight when it stops (at most one per connection).
    if [ "$durable" != - ] && { [ "$added" -lt $(($2 - $6)) ] || [ "$added" -gt $(($2 + conns)) ]; }; then
        echo "bench_ingest: $name: $added events durable for $(($2 - $6)) answered requests" >&2
    fi
}

# Counts durable events: XLEN of the stream, lines in the spool, or "-".
count_durable() {
    case $1 in
    stream) rcli XLEN "$PREFIX:events" ;;
    spool) spool_depth ;;
    *) echo - ;;
    esac
}

# Empties the stream and compacts the AOF so every row starts from the same state.
reset_redis() {
    rcli DEL "$PREFIX:events" >/dev/null
    rcli BGREWRITEAOF >/dev/null
    for _ in $(seq 1 300); do
        rcli INFO persistence | grep -q 'aof_rewrite_in_progress:0' &&
            rcli INFO persistence | grep -q 'aof_rewrite_scheduled:0' && return 0
        sleep 0.1
    done
    die "AOF rewrite did not finish"
}

# One redis-benchmark row: XADD of the entry the ingest wrote, $1 connections.
redis_row() {
    local conns=$1 fsync=$2 n csv
    n=$((conns >= 64 ? 200000 : 100000))
    # redis-benchmark has no duration flag: a fixed count, bounded by timeout.
    csv=$(timeout 60 redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$conns" -n "$n" \
        --threads 2 --csv XADD bench:xadd '*' "${ENTRY[@]}" | tail -1) ||
        die "redis-benchmark failed or ran too long"
    rcli DEL bench:xadd >/dev/null
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95..","p99..","max.."
    echo "$csv" | awk -F, -v c="$conns" -v f="$fsync" '{
        for (i = NF - 6; i <= NF; i++) gsub(/"/, "", $i);
        printf "| redis XADD (redis-benchmark) fsync=%s | %d | %.0f | %.2f | %.2f | 0 | - | - | - |\n",
               f, c, $(NF - 6), $(NF - 3), $(NF - 1) }'
}

command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCALLLOG_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target calllog-ingest >/dev/null

RPORT=$(services_free_port)
IPORT=$(services_free_port)
MPORT=$(services_free_port)
services_redis_start "$REDIS_DIR" "$RPORT" || die "redis did not start"
# A background AOF rewrite would land in one random row; rows compact it themselves.
rcli CONFIG SET auto-aof-rewrite-percentage 0 >/dev/null
write_load
start_ingest
[ "$(post_once)" = 204 ] || die "a signed callback was not answered 204: $(tail -3 "$WORK/ingest.log")"
# The entry the ingest wrote (its fields, in order) is redis-benchmark's payload.
mapfile -t ENTRY < <(rcli --raw XRANGE "$PREFIX:events" - + COUNT 1 | tail -n +2)
ENTRY_BYTES=$(printf '%s' "${ENTRY[@]}" | wc -c)

echo "== bench_ingest ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(redis-server --version | cut -d' ' -f3))"
echo "   command: tests/bench/bench_ingest.sh  (BENCH_DURATION=$DURATION, wrk -t$WRK_THREADS," \
    "INGEST_THREADS=$INGEST_THREADS)"
echo "   ingest: $INGEST_BIN"
echo "   body $(wc -c <"$WORK/body") bytes, stream entry ${ENTRY_BYTES} bytes of field values"
echo
RSS_START=$(ingest_rss)
table_header
for c in $CONNECTIONS; do
    wrk_row "GET /healthz (HTTP floor)" "$c" "$WORK/get.lua" /healthz -
done
for mode in everysec always; do
    rcli CONFIG SET appendfsync "$mode" >/dev/null
    for c in $CONNECTIONS; do
        reset_redis
        wrk_row "POST callback, fsync=$mode" "$c" "$WORK/post.lua" /twilio/log-call stream
    done
    for c in $CONNECTIONS; do
        reset_redis
        redis_row "$c" "$mode"
    done
done
reset_redis
RSS_REDIS=$(ingest_rss)
services_redis_stop "$REDIS_DIR"
for c in $CONNECTIONS; do
    wrk_row "POST callback, Redis down (spool)" "$c" "$WORK/post.lua" /twilio/log-call spool
done
RSS_SPOOL=$(ingest_rss)

# Redis back: the ingest replays the spool into the stream by itself.
SPOOLED=$(spool_depth)
services_redis_start "$REDIS_DIR" "$RPORT" || die "redis did not restart"
rcli CONFIG SET appendfsync always >/dev/null
t0=$(date +%s.%N)
for _ in $(seq 1 1200); do
    [ "$(spool_depth)" = 0 ] && break
    sleep 0.05
done
t1=$(date +%s.%N)
LEN=$(rcli XLEN "$PREFIX:events")
echo
awk -v n="$SPOOLED" -v l="$LEN" -v a="$t0" -v b="$t1" 'BEGIN {
    rate = (b - a) > 0 ? n / (b - a) : 0
    printf("spool replay after Redis came back: %d records -> %d stream entries in %.2f s (%.0f/s)\n",
           n, l, b - a, rate) }'
[ "$LEN" -ge "$SPOOLED" ] || echo "bench_ingest: replay left events behind" >&2

# Slow clients: INGEST_THREADS connections that connect and send nothing, then one GET.
echo
/usr/bin/python3 - "$IPORT" "$INGEST_THREADS" <<'PY'
import socket, sys, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.3)
t0 = time.monotonic()
try:
    urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=60).read()
    outcome = "answered"
except OSError as exc:
    outcome = "failed (%s)" % exc
print("slow clients: with %d idle connections open (= INGEST_THREADS), GET /healthz %s after %.2f s"
      % (n, outcome, time.monotonic() - t0))
for s in idle:
    s.close()
PY
echo
echo "ingest RSS: at start $RSS_START; after the Redis rows $RSS_REDIS;" \
    "after the spool rows $RSS_SPOOL; after replay $(ingest_rss)"
