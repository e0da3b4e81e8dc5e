# API Gateway HTTP API: the $default stage, one Lambda proxy integration per function and one
# route per API route, so each function is reached only on its own paths.

locals {
  integrated_functions = toset([for route in values(var.routes) : route.function])
}

resource "aws_apigatewayv2_api" "http" {
  name          = var.name
  protocol_type = "HTTP"
  description   = "MMT medical transcription API"

  dynamic "cors_configuration" {
    for_each = length(var.cors_allow_origins) > 0 ? [1] : []
    content {
      allow_origins = var.cors_allow_origins
      allow_methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
      allow_headers = ["authorization", "content-type", "x-correlation-id"]
      max_age       = 600
    }
  }
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.throttling_burst_limit
    throttling_rate_limit  = var.throttling_rate_limit
  }

  # Sign-in routes get a much lower ceiling for the whole API: the first line against
  # credential stuffing, before any function runs. MMT itself then limits per caller and
  # locks an account after LOGIN_MAX_FAILURES (shared across instances in DynamoDB). HTTP
  # APIs cannot carry AWS WAF; for per-address rules at the edge, put CloudFront with a WAF
  # web ACL (rate-based rule on /auth/*) in front of the API (see the README).
  dynamic "route_settings" {
    for_each = { for key, route in var.routes : key => route if startswith(key, "POST /auth/") }
    content {
      route_key              = route_settings.key
      throttling_burst_limit = var.sign_in_burst_limit
      throttling_rate_limit  = var.sign_in_rate_limit
    }
  }

  depends_on = [aws_apigatewayv2_route.route]

  # No headers, no body, no query string: nothing that could carry a token or PHI.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      requestTime    = "$context.requestTime"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      latencyMs      = "$context.responseLatency"
      integrationErr = "$context.integrationErrorMessage"
      sourceIp       = "$context.identity.sourceIp"
    })
  }
}

resource "aws_apigatewayv2_integration" "function" {
  for_each               = local.integrated_functions
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = var.function_invoke_arns[each.key]
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "route" {
  for_each = var.routes

  # checkov:skip=CKV_AWS_309:The functions verify MMT's bearer tokens themselves (the same check on every route, with record ownership); a gateway JWT authorizer would need a second token on the same header, so none is configured. Public routes (health, demo status, sign-in, docs) need none.
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value.function].id}"
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "api" {
  for_each      = local.integrated_functions
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = var.function_names[each.key]
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
