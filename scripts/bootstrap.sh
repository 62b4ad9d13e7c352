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
    # Debian starts redis-server, coturn and prometheus on install; the tests start their own
    # on free ports. policy-rc.d (Debian's switch for that) keeps them from starting, so no
    # process is ever stopped here: a machine's own Redis or coturn is left alone.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        [ "$own_policy" = 1 ] && rm -f "$policy"; return 1; }
    [ "$own_policy" = 1 ] && rm -f "$policy"
    return 0
}

case "${1:-}" in
    venv) venv ;;
    system) system ;;
    *) echo "usage: $0 venv|system" >&2; exit 2 ;;
esac
