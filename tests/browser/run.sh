#!/usr/bin/env bash
# Real-browser smoke test: Debian's Chromium driven by playwright-core
# (a test tool can't download its own browser here). Installs both when
# missing, then runs smoke.mjs and admin.mjs against the binary in $PLUGBOARD_BIN.
set -euo pipefail
: "${PLUGBOARD_BIN:?set PLUGBOARD_BIN to the plugboard binary}"
PLUGBOARD_BIN="$(cd "$(dirname "$PLUGBOARD_BIN")" && pwd)/$(basename "$PLUGBOARD_BIN")"
export PLUGBOARD_BIN
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  else
    echo "browser test needs /usr/bin/chromium (apt-get install chromium)" >&2
    exit 1
  fi
fi

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

node smoke.mjs
node admin.mjs
