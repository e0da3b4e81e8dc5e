# Audio bucket and records table. Both encrypted with the deployment's KMS key; both expire
# data on their own as the second line of defence behind the retention sweep.

resource "aws_s3_bucket" "audio" {
  bucket_prefix = "${var.name}-audio-"
  force_destroy = var.force_destroy

  # checkov:skip=CKV_AWS_144:Cross-region replication would copy PHI to a second region; recordings are transient (deleted after transcription or at RETENTION_DAYS) and the transcript of record lives in the EHR.
  # checkov:skip=CKV2_AWS_62:Nothing is meant to react to objects landing: a resumable upload starts its transcription when the API completes it, and object-level activity is audited by CloudTrail data events (see infra/README.md).
  # checkov:skip=CKV_AWS_18:Server access logs would duplicate object keys and requester IPs into a second bucket; data events are recorded by CloudTrail (see infra/README.md), which is the audit trail reviewed.
}

# Browsers send the parts of resumable uploads straight to their presigned URLs: only from the
# API's allowed origins, only PUT, and the ETag readable (the parts' receipts).
resource "aws_s3_bucket_cors_configuration" "audio" {
  count  = length(var.cors_allow_origins) > 0 ? 1 : 0
  bucket = aws_s3_bucket.audio.id

  cors_rule {
    allowed_methods = ["PUT"]
    allowed_origins = var.cors_allow_origins
    allowed_headers = ["content-type"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3600
  }
}

resource "aws_s3_bucket_ownership_controls" "audio" {
  bucket = aws_s3_bucket.audio.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "audio" {
  bucket                  = aws_s3_bucket.audio.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "audio" {
  bucket = aws_s3_bucket.audio.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audio" {
  bucket = aws_s3_bucket.audio.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audio" {
  bucket = aws_s3_bucket.audio.id

  rule {
    id     = "expire-recordings"
    status = "Enabled"
    filter {}
    expiration {
      days = var.retention_days
    }
    # Versioning keeps deleted recordings as noncurrent versions: remove those a day later.
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "audio_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.audio.arn,
      "${aws_s3_bucket.audio.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "audio" {
  bucket = aws_s3_bucket.audio.id
  policy = data.aws_iam_policy_document.audio_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.audio]
}

resource "aws_dynamodb_table" "records" {
  name                        = "${var.name}-records"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "owner"
    type = "S"
  }
  attribute {
    name = "created_sort"
    type = "S"
  }

  # Owner listing, newest first (see shared/src/adapters/dynamodb.rs for the key design).
  global_secondary_index {
    name            = "by_owner"
    hash_key        = "owner"
    range_key       = "created_sort"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}

# The audit trail: its own table, so deleting records (by owners or the retention sweep) never
# touches it. No TTL: keep it as long as your policy says (HIPAA: six years). The functions may
# only PutItem here; nothing that runs the product can change or delete an event.
resource "aws_dynamodb_table" "audit" {
  name                        = "${var.name}-audit"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "day"
  range_key                   = "sk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "day"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.audit_kms_key_arn
  }
}

# The EHR outbox (one item per delivery) and the EHR connection's rotating refresh token. The
# patient and encounter ids and the token are sealed by MMT (field encryption) on top of SSE.
resource "aws_dynamodb_table" "ehr" {
  name                        = "${var.name}-ehr"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "transcription_id"
    type = "S"
  }
  attribute {
    name = "created_sort"
    type = "S"
  }

  # A transcription's deliveries (see shared/src/adapters/dynamodb_ehr.rs).
  global_secondary_index {
    name            = "by_transcription"
    hash_key        = "transcription_id"
    range_key       = "created_sort"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
