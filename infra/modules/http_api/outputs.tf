output "url" {
  description = "Base URL of the API ($default stage)."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "execution_arn" {
  value = aws_apigatewayv2_api.http.execution_arn
}

output "api_id" {
  description = "For the 5xx alarm (AWS/ApiGateway, dimension ApiId)."
  value       = aws_apigatewayv2_api.http.id
}
