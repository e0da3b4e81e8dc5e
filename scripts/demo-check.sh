#!/usr/bin/env bash
# Starts `make demo` on a scratch data directory, runs the README walk-throughs (an upload, and
# a resumable upload with a connection cut) against it,
# and stops it with SIGTERM (checking it shuts down cleanly).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
port=${DEMO_CHECK_PORT:-18080}
export PORT=$port DATA_DIR="$work/data"
unset OPENAI_API_KEY
setsid scripts/demo.sh >"$work/demo.log" 2>&1 &
demo=$!
trap 'kill -TERM -- -$demo 2>/dev/null || true; rm -rf "$work"' EXIT
# The first start builds the binary: allow for a cold build on two cores.
wait_for_http "http://127.0.0.1:$port/health/ready" "${DEMO_START_SECONDS:-1800}" "the demo (make demo)" "$work/demo.log"
if BASE="http://127.0.0.1:$port" scripts/walkthrough.sh \
   && BASE="http://127.0.0.1:$port" scripts/resumable-walkthrough.sh; then
  result=0
else
  result=1
  cat "$work/demo.log"
fi
# The post-deploy smoke test must refuse a deployment that is in demo mode.
if scripts/deploy-smoke.sh "http://127.0.0.1:$port" >/dev/null 2>&1; then
  echo "deploy-smoke: passed a demo-mode server; it must fail it" >&2
  result=1
else
  echo "deploy-smoke: refuses a demo-mode server, as it should"
fi
kill -TERM -- -"$demo"
wait "$demo" || true
echo "demo walk-through: $((1 - result)) passed, $result failed"
exit "$result"
