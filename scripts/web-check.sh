#!/usr/bin/env bash
# Browser tests of the web page (web/tests/flow.mjs): Debian's chromium driven by
# playwright-core, against three real backends on loopback — a demo server with local
# Whisper that serves the page and pushes to a fake OpenEMR (testkit's, as a process), a
# production-mode API, and an address nothing listens on.
# Screenshots land in target/web-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

[[ -d web/tests/node_modules/playwright-core ]] || die "playwright-core is missing: run 'make setup'"
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || die "no Chromium at ${CHROMIUM:-/usr/bin/chromium}: run 'make setup' (or set CHROMIUM)"
model=$(MODEL=tiny.en scripts/model.sh)
# `--workspace`: the features every member asks for, as `cargo test --workspace` builds them,
# so the binary reuses those artifacts instead of rebuilding every dependency.
cargo build -q --workspace --bin mmt --bin fake-openemr

spoken="The patient has had a mild headache for two days. She should drink plenty of water and rest at home."
espeak-ng -v en-us -s 140 -w "$work/raw.wav" "$spoken"
sox "$work/raw.wav" -r 16000 -c 1 -b 16 "$work/clip.wav"
# A dictation with spoken section headings, for the edit → sections → EHR push walk-through.
espeak-ng -v en-us -s 140 -w "$work/soap-raw.wav" \
  "Subjective. The patient has had a headache for two days. Objective. Blood pressure is one twenty over eighty. Assessment. Tension headache. Plan. Ibuprofen and rest at home."
sox "$work/soap-raw.wav" -r 16000 -c 1 -b 16 "$work/dictation.wav"
# As a browser records it (48 kHz stereo), about 20 MB: three parts of the resumable upload.
sox "$work/raw.wav" -r 48000 -c 2 -b 16 "$work/big.wav" repeat 16

demo_port=$(free_port)
emr_port=$(free_port)
idp_port=$(free_port)
prod_port=$(free_port)
down_port=$(free_port)
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')

password="dictate-$(head -c 12 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
hash=$(printf '%s' "$password" | target/debug/mmt hash-password)
env PORT="$emr_port" OPENEMR_REFRESH_TOKEN=web-check-refresh target/debug/fake-openemr >"$work/emr.log" 2>&1 &
pids+=($!)
# A real OpenID Provider (oidc-provider, testkit/oidc) for "Sign in with your organisation":
# its own login and consent pages, a public client for the page, PKCE.
node -e "const k = require('node:crypto').generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  process.stdout.write(JSON.stringify([Object.assign(k, { kid: 'web-check', alg: 'RS256', use: 'sig' })]));" >"$work/idp-keys.json"
env PORT="$idp_port" KEYS="$work/idp-keys.json" \
  WEB_CLIENT="{\"client_id\":\"mmt-web\",\"redirect_uri\":\"http://127.0.0.1:$demo_port/\",\"claims\":{\"realm_access\":{\"roles\":[\"clinician\"]}}}" \
  node testkit/oidc/provider.mjs >"$work/idp.log" 2>&1 &
pids+=($!)
oidc_issuers="[{\"name\":\"clinic\",\"issuer\":\"http://127.0.0.1:$idp_port\",\"audience\":\"mmt-api\",\"roles_claim\":\"realm_access.roles\"}]"
env ENV=dev DEMO_MODE=true HOST=127.0.0.1 PORT="$demo_port" DATA_DIR="$work/demo" LOG_FORMAT=json \
  INTERNAL_JWT_SECRET="$secret" ENABLE_LOCAL_TRANSCRIPTION=true WHISPER_MODEL_PATH="$model" \
  ALLOW_LOCAL_LOGIN=true LOCAL_LOGIN_USERS="ana:$hash" EHR_TARGET=openemr OPENEMR_BASE_URL="http://127.0.0.1:$emr_port" \
  EHR_LOGIN=per-clinician OPENEMR_REDIRECT_URI="http://127.0.0.1:$demo_port/" \
  OPENEMR_CLIENT_ID=mmt-client OPENEMR_REFRESH_TOKEN=web-check-refresh \
  OIDC_ISSUERS="$oidc_issuers" WEB_OIDC_ISSUER=clinic WEB_OIDC_CLIENT_ID=mmt-web WEB_OIDC_RESOURCE=urn:mmt:api \
  target/debug/mmt serve >"$work/demo.log" 2>&1 &
pids+=($!)
env ENV=dev DEMO_MODE=false HOST=127.0.0.1 PORT="$prod_port" DATA_DIR="$work/prod" LOG_FORMAT=json \
  INTERNAL_JWT_SECRET="$secret" CORS_ALLOW_ORIGINS="http://127.0.0.1:$demo_port" \
  target/debug/mmt serve >"$work/prod.log" 2>&1 &
pids+=($!)
wait_for_http "http://127.0.0.1:$emr_port/__fake/notes" 30 "the fake OpenEMR" "$work/emr.log"
wait_for_http "http://127.0.0.1:$idp_port/.well-known/openid-configuration" 30 "the OpenID Provider" "$work/idp.log"
wait_for_http "http://127.0.0.1:$demo_port/health/live" 60 "the demo server" "$work/demo.log"
wait_for_http "http://127.0.0.1:$prod_port/health/live" 60 "the production-mode server" "$work/prod.log"

mkdir -p target/web-artifacts
if MMT_DEMO="http://127.0.0.1:$demo_port" MMT_PROD="http://127.0.0.1:$prod_port" \
   MMT_DOWN="http://127.0.0.1:$down_port" CLIP="$work/clip.wav" BIG_CLIP="$work/big.wav" ARTIFACTS="$PWD/target/web-artifacts" \
   DICTATION="$work/dictation.wav" EMR="http://127.0.0.1:$emr_port" USER_NAME=ana USER_PASSWORD="$password" \
   IDP="http://127.0.0.1:$idp_port" \
   node web/tests/flow.mjs; then
  exit 0
fi
echo "--- demo server log (tail)"; tail -n 40 "$work/demo.log"
exit 1
