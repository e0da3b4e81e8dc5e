#!/usr/bin/env bash
# The Lambda functions as arm64 zips for provided.al2023: target/lambda/<function>/bootstrap.zip
# (what infra/ deploys). cargo-lambda cross-compiles and links with zig (both from `make setup`).
# Profile `lambda-zip` (size-optimised, fat LTO); no default features, so the embedded SQLite
# store of the dev loop stays out of the zips.
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=(health demo-status auth upload transcriptions docs transcribe retention-sweep ehr-push)
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu
packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
cargo lambda build --profile lambda-zip --arm64 --output-format zip --no-default-features "${packages[@]}"
for f in "${FUNCTIONS[@]}"; do
  printf '%-16s %8s bytes\n' "$f" "$(stat -c %s "target/lambda/$f/bootstrap.zip")"
done
