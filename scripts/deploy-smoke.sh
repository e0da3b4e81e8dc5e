#!/usr/bin/env bash
# Post-deploy smoke test: the API is live and ready, is NOT in demo mode, and serves an
# authenticated round trip. Fails the deploy otherwise.
#   SMOKE_ADMIN_API_KEY=... scripts/deploy-smoke.sh https://abc123.execute-api.eu-west-1.amazonaws.com
# The round trip signs in with the deployment's ADMIN_API_KEY (POST /auth/admin) and reads the
# audit trail with that token (which also proves the audit store answers), and checks that a
# request without a token is refused.
set -euo pipefail
url=${1:?usage: SMOKE_ADMIN_API_KEY=... deploy-smoke.sh API_URL}
url=${url%/}
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }

for attempt in {1..10}; do
  status=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/live" || true)
  [[ "$status" == 200 ]] && break
  echo "smoke: /health/live answered ${status:-nothing} (attempt $attempt); retrying" >&2
  sleep 3
done
[[ "$status" == 200 ]] || fail "GET /health/live is $status, want 200"

status=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/ready" || true)
[[ "$status" == 200 ]] || fail "GET /health/ready is $status, want 200 (a dependency is down)"

answer=$(curl -fsS "$url/demo/status") || fail "GET /demo/status"
demo_mode=$(jq -r '.demo_mode' <<<"$answer")
[[ "$demo_mode" == false ]] || fail "GET /demo/status reports demo_mode: $demo_mode, want false"

[[ -n "${SMOKE_ADMIN_API_KEY:-}" ]] || fail "SMOKE_ADMIN_API_KEY is not set: the authenticated round trip needs the deployment's ADMIN_API_KEY"
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/transcriptions" || true)
[[ "$status" == 401 ]] || fail "GET /v1/transcriptions without a token is $status, want 401"
answer=$(jq -cn --arg key "$SMOKE_ADMIN_API_KEY" '{api_key: $key}' |
  curl -sS -X POST -H 'content-type: application/json' --data @- "$url/auth/admin") || fail "POST /auth/admin"
token=$(jq -er .access_token <<<"$answer" 2>/dev/null) || fail "POST /auth/admin gave no token (is ADMIN_API_KEY the deployment's?)"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/v1/admin/audit" || true)
[[ "$status" == 200 ]] || fail "GET /v1/admin/audit with the admin token is $status, want 200"
echo "smoke: ok ($url live and ready, demo_mode false, authenticated round trip)"
