output "arns" {
  value = { for key, fn in aws_lambda_function.function : key => fn.arn }
}

output "names" {
  value = { for key, fn in aws_lambda_function.function : key => fn.function_name }
}

output "invoke_arns" {
  value = { for key, fn in aws_lambda_function.function : key => fn.invoke_arn }
}
