#!/usr/bin/env bash
# `make invoke-<function> [EVENT=events/file.json]`: invokes a function running under
# `make watch` with a fixture. Fixtures that need a token get a fresh guest token; `__ID__`
# is replaced by $ID.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
fn=$1
declare -A default_event=(
  [health]=events/apigw-health-live.json [demo-status]=events/apigw-demo-status.json
  [auth]=events/apigw-auth-guest.json [upload]=events/apigw-upload.json
  [transcriptions]=events/apigw-list.json [docs]=events/apigw-openapi.json
  [transcribe]=events/sqs-transcribe.json [retention-sweep]=events/eventbridge-retention.json
  [ehr-push]=events/apigw-ehr-status.json
)
event=${2:-${default_event[$fn]:-}}
[[ -n "$event" ]] || { echo "unknown function $fn" >&2; exit 2; }
port=${WATCH_PORT:-9000}
data=$(cat "$event")
if grep -q __TOKEN__ <<<"$data"; then
  answer=$(cargo lambda invoke auth --invoke-port "$port" --data-file events/apigw-auth-guest.json) \
    || die "the auth function did not answer on port $port: is 'make watch' running?"
  token=$(json_field "$(json_field "$answer" .body "auth")" .access_token "guest sign-in")
  data=${data//__TOKEN__/$token}
fi
data=${data//__ID__/${ID:-}}
cargo lambda invoke "$fn" --invoke-port "$port" --data-ascii "$data"
echo
