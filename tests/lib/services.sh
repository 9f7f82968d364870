# shellcheck shell=bash
# services.sh — throwaway Redis, PostgreSQL and PgBouncer servers for the test suites.
#
# Design §4: every integration and end-to-end test talks to a real Redis and a real
# PostgreSQL, started from Debian's packages on loopback (no Docker on these machines),
# and the paths that meet Supabase's transaction pooler go through a real PgBouncer in
# transaction mode in front of that PostgreSQL.
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
#   CALLLOG_TEST_PGBOUNCER_URL   postgresql://postgres@127.0.0.1:PORT/calllog_test
#                                (the same database through PgBouncer, pool_mode=transaction)
#   CALLLOG_TEST_PGBOUNCER_PORT  PORT
# The servers keep their data, logs and pid files in one mktemp directory (SERVICES_DIR)
# that services_stop removes. The lower-level services_redis_start / services_pg_start /
# services_pgbouncer_start take a directory and ports, so deploy/run-local.sh starts its
# long-lived servers with the same code.

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
    services_wait "redis-server on port $port" "$dir/redis.log" services_redis_answers "$port"
}

# Succeeds when the redis-server on 127.0.0.1:PORT answers PING.
services_redis_answers() {
    redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG
}

# Runs COMMAND... every 0.1 s until it succeeds, for up to 10 s; then says that WHAT
# did not answer and shows LOG.
services_wait() {
    local what=$1 log=$2
    shift 2
    for _ in $(seq 1 100); do
        "$@" && return 0
        sleep 0.1
    done
    echo "services: $what did not answer; its log:" >&2
    cat "$log" >&2 2>/dev/null || true
    return 1
}

# 0 when process $1 runs. An exited process whose parent is gone stays a zombie until
# init reaps it, which some container inits never do: kill -0 alone would say it runs.
services_proc_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

# SIGTERMs the process whose pid is in FILE, if any, and waits up to 10 s for it to
# exit before it gets SIGKILL.
services_stop_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        services_proc_alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Stops the redis-server whose pid file is in DIR (SIGTERM: it fsyncs the AOF first).
services_redis_stop() {
    services_stop_pidfile "$1/redis.pid"
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

# Starts PgBouncer in DIR on 127.0.0.1:PORT in front of the PostgreSQL on
# 127.0.0.1:PGPORT, pooling by transaction like Supabase's pooler (port 6543): what a
# client sets on its session (SET, named prepared statements) does not outlive its
# transaction. Any database name passes through; user postgres, trust authentication,
# unix socket in DIR. Runs as the postgres user when we are root (PgBouncer refuses
# root), as a daemon whose pid is in DIR/pgbouncer.pid. Waits until `SELECT 1` answers
# through it in database DB (default calllog_test).
services_pgbouncer_start() {
    local dir=$1 port=$2 pgport=$3 db=${4:-calllog_test}
    mkdir -p "$dir"
    printf '"postgres" ""\n' >"$dir/userlist.txt"
    printf '%s\n' '[databases]' "* = host=127.0.0.1 port=$pgport" '' '[pgbouncer]' \
        'listen_addr = 127.0.0.1' "listen_port = $port" "unix_socket_dir = $dir" \
        'auth_type = trust' "auth_file = $dir/userlist.txt" 'admin_users = postgres' \
        'pool_mode = transaction' 'default_pool_size = 10' 'max_client_conn = 500' \
        "logfile = $dir/pgbouncer.log" "pidfile = $dir/pgbouncer.pid" >"$dir/pgbouncer.ini"
    [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
    services_as_pg pgbouncer -d -q "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 || {
        echo "services: pgbouncer did not start:" >&2
        cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
        return 1
    }
    services_wait "pgbouncer on port $port" "$dir/pgbouncer.log" services_sql_answers "$port" "$db"
}

# Succeeds when `SELECT 1` answers on 127.0.0.1:PORT in database DB as user postgres.
services_sql_answers() {
    psql -h 127.0.0.1 -p "$1" -U postgres -d "$2" -tAc 'SELECT 1' 2>/dev/null | grep -qx 1
}

# Stops the pgbouncer whose pid file is in DIR (SIGTERM: an immediate shutdown).
services_pgbouncer_stop() {
    services_stop_pidfile "$1/pgbouncer.pid"
}

# Starts a throwaway Redis, PostgreSQL and PgBouncer for one test run and exports their
# URLs.
services_start() {
    SERVICES_DIR=$(mktemp -d /tmp/calllog-services.XXXXXX)
    chmod 0755 "$SERVICES_DIR"
    local rport pport bport
    rport=$(services_free_port)
    services_redis_start "$SERVICES_DIR/redis" "$rport" || return 1
    pport=$(services_free_port)
    services_pg_start "$SERVICES_DIR/pg" "$pport" || return 1
    services_pg_createdb "$pport" calllog_test || return 1
    export CALLLOG_TEST_REDIS_PORT=$rport
    export CALLLOG_TEST_REDIS_URL="redis://127.0.0.1:$rport/0"
    export CALLLOG_TEST_PG_PORT=$pport
    export CALLLOG_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$pport/calllog_test"
    bport=$(services_free_port)
    services_pgbouncer_start "$SERVICES_DIR/pgbouncer" "$bport" "$pport" calllog_test || return 1
    export CALLLOG_TEST_PGBOUNCER_PORT=$bport
    export CALLLOG_TEST_PGBOUNCER_URL="postgresql://postgres@127.0.0.1:$bport/calllog_test"
    echo "services: redis on 127.0.0.1:$rport, postgres on 127.0.0.1:$pport," \
        "pgbouncer on 127.0.0.1:$bport ($SERVICES_DIR)"
}

# Stops what services_start started and removes its directory. Safe to call twice.
services_stop() {
    [ -n "${SERVICES_DIR:-}" ] || return 0
    services_pgbouncer_stop "$SERVICES_DIR/pgbouncer"
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
