#!/usr/bin/env bash
# `make container-check` (part of `make test`): the one-process image as Railway runs it, without
# a container engine (none runs on these machines): the Dockerfile is checked against Railway's
# rules, then the image's own entrypoint (scripts/docker-entrypoint.sh) starts the server the
# way the image does — as root, on a root-owned volume at DATA_DIR, with ENV=prod and the
# secrets the README asks for — and must drop to the service user and answer /health/ready.
# The binary and model are copied where that user can read them, as the image has them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

[[ $(id -u) -eq 0 ]] || die "needs root: the entrypoint starts as root, as in the image"
grep -qiE '^[[:space:]]*VOLUME' Dockerfile && die "the Dockerfile declares VOLUME, which Railway refuses"
grep -qE '^ENTRYPOINT \["mmt-entrypoint"' Dockerfile || die "the Dockerfile's ENTRYPOINT is not the entrypoint script"
grep -qE '^USER ' Dockerfile && die "the Dockerfile switches USER: the entrypoint must start as root to own the volume"
[[ "$(jq -r .deploy.healthcheckPath railway.json)" == /health/ready ]] || die "railway.json's health check is not /health/ready"
echo "Dockerfile: no VOLUME, entrypoint script, starts as root; railway.json checks /health/ready"

model=$(MODEL=tiny.en scripts/model.sh)
cargo build -q --workspace --bin mmt

run_as=nobody # any unprivileged account: the image's is `mmt` (uid 10001)
work=$(mktemp -d)
chmod 0755 "$work"
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/bin" "$work/models" "$work/data/lost+found"
install -m 0755 target/debug/mmt "$work/bin/mmt"
install -m 0644 "$model" "$work/models/ggml-tiny.en.bin"
install -m 0644 "$(MODEL=silero-vad scripts/model.sh)" "$work/models/ggml-silero-vad.bin"
chown -R root:root "$work/data" && chmod 0755 "$work/data" # as a platform mounts a volume

port=$(free_port)
secrets=$("$work/bin/mmt" secrets --encryption 1 | grep -E '^[A-Z_]+=') \
  || die "mmt secrets failed or printed no KEY=value lines"
# shellcheck disable=SC2046
env -i PATH="$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" $(printf '%s\n' "$secrets") \
  ENV=prod LOG_FORMAT=json HOST=127.0.0.1 PORT="$port" DATA_DIR="$work/data" MMT_RUN_AS="$run_as" \
  ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH="$work/models/ggml-tiny.en.bin" \
  WHISPER_VAD=silero WHISPER_VAD_MODEL_PATH="$work/models/ggml-silero-vad.bin" \
  scripts/docker-entrypoint.sh mmt serve >"$work/server.log" 2>&1 &
pid=$!
wait_for_http "http://127.0.0.1:$port/health/ready" 120 "the server started by the entrypoint" "$work/server.log"

passed=0 failed=0
check() { if [[ "$2" == "$3" ]]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1: got '$2', want '$3'"; fi; }
check "GET /health/ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" 200
check "the server runs as $run_as, not root" "$(ps -o user= -p "$pid" | tr -d ' ')" "$run_as"
check "the volume is handed to $run_as" "$(stat -c %U "$work/data")" "$run_as"
check "the database is written on the volume, by $run_as" "$(stat -c %U "$work/data/mmt.db" 2>/dev/null || echo missing)" "$run_as"
check "nothing on the volume belongs to anyone else" "$(find "$work/data" ! -user "$run_as" | wc -l | tr -d ' ')" 0
check "content already on the volume is the service user's too" "$(stat -c %U "$work/data/lost+found")" "$run_as"
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
check "SIGTERM ends the server cleanly" "$status" 0
pid=
((failed == 0)) || { tail -n 30 "$work/server.log"; }
echo "container check: $passed passed, $failed failed"
((failed == 0))
