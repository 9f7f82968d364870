#!/bin/sh
# stunnel-redis.sh — renders redis-client.conf.template from the environment and runs
# stunnel on it in the foreground: the Redis TLS sidecar (compose profile tls,
# deploy/k8s/components/redis-tls), the same file in both and in tests/e2e/test_redis_tls.py.
#
# Usage: stunnel-redis.sh [render]     (render: write the configuration, print its path)
# Environment:
#   REDIS_TLS_CONNECT     host:port of the Redis TLS endpoint (required)
#   STUNNEL_ACCEPT        where calllog connects in plain text (default 127.0.0.1:6379)
#   REDIS_TLS_CA_FILE     CA bundle that signs the server's certificate
#                         (default /etc/ssl/certs/ca-certificates.crt, the public CAs)
#   REDIS_TLS_HOST        the name the certificate must carry (default: REDIS_TLS_CONNECT's
#                         host); an IPv4 address is checked with checkIP instead
#   REDIS_TLS_SNI         server name sent in the handshake (default REDIS_TLS_HOST)
#   REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE   a client certificate, when the server wants one
#   STUNNEL_DEBUG         syslog level 0-7 (default 5, notice)
#   STUNNEL_TEMPLATE      the template (default: beside this script, else /etc/stunnel/)
#   STUNNEL_CONF          where the rendered file goes (default ${TMPDIR:-/tmp}/stunnel-redis.conf)
#   STUNNEL_BIN           the program (default stunnel)
set -eu

die() {
    echo "stunnel-redis: $*" >&2
    exit 2
}

# The template: beside this script (a checkout) or where the image puts it.
template_path() {
    if [ -n "${STUNNEL_TEMPLATE:-}" ]; then
        echo "$STUNNEL_TEMPLATE"
    elif [ -f "$(dirname "$0")/redis-client.conf.template" ]; then
        echo "$(dirname "$0")/redis-client.conf.template"
    else
        echo /etc/stunnel/redis-client.conf.template
    fi
}

# Checks the settings and fills in the defaults (exported for render's awk).
settings() {
    [ -n "${REDIS_TLS_CONNECT:-}" ] || die "setting REDIS_TLS_CONNECT is required but not set (host:port of the Redis TLS endpoint)"
    host=${REDIS_TLS_CONNECT%:*}
    port=${REDIS_TLS_CONNECT##*:}
    case $port in
    '' | *[!0-9]*) port= ;;
    esac
    if [ "$host" = "$REDIS_TLS_CONNECT" ] || [ -z "$host" ] || [ -z "$port" ]; then
        die "setting REDIS_TLS_CONNECT is malformed: expected host:port, got '$REDIS_TLS_CONNECT'"
    fi
    export STUNNEL_ACCEPT=${STUNNEL_ACCEPT:-127.0.0.1:6379}
    export REDIS_TLS_CA_FILE=${REDIS_TLS_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}
    [ -r "$REDIS_TLS_CA_FILE" ] || die "setting REDIS_TLS_CA_FILE: cannot read $REDIS_TLS_CA_FILE"
    REDIS_TLS_HOST=${REDIS_TLS_HOST:-$host}
    if echo "$REDIS_TLS_HOST" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$'; then
        export REDIS_TLS_CHECK_IP=$REDIS_TLS_HOST REDIS_TLS_CHECK_HOST=
        export REDIS_TLS_SNI=${REDIS_TLS_SNI:-}
    else
        export REDIS_TLS_CHECK_HOST=$REDIS_TLS_HOST REDIS_TLS_CHECK_IP=
        export REDIS_TLS_SNI=${REDIS_TLS_SNI:-$REDIS_TLS_HOST}
    fi
    if [ -n "${REDIS_TLS_CERT_FILE:-}" ] || [ -n "${REDIS_TLS_KEY_FILE:-}" ]; then
        [ -n "${REDIS_TLS_CERT_FILE:-}" ] && [ -n "${REDIS_TLS_KEY_FILE:-}" ] ||
            die "settings REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"
    fi
    export REDIS_TLS_CERT_FILE=${REDIS_TLS_CERT_FILE:-} REDIS_TLS_KEY_FILE=${REDIS_TLS_KEY_FILE:-}
    export STUNNEL_DEBUG=${STUNNEL_DEBUG:-5}
    export REDIS_TLS_CONNECT
}

# Writes the template with every ${NAME} replaced by its value to $1; a line whose
# placeholder is empty is dropped.
render() {
    awk '
        /^[ \t]*;/ { print; next }
        {
            line = $0; out = ""; empty = 0
            while (match(line, /\$\{[A-Z_]+\}/)) {
                name = substr(line, RSTART + 2, RLENGTH - 3)
                value = ENVIRON[name]
                if (value == "") empty = 1
                out = out substr(line, 1, RSTART - 1) value
                line = substr(line, RSTART + RLENGTH)
            }
            if (!empty) print out line
        }' "$(template_path)" >"$1"
}

main() {
    settings
    conf=${STUNNEL_CONF:-${TMPDIR:-/tmp}/stunnel-redis.conf}
    render "$conf"
    if [ "${1:-}" = render ]; then
        echo "$conf"
        return 0
    fi
    echo "stunnel-redis: plain $STUNNEL_ACCEPT -> TLS $REDIS_TLS_CONNECT (verify ${REDIS_TLS_CHECK_HOST:-$REDIS_TLS_CHECK_IP} against $REDIS_TLS_CA_FILE)" >&2
    exec "${STUNNEL_BIN:-stunnel}" "$conf"
}

main "$@"
