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
# Usage:
#   deploy/run-local.sh [start] [--workers N] [--no-tail]   start everything (N = 2)
#   deploy/run-local.sh stop                                 stop everything
#   deploy/run-local.sh status                               what runs
#   deploy/run-local.sh logs                                 follow the logs
#
# When REDIS_URL or DATABASE_URL is set (environment or env file), that server is used
# instead of a local one. LOCAL_REDIS_PORT (6379) and LOCAL_PG_PORT (5432) choose the
# ports of the local servers, CALLLOG_BUILD_DIR (build) the build tree. Ingest metrics
# are on 127.0.0.1:9101, worker i's on 127.0.0.1:9101+i.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN=$ROOT/deploy/.run
ENV_FILE=$RUN/env
BUILD=${CALLLOG_BUILD_DIR:-build}
BIN=$ROOT/$BUILD/bin
LOCAL_REDIS_PORT=${LOCAL_REDIS_PORT:-6379}
LOCAL_PG_PORT=${LOCAL_PG_PORT:-5432}
LOCAL_DB=calllog

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

# 0 when the process whose pid is in file $1 is alive.
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Builds the Release tree (incrementally).
build_release() {
    echo "run-local: building Release into $BUILD/ (log: $BUILD/build.log)"
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
    echo "run-local: started $name (pid $pid, log deploy/.run/logs/$name.log)"
}

# Fails, showing the log's tail, when a just-started program has already exited.
check_started() {
    local pidfile name bad=0
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
        echo "run-local: fix the settings in deploy/.run/env and start again" \
            "(deploy/run-local.sh stop stops what did start)" >&2
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
    build_release
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
    check_started
    echo "run-local: running; '$0 stop' stops everything, '$0 status' tells what runs"
    if [ $tail_logs -eq 1 ]; then
        echo "run-local: following the logs (Ctrl-C stops following, not the services)"
        exec tail -n 20 -F "$RUN"/logs/*.log
    fi
}

# Sends SIGTERM to the process of pid file $1 and waits for it to drain and exit.
stop_pidfile() {
    local pidfile=$1 pid i
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for i in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run-local: $(basename "$pidfile" .pid) did not stop in 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "run-local: stopped $(basename "$pidfile" .pid)"
    fi
    rm -f "$pidfile"
}

# The `stop` command: programs first (they drain into Redis), then the servers.
cmd_stop() {
    local pidfile
    for pidfile in "$RUN"/pids/*.pid; do
        [ -f "$pidfile" ] && stop_pidfile "$pidfile"
    done
    if [ -f "$RUN/pg/data/postmaster.pid" ]; then
        services_pg_stop "$RUN/pg"
        echo "run-local: stopped PostgreSQL"
    fi
    if pid_alive "$RUN/redis/redis.pid"; then
        services_redis_stop "$RUN/redis"
        echo "run-local: stopped Redis"
    fi
}

# The `status` command.
cmd_status() {
    local pidfile
    for pidfile in "$RUN"/pids/*.pid; do
        [ -f "$pidfile" ] || continue
        if pid_alive "$pidfile"; then
            echo "$(basename "$pidfile" .pid): running (pid $(cat "$pidfile"))"
        else
            echo "$(basename "$pidfile" .pid): not running"
        fi
    done
    if pid_alive "$RUN/redis/redis.pid"; then echo "redis: running"; else echo "redis: not running (local)"; fi
    if [ -f "$RUN/pg/data/postmaster.pid" ]; then echo "postgres: running"; else echo "postgres: not running (local)"; fi
}

main() {
    local cmd=${1:-start}
    case $cmd in
    -h | --help | help) usage ;;
    start) [ $# -eq 0 ] || shift; cmd_start "$@" ;;
    --*) cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) exec tail -n 50 -F "$RUN"/logs/*.log ;;
    *) echo "run-local: unknown command $cmd (try --help)" >&2; exit 2 ;;
    esac
}

main "$@"
