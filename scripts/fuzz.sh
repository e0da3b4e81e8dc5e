#!/usr/bin/env bash
# A short coverage-guided fuzz run of every target under fuzz/ (FUZZ_SECONDS each, default 30).
# cargo fuzz wants nightly flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1
# lets it accept them. No sanitizer runtime is needed: the targets assert what must hold
# (no panic, no 5xx, no forged token accepted, nothing left behind), and Rust's own checks
# catch memory errors in safe code.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

seconds=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"audio_sniff audio_decode token_verify sealed_values upload_multipart"}
export RUSTC_BOOTSTRAP=1

# Seeds: a real WAV upload and a real token shape, so the fuzzer starts past the first checks.
mkdir -p fuzz/corpus/upload_multipart fuzz/corpus/audio_sniff fuzz/corpus/token_verify fuzz/corpus/audio_decode
# One short recording in every container MMT accepts, each behind the byte that makes the
# target pass its extension as the hint (the order of HINTS in audio_decode.rs).
seed_dir=$(mktemp -d)
index=1
for spec in "wav:pcm_s16le" "flac:flac" "mp3:libmp3lame" "m4a:aac" "ogg:libvorbis" "opus:libopus" "webm:libopus"; do
  ext=${spec%%:*} codec=${spec#*:}
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "sine=frequency=440:duration=0.3:sample_rate=48000" \
    -ac 2 -c:a "$codec" "$seed_dir/seed.$ext"
  { printf "\\$(printf '%03o' "$index")"; cat "$seed_dir/seed.$ext"; } >"fuzz/corpus/audio_decode/$ext"
  index=$((index + 1))
done
rm -rf "$seed_dir"
python3 - <<'PY'
import io, math, struct, wave
buf = io.BytesIO()
with wave.open(buf, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(800)))
wav = buf.getvalue()
open("fuzz/corpus/audio_sniff/wav", "wb").write(wav[:64])
body = (b"--X\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n"
        b"--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        b"Content-Type: audio/wav\r\n\r\n" + wav + b"\r\n--X--\r\n")
open("fuzz/corpus/upload_multipart/wav", "wb").write(b"\x00" + body)
open("fuzz/corpus/token_verify/jwt", "w").write(
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTAwMDAwMDAwMDAwMCJ9.eyJzdWIiOiJndWVzdDp4In0.c2ln")
PY

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $targets; do
  echo "==> fuzzing $target for ${seconds}s"
  # The decoder's memory must stay bounded whatever a header claims (its target also fails
  # any single allocation over 256 MB, as the decoder child's limit does).
  limits=(-rss_limit_mb=4096)
  [ "$target" = audio_decode ] && limits=(-rss_limit_mb=1024)
  if ! cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" "${limits[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E "^#[0-9]+ +DONE|^Done [0-9]+ runs" "$log" | tail -n 1
done
echo "fuzz: every target ran ${seconds}s without a failure"
