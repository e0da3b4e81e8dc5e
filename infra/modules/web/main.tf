# The web page (web/) on a private S3 bucket behind CloudFront: the same static files the
# one-process server serves at /, with config.js pointing at this deployment's API. Only
# CloudFront (origin access control) can read the bucket; every answer carries the page's
# security headers.

locals {
  # scheme://host[:port] of the API, as a CSP source.
  api_origin = regex("^https?://[^/]+", var.api_base_url)
  # The page's identity provider (discovery and token endpoints), when it signs in with one.
  idp_origin = var.identity_provider != null ? " ${regex("^https://[^/]+", var.identity_provider)}" : ""
  # Where the page dictates live (the GPU worker's balancer), when it does.
  live_origin = var.live_dictation_url != null ? " ${regex("^wss://[^/]+", var.live_dictation_url)}" : ""
}

resource "aws_s3_bucket" "web" {
  # checkov:skip=CKV_AWS_144:The page is rebuilt from the repository on every deploy; a replica adds nothing.
  # checkov:skip=CKV_AWS_18:CloudFront serves every request; its own logs are the place to look, and the files are public by design.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to changes of the page's files.
  # checkov:skip=CKV2_AWS_61:The bucket holds three small files, replaced on deploy; there is nothing to expire.
  bucket_prefix = "${var.name}-web-"
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "web" {
  bucket                  = aws_s3_bucket.web.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "web" {
  bucket = aws_s3_bucket.web.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "web" {
  bucket = aws_s3_bucket.web.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "web" {
  bucket = aws_s3_bucket.web.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_cloudfront_origin_access_control" "web" {
  name                              = "${var.name}-web"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

data "aws_iam_policy_document" "web" {
  statement {
    sid       = "CloudFrontReads"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.web.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.web.arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.web.arn, "${aws_s3_bucket.web.arn}/*"]
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

resource "aws_s3_bucket_policy" "web" {
  bucket = aws_s3_bucket.web.id
  policy = data.aws_iam_policy_document.web.json
}

resource "aws_cloudfront_response_headers_policy" "web" {
  name = "${var.name}-web"
  security_headers_config {
    content_security_policy {
      # connect-src names this deployment's API and nothing else: a link naming another API
      # cannot make the browser send it a password, a token or a recording.
      content_security_policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ${local.api_origin}${local.idp_origin}${local.live_origin}; media-src 'self' blob:; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
      override                = true
    }
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
  }
}

resource "aws_cloudfront_distribution" "web" {
  # checkov:skip=CKV_AWS_68:A static page with no server-side logic and no PHI; the API behind it has its own throttling and authentication.
  # checkov:skip=CKV2_AWS_47:No WAF (see CKV_AWS_68): the page runs no server code that Log4j-style payloads could reach.
  # checkov:skip=CKV_AWS_310:One origin: the bucket is regional and highly available; a failover group adds a second bucket to keep in sync.
  # checkov:skip=CKV_AWS_374:The page is for clinics anywhere; restrict geography at your CDN if your policy asks.
  # checkov:skip=CKV_AWS_174:With var.certificate the minimum is TLSv1.2_2021; without one CloudFront serves *.cloudfront.net with its default certificate, whose minimum cannot be raised (the README says so).
  # checkov:skip=CKV2_AWS_42:See CKV_AWS_174: a custom certificate comes with the operator's domain (var.certificate).
  # checkov:skip=CKV_AWS_86:Logging is on unless var.access_logs is false (checkov cannot see through the dynamic block).
  enabled             = true
  default_root_object = "index.html"
  aliases             = var.certificate == null ? [] : [var.certificate.domain_name]
  price_class         = "PriceClass_100"
  http_version        = "http2and3"

  origin {
    domain_name              = aws_s3_bucket.web.bucket_regional_domain_name
    origin_id                = "web"
    origin_access_control_id = aws_cloudfront_origin_access_control.web.id
  }

  default_cache_behavior {
    target_origin_id           = "web"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = "658327ea-f89d-4fab-a63d-7e88639e58f6" # Managed-CachingOptimized
    response_headers_policy_id = aws_cloudfront_response_headers_policy.web.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.certificate == null
    acm_certificate_arn            = try(var.certificate.arn, null)
    ssl_support_method             = var.certificate == null ? null : "sni-only"
    minimum_protocol_version       = var.certificate == null ? "TLSv1" : "TLSv1.2_2021"
  }

  dynamic "logging_config" {
    for_each = var.access_logs ? [aws_s3_bucket.logs[0].bucket_domain_name] : []
    content {
      bucket          = logging_config.value
      include_cookies = false
      prefix          = "cloudfront/"
    }
  }
}

# CloudFront's standard logs: a bucket of their own, private, encrypted with S3's keys (the
# log delivery cannot use a customer key), expired after log_retention_days. CloudFront
# writes them through the bucket ACL, so ACLs are enabled here and nowhere else.
resource "aws_s3_bucket" "logs" {
  # checkov:skip=CKV_AWS_144:Access logs need no second region.
  # checkov:skip=CKV_AWS_18:This is the log bucket.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to log files arriving.
  # checkov:skip=CKV_AWS_145:CloudFront's log delivery supports SSE-S3 only, not SSE-KMS.
  # checkov:skip=CKV_AWS_21:Log files are written once and expired; versions add nothing.
  # checkov:skip=CKV2_AWS_6:Its public access block is aws_s3_bucket_public_access_block.logs (same count; checkov does not follow the index).
  # checkov:skip=CKV2_AWS_61:Its lifecycle is aws_s3_bucket_lifecycle_configuration.logs (same count; checkov does not follow the index).
  count         = var.access_logs ? 1 : 0
  bucket_prefix = "${var.name}-web-logs-"
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "logs" {
  count                   = var.access_logs ? 1 : 0
  bucket                  = aws_s3_bucket.logs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  # checkov:skip=CKV2_AWS_65:CloudFront standard logging writes through the bucket ACL (AWS: "Permissions required to configure standard logging"); public access stays blocked.
  count  = var.access_logs ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    object_ownership = "BucketOwnerPreferred"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  count  = var.access_logs ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  count  = var.access_logs ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

locals {
  files = {
    "index.html" = "text/html; charset=utf-8"
    "app.js"     = "text/javascript; charset=utf-8"
    "app.css"    = "text/css; charset=utf-8"
    # Live dictation's AudioWorklet (the microphone to 16 kHz PCM16).
    "pcm-worklet.js" = "text/javascript; charset=utf-8"
  }
}

resource "aws_s3_object" "page" {
  for_each      = local.files
  bucket        = aws_s3_bucket.web.id
  key           = each.key
  source        = "${var.web_dir}/${each.key}"
  source_hash   = filemd5("${var.web_dir}/${each.key}")
  content_type  = each.value
  cache_control = "no-cache"
}

resource "aws_s3_object" "config" {
  bucket        = aws_s3_bucket.web.id
  key           = "config.js"
  content       = "window.__MMT_CONFIG = ${jsonencode({ API_BASE_URL = var.api_base_url })};\n"
  content_type  = "text/javascript; charset=utf-8"
  cache_control = "no-cache"
}
