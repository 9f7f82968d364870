# shellcheck shell=bash
# services.sh — throwaway Redis and PostgreSQL servers for the test suites.
#
# Design §4: every integration and end-to-end test talks to a real Redis and a real
# PostgreSQL, started from Debian's packages on loopback (no Docker on these machines).
# Source this file, call `services_start`, and arrange `services_stop` in an EXIT trap:
#
#   . tests/lib/services.sh
#   trap services_stop EXIT
#   services_start
#
# services_start exports
#   CALLLOG_TEST_REDIS_URL     redis://127.0.0.1:PORT/0
#   CALLLOG_TEST_REDIS_PORT    PORT
#   CALLLOG_TEST_DATABASE_URL  postgresql://postgres@127.0.0.1:PORT/calllog_test
#   CALLLOG_TEST_PG_PORT       PORT
# Both servers keep their data in one mktemp directory that services_stop removes.
# The lower-level services_redis_start / services_pg_start take a directory and a port,
# so deploy/run-local.sh starts its long-lived servers with the same code.

# Where PostgreSQL's server programs live (Debian: /usr/lib/postgresql/<major>/bin).
services_pg_bindir() {
    local dir
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ]; then
            echo "$dir"
            return 0
        fi
    done
    echo "services: PostgreSQL server programs not found under /usr/lib/postgresql" >&2
    return 1
}

# Prints a TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
services_free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Runs a command as the `postgres` user when we are root (PostgreSQL refuses root),
# as ourselves otherwise.
services_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Starts redis-server in DIR on PORT (AOF on, fsync always, loopback only, no RDB
# snapshots) as a daemon whose pid is in DIR/redis.pid, reading the optional config
# file CONF first (the command-line settings win). Waits until it answers PING.
services_redis_start() {
    local dir=$1 port=$2 conf=${3:-}
    mkdir -p "$dir"
    redis-server ${conf:+"$conf"} --port "$port" --bind 127.0.0.1 --dir "$dir" \
        --appendonly yes --appendfsync always --save '' \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null ||
        return 1
    for _ in $(seq 1 100); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            return 0
        fi
        sleep 0.1
    done
    echo "services: redis-server on port $port did not answer; its log:" >&2
    cat "$dir/redis.log" >&2 2>/dev/null || true
    return 1
}

# Stops the redis-server whose pid file is in DIR (SIGTERM: it fsyncs the AOF first).
services_redis_stop() {
    local dir=$1 pid
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Creates (first time only) and starts a PostgreSQL cluster in DIR/data listening on
# 127.0.0.1:PORT with its unix socket in DIR, trust authentication, superuser
# `postgres`. DIR is handed to the postgres user when we are root.
services_pg_start() {
    local dir=$1 port=$2 bindir
    bindir=$(services_pg_bindir) || return 1
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        chmod 0700 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        services_as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
            --no-sync >"$dir/initdb.log" 2>&1 || {
            echo "services: initdb failed; its output:" >&2
            cat "$dir/initdb.log" >&2
            return 1
        }
    fi
    services_as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null || {
        echo "services: PostgreSQL did not start; its log:" >&2
        cat "$dir/postgres.log" >&2 2>/dev/null || true
        return 1
    }
}

# Stops the PostgreSQL cluster in DIR/data (fast shutdown), if it runs.
services_pg_stop() {
    local dir=$1 bindir
    [ -f "$dir/data/postmaster.pid" ] || return 0
    bindir=$(services_pg_bindir) || return 0
    services_as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

# Creates database NAME in the cluster on 127.0.0.1:PORT unless it exists.
services_pg_createdb() {
    local port=$1 name=$2
    if ! psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -q \
            -c "CREATE DATABASE \"$name\"" >/dev/null
    fi
}

# Starts a throwaway Redis and PostgreSQL for one test run and exports their URLs.
services_start() {
    SERVICES_DIR=$(mktemp -d /tmp/calllog-services.XXXXXX)
    chmod 0755 "$SERVICES_DIR"
    local rport pport
    rport=$(services_free_port)
    services_redis_start "$SERVICES_DIR/redis" "$rport" || return 1
    pport=$(services_free_port)
    services_pg_start "$SERVICES_DIR/pg" "$pport" || return 1
    services_pg_createdb "$pport" calllog_test || return 1
    export CALLLOG_TEST_REDIS_PORT=$rport
    export CALLLOG_TEST_REDIS_URL="redis://127.0.0.1:$rport/0"
    export CALLLOG_TEST_PG_PORT=$pport
    export CALLLOG_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$pport/calllog_test"
    echo "services: redis on 127.0.0.1:$rport, postgres on 127.0.0.1:$pport ($SERVICES_DIR)"
}

# Stops what services_start started and removes its directory. Safe to call twice.
services_stop() {
    [ -n "${SERVICES_DIR:-}" ] || return 0
    services_pg_stop "$SERVICES_DIR/pg"
    services_redis_stop "$SERVICES_DIR/redis"
    # A server's last writes may still land while the tree goes: try a few times.
    local attempt
    for attempt in 1 2 3 4 5; do
        [ "$attempt" -eq 1 ] || sleep 0.5
        rm -rf "$SERVICES_DIR" 2>/dev/null && break
    done
    SERVICES_DIR=
}
