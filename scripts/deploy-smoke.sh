#!/usr/bin/env bash
# Post-deploy smoke test: the API is live and is NOT in demo mode. Fails the deploy otherwise.
#   scripts/deploy-smoke.sh https://abc123.execute-api.eu-west-1.amazonaws.com
set -euo pipefail
url=${1:?usage: deploy-smoke.sh API_URL}
url=${url%/}

for attempt in {1..10}; do
  status=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/live" || true)
  [[ "$status" == 200 ]] && break
  echo "smoke: /health/live answered ${status:-nothing} (attempt $attempt); retrying" >&2
  sleep 3
done
[[ "$status" == 200 ]] || { echo "smoke: FAILED: GET /health/live is $status, want 200" >&2; exit 1; }

demo_mode=$(curl -fsS "$url/demo/status" | jq -r '.demo_mode')
if [[ "$demo_mode" != false ]]; then
  echo "smoke: FAILED: GET /demo/status reports demo_mode: $demo_mode, want false" >&2
  exit 1
fi
echo "smoke: ok ($url live, demo_mode false)"
