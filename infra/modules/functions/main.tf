# One Lambda function per entry of var.functions: arm64 on provided.al2023, its own log group,
# and its own role holding only the statements given for it (least privilege per function).

locals {
  function_names = { for key, _ in var.functions : key => "${var.name}-${key}" }
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each          = var.functions
  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_iam_role" "function" {
  for_each           = var.functions
  name               = "${local.function_names[each.key]}-fn"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

data "aws_iam_policy_document" "function" {
  for_each = var.functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  # X-Ray accepts no resource narrower than "*"; these actions reach no data.
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = each.value.statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
      dynamic "condition" {
        for_each = statement.value.condition == null ? [] : [statement.value.condition]
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = var.functions
  name     = "least-privilege"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_lambda_function" "function" {
  for_each = var.functions

  # checkov:skip=CKV_AWS_117:The functions call only AWS APIs and the transcription API over TLS; a VPC would add NAT gateways and cold-start cost without narrowing any path. Data stays private through IAM, KMS and the bucket/queue policies.
  # checkov:skip=CKV_AWS_116:HTTP functions answer API Gateway synchronously and the SQS function is retried by its queue (with a DLQ); only retention-sweep is invoked asynchronously and it gets a dead-letter queue (dead_letter_arn).
  # checkov:skip=CKV_AWS_115:Reserved concurrency is opt-in (var.reserved_concurrency): new accounts have a regional limit of 10-50, and reserving ~170 executions fails the apply. The SQS consumers are capped by their event source mappings' maximum_concurrency and the API by the stage's throttling either way.
  # checkov:skip=CKV_AWS_272:Zips are built from a tagged commit by the deploy workflow and uploaded with its OIDC role; code signing needs an AWS Signer profile, an organisation-level choice left to the operator.
  function_name                  = local.function_names[each.key]
  description                    = each.value.description
  role                           = aws_iam_role.function[each.key].arn
  filename                       = "${var.artifacts_dir}/${each.key}/bootstrap.zip"
  source_code_hash               = filebase64sha256("${var.artifacts_dir}/${each.key}/bootstrap.zip")
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  memory_size                    = each.value.memory_mb
  timeout                        = each.value.timeout_s
  reserved_concurrent_executions = each.value.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  environment {
    variables = merge(var.environment, each.value.environment)
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  dynamic "dead_letter_config" {
    for_each = each.value.dead_letter_arn == null ? [] : [each.value.dead_letter_arn]
    content {
      target_arn = dead_letter_config.value
    }
  }

  depends_on = [aws_iam_role_policy.function]
}
