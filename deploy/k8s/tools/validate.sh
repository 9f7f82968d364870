#!/usr/bin/env bash
# validate.sh — validates the Kubernetes manifests of deploy/k8s against the Kubernetes
# 1.33 OpenAPI schemas, strictly (unknown fields are errors): validate.cjs beside this.
#
# Usage: deploy/k8s/tools/validate.sh [TARGET...]
#   TARGET  a kustomization directory or a YAML file; default: deploy/k8s and every
#           deploy/k8s/overlays/*
# The validator's npm packages (pinned in package-lock.json here) are installed with
# `npm ci` into $CALLLOG_K8S_TOOLS_DIR (default build/k8s-tools), once: the copy of the
# lock file there says what is installed. Needs node and npm (deploy/install-deps.sh).
# kubectl, when on PATH, renders the kustomizations (`kubectl kustomize`); without it the
# validator's own renderer does. Extra options (--no-kubectl, --dump FILE) go to
# validate.cjs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TOOLS=${CALLLOG_K8S_TOOLS_DIR:-$ROOT/build/k8s-tools}

# Installs the pinned packages into $TOOLS unless that exact lock is installed already.
install_tools() {
    if [ -d "$TOOLS/node_modules/kubernetes-models" ] && cmp -s "$HERE/package-lock.json" "$TOOLS/package-lock.json"; then
        return 0
    fi
    command -v npm >/dev/null || { echo "validate.sh: npm is not installed (deploy/install-deps.sh)" >&2; return 1; }
    cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/"
    (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

main() {
    # The Release and ASan end-to-end runs of tests/run.sh may both get here at once.
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/.install.lock"
    flock 9
    install_tools
    flock -u 9
    local args=() targets=() a
    while [ $# -gt 0 ]; do
        case $1 in
        --dump) args+=("$1" "${2:?--dump needs a file}"); shift ;;
        -*) args+=("$1") ;;
        *) targets+=("$1") ;;
        esac
        shift
    done
    if [ ${#targets[@]} -eq 0 ]; then
        targets=("$ROOT/deploy/k8s")
        for a in "$ROOT"/deploy/k8s/overlays/*/; do
            [ -d "$a" ] && targets+=("${a%/}")
        done
    fi
    NODE_PATH="$TOOLS/node_modules" exec node "$HERE/validate.cjs" "${args[@]}" "${targets[@]}"
}

main "$@"
