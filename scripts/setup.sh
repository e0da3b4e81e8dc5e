#!/usr/bin/env bash
# One idempotent set-up for every README command: system packages, Python tools, and a
# check of the Rust toolchain. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: cmake/clang/libclang for whisper.cpp, libopus for browser audio. Tests and demo:
# espeak-ng (speech), ffmpeg (every container and codec), sox, wrk, jq, curl.
# python3-venv: checkov gets its own virtual environment (its pins clash with moto's).
APT_PACKAGES=(curl jq procps time wrk espeak-ng sox ffmpeg cmake clang libclang-dev libopus-dev pkg-config python3-venv zip chromium)
# name==version: pinned so a new release cannot change what the tests see (moto before 5.2.5
# answers CompleteMultipartUpload with an XML root the AWS SDK rejects).
PIP_PACKAGES=("cargo-lambda==1.9.2" "openai==3.57.0" "moto[server]==5.2.5")

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$pkg")
done
if ((${#missing_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
  else
    SUDO=
  fi
  log "installing system packages: ${missing_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi

for spec in "${PIP_PACKAGES[@]}"; do
  name=${spec%%[*}; name=${name%%==*}; version=${spec##*==}
  installed=$(python3 -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
  if [[ "$installed" != "$version" ]]; then
    log "installing $spec from PyPI"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$spec"
  fi
done

# checkov (Terraform policy checks) in its own venv; `scripts/infra-check.sh` finds it there.
CHECKOV_VERSION=3.2.533
CHECKOV_VENV=${MMT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmt-tools}/checkov
if [[ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
  log "installing checkov==$CHECKOV_VERSION into $CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

# Validators the tests run on what MMT emits: OpenAPI (OpenEMR's published description),
# Prometheus text (the official client's parser)
# and FHIR R4 (fhir.resources 6.1.x models FHIR 4.0.1 and needs pydantic 1).
VALIDATORS="pyyaml==6.0.2 openapi-schema-validator==0.6.3 fhir.resources==6.1.0 pydantic[email]==1.10.21 prometheus-client==0.21.1"
VALIDATORS_VENV=${MMT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmt-tools}/validators
if [[ "$(cat "$VALIDATORS_VENV/.installed" 2>/dev/null)" != "$VALIDATORS" ]]; then
  log "installing the OpenAPI and FHIR validators into $VALIDATORS_VENV"
  python3 -m venv "$VALIDATORS_VENV"
  # shellcheck disable=SC2086
  "$VALIDATORS_VENV/bin/python" -m pip install -q --disable-pip-version-check $VALIDATORS
  echo "$VALIDATORS" >"$VALIDATORS_VENV/.installed"
fi

# playwright-core for the browser tests (it drives Debian's chromium; it downloads nothing).
if [[ ! -d web/tests/node_modules/playwright-core ]]; then
  log "installing playwright-core for the browser tests"
  npm ci --prefix web/tests --no-audit --no-fund >/dev/null
fi

for component in "cargo fmt" "cargo clippy"; do
  if ! $component --version >/dev/null 2>&1; then
    echo "error: '$component' is missing: install the rustfmt and clippy components of the Rust toolchain" >&2
    exit 1
  fi
done
log "ready"
