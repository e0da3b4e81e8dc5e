#!/usr/bin/env bash
# `make deploy`: build the arm64 zips, plan infra/envs/$ENVIRONMENT, apply, smoke-test the result.
# Needs AWS credentials (profile, SSO or OIDC role) and, on every plan and apply, the secrets:
#   export TF_VAR_secret_values='{"jwt-private-key":"<PEM>","openai-api-key":"sk-...","encryption-keys":"k1:...","admin-api-key":"..."}'
#   export TF_VAR_jwt_public_key_pem='<PEM>'   (`mmt secrets --rsa --encryption 1` prints both keys)
#   export SMOKE_ADMIN_API_KEY=<the admin-api-key above>   (the smoke test's authenticated round trip)
# Remote state: copy backend.tf.example to backend.tf and fill backend.hcl (infra/README.md).
#   PLAN_ONLY=1       build and write the plan to tfplan, apply nothing (CI's plan job)
#   APPLY_PLAN=tfplan apply that reviewed plan as it is (CI's apply job), then smoke-test
#   AUTO_APPROVE=1    apply the fresh plan without asking
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ENVIRONMENT=${ENVIRONMENT:-example}
dir=infra/envs/$ENVIRONMENT
command -v terraform >/dev/null || die "terraform >= 1.11 is required"

backend=()
if [[ -f "$dir/backend.hcl" ]]; then
  [[ -f "$dir/backend.tf" ]] || die "$dir/backend.hcl exists but backend.tf does not: copy backend.tf.example to backend.tf"
  backend=(-backend-config=backend.hcl)
fi
terraform -chdir="$dir" init -input=false "${backend[@]}"

if [[ -n "${APPLY_PLAN:-}" ]]; then
  terraform -chdir="$dir" apply -input=false "$APPLY_PLAN"
else
  scripts/build-lambdas.sh
  terraform -chdir="$dir" plan -input=false -out=tfplan
  [[ "${PLAN_ONLY:-0}" == 1 ]] && exit 0
  if [[ "${AUTO_APPROVE:-0}" != 1 ]]; then
    read -r -p "Apply this plan to $ENVIRONMENT? [y/N] " answer
    [[ "$answer" == [yY]* ]] || die "not applied (the plan is in $dir/tfplan)"
  fi
  terraform -chdir="$dir" apply -input=false tfplan
fi

scripts/deploy-smoke.sh "$(terraform -chdir="$dir" output -raw api_url)"
