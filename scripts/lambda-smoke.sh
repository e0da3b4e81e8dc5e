#!/usr/bin/env bash
# Runs the Lambda functions under `cargo lambda watch` (the Lambda runtime emulator) and invokes
# each one with its events/ fixture through `cargo lambda invoke`, checking the responses.
# The cloud engine points at the local OpenAI-contract server; storage is a temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PORT=${LAMBDA_SMOKE_PORT:-9300}
MOCK_PORT=${LAMBDA_SMOKE_MOCK_PORT:-9390}
work=$(mktemp -d)
passed=0
failed=0
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  if [[ -n "${KEEP_WORK:-}" ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

check() { # name, got, want
  if [[ "$2" == "$3" ]]; then
    passed=$((passed + 1)); echo "ok   $1"
  else
    failed=$((failed + 1)); echo "FAIL $1: got '$2', want '$3'"
  fi
}

# `--workspace`: the features every member asks for, as `cargo test --workspace` builds them,
# so the binaries reuse those artifacts instead of rebuilding every dependency.
cargo build -q --workspace --bin openai-contract-server --bin mmt
setsid env PORT="$MOCK_PORT" OPENAI_API_KEY=sk-smoke target/debug/openai-contract-server >"$work/mock.log" 2>&1 &
pids+=($!)

hash=$(printf 'fixture-password-123\n' | target/debug/mmt hash-password) || die "mmt hash-password failed"
# The functions inherit the emulator's environment (its --env-var flag splits on the commas
# inside argon2 hashes).
export ENV=dev DEMO_MODE=false DATA_DIR="$work/data" ALLOW_LOCAL_LOGIN=true LOCAL_LOGIN_USERS="clinician:$hash" \
  ENABLE_CLOUD_TRANSCRIPTION=true OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" OPENAI_API_KEY=sk-smoke \
  LOG_FORMAT=json INTERNAL_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
  ADMIN_API_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
setsid cargo lambda watch --ignore-changes --invoke-port "$PORT" >"$work/watch.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 120))
until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
  ((SECONDS < deadline)) || { tail -n 30 "$work/watch.log" >&2; die "cargo lambda watch did not listen on $PORT within 120s"; }
  sleep 0.3
done

TOKEN=""
ID=""
invoke() { # function, fixture -> response JSON on stdout
  local data
  data=$(sed -e "s/__TOKEN__/$TOKEN/g" -e "s/__ID__/$ID/g" "events/$2")
  cargo lambda invoke "$1" --invoke-port "$PORT" --data-ascii "$data" 2>>"$work/invoke.log"
}
status_of() { jq -r '.statusCode' <<<"$1"; }
body_of() { jq -r 'if .isBase64Encoded then (.body | @base64d) else .body end' <<<"$1"; }

for case in "health apigw-health-live.json 200" "health apigw-health-ready.json 200" \
            "demo-status apigw-demo-status.json 200" "docs apigw-openapi.json 200" \
            "docs apigw-docs.json 200" "auth apigw-auth-login.json 200"; do
  read -r fn fixture want <<<"$case"
  check "$fn $fixture" "$(status_of "$(invoke "$fn" "$fixture")")" "$want"
done

out=$(invoke auth apigw-auth-guest.json)
check "auth apigw-auth-guest.json" "$(status_of "$out")" 201
TOKEN=$(body_of "$out" | jq -r .access_token)

out=$(invoke upload apigw-upload.json)
check "upload apigw-upload.json" "$(status_of "$out")" 202
ID=$(body_of "$out" | jq -r .id)

out=$(invoke transcriptions apigw-list.json)
check "transcriptions apigw-list.json" "$(status_of "$out")" 200
check "listing holds the upload" "$(body_of "$out" | jq -r '.items[0].id')" "$ID"

# A resumable upload of the fixture's 8,044 bytes: one part, this server's own part URL.
out=$(invoke upload apigw-create-upload.json)
check "upload apigw-create-upload.json" "$(status_of "$out")" 201
check "a resumable upload of one part, awaiting it" "$(body_of "$out" | jq -c '[.status, .part_count, .missing]')" '["awaiting_upload",1,[1]]'

sqs=$(sed -e "s/0193a5f0-0000-7000-8000-000000000001/$ID/" events/sqs-transcribe.json)
out=$(cargo lambda invoke transcribe --invoke-port "$PORT" --data-ascii "$sqs" 2>>"$work/invoke.log")
check "transcribe sqs-transcribe.json (no batch item failures)" "$(jq -c '.batchItemFailures' <<<"$out")" "[]"

out=$(invoke transcriptions apigw-get.json)
check "transcriptions apigw-get.json" "$(status_of "$out")" 200
check "record completed after the SQS invoke" "$(body_of "$out" | jq -r .status)" completed

out=$(invoke ehr-push apigw-ehr-status.json)
check "ehr-push apigw-ehr-status.json without EHR_TARGET" "$(status_of "$out")" 501
check "ehr-push says what is missing" "$(body_of "$out" | jq -r .error.code)" ehr_not_configured

out=$(invoke transcriptions apigw-transcript.json)
check "transcriptions apigw-transcript.json" "$(status_of "$out")" 200
check "transcript is SubRip" "$(jq -r '.headers["content-type"]' <<<"$out")" "application/x-subrip; charset=utf-8"

check "transcriptions apigw-delete.json" "$(status_of "$(invoke transcriptions apigw-delete.json)")" 204

for fixture in eventbridge-retention.json scheduler-retention.json; do
  out=$(cargo lambda invoke retention-sweep --invoke-port "$PORT" --data-file "events/$fixture" 2>>"$work/invoke.log")
  check "retention-sweep $fixture" "$(jq -r .retention_days <<<"$out")" 30
done

# The watch router serves the functions on API Gateway's paths.
check "GET /health/live through the watch router" \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/live")" 200
check "GET /v1/transcriptions without a token through the router" \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/transcriptions")" 401

# The post-deploy smoke test passes a live, non-demo deployment.
if SMOKE_ADMIN_API_KEY=$ADMIN_API_KEY scripts/deploy-smoke.sh "http://127.0.0.1:$PORT" >"$work/deploy-smoke.log" 2>&1; then
  check "deploy-smoke against the functions" ok ok
else
  check "deploy-smoke against the functions ($(tail -n 1 "$work/deploy-smoke.log"))" failed ok
fi

# The functions' log as CloudWatch reads it: valid EMF lines, and log lines that name the
# function and the invocation's request id.
if emf=$(python3 scripts/check-lambda-log.py "$work/watch.log"); then
  check "$emf" ok ok
else
  check "the functions' log: $emf" failed ok
fi

if ((failed)); then
  echo "--- watch log ---"; tail -n 40 "$work/watch.log"
  echo "--- invoke log ---"; tail -n 20 "$work/invoke.log"
fi
echo "lambda smoke: $passed passed, $failed failed"
((failed == 0))
