#!/usr/bin/env bash
# The README's resumable-upload walk-through with curl, against a running server: speech at
# 48 kHz stereo repeated to UPLOAD_MB (default 20; the server's MAX_UPLOAD_BYTES must allow it),
# created, sent in parts with part 2's connection dropped half-way (half the bytes sent, then
# curl gives up), resumed by sending what is missing, completed, and transcribed.
#   BASE=http://localhost:8080 UPLOAD_MB=300 scripts/resumable-walkthrough.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
BASE=${BASE:-http://localhost:8080}
UPLOAD_MB=${UPLOAD_MB:-20}
SPOKEN="The patient reports a dry cough for three weeks and mild fever at night."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

espeak-ng -v en-us -s 140 -w "$work/spoken.wav" "$SPOKEN"
sox "$work/spoken.wav" -r 48000 -c 2 -b 16 "$work/once.wav" pad 0 0.5
once_bytes=$(stat -c %s "$work/once.wav")
repeats=$(( UPLOAD_MB * 1000000 / once_bytes ))
sox "$work/once.wav" "$work/visit.wav" repeat "$repeats"
FILE=$work/visit.wav
size=$(stat -c %s "$FILE")
echo "recording: $size bytes, the sentence $((repeats + 1)) times"

TOKEN=$(guest_token "$BASE")
auth=(-H "Authorization: Bearer $TOKEN")
json=(-H 'Content-Type: application/json')

# 1. Create it.
UP=$(curl -sS -X POST "$BASE/v1/uploads" "${auth[@]}" "${json[@]}" \
  -d "{\"filename\":\"visit.wav\",\"content_type\":\"audio/wav\",\"size\":$size}") || die "POST /v1/uploads failed"
ID=$(json_field "$UP" .id "the new upload")
PART_SIZE=$(json_field "$UP" .part_size "the new upload")
echo "upload $ID: $(jq -r .part_count <<<"$UP") parts of $PART_SIZE bytes"

# 2. Send what is missing; on the first pass part 2's connection is cut half-way.
send_missing() {
  local cut=$1 parts part n url length
  parts=$(curl -sSf -X POST "$BASE/v1/uploads/$ID/parts" "${auth[@]}" "${json[@]}" -d '{}') || die "POST /v1/uploads/$ID/parts failed"
  jq -c '.parts[]' <<<"$parts" | while read -r part; do
    n=$(jq -r .number <<<"$part"); url=$(jq -r .url <<<"$part"); length=$(jq -r .length <<<"$part")
    [[ $url == /* ]] && url=$BASE$url
    headers=()
    while read -r h; do [[ -n $h ]] && headers+=(-H "$h"); done < <(jq -r '.headers | to_entries[] | "\(.key): \(.value)"' <<<"$part")
    dd if="$FILE" bs="$PART_SIZE" skip=$((n - 1)) count=1 status=none >"$work/part"
    if [[ $cut == yes && $n == 2 ]]; then
      # Half the part at most, then the connection drops.
      head -c $((length / 2)) "$work/part" >"$work/half"
      if curl -sf -X PUT "${headers[@]}" -H "Content-Length: $length" --data-binary @"$work/half" \
           --max-time 3 "$url" -o /dev/null 2>/dev/null; then
        die "a part cut half-way was accepted"
      fi
      echo "part $n: connection cut after $((length / 2)) of $length bytes"
      continue
    fi
    curl -sSf -X PUT "${headers[@]}" --data-binary @"$work/part" "$url" -o /dev/null || die "part $n failed"
  done
}
send_missing yes

# 3. What arrived, and what is missing.
STATE=$(curl -sSf "$BASE/v1/uploads/$ID" "${auth[@]}") || die "GET /v1/uploads/$ID failed"
echo "after the cut: $(jq -c '{received_bytes, missing}' <<<"$STATE")"
[[ $(jq -c .missing <<<"$STATE") == "[2]" ]] || die "expected part 2 to be missing, got $(jq -c .missing <<<"$STATE")"
code=$(curl -s -o "$work/refused" -w '%{http_code}' -X POST "$BASE/v1/uploads/$ID/complete" "${auth[@]}")
[[ $code == 409 ]] || die "completing with a part missing answered $code"
send_missing no
STATE=$(curl -sSf "$BASE/v1/uploads/$ID" "${auth[@]}")
echo "resumed: $(jq -c '{received_bytes, missing}' <<<"$STATE")"
[[ $(jq -r .received_bytes <<<"$STATE") == "$size" ]] || die "not every byte arrived"

# 4. Complete, then follow the transcription.
DONE=$(curl -sS -X POST "$BASE/v1/uploads/$ID/complete" "${auth[@]}") || die "complete failed"
[[ $(jq -r .status <<<"$DONE") == queued ]] || die "complete answered $DONE"
started=$(date +%s)
for _ in $(seq 1 1800); do
  RECORD=$(curl -sSf "$BASE/v1/transcriptions/$ID" "${auth[@]}") || die "GET /v1/transcriptions/$ID failed"
  STATUS=$(jq -r .status <<<"$RECORD")
  [[ $STATUS == completed || $STATUS == failed ]] && break
  sleep 1
done
[[ $STATUS == completed ]] || die "the transcription ended $STATUS: $(jq -r .error <<<"$RECORD")"
# The whole recording was transcribed: segments run to its end, and the words are there.
covered=$(jq -r '[.segments[-1].end, .duration_s] | @tsv' <<<"$RECORD")
read -r last_end duration <<<"$covered"
heard=$(jq -r .text <<<"$RECORD" | grep -oi "weeks" | wc -l)
echo "transcribed in $(( $(date +%s) - started )) s: segments to ${last_end} s of ${duration} s; \"weeks\" heard $heard times for $((repeats + 1)) sentences"
# 48 kHz stereo 16-bit: 192,000 bytes a second after the 44-byte header.
python3 -c "import sys; sys.exit(0 if abs(float('$duration') - ($size - 44) / 192000) < 0.5 else 1)" \
  || die "the engine decoded ${duration} s of a $(( (size - 44) / 192000 )) s recording"
python3 -c "import sys; sys.exit(0 if float('$last_end') >= 0.9 * float('$duration') else 1)" \
  || die "the transcript stops at ${last_end} s of ${duration} s"
(( heard * 2 >= repeats + 1 )) || die "too few of the sentences were heard"
echo "resumable walk-through: passed"
