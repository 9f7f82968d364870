#!/usr/bin/env bash
# install-deps — installs the Debian packages calllog needs to build, test and run.
#
# Every machine that builds or tests the project (a developer's, CI's fresh clone, the
# local runner) calls this first, because nothing installed by hand survives a new
# machine. It asks apt only when something is missing, so a warm machine pays nothing.
# docker-compose (v1, no engine needed) is there so the tests can run `docker-compose
# config` on docker-compose.yml; --no-install-recommends keeps the Docker engine out.
# stunnel4 carries the Redis TLS tests (tests/e2e/test_redis_tls.py), redis-sentinel the
# failover test (tests/e2e/test_redis_sentinel.py); node and npm run the
# Kubernetes manifest validator (deploy/k8s/tools/validate.sh), and come from Debian
# (nodejs, npm) only when no node/npm is installed already (e.g. NodeSource's nodejs,
# which bundles npm and conflicts with Debian's npm package).
# Works as root, or through sudo otherwise.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config clang libclang-rt-14-dev
    libcivetweb-dev libhiredis-dev libjansson-dev libcriterion-dev
    libcurl4-openssl-dev libssl-dev libpq-dev
    redis-server redis-tools redis-sentinel postgresql postgresql-client pgbouncer
    python3 python3-pytest python3-redis python3-psycopg2 python3-yaml
    valgrind curl
    docker-compose nginx-light stunnel4
)

# Installed only when the commands are missing (see the header).
NODE_PACKAGES=(nodejs npm)

# Prints the packages of PACKAGES that dpkg does not show as installed.
missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        if [ "$status" != "installed" ]; then
            echo "$pkg"
        fi
    done
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

main() {
    local missing
    missing=$(missing_packages)
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        missing="$missing ${NODE_PACKAGES[*]}"
    fi
    if [ -z "$missing" ]; then
        echo "install-deps: all ${#PACKAGES[@]} packages already installed (and node, npm)"
        return 0
    fi
    echo "install-deps: installing: $(echo $missing)"
    as_root apt-get update -q
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends $missing
}

main "$@"
