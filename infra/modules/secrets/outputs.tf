output "parameter_names" {
  description = "Secret name → SSM parameter name."
  value       = { for key, p in aws_ssm_parameter.secret : key => p.name }
}

output "parameter_arns" {
  description = "Secret name → SSM parameter ARN (for IAM and ECS secrets)."
  value       = { for key, p in aws_ssm_parameter.secret : key => p.arn }
}
