#!/usr/bin/env bash
# `make demo`: the one-process server on embedded defaults (SQLite + files under ./data).
#
# With no OPENAI_API_KEY in the environment, the cloud engine points at the bundled
# OpenAI-contract server, so the whole flow (upload -> queue -> engine -> transcript) runs
# with no external service. That server does not recognise speech: its transcript describes
# the audio it received. Set OPENAI_API_KEY (and optionally OPENAI_BASE_URL) for real text.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT=${PORT:-8080}
export DATA_DIR=${DATA_DIR:-./data}
export DEMO_MODE=${DEMO_MODE:-true}
mkdir -p "$DATA_DIR"

cargo build -q -p mmt-core --bin mmt
cargo build -q -p mmt-testkit --bin openai-contract-server

# Tokens survive restarts of the demo: keep its signing secret beside its data (never in git).
if [[ -z "${INTERNAL_JWT_SECRET:-}" ]]; then
  secret_file="$DATA_DIR/dev-jwt-secret"
  [[ -s "$secret_file" ]] || (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret_file")
  INTERNAL_JWT_SECRET=$(cat "$secret_file")
  export INTERNAL_JWT_SECRET
fi

mock_pid=""
cleanup() { [[ -n "$mock_pid" ]] && kill "$mock_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [[ -z "${OPENAI_API_KEY:-}" ]]; then
  mock_port=${MOCK_OPENAI_PORT:-8090}
  PORT="$mock_port" OPENAI_API_KEY=sk-local-demo target/debug/openai-contract-server >"$DATA_DIR/openai-contract-server.log" 2>&1 &
  mock_pid=$!
  export ENABLE_CLOUD_TRANSCRIPTION=true OPENAI_API_KEY=sk-local-demo OPENAI_BASE_URL="http://127.0.0.1:$mock_port/v1"
  echo "demo: no OPENAI_API_KEY set; the cloud engine uses the local OpenAI-contract server on port $mock_port"
  echo "demo: (it answers with a description of the audio, not recognised speech)"
else
  export ENABLE_CLOUD_TRANSCRIPTION=${ENABLE_CLOUD_TRANSCRIPTION:-true}
fi

echo "demo: MMT on http://localhost:$PORT  (API docs: http://localhost:$PORT/docs)"
target/debug/mmt serve &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid; cleanup' INT TERM
wait $server_pid
