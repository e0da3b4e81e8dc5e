#!/usr/bin/env bash
# `make large-upload-check`: a recording of UPLOAD_MB (default 300) MB through the resumable
# upload API with a connection cut mid-way, resumed, completed and transcribed by local Whisper:
#   1. on the one-process server (`make demo`), with the README's curl steps;
#   2. on S3 (moto_server), through the API test that also runs, at 20 MB, in `make test`.
# Not part of `make test`: the transcription of half an hour of audio alone takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export UPLOAD_MB=${UPLOAD_MB:-300}
export MAX_UPLOAD_BYTES=$(( (UPLOAD_MB + 10) * 1000000 ))
started=$(date +%s)
scripts/demo-check.sh
echo "local server: $(( $(date +%s) - started )) s"
started=$(date +%s)
MMT_RESUMABLE_UPLOAD_MB=$UPLOAD_MB cargo test --workspace --test api -- --exact \
  aws_pipeline::a_recording_in_presigned_s3_parts_survives_a_cut_connection_and_is_transcribed
echo "S3 emulator: $(( $(date +%s) - started )) s"
