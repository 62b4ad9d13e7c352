#!/usr/bin/env bash
# Installs what Tongxin needs on a fresh Debian machine.
#   bootstrap.sh venv    -> .venv with tongxin and its test extra (idempotent)
#   bootstrap.sh system  -> Debian packages the tests use, when missing (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local want
    want=$(sha256sum pyproject.toml | cut -c1-16)
    if [ "$(cat "$VENV/.tongxin-deps" 2>/dev/null)" != "$want" ]; then
        echo "==> installing tongxin and its test extra into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[test]"
        echo "$want" > "$VENV/.tongxin-deps"
    fi
}

system() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v nft >/dev/null || missing+=(nftables)
    command -v tc >/dev/null || missing+=(iproute2)
    command -v turnserver >/dev/null || missing+=(coturn)
    command -v promtool >/dev/null || missing+=(prometheus)
    fc-list 2>/dev/null | grep -qi 'wenquanyi\|noto.*cjk' || missing+=(fonts-wqy-zenhei)
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "==> not root: cannot install ${missing[*]}; tests that need them will skip" >&2
        return 0
    fi
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts these services on install; tests start their own on free ports.
    for svc in redis-server coturn prometheus; do
        (command -v systemctl >/dev/null && systemctl stop "$svc") >/dev/null 2>&1 || true
        pkill -x "${svc%-server}" >/dev/null 2>&1 || true
    done
    pkill -x redis-server >/dev/null 2>&1 || true
    pkill -x turnserver >/dev/null 2>&1 || true
}

case "${1:-}" in
    venv) venv ;;
    system) system ;;
    *) echo "usage: $0 venv|system" >&2; exit 2 ;;
esac
