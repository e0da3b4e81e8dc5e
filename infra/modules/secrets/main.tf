# Secrets in SSM Parameter Store (SecureString, the deployment's KMS key). Values are
# write-only: they reach AWS at apply time and are never stored in the Terraform state.
# Functions receive only the parameter names (<KEY>_SSM_PARAMETER) and read the values at
# cold start; ECS injects them into the GPU worker.

resource "aws_ssm_parameter" "secret" {
  for_each = var.secret_names

  name             = "/${var.name}/${each.key}"
  description      = "MMT ${each.key} (set with terraform apply; never in state)"
  type             = "SecureString"
  key_id           = var.kms_key_arn
  value_wo         = var.secret_values[each.key]
  value_wo_version = var.secrets_version
}
