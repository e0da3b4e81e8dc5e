#!/usr/bin/env bash
# The README's curl walk-through, as a script: speech from espeak-ng -> guest token -> upload
# -> poll (with progress) -> transcript; then the word error rate against what was spoken.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
BASE=${BASE:-http://localhost:8080}
SPOKEN="The patient has had a mild headache for two days. She should drink plenty of water and rest at home."
WAV=$(mktemp --suffix=.wav)
trap 'rm -f "$WAV"' EXIT

espeak-ng -v en-us -s 130 -w "$WAV" "$SPOKEN"

TOKEN=$(guest_token "$BASE")

ANSWER=$(curl -sS -H "Authorization: Bearer $TOKEN" -F "file=@$WAV" -F language=en "$BASE/v1/transcriptions") \
  || die "the upload to $BASE/v1/transcriptions failed"
ID=$(json_field "$ANSWER" .id "the upload")
echo "uploaded: $ID"

for _ in $(seq 1 300); do
  RECORD=$(curl -sSf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID") || die "GET /v1/transcriptions/$ID failed"
  STATUS=$(jq -r .status <<<"$RECORD")
  echo "status: $STATUS ($(jq -r .progress <<<"$RECORD")%)"
  [[ "$STATUS" == completed || "$STATUS" == failed ]] && break
  sleep 1
done

curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID" | jq '{status, text, error, duration_s, engine}'
curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/v1/transcriptions/$ID/transcript?format=srt"
[[ "$STATUS" == completed ]]
TEXT=$(json_field "$RECORD" .text "the completed record")
echo "word error rate: $(python3 scripts/wer.py "$SPOKEN" "$TEXT")"
python3 scripts/wer.py "$SPOKEN" "$TEXT" "${MAX_WER:-0.10}" >/dev/null
