# One customer-managed key for the deployment's data at rest: audio, records, queues, logs,
# function environments and secrets. Rotated yearly by AWS.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_111:This is a key policy: its "*" resource means this key only, and write access is limited to the account root (delegated through IAM) and to the logs and S3 services under source conditions.
  # checkov:skip=CKV_AWS_356:Key policies can only name "*" as their resource (the key they are attached to).
  # checkov:skip=CKV_AWS_109:Permission management on the key is granted to the account root only, the AWS-recommended default that lets IAM policies delegate it; without it the key becomes unmanageable.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the log groups of this deployment with the key.
  statement {
    sid       = "Logs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    # This deployment's log groups only: its functions', its API's and its GPU worker's.
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [for group in ["/aws/lambda/${var.name}-*", "/aws/apigateway/${var.name}", "/ecs/${var.name}"] :
        "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:${group}"
      ]
    }
  }

  # CloudFront reads the web page from its SSE-KMS bucket through origin access control
  # (AWS: "Restricting access to an Amazon S3 origin", SSE-KMS): only this distribution.
  dynamic "statement" {
    for_each = var.web_page ? [module.web[0].distribution_arn] : []
    content {
      sid       = "WebPageThroughCloudFront"
      actions   = ["kms:Decrypt"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["cloudfront.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceArn"
        values   = [statement.value]
      }
    }
  }

  # The GPU instances' root volumes are encrypted with this key: EC2 Auto Scaling launches them
  # with its service-linked role, which needs the key and a grant for EBS ("Required KMS key
  # policy for use with encrypted volumes"). Named by condition, not as principal, because the
  # role exists only once the account's first Auto Scaling group is created.
  dynamic "statement" {
    for_each = local.gpu_worker ? ["use", "grant"] : []
    content {
      sid       = statement.value == "use" ? "GpuVolumesThroughAutoScaling" : "GpuVolumeGrantsThroughAutoScaling"
      actions   = statement.value == "use" ? ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"] : ["kms:CreateGrant"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"]
      }
      condition {
        test     = "StringEquals"
        variable = "kms:CallerAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
      dynamic "condition" {
        for_each = statement.value == "grant" ? [true] : []
        content {
          test     = "Bool"
          variable = "kms:GrantIsForAWSResource"
          values   = ["true"]
        }
      }
    }
  }

  # CloudWatch alarms publish to the KMS-encrypted alarm topic.
  statement {
    sid       = "AlarmsToEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${var.name}: PHI at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.data.key_id
}

# The audit trail has a key of its own: whoever may use the data key (every function, for its
# secrets, queues and recordings) cannot thereby decrypt a backup or export of the trail, and
# disabling one key does not take the other down. Only the account administers it; DynamoDB
# uses it for the audit table through the grant it creates.
data "aws_iam_policy_document" "audit_key" {
  # checkov:skip=CKV_AWS_111:A key policy's "*" resource means this key only; write access is the account root's (delegated through IAM).
  # checkov:skip=CKV_AWS_356:Key policies can only name "*" as their resource (the key they are attached to).
  # checkov:skip=CKV_AWS_109:Permission management on the key is granted to the account root only, the AWS-recommended default.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "audit" {
  description             = "${var.name}: the audit trail"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.audit_key.json
}

resource "aws_kms_alias" "audit" {
  name          = "alias/${var.name}-audit"
  target_key_id = aws_kms_key.audit.key_id
}
