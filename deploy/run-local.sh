#!/usr/bin/env bash
# run-local.sh — runs calllog on this machine without Docker.
#
# For an operator (or a developer) who wants the real thing on one host: it installs the
# Debian packages, builds Release into build/, starts Redis (AOF, deploy/redis.conf) and
# PostgreSQL with their data in deploy/.run/ (git-ignored), applies the SQL migrations
# of deploy/supabase/migrations/, then starts calllog-ingest and N calllog-workers with
# the settings of deploy/.run/env (a copy of deploy/env.example made on first start:
# fill in the secrets there). Pids go to deploy/.run/pids/, logs to deploy/.run/logs/.
#
# `demo` runs the same pipeline with no credentials, no env file and no public URL: its own
# Redis and PostgreSQL on free loopback ports, the sandbox (deploy/sandbox/sandbox.py,
# standing in for RD Station CRM and Twilio's REST API), the ingest and two workers
# configured at it, all in deploy/.run/demo/ (settings in deploy/.run/demo/env). It then
# plays one call through the real ingest (`calllog-admin demo call`) and shows the note
# it became. `start` never uses the sandbox or the demo's settings.
#
# Usage:
#   deploy/run-local.sh [start] [--workers N] [--no-tail]   start everything (N = 2)
#   deploy/run-local.sh demo [--no-tail]                     the demo (no credentials)
#   deploy/run-local.sh stop                                 stop everything, demo included
#   deploy/run-local.sh status                               what runs
#   deploy/run-local.sh logs                                 follow the logs
#
# When REDIS_URL or DATABASE_URL is set (environment or env file), that server is used
# instead of a local one (not by the demo). LOCAL_REDIS_PORT (6379) and LOCAL_PG_PORT
# (5432) choose the ports of the local servers, CALLLOG_BUILD_DIR (build; relative to the
# repository or absolute) the build tree; CALLLOG_BIN_DIR names a directory of programs
# already built, and then nothing is built. Ingest metrics are on 127.0.0.1:9101, worker
# i's on 127.0.0.1:9101+i (the demo picks free ports and prints them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN=$ROOT/deploy/.run
ENV_FILE=$RUN/env
DEMO=$RUN/demo
BUILD=${CALLLOG_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BIN=${CALLLOG_BIN_DIR:-$BUILD/bin}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
LOCAL_REDIS_PORT=${LOCAL_REDIS_PORT:-6379}
LOCAL_PG_PORT=${LOCAL_PG_PORT:-5432}
LOCAL_DB=calllog
# What the sandbox accepts (the defaults of tests/mocks/twilio_mock.py and rdstation_mock.py).
SANDBOX_ACCOUNT_SID=AC00000000000000000000000000000001
SANDBOX_API_KEY_SID=SK00000000000000000000000000000001
SANDBOX_API_KEY_SECRET=mock-api-key-secret
SANDBOX_RD_TOKEN=mock-v1-token
SANDBOX_RD_USER_ID=5e0000000000000000000001

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

# Prints the usage text.
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# Prints setting KEY: the environment's value, else the env file's last assignment.
setting() {
    local key=$1 line
    if [ -n "${!key:-}" ]; then
        echo "${!key}"
        return 0
    fi
    [ -f "$ENV_FILE" ] || return 0
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?$key=" "$ENV_FILE" | tail -n 1 || true)
    line=${line#*=}
    line=${line%\"}
    line=${line#\"}
    line=${line%\'}
    line=${line#\'}
    echo "$line"
}

# Prints path $1 relative to the repository when it lies inside it.
rel() {
    case $1 in "$ROOT"/*) echo "${1#"$ROOT"/}" ;; *) echo "$1" ;; esac
}

# 0 when process $1 runs (tests/lib/services.sh: a zombie counts as gone).
proc_alive() {
    services_proc_alive "$1"
}

# 0 when the process whose pid is in file $1 is alive.
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(head -n 1 "$1" 2>/dev/null || true)
    [ -n "$pid" ] && proc_alive "$pid"
}

# Builds the Release tree (incrementally), unless CALLLOG_BIN_DIR names programs
# already built.
build_programs() {
    local prog
    if [ -n "${CALLLOG_BIN_DIR:-}" ]; then
        for prog in calllog-ingest calllog-worker calllog-admin; do
            if [ ! -x "$BIN/$prog" ]; then
                echo "run-local: CALLLOG_BIN_DIR=$CALLLOG_BIN_DIR holds no $prog" >&2
                exit 1
            fi
        done
        echo "run-local: using the programs in $(rel "$BIN") (CALLLOG_BIN_DIR; no build)"
        return 0
    fi
    build_release
}

# Builds the Release tree (incrementally).
build_release() {
    echo "run-local: building Release into $(rel "$BUILD")/ (log: $(rel "$BUILD")/build.log)"
    mkdir -p "$BUILD"
    if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$BUILD/build.log" 2>&1 ||
        ! cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD/build.log" 2>&1; then
        tail -n 40 "$BUILD/build.log"
        echo "run-local: the build failed" >&2
        exit 1
    fi
}

# Starts the local Redis unless REDIS_URL names another one; exports REDIS_URL.
start_redis() {
    local url
    url=$(setting REDIS_URL)
    if [ -n "$url" ]; then
        echo "run-local: using REDIS_URL from the settings (no local Redis)"
        return 0
    fi
    if pid_alive "$RUN/redis/redis.pid"; then
        echo "run-local: Redis already runs on 127.0.0.1:$LOCAL_REDIS_PORT"
    else
        services_redis_start "$RUN/redis" "$LOCAL_REDIS_PORT" "$ROOT/deploy/redis.conf"
        echo "run-local: Redis on 127.0.0.1:$LOCAL_REDIS_PORT (data in deploy/.run/redis)"
    fi
    export REDIS_URL="redis://127.0.0.1:$LOCAL_REDIS_PORT/0"
}

# Starts the local PostgreSQL unless DATABASE_URL names another one, creates the
# database, applies the migrations; exports DATABASE_URL.
start_postgres() {
    local url
    url=$(setting DATABASE_URL)
    if [ -n "$url" ]; then
        echo "run-local: using DATABASE_URL from the settings (no local PostgreSQL);" \
            "apply deploy/supabase/migrations there yourself (supabase db push)"
        return 0
    fi
    if [ -f "$RUN/pg/data/postmaster.pid" ] &&
        pg_isready -q -h 127.0.0.1 -p "$LOCAL_PG_PORT"; then
        echo "run-local: PostgreSQL already runs on 127.0.0.1:$LOCAL_PG_PORT"
    else
        services_pg_start "$RUN/pg" "$LOCAL_PG_PORT"
        echo "run-local: PostgreSQL on 127.0.0.1:$LOCAL_PG_PORT (data in deploy/.run/pg)"
    fi
    services_pg_createdb "$LOCAL_PG_PORT" "$LOCAL_DB"
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$LOCAL_PG_PORT/$LOCAL_DB"
    apply_migrations
}

# Applies each deploy/supabase/migrations/*.sql not yet applied, in name order, each in
# one transaction; deploy/.run/migrations.applied remembers which were.
apply_migrations() {
    local f name applied=$RUN/migrations.applied n=0
    touch "$applied"
    for f in "$ROOT"/deploy/supabase/migrations/*.sql; do
        [ -f "$f" ] || continue
        name=$(basename "$f")
        grep -qxF "$name" "$applied" && continue
        echo "run-local: applying migration $name"
        psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -1 -f "$f" >/dev/null
        echo "$name" >>"$applied"
        n=$((n + 1))
    done
    echo "run-local: migrations applied this time: $n"
}

# Starts program $1 (name for pid/log files $2) detached, with extra VAR=VALUE args.
start_program() {
    local prog=$1 name=$2 pid
    shift 2
    if [ ! -x "$BIN/$prog" ]; then
        echo "run-local: $BIN/$prog was not built" >&2
        return 1
    fi
    env "$@" setsid "$BIN/$prog" --env-file "$ENV_FILE" </dev/null \
        >>"$RUN/logs/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN/pids/$name.pid"
    echo "run-local: started $name (pid $pid, log $(rel "$RUN/logs/$name.log"))"
}

# Fails, showing the log's tail, when a just-started program has already exited; the
# arguments say what to do about it.
check_started() {
    local hint="$*" pidfile name bad=0
    sleep 1.5
    for pidfile in "$RUN"/pids/*.pid; do
        [ -f "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        if ! pid_alive "$pidfile"; then
            bad=1
            echo "run-local: $name exited at start; the end of its log:" >&2
            tail -n 5 "$RUN/logs/$name.log" >&2 || true
            rm -f "$pidfile"
        fi
    done
    if [ $bad -eq 1 ]; then
        echo "run-local: $hint (deploy/run-local.sh stop stops what did start)" >&2
        return 1
    fi
}

# The `start` command.
cmd_start() {
    local workers=2 tail_logs=1 i spool
    while [ $# -gt 0 ]; do
        case $1 in
        --workers) workers=${2:?--workers needs a number}; shift ;;
        --workers=*) workers=${1#--workers=} ;;
        --no-tail) tail_logs=0 ;;
        *) echo "run-local: unknown option $1" >&2; exit 2 ;;
        esac
        shift
    done
    case $workers in '' | *[!0-9]*) echo "run-local: --workers takes a number" >&2; exit 2 ;; esac
    for i in "$RUN"/pids/*.pid; do
        if pid_alive "$i"; then
            echo "run-local: $(basename "$i" .pid) already runs; run '$0 stop' first" >&2
            exit 1
        fi
    done

    bash "$ROOT/deploy/install-deps.sh"
    build_programs
    mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/spool"
    chmod 0755 "$RUN"
    rm -f "$RUN"/pids/*.pid
    if [ ! -f "$ENV_FILE" ]; then
        cp "$ROOT/deploy/env.example" "$ENV_FILE"
        chmod 0600 "$ENV_FILE"
        echo "run-local: created deploy/.run/env from deploy/env.example; put the real" \
            "secrets (TWILIO_AUTH_TOKEN, RDSTATION_*) and PUBLIC_BASE_URL there"
    fi
    start_redis
    start_postgres

    spool=$(setting INGEST_SPOOL_DIR)
    start_program calllog-ingest ingest "INGEST_SPOOL_DIR=${spool:-$RUN/spool}" \
        "METRICS_LISTEN=127.0.0.1:9101"
    for i in $(seq 1 "$workers"); do
        start_program calllog-worker "worker-$i" "METRICS_LISTEN=127.0.0.1:$((9101 + i))"
    done
    check_started "fix the settings in deploy/.run/env and start again ('deploy/run-local.sh" \
        "demo' shows calllog at work before you have the accounts)"
    echo "run-local: running; '$0 stop' stops everything, '$0 status' tells what runs"
    if [ $tail_logs -eq 1 ]; then
        echo "run-local: following the logs (Ctrl-C stops following, not the services)"
        exec tail -n 20 -F "$RUN"/logs/*.log
    fi
}

# The demo's settings: the ports of its servers and programs, the sandbox's URLs and
# the webhook token shared by the sandbox and the ingest. Written to deploy/.run/demo/env.
write_demo_env() {
    local admin env
    admin="$(rel "$BIN")/calllog-admin"
    env="$(rel "$DEMO")/env"
    (
        umask 077
        cat >"$DEMO/env" <<EOF
# The demo's settings, written by deploy/run-local.sh demo (each run writes new ones).
# Everything points at the sandbox (deploy/sandbox/sandbox.py): RD Station CRM v1 on
# 127.0.0.1:$DEMO_RD_PORT, Twilio on 127.0.0.1:$DEMO_TW_PORT. Nothing here reaches a real
# account, and deploy/run-local.sh start never reads this file.
#   $admin --env-file $env status
#   $admin --env-file $env demo call --from +5521988887777 --status no-answer
# Metrics: ingest 127.0.0.1:$DEMO_INGEST_METRICS, workers 127.0.0.1:$DEMO_W1_METRICS and 127.0.0.1:$DEMO_W2_METRICS.
REDIS_URL=redis://127.0.0.1:$DEMO_REDIS_PORT/0
DATABASE_URL=postgresql://postgres@127.0.0.1:$DEMO_PG_PORT/$LOCAL_DB
CALLLOG_KEY_PREFIX=calllog-demo
CALLLOG_SANDBOX_URL=http://127.0.0.1:$DEMO_TW_PORT
INGEST_LISTEN=127.0.0.1:$DEMO_INGEST_PORT
PUBLIC_BASE_URL=http://127.0.0.1:$DEMO_INGEST_PORT
INGEST_SPOOL_DIR=$DEMO/spool
TWILIO_AUTH_TOKEN=$DEMO_TOKEN
TWILIO_ACCOUNT_SID=$SANDBOX_ACCOUNT_SID
TWILIO_API_KEY_SID=$SANDBOX_API_KEY_SID
TWILIO_API_KEY_SECRET=$SANDBOX_API_KEY_SECRET
TWILIO_API_BASE_URL=http://127.0.0.1:$DEMO_TW_PORT
TWILIO_RECONCILE_INTERVAL_MS=10000
RDSTATION_API=v1
RDSTATION_TOKEN=$SANDBOX_RD_TOKEN
RDSTATION_USER_ID=$SANDBOX_RD_USER_ID
RDSTATION_API_BASE_URL=http://127.0.0.1:$DEMO_RD_PORT/api/v1
LOG_LEVEL=info
LOG_FORMAT=json
EOF
    )
}

# Prints N distinct TCP ports on 127.0.0.1 that nothing listens on right now, one a line.
free_ports() {
    local n=$1 port ports=" " count=0
    while [ $count -lt "$n" ]; do
        port=$(services_free_port)
        case $ports in *" $port "*) continue ;; esac
        ports="$ports$port "
        count=$((count + 1))
        echo "$port"
    done
}

# Waits up to 15 s until URL $1 answers 2xx; says that $2 did not.
wait_http() {
    local url=$1 what=$2
    for _ in $(seq 1 150); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "run-local: $what did not answer $url; the end of its log:" >&2
    tail -n 10 "$DEMO/logs/$what.log" >&2 2>/dev/null || true
    return 1
}

# Prints key $2 of the JSON object in file $1.
json_field() {
    /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# Starts the sandbox in the demo's tree and waits for its ports (sets DEMO_RD_PORT and
# DEMO_TW_PORT). The token goes through the environment, not the command line.
start_sandbox() {
    local ports=$DEMO/sandbox.ports pid
    rm -f "$ports"
    TWILIO_AUTH_TOKEN=$DEMO_TOKEN setsid /usr/bin/python3 "$ROOT/deploy/sandbox/sandbox.py" \
        --status-callback "http://127.0.0.1:$DEMO_INGEST_PORT/twilio/log-call" \
        --port-file "$ports" </dev/null >>"$DEMO/logs/sandbox.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DEMO/pids/sandbox.pid"
    for _ in $(seq 1 100); do
        if [ -f "$ports" ] || ! proc_alive "$pid"; then break; fi
        sleep 0.1
    done
    if [ ! -f "$ports" ]; then
        echo "run-local: the sandbox did not start; the end of its log:" >&2
        tail -n 20 "$DEMO/logs/sandbox.log" >&2 || true
        return 1
    fi
    DEMO_RD_PORT=$(json_field "$ports" rd)
    DEMO_TW_PORT=$(json_field "$ports" twilio)
    echo "run-local: started sandbox (pid $pid, log $(rel "$DEMO/logs/sandbox.log")):" \
        "RD Station CRM on 127.0.0.1:$DEMO_RD_PORT, Twilio on 127.0.0.1:$DEMO_TW_PORT"
}

# Starts the demo's own Redis and PostgreSQL on free ports (never 6379/5432, so servers
# already on this machine are left alone) and applies the migrations.
start_demo_servers() {
    services_redis_start "$DEMO/redis" "$DEMO_REDIS_PORT" "$ROOT/deploy/redis.conf"
    echo "run-local: Redis on 127.0.0.1:$DEMO_REDIS_PORT (data in $(rel "$DEMO")/redis)"
    services_pg_start "$DEMO/pg" "$DEMO_PG_PORT"
    echo "run-local: PostgreSQL on 127.0.0.1:$DEMO_PG_PORT (data in $(rel "$DEMO")/pg)"
    services_pg_createdb "$DEMO_PG_PORT" "$LOCAL_DB"
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$DEMO_PG_PORT/$LOCAL_DB"
    apply_migrations
}

# Prints what to do next once the demo's note was shown.
demo_next_steps() {
    local admin env
    admin="$(rel "$BIN")/calllog-admin"
    env="$(rel "$DEMO")/env"
    cat <<EOF

run-local: the demo runs: Redis, PostgreSQL, the sandbox, calllog-ingest and 2 workers.
  another call:  $admin --env-file $env demo call --from +5521988887777 --status no-answer
                 (also --direction outbound, --to, --duration, --wait). Callers the
                 sandbox knows: +5511971730783 Maria Souza, +5521988887777 João Pereira,
                 +553133334444 Ana Lima; other numbers have no contact and are skipped.
  queues:        $admin --env-file $env status
  settings:      $env
  logs:          $(rel "$DEMO")/logs/ (deploy/run-local.sh logs follows them)
  metrics:       http://127.0.0.1:$DEMO_INGEST_METRICS/metrics (ingest),
                 http://127.0.0.1:$DEMO_W1_METRICS/metrics, http://127.0.0.1:$DEMO_W2_METRICS/metrics (workers)
  sandbox:       http://127.0.0.1:$DEMO_TW_PORT/_sandbox/contacts (its contacts and deals)
  stop:          deploy/run-local.sh stop (stops everything, the demo included)
EOF
}

# Fails when a demo process runs already (a second demo would share nothing with it).
demo_refuse_twice() {
    local pidfile
    for pidfile in "$DEMO"/pids/*.pid; do
        if pid_alive "$pidfile"; then
            echo "run-local: the demo already runs; send another call with" \
                "$(rel "$BIN")/calllog-admin --env-file $(rel "$DEMO")/env demo call," \
                "or run '$0 stop' first" >&2
            exit 1
        fi
    done
}

# The `demo` command: a fresh tree, its servers, the sandbox, the programs, one call.
cmd_demo() {
    local tail_logs=1 rc=0
    while [ $# -gt 0 ]; do
        case $1 in
        --no-tail) tail_logs=0 ;;
        *) echo "run-local: unknown option $1" >&2; exit 2 ;;
        esac
        shift
    done
    demo_refuse_twice
    bash "$ROOT/deploy/install-deps.sh"
    build_programs
    stop_tree "$DEMO" demo >/dev/null
    rm -rf "$DEMO"
    mkdir -p "$DEMO/logs" "$DEMO/pids" "$DEMO/spool"
    chmod 0755 "$RUN" "$DEMO"
    RUN=$DEMO
    ENV_FILE=$DEMO/env
    read -r DEMO_REDIS_PORT DEMO_PG_PORT DEMO_INGEST_PORT DEMO_INGEST_METRICS \
        DEMO_W1_METRICS DEMO_W2_METRICS <<<"$(free_ports 6 | tr '\n' ' ')"
    DEMO_TOKEN=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(20))')
    echo "run-local: the demo, in $(rel "$DEMO")/: no credentials, everything on 127.0.0.1"

    start_demo_servers
    start_sandbox
    write_demo_env
    start_program calllog-ingest ingest "METRICS_LISTEN=127.0.0.1:$DEMO_INGEST_METRICS"
    start_program calllog-worker worker-1 "METRICS_LISTEN=127.0.0.1:$DEMO_W1_METRICS"
    start_program calllog-worker worker-2 "METRICS_LISTEN=127.0.0.1:$DEMO_W2_METRICS"
    check_started "see the logs in $(rel "$DEMO")/logs"
    wait_http "http://127.0.0.1:$DEMO_INGEST_PORT/readyz" ingest
    wait_http "http://127.0.0.1:$DEMO_W1_METRICS/metrics" worker-1
    wait_http "http://127.0.0.1:$DEMO_W2_METRICS/metrics" worker-2

    echo "run-local: the sandbox places a call from Maria Souza (+5511971730783) to our" \
        "line (+551130001000), signed like Twilio's; waiting for its note in RD Station"
    "$BIN/calllog-admin" --env-file "$DEMO/env" demo call || rc=$?
    if [ $rc -ne 0 ]; then
        echo "run-local: no note arrived (calllog-admin exited $rc); the end of the" \
            "workers' logs:" >&2
        tail -n 15 "$DEMO"/logs/worker-*.log >&2 || true
        echo "run-local: everything still runs; 'deploy/run-local.sh stop' stops it" >&2
        exit 1
    fi
    demo_next_steps
    if [ $tail_logs -eq 1 ]; then
        echo "run-local: following the logs (Ctrl-C stops following, not the services)"
        exec tail -n 0 -F "$DEMO"/logs/*.log
    fi
}

# Sends SIGTERM to the process of pid file $1 and waits for it to drain and exit; $2
# names it in the messages (default: the file's name).
stop_pidfile() {
    local pidfile=$1 name=${2:-$(basename "$1" .pid)} pid
    pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && proc_alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 1 300); do
            proc_alive "$pid" || break
            sleep 0.1
        done
        if proc_alive "$pid"; then
            echo "run-local: $name did not stop in 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "run-local: stopped $name"
    fi
    rm -f "$pidfile"
}

# Stops what runs in tree $1 (deploy/.run, or the demo's): the programs first (they
# drain into Redis), the sandbox after them (a worker may still be talking to it), then
# the servers. $2 prefixes the names in the messages.
stop_tree() {
    local dir=$1 label=${2:+$2 } pidfile
    for pidfile in "$dir"/pids/*.pid; do
        if [ ! -f "$pidfile" ] || [ "$(basename "$pidfile")" = sandbox.pid ]; then continue; fi
        stop_pidfile "$pidfile" "$label$(basename "$pidfile" .pid)"
    done
    if [ -f "$dir/pids/sandbox.pid" ]; then
        stop_pidfile "$dir/pids/sandbox.pid" "${label}sandbox"
    fi
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        services_pg_stop "$dir/pg"
        echo "run-local: stopped ${label}PostgreSQL"
    fi
    if pid_alive "$dir/redis/redis.pid"; then
        stop_pidfile "$dir/redis/redis.pid" "${label}Redis"
    fi
}

# The `stop` command: what `start` started, then what `demo` started.
cmd_stop() {
    stop_tree "$RUN"
    stop_tree "$DEMO" demo
}

# Prints what runs in tree $1; $2 prefixes the names, $3 follows "not running" for the
# servers.
status_tree() {
    local dir=$1 label=${2:+$2 } note=${3:+ $3} pidfile name
    for pidfile in "$dir"/pids/*.pid; do
        [ -f "$pidfile" ] || continue
        name=$label$(basename "$pidfile" .pid)
        if pid_alive "$pidfile"; then
            echo "$name: running (pid $(head -n 1 "$pidfile"))"
        else
            echo "$name: not running"
        fi
    done
    if pid_alive "$dir/redis/redis.pid"; then echo "${label}redis: running"; else echo "${label}redis: not running$note"; fi
    if [ -f "$dir/pg/data/postmaster.pid" ]; then echo "${label}postgres: running"; else echo "${label}postgres: not running$note"; fi
}

# The `status` command: the normal tree, then the demo's when any of it is left.
cmd_status() {
    local pidfile left=0
    status_tree "$RUN" "" "(local)"
    for pidfile in "$DEMO"/pids/*.pid "$DEMO/redis/redis.pid" "$DEMO/pg/data/postmaster.pid"; do
        [ -f "$pidfile" ] && left=1
    done
    if [ $left -eq 0 ]; then
        echo "demo: not running"
        return 0
    fi
    status_tree "$DEMO" demo
    echo "demo settings: $(rel "$DEMO")/env;" \
        "$(rel "$BIN")/calllog-admin --env-file $(rel "$DEMO")/env status"
}

# The `logs` command: follows the logs of both trees.
cmd_logs() {
    local files=() f
    for f in "$RUN"/logs/*.log "$DEMO"/logs/*.log; do
        [ -f "$f" ] && files+=("$f")
    done
    if [ ${#files[@]} -eq 0 ]; then
        echo "run-local: no logs yet in $(rel "$RUN")/logs or $(rel "$DEMO")/logs" >&2
        exit 1
    fi
    exec tail -n 50 -F "${files[@]}"
}

main() {
    local cmd=${1:-start}
    case $cmd in
    -h | --help | help) usage ;;
    start) [ $# -eq 0 ] || shift; cmd_start "$@" ;;
    --*) cmd_start "$@" ;;
    demo) shift; cmd_demo "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) cmd_logs ;;
    *) echo "run-local: unknown command $cmd (try --help)" >&2; exit 2 ;;
    esac
}

main "$@"
