#!/usr/bin/env bash
# The README's curl walk-through, as a script: guest token -> upload -> poll -> transcript.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-http://localhost:8080}

TOKEN=$(curl -sf -X POST "$BASE/auth/guest" | jq -r .access_token)

ID=$(curl -sf -H "Authorization: Bearer $TOKEN" \
  -F file=@events/sample-visit.wav -F language=en \
  "$BASE/v1/transcriptions" | jq -r .id)
echo "uploaded: $ID"

for _ in $(seq 1 120); do
  STATUS=$(curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID" | jq -r .status)
  echo "status: $STATUS"
  [[ "$STATUS" == completed || "$STATUS" == failed ]] && break
  sleep 1
done

curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID" | jq '{status, text, error, duration_s}'
curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID/transcript?format=srt"
[[ "$STATUS" == completed ]]
