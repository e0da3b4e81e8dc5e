#!/usr/bin/env bash
# `make fresh-check`: the README's test command on a machine that has never seen MMT.
#   1. A bare Debian 12 root filesystem (`debootstrap --variant=minbase bookworm`) with only
#      ca-certificates, curl, git and build-essential added — built once and cached as a tarball.
#   2. A fresh copy of it per run, the host's Rust toolchain bound in read-only (rustup's
#      toolchains; no cargo registry, no cargo-installed tools, no Python or npm packages).
#   3. A clone of this repository's HEAD inside it, then `make test` there, as root, as CI runs it.
# Needs root (chroot, mounts) and the Debian mirror. Not part of `make test`: it takes as long as
# a whole CI run plus the package installs.
#   FRESH_KEEP=1          keep the root filesystem afterwards (its path is printed)
#   FRESH_COMMAND=...     run something else than `make test` in the clone
#   DEBIAN_MIRROR=...     the mirror debootstrap uses (default deb.debian.org)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '\033[1m[fresh-check]\033[0m %s\n' "$*"; }
fail() { printf '[fresh-check] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot and bind mounts)"
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
rustup_bin=$(command -v rustup) || fail "rustup is not on PATH: the host's Rust toolchain is bound in from rustup"
[[ -d "$rustup_home/toolchains" ]] || fail "no toolchains under $rustup_home"
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  log "warning: uncommitted changes are not part of the check (it clones HEAD, $(git rev-parse --short HEAD))"
fi

cache=${MMT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmt-tools}/fresh-check
base=$cache/debian12-minbase.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

if [[ ! -s "$base" ]]; then
  build=$cache/build
  rm -rf "$build"
  log "debootstrap --variant=minbase bookworm (once; cached in $base)"
  debootstrap --variant=minbase bookworm "$build" "$mirror"
  cp /etc/resolv.conf "$build/etc/resolv.conf"
  log "adding ca-certificates curl git build-essential"
  chroot "$build" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl git build-essential && apt-get clean'
  tar -C "$build" -cf "$base.partial" .
  mv "$base.partial" "$base"
  rm -rf "$build"
fi

root=$(mktemp -d "${FRESH_ROOT_PARENT:-/var/tmp}/mmt-fresh.XXXXXX")
cleanup() {
  if [[ "${FRESH_KEEP:-0}" == 1 ]]; then log "kept $root"; else rm -rf "$root"; fi
}
trap cleanup EXIT
log "unpacking a fresh root filesystem in $root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The network this machine is on: its local certificate authorities (a TLS-inspecting egress
# proxy here) and the variables that point clients at them, as every machine here has them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" /usr/sbin/update-ca-certificates >/dev/null
fi
mapfile -t network_env < <(env | grep -E '^(SSL_CERT_FILE|SSL_CERT_DIR|PIP_CERT|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|NODE_EXTRA_CA_CERTS|GIT_SSL_CAINFO|AWS_CA_BUNDLE|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)=' || true)

# The toolchain as a developer machine has it: rustup's proxies on PATH, its toolchains (read-only).
# Bound at the host's own path: rustup's toolchain links (1.95.0 -> stable here) are absolute.
mkdir -p "$root$rustup_home" "$root/root/.cargo/bin" "$root/src"
cp "$rustup_bin" "$root/root/.cargo/bin/rustup"
for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
  ln -sf rustup "$root/root/.cargo/bin/$proxy"
done

command=${FRESH_COMMAND:-make test}
log "running '$command' in a clone of $(git rev-parse --short HEAD) (log: $root.log)"
started=$(date +%s)
# A private mount namespace: every mount below disappears with it, whatever happens.
set +e
unshare --mount --propagation private bash -euo pipefail -c '
  root=$1 rustup_home=$2 repo=$3 command=$4
  shift 4
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o size=2g tmpfs "$root/dev/shm"
  mount --bind "$rustup_home" "$root$rustup_home"
  mount -o remount,bind,ro "$root$rustup_home"
  mount --bind "$repo" "$root/src"
  mount -o remount,bind,ro "$root/src"
  exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb CI=true LANG=C.UTF-8 "$@" \
    RUSTUP_HOME="$rustup_home" PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "git config --global --add safe.directory /src && git clone -q /src /work/mmt && cd /work/mmt && $command"
' fresh-check "$root" "$rustup_home" "$repo" "$command" "${network_env[@]}" 2>&1 | tee "$root.log"
status=${PIPESTATUS[0]}
set -e
minutes=$((($(date +%s) - started) / 60))
if ((status == 0)); then
  log "PASSED: '$command' exited 0 on bare Debian 12 in $minutes min"
else
  log "FAILED: '$command' exited $status on bare Debian 12 after $minutes min (log: $root.log)"
fi
exit "$status"
