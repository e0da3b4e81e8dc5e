#!/usr/bin/env bash
# `make deploy`: build the arm64 zips, apply infra/envs/$ENVIRONMENT, smoke-test the result.
# Needs AWS credentials (profile, SSO or OIDC role) and, on the first apply, the secrets:
#   export TF_VAR_secret_values='{"jwt-secret":"...","openai-api-key":"sk-...","encryption-keys":"k1:...","admin-api-key":"..."}'
# AUTO_APPROVE=1 skips Terraform's confirmation (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
ENVIRONMENT=${ENVIRONMENT:-example}
dir=infra/envs/$ENVIRONMENT
command -v terraform >/dev/null || { echo "deploy: terraform >= 1.11 is required" >&2; exit 1; }

scripts/build-lambdas.sh

backend=()
[[ -f "$dir/backend.hcl" ]] && backend=(-backend-config=backend.hcl)
terraform -chdir="$dir" init -input=false "${backend[@]}"
approve=()
[[ "${AUTO_APPROVE:-0}" == 1 ]] && approve=(-auto-approve)
terraform -chdir="$dir" apply -input=false "${approve[@]}"

scripts/deploy-smoke.sh "$(terraform -chdir="$dir" output -raw api_url)"
