#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (each storage and
# HTTP scenario on SQLite and on PostgreSQL), then the real-browser smoke
# test. Installs what it needs that a fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# PostgreSQL-backed tests need a server; start the local cluster if it is
# installed but stopped.
if command -v pg_isready >/dev/null && ! pg_isready -q -d "$TEST_DATABASE_URL"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting local PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -d "$TEST_DATABASE_URL" && break; sleep 1; done
  fi
fi

cargo test --locked

target_dir="${CARGO_TARGET_DIR:-target}"
PLUGBOARD_BIN="$target_dir/debug/plugboard" bash tests/browser/run.sh
