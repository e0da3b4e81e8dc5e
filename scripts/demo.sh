#!/usr/bin/env bash
# `make demo`: the one-process server on embedded defaults (SQLite + files under ./data) with
# the local Whisper engine (tiny.en by default; MODEL=base for the multilingual base model),
# quantized to q4_0 (MODEL_QUANT=q8_0|q5_1|q5_0, or MODEL_QUANT= for the float16 original:
# `make bench` compares them).
# Set OPENAI_API_KEY (and optionally OPENAI_BASE_URL) to enable the cloud engine as well.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT=${PORT:-8080}
export DATA_DIR=${DATA_DIR:-./data}
export DEMO_MODE=${DEMO_MODE:-true}
mkdir -p "$DATA_DIR"

model=$(MODEL=${MODEL:-tiny.en} QUANT=${MODEL_QUANT-q4_0} scripts/model.sh)
export ENABLE_LOCAL_TRANSCRIPTION=${ENABLE_LOCAL_TRANSCRIPTION:-true}
export WHISPER_MODEL_PATH=${WHISPER_MODEL_PATH:-$model}
if [[ -n "${OPENAI_API_KEY:-}" ]]; then
  export ENABLE_CLOUD_TRANSCRIPTION=${ENABLE_CLOUD_TRANSCRIPTION:-true}
fi

# `--workspace`: the features every member asks for, as `cargo test --workspace` builds them,
# so the binary reuses those artifacts instead of rebuilding every dependency.
cargo build -q --workspace --bin mmt

# Tokens survive restarts of the demo: keep its signing secret beside its data (never in git).
if [[ -z "${INTERNAL_JWT_SECRET:-}" ]]; then
  secret_file="$DATA_DIR/dev-jwt-secret"
  [[ -s "$secret_file" ]] || (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret_file")
  INTERNAL_JWT_SECRET=$(cat "$secret_file")
  export INTERNAL_JWT_SECRET
fi

echo "demo: MMT on http://localhost:$PORT with $(basename "$WHISPER_MODEL_PATH")  (API docs: http://localhost:$PORT/docs)"
exec target/debug/mmt serve
