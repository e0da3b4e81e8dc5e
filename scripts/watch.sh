#!/usr/bin/env bash
# `make watch`: every function under `cargo lambda watch`, rebuilt on change, HTTP functions
# reachable on API Gateway's paths (see [workspace.metadata.lambda.watch.router]).
# Functions share ./data (SQLite + audio), like the one-process demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA_DIR=${DATA_DIR:-./data}
mkdir -p "$DATA_DIR"
if [[ -z "${INTERNAL_JWT_SECRET:-}" ]]; then
  # One secret for all function processes, so a token from `auth` works at `upload`.
  secret_file="$DATA_DIR/dev-jwt-secret"
  [[ -s "$secret_file" ]] || (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret_file")
  INTERNAL_JWT_SECRET=$(cat "$secret_file")
  export INTERNAL_JWT_SECRET
fi
echo "watch: functions on http://localhost:${WATCH_PORT:-9000} (e.g. curl localhost:${WATCH_PORT:-9000}/health/live)"
exec cargo lambda watch --invoke-port "${WATCH_PORT:-9000}"
