#!/usr/bin/env bash
# Offline checks of infra/ (`make infra-check`, part of `make test`):
#   1. `terraform fmt -check` (the Terraform `make setup` installs);
#   2. scripts/check-terraform.py: every reference resolves, every module call matches the
#      callee's variables, every resource argument, nested block and attribute read exists in
#      hashicorp/aws's schema — and its self-test, which plants mistakes and expects each found;
#   3. checkov's policies (a failed check fails the run unless skipped with a written reason).
# With TERRAFORM_VALIDATE=1 (where providers can be downloaded) also `terraform validate`.
# The structure (routes, least-privilege roles) is asserted by shared/tests/api/infra.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${MMT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmt-tools}
need() { [[ -e "$1" ]] || { echo "infra-check: $1 is missing: run 'make setup'" >&2; exit 1; }; }

need "$tools/bin/terraform-fmt"
"$tools/bin/terraform-fmt" fmt -check -recursive infra || { echo "infra-check: run 'terraform fmt -recursive infra'" >&2; exit 1; }
echo "terraform fmt: ok"
if [[ "${TERRAFORM_VALIDATE:-0}" == 1 ]]; then
  terraform -chdir=infra/envs/example init -backend=false -input=false
  terraform -chdir=infra/envs/example validate
fi

need "$tools/validators/bin/python"
need "$tools/aws-provider/package/package.json"
check=("$tools/validators/bin/python" scripts/check-terraform.py --schema-package "$tools/aws-provider/package"
  --schema-cache "$tools/aws-provider/schema.json")
"${check[@]}"
"${check[@]}" --self-test

need "$tools/checkov/bin/checkov"
"$tools/checkov/bin/checkov" -d infra --framework terraform --skip-download --compact --quiet
echo "checkov: no failed checks"
